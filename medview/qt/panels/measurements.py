"""Measurements panel: every measurement of the study, renameable, deletable, exportable to CSV."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError


class MeasurementsPanel(QWidget):
    COLUMNS = ("Name", "Kind", "View", "Result")

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.itemChanged.connect(self._renamed)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self.delete_selected)
        self.export_button = QPushButton("Export CSV...")
        self.export_button.clicked.connect(self._choose_csv)
        buttons = QHBoxLayout()
        buttons.addWidget(self.delete_button)
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        state.subscribe("measurements", self.refresh)
        state.subscribe("volume", self.refresh)

    def refresh(self) -> None:
        units = self.state.volume.metadata.units if self.state.volume else ""
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.state.measurements))
        for row, m in enumerate(self.state.measurements):
            values = (m.name, m.kind, m.view, m.summary(units))
            for col, text in enumerate(values):
                item = QTableWidgetItem(text)
                if col != 0:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                item.setData(Qt.ItemDataRole.UserRole, m.id)
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)

    def _renamed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        for m in self.state.measurements:
            if m.id == item.data(Qt.ItemDataRole.UserRole):
                m.name = item.text().strip() or m.name
        self.state.emit("measurements")

    def delete_selected(self) -> None:
        ids = {self.table.item(i.row(), 0).data(Qt.ItemDataRole.UserRole) for i in self.table.selectedIndexes()}
        for m in [m for m in self.state.measurements if m.id in ids]:
            self.state.remove_measurement(m)

    def _choose_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export measurements", "measurements.csv", "CSV (*.csv)")
        if path:
            try:
                self.state.measurements.to_csv(path)
            except MedviewError as exc:
                QMessageBox.warning(self, "Export failed", str(exc))
