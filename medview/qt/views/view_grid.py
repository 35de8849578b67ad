"""The layout grid: 1x1 (the active view), 1x3 (axial, coronal, sagittal), 2x2 (three MPR + 3D) or 3D alone.

The 3D panel is made when a layout first needs it (importing VTK and creating a GL context take about a
second, which a user who only reads slices never pays) and lives until :meth:`ViewGrid.close_3d`.  Once a
study is open, :meth:`ViewGrid.preload_3d` imports VTK in the idle time, one module per turn of the event loop
(the longest 70 ms), so that opening the 3D panel later does not stop the window for the 0.25 s import.
"""

from __future__ import annotations

import importlib
import sys

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QGridLayout, QLabel, QWidget

from medview.algorithms.reslice import x_major
from medview.app.viewer import VIEWS, X_MAJOR_ARRAYS, ViewerState
from medview.qt.views.slice_view import SliceView
from medview.qt.workers import Worker, start

LAYOUTS = ("1x1", "1x3", "2x2", "3d")
X_MAJOR_DELAY_MS = 150  # after the last change to an array (a brush stroke changes it many times a second)
PRELOAD_DELAY_MS = 2000  # after a study opened: VTK's import waits until the study's own work is done
# what the 3D panel imports, in dependency order (each one a short step; the panel's module last)
PRELOAD_3D = ("vtkmodules.vtkCommonCore", "vtkmodules.vtkCommonMath", "vtkmodules.vtkCommonTransforms",
              "vtkmodules.vtkCommonDataModel", "vtkmodules.vtkCommonExecutionModel", "vtkmodules.vtkRenderingCore",
              "vtkmodules.vtkRenderingOpenGL2", "vtkmodules.vtkRenderingVolume",
              "vtkmodules.vtkRenderingVolumeOpenGL2", "vtkmodules.vtkRenderingImage", "vtkmodules.vtkFiltersCore",
              "vtkmodules.vtkInteractionStyle", "medview.render.presets", "medview.render.volume_scene",
              "medview.render.surfaces",
              "medview.qt.views.volume_view", "qvtk")


class ViewGrid(QWidget):
    active_changed = Signal(str)
    panel_3d_changed = Signal(object)  # the VolumeView3D made, or None once closed

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.setStyleSheet("background: #111;")
        self.views = {v: SliceView(state, v) for v in VIEWS}
        self.view_3d = None  # VolumeView3D once made
        self.slot_3d: QWidget = QLabel("Preparing the 3D view…")
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
        # the arrays' x-major copies, made in workers once the arrays stop changing: the sagittal view reads them
        self._x_major_jobs: dict[str, Worker] = {}
        self._x_major_timer = QTimer(self)
        self._x_major_timer.setSingleShot(True)
        self._x_major_timer.setInterval(X_MAJOR_DELAY_MS)
        self._x_major_timer.timeout.connect(self._copy_arrays)
        for kind in X_MAJOR_ARRAYS:
            state.subscribe(kind, lambda kind=kind: self._array_changed(kind))
        self._preload: list[str] = []
        self._preload_timer = QTimer(self)
        self._preload_timer.setSingleShot(True)
        self._preload_timer.timeout.connect(self._preload_step)

    def preload_3d(self) -> None:
        """Import what the 3D panel needs in the idle time (no-op once imported or made)."""
        imported = all(name in sys.modules for name in ("medview.render.volume_scene", "medview.render.surfaces",
                                                         "vtkmodules.qt.QVTKRenderWindowInteractor"))
        if self.view_3d is None and not imported and not self._preload:
            self._preload = list(PRELOAD_3D)
            self._preload_timer.start(PRELOAD_DELAY_MS)

    def _preload_step(self) -> None:
        if not self._preload or self.view_3d is not None:
            self._preload = []
            return
        name = self._preload.pop(0)
        if name == "qvtk":
            from medview.qt.views.volume_view import _vtk_qt_widget

            _vtk_qt_widget()
        else:
            importlib.import_module(name)
        if self._preload:
            self._preload_timer.start(0)  # the next one after the events waiting now

    def set_active(self, view: str) -> None:
        self.active = view
        for name, v in self.views.items():
            v.setStyleSheet("border: 1px solid #e0c000;" if name == view and self.layout_name != "1x1" else "")
        if self.layout_name == "1x1":
            self.set_layout("1x1")
        self.active_changed.emit(view)

    def ensure_3d(self):
        """The 3D panel, made on first use (it replaces the placeholder slot)."""
        if self.view_3d is None:
            from medview.qt.views.volume_view import VolumeView3D

            QApplication.processEvents()  # show "Preparing the 3D view…" while VTK loads
            self.view_3d = VolumeView3D(self.state)
            self.panel_3d_changed.emit(self.view_3d)
        return self.view_3d

    def close_3d(self) -> None:
        """Close the 3D panel: its render window is finalised and every VTK reference dropped."""
        if self.view_3d is None:
            return
        if self.view_3d.rendering:  # called from the event loop a frame lets run: close once it has ended
            self.view_3d.abandon_frame()
            QTimer.singleShot(0, self.close_3d)
            return
        view, self.view_3d = self.view_3d, None
        self.grid.removeWidget(view)
        view.shutdown()
        view.hide()
        view.setParent(None)
        view.deleteLater()
        self.panel_3d_changed.emit(None)
        if self.layout_name in ("2x2", "3d"):
            self.set_layout("1x3")

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(name)
        self.layout_name = name
        widgets = [*self.views.values(), self.slot_3d] + ([self.view_3d] if self.view_3d is not None else [])
        for w in widgets:
            self.grid.removeWidget(w)
            w.hide()
        if name in ("2x2", "3d") and self.view_3d is None:
            self.grid.addWidget(self.slot_3d, 0, 0)
            self.slot_3d.show()
            self.ensure_3d()
            self.grid.removeWidget(self.slot_3d)
            self.slot_3d.hide()
        if name == "1x1":
            placed = [(self.views[self.active], 0, 0)]
        elif name == "1x3":
            placed = [(self.views[v], 0, i) for i, v in enumerate(VIEWS)]
        elif name == "3d":
            placed = [(self.view_3d, 0, 0)]
        else:
            placed = [(self.views["axial"], 0, 0), (self.views["coronal"], 0, 1),
                      (self.views["sagittal"], 1, 0), (self.view_3d, 1, 1)]
        for widget, r, c in placed:
            self.grid.addWidget(widget, r, c)
            widget.show()
        for i in range(3):
            self.grid.setColumnStretch(i, 1 if any(c == i for _, _, c in placed) else 0)
            self.grid.setRowStretch(i, 1 if any(r == i for _, r, _ in placed) else 0)
        if self.view_3d is not None and self.view_3d.isVisible():
            self.view_3d.request_render()

    def _array_changed(self, kind: str) -> None:
        job = self._x_major_jobs.pop(kind, None)
        if job is not None and not job.done:
            job.cancel()  # of an array that is gone or changed: the state would not keep it
        self._x_major_timer.start()

    def _copy_arrays(self) -> None:
        """Start the x-major copies the state wants (see ``ViewerState.x_major_wanted``)."""
        for kind in X_MAJOR_ARRAYS:
            running = self._x_major_jobs.get(kind)
            wanted = self.state.x_major_wanted(kind)
            if wanted is None or (running is not None and not running.done):
                continue
            source, serial = wanted
            worker = Worker(x_major, source)
            worker.signals.finished.connect(
                lambda copy, kind=kind, source=source, serial=serial: self.state.set_x_major(kind, source, serial,
                                                                                           copy))
            self._x_major_jobs[kind] = start(worker)

    def shutdown(self) -> None:
        self._x_major_timer.stop()
        self._preload_timer.stop()
        self._preload = []
        for job in self._x_major_jobs.values():
            job.cancel()
        self.close_3d()
