"""The layout grid: 1x1 (the active view), 1x3 (axial, coronal, sagittal) or 2x2 (three MPR + 3D slot)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from medview.app.viewer import VIEWS, ViewerState
from medview.qt.views.slice_view import SliceView

LAYOUTS = ("1x1", "1x3", "2x2")


class ViewGrid(QWidget):
    active_changed = Signal(str)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet("background: #111;")
        self.views = {v: SliceView(state, v) for v in VIEWS}
        self.slot_3d: QWidget = QLabel("3D view\n(volume rendering arrives with the 3D panel)")
        self.slot_3d.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.slot_3d.setStyleSheet("color: #777; background: #000;")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.layout_name = "1x3"
        self.active = "axial"
        for view in self.views.values():
            view.activated.connect(self.set_active)
        self.set_layout("1x3")

    def set_active(self, view: str) -> None:
        self.active = view
        for name, v in self.views.items():
            v.setStyleSheet("border: 1px solid #e0c000;" if name == view and self.layout_name != "1x1" else "")
        if self.layout_name == "1x1":
            self.set_layout("1x1")
        self.active_changed.emit(view)

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(name)
        self.layout_name = name
        for w in [*self.views.values(), self.slot_3d]:
            self.grid.removeWidget(w)
            w.hide()
        if name == "1x1":
            placed = [(self.views[self.active], 0, 0)]
        elif name == "1x3":
            placed = [(self.views[v], 0, i) for i, v in enumerate(VIEWS)]
        else:
            placed = [(self.views["axial"], 0, 0), (self.views["coronal"], 0, 1),
                      (self.views["sagittal"], 1, 0), (self.slot_3d, 1, 1)]
        for widget, r, c in placed:
            self.grid.addWidget(widget, r, c)
            widget.show()
        for i in range(3):
            self.grid.setColumnStretch(i, 1 if any(c == i for _, _, c in placed) else 0)
            self.grid.setRowStretch(i, 1 if any(r == i for _, r, _ in placed) else 0)
