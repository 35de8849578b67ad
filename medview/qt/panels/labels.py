"""Labels panel: the label table (show, rename, colour, lock, add; the selected row is the active label),
how labels are drawn (filled or outlined, opacity), and the brush settings of the paint/erase/fill tools."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
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
COLOR_ROLE = Qt.ItemDataRole.UserRole + 1  # the colour the row's icon shows, to redraw it only when it changes


class LabelsPanel(QWidget):
    def __init__(self, state: ViewerState, brush: BrushSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.brush = brush or BrushSettings()
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Label", "Value", "Volume (mL)", "Lock"])
        self.tree.setRootIsDecorated(False)  # a flat list: no branch indentation before the tick box
        header = self.tree.header()  # the name takes the width the numbers leave ('Tu...' before)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        for column in (VALUE, VOLUME, LOCKED):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setToolTip("Tick to show; double-click a name to rename it, the value to change the colour; "
                             "the selected label is the one the paint and fill tools draw")
        self._in_item_change = False  # inside the table's own itemChanged: its items must not be deleted
        self._rebuild_later = QTimer(self)
        self._rebuild_later.setSingleShot(True)
        self._rebuild_later.timeout.connect(self.refresh)
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
        """Show the session's label table. Rows are updated in place; the table is rebuilt only when labels
        were added, removed or reordered, and never while Qt is inside one of its items' changes: a change made
        in the table (a tick, a name) reaches the session, which announces "labels" again from within
        itemChanged, and deleting that item there is a use-after-free (SIGSEGV in libQt6Widgets)."""
        labels = self.state.labels
        entries = list(labels.labels) if labels is not None else []
        rows = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        if [self._value(item) for item in rows] == [e.value for e in entries]:
            self._update_rows(rows, entries)
        elif self._in_item_change:
            self._rebuild_later.start(0)  # after Qt has finished with the item being changed
        else:
            self._rebuild()

    def _rebuild(self) -> None:
        labels = self.state.labels
        self.tree.blockSignals(True)
        self.tree.clear()
        rows = []
        for entry in labels.labels if labels is not None else []:
            item = QTreeWidgetItem(["", str(entry.value), "", ""])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            item.setData(NAME, Qt.ItemDataRole.UserRole, entry.value)
            self.tree.addTopLevelItem(item)
            rows.append(item)
        self.tree.blockSignals(False)
        self._update_rows(rows, list(labels.labels) if labels is not None else [])

    def _update_rows(self, rows: list[QTreeWidgetItem], entries: list) -> None:
        """Write each entry's name, tick boxes, colour and volume into its row, changing only what differs
        (no item is created or deleted here, so this is safe inside the table's own itemChanged)."""
        labels = self.state.labels
        counts = {v: labels.volume_ml(v) for v in labels.voxel_counts()} if labels is not None else {}
        self.tree.blockSignals(True)
        try:
            for item, entry in zip(rows, entries, strict=True):
                texts = {NAME: entry.name, VOLUME: f"{counts.get(entry.value, 0.0):.2f}"}
                for column, text in texts.items():
                    if item.text(column) != text:
                        item.setText(column, text)
                for column, on in ((NAME, entry.visible), (LOCKED, entry.locked)):
                    state = Qt.CheckState.Checked if on else Qt.CheckState.Unchecked
                    if item.data(column, Qt.ItemDataRole.CheckStateRole) is None or item.checkState(column) != state:
                        item.setCheckState(column, state)
                color = tuple(int(c) for c in entry.color)
                if item.data(NAME, COLOR_ROLE) != list(color):
                    pix = QPixmap(12, 12)
                    pix.fill(QColor(*color))
                    item.setIcon(NAME, QIcon(pix))
                    item.setData(NAME, COLOR_ROLE, list(color))
                if entry.value == self.state.active_label and self.tree.currentItem() is not item:
                    self.tree.setCurrentItem(item)
        finally:
            self.tree.blockSignals(False)
        self._show_opacity(self.tree.currentItem())

    @staticmethod
    def _value(item: QTreeWidgetItem) -> int:
        return int(item.data(NAME, Qt.ItemDataRole.UserRole))

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        value = self._value(item)
        self._in_item_change = True
        try:
            if column == NAME:
                entry = self.state.labels.label(value)
                name = item.text(NAME).strip()
                if name and name != entry.name:
                    self.state.rename_label(value, name)
                elif not name:
                    self.refresh()  # a blank name is not a name: show the label's own again
                visible = item.checkState(NAME) == Qt.CheckState.Checked
                if visible != entry.visible:
                    self.state.set_label_visible(value, visible)
            elif column == LOCKED:
                self.state.set_label_locked(value, item.checkState(LOCKED) == Qt.CheckState.Checked)
        except MedviewError as exc:
            self.refresh()  # the row shows the session's value again (in place: the item lives on)
            QMessageBox.warning(self, "Labels", str(exc))
        finally:
            self._in_item_change = False

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
