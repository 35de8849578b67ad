"""Labels panel: the label table (show, rename, colour, lock, add; the selected row is the active label),
how labels are drawn (filled or outlined, opacity), and the brush settings of the paint/erase/fill tools."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.editing import BrushSettings
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError

NAME, VALUE, VOLUME, LOCKED = range(4)


class LabelsPanel(QWidget):
    def __init__(self, state: ViewerState, brush: BrushSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.brush = brush or BrushSettings()
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Label", "Value", "Volume (mL)", "Lock"])
        self.tree.setToolTip("Tick to show; double-click a name to rename it, the value to change the colour; "
                             "the selected label is the one the paint and fill tools draw")
        self.tree.itemChanged.connect(self._item_changed)
        self.tree.itemDoubleClicked.connect(self._double_clicked)
        self.tree.currentItemChanged.connect(self._selected)
        add = QPushButton("Add label")
        add.clicked.connect(self._add)
        colour = QPushButton("Colour…")
        colour.clicked.connect(lambda: self._choose_colour(self.tree.currentItem()))
        self.outline = QCheckBox("Outline")
        self.outline.toggled.connect(state.set_label_outline)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.valueChanged.connect(self._opacity_changed)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(colour)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.outline)
        row.addWidget(QLabel("Opacity"))
        row.addWidget(self.opacity, 1)

        box = QGroupBox("Brush (B paint, X erase, G fill)")
        form = QFormLayout(box)
        self.radius = QDoubleSpinBox()
        self.radius.setRange(0.0, 200.0)
        self.radius.setDecimals(1)
        self.radius.setSuffix(" mm")
        self.radius.setValue(self.brush.radius_mm)
        self.radius.valueChanged.connect(lambda v: setattr(self.brush, "radius_mm", float(v)))
        self.shape = QComboBox()
        self.shape.addItems(["disc", "sphere"])
        self.shape.setCurrentText(self.brush.shape)
        self.shape.currentTextChanged.connect(lambda t: setattr(self.brush, "shape", t))
        self.limit = QCheckBox("only values in")
        self.limit.setChecked(self.brush.limit)
        self.limit.toggled.connect(lambda on: setattr(self.brush, "limit", bool(on)))
        self.low = QDoubleSpinBox()
        self.high = QDoubleSpinBox()
        for spin, attr in ((self.low, "low"), (self.high, "high")):
            spin.setRange(-100000.0, 100000.0)
            spin.setDecimals(0)
            spin.setValue(getattr(self.brush, attr))
            spin.valueChanged.connect(lambda v, a=attr: setattr(self.brush, a, float(v)))
        limits = QHBoxLayout()
        limits.addWidget(self.limit)
        limits.addWidget(self.low)
        limits.addWidget(QLabel("to"))
        limits.addWidget(self.high)
        self.fill_3d = QCheckBox("Fill in 3D (else in the slice)")
        self.fill_3d.toggled.connect(lambda on: setattr(self.brush, "fill_3d", bool(on)))
        form.addRow("Radius", self.radius)
        form.addRow("Shape", self.shape)
        form.addRow("Paint", limits)
        form.addRow(self.fill_3d)

        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)
        layout.addLayout(row)
        layout.addWidget(box)
        state.subscribe("labels", self.refresh)

    # -- table ----------------------------------------------------------------------------------------
    def refresh(self) -> None:
        labels = self.state.labels
        current = self.state.active_label
        self.tree.blockSignals(True)
        self.tree.clear()
        if labels is not None:
            counts = {v: labels.volume_ml(v) for v in labels.voxel_counts()}
            for entry in labels.labels:
                item = QTreeWidgetItem([entry.name, str(entry.value), f"{counts.get(entry.value, 0.0):.2f}", ""])
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                item.setCheckState(NAME, Qt.CheckState.Checked if entry.visible else Qt.CheckState.Unchecked)
                item.setCheckState(LOCKED, Qt.CheckState.Checked if entry.locked else Qt.CheckState.Unchecked)
                pix = QPixmap(12, 12)
                pix.fill(QColor(*entry.color))
                item.setIcon(NAME, QIcon(pix))
                item.setData(NAME, Qt.ItemDataRole.UserRole, entry.value)
                self.tree.addTopLevelItem(item)
                if entry.value == current:
                    self.tree.setCurrentItem(item)
        self.tree.blockSignals(False)
        self._show_opacity(self.tree.currentItem())

    @staticmethod
    def _value(item: QTreeWidgetItem) -> int:
        return int(item.data(NAME, Qt.ItemDataRole.UserRole))

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        value = self._value(item)
        try:
            if column == NAME:
                entry = self.state.labels.label(value)
                name = item.text(NAME).strip()
                if name and name != entry.name:
                    self.state.rename_label(value, name)
                visible = item.checkState(NAME) == Qt.CheckState.Checked
                if visible != entry.visible:
                    self.state.set_label_visible(value, visible)
            elif column == LOCKED:
                self.state.set_label_locked(value, item.checkState(LOCKED) == Qt.CheckState.Checked)
        except MedviewError as exc:
            QMessageBox.warning(self, "Labels", str(exc))
            self.refresh()

    def _double_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        if column == NAME:
            self.tree.editItem(item, NAME)
        elif column == VALUE:
            self._choose_colour(item)

    def _choose_colour(self, item: QTreeWidgetItem | None) -> None:
        if item is None or self.state.labels is None:
            return
        value = self._value(item)
        color = QColorDialog.getColor(QColor(*self.state.labels.label(value).color), self, "Label colour")
        if color.isValid():
            self.state.set_label_color(value, (color.red(), color.green(), color.blue()))

    def _add(self) -> None:
        try:
            self.state.add_label()
        except MedviewError as exc:
            QMessageBox.warning(self, "Labels", str(exc))

    def _selected(self, item: QTreeWidgetItem | None, _previous) -> None:
        if item is not None and self.state.labels is not None and self._value(item) != self.state.active_label:
            self.state.active_label = self._value(item)  # no redraw needed: nothing on screen changes
        self._show_opacity(item)

    def _show_opacity(self, item: QTreeWidgetItem | None) -> None:
        labels = self.state.labels
        if item is None or labels is None:
            self.opacity.setEnabled(False)
            return
        self.opacity.setEnabled(True)
        self.opacity.blockSignals(True)
        self.opacity.setValue(int(labels.label(self._value(item)).opacity * 100))
        self.opacity.blockSignals(False)

    def _opacity_changed(self, value: int) -> None:
        item = self.tree.currentItem()
        if item is not None:
            self.state.set_label_opacity(self._value(item), value / 100.0)
