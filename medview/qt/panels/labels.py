"""Labels panel: one row per label with visibility, colour swatch and opacity; filled or outlined."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.viewer import ViewerState


class LabelsPanel(QWidget):
    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Label", "Value", "Volume (mL)"])
        self.tree.itemChanged.connect(self._toggled)
        self.tree.currentItemChanged.connect(self._selected)
        self.outline = QCheckBox("Outline")
        self.outline.toggled.connect(state.set_label_outline)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._opacity_changed)
        row = QHBoxLayout()
        row.addWidget(self.outline)
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree)
        layout.addLayout(row)
        state.subscribe("labels", self.refresh)

    def refresh(self) -> None:
        labels = self.state.labels
        self.tree.blockSignals(True)
        self.tree.clear()
        if labels is not None:
            counts = {v: labels.volume_ml(v) for v in labels.voxel_counts()}  # cached: counted in the worker
            for entry in labels.labels:
                item = QTreeWidgetItem([entry.name, str(entry.value), f"{counts.get(entry.value, 0.0):.2f}"])
                item.setCheckState(0, Qt.CheckState.Checked if entry.visible else Qt.CheckState.Unchecked)
                pix = QPixmap(12, 12)
                pix.fill(QColor(*entry.color))
                item.setIcon(0, QIcon(pix))
                item.setData(0, Qt.ItemDataRole.UserRole, entry.value)
                self.tree.addTopLevelItem(item)
        self.tree.blockSignals(False)
        self._selected(self.tree.currentItem(), None)

    def _toggled(self, item: QTreeWidgetItem, column: int) -> None:
        value = item.data(0, Qt.ItemDataRole.UserRole)
        self.state.set_label_visible(value, item.checkState(0) == Qt.CheckState.Checked)

    def _selected(self, item: QTreeWidgetItem | None, _previous) -> None:
        labels = self.state.labels
        if item is None or labels is None:
            self.opacity.setEnabled(False)
            return
        self.opacity.setEnabled(True)
        self.opacity.blockSignals(True)
        self.opacity.setValue(int(labels.label(item.data(0, Qt.ItemDataRole.UserRole)).opacity * 100))
        self.opacity.blockSignals(False)

    def _opacity_changed(self, value: int) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self.state.set_label_opacity(item.data(0, Qt.ItemDataRole.UserRole), value / 100.0)
