"""Measurements panel: every measurement of the study, renameable, deletable, exportable to CSV."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
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
        header = self.table.horizontalHeader()  # short columns fit their text; the result takes the rest
        header.setStretchLastSection(True)
        for column in range(len(self.COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self._in_item_change = False  # inside the table's own itemChanged: its items must not be replaced
        self._rebuild_later = QTimer(self)
        self._rebuild_later.setSingleShot(True)
        self._rebuild_later.timeout.connect(self.refresh)
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
        """Show the measurements. Rows of the same measurements are updated in place; the table is rebuilt only
        when measurements were added or removed, and never inside its own itemChanged (a rename announces
        "measurements" from there, and replacing the item Qt is changing is a use-after-free)."""
        ids = [m.id for m in self.state.measurements]
        shown = [self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) if self.table.item(r, 0) else None
                 for r in range(self.table.rowCount())]
        if shown != ids:
            if self._in_item_change:
                self._rebuild_later.start(0)  # after Qt has finished with the item being changed
                return
            self._rebuild()
        units = self.state.volume.metadata.units if self.state.volume else ""
        self.table.blockSignals(True)
        try:
            for row, m in enumerate(self.state.measurements):
                for col, text in enumerate((m.name, m.kind, m.view, m.summary(units))):
                    item = self.table.item(row, col)
                    if item.text() != text:
                        item.setText(text)
        finally:
            self.table.blockSignals(False)

    def _rebuild(self) -> None:
        self.table.blockSignals(True)
        try:
            self.table.setRowCount(len(self.state.measurements))
            for row, m in enumerate(self.state.measurements):
                for col in range(len(self.COLUMNS)):
                    item = QTableWidgetItem("")
                    if col != 0:
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                    item.setData(Qt.ItemDataRole.UserRole, m.id)
                    self.table.setItem(row, col, item)
        finally:
            self.table.blockSignals(False)

    def _renamed(self, item: QTableWidgetItem) -> None:
        if item.column() != 0:
            return
        for m in self.state.measurements:
            if m.id == item.data(Qt.ItemDataRole.UserRole):
                m.name = item.text().strip() or m.name
        self._in_item_change = True
        try:
            self.state.emit("measurements")
        finally:
            self._in_item_change = False

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
