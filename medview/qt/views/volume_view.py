"""The 3D panel: a thin Qt shell around :class:`medview.render.volume_scene.VolumeScene`.

The widget holds a ``QVTKRenderWindowInteractor`` as a member (never subclassed), gives its render
window to the scene, and mirrors the GUI-free ViewerState: the volume, the crosshair (MPR planes),
the planes' rotations, the window (plane W/L) and the labels (surfaces).  Everything VTK happens on
the GUI thread except surface extraction, which runs as a private VTK filter pipeline in a worker and
hands back a finished ``vtkPolyData`` (no render object is touched off the GUI thread).

Rendering on software OpenGL is slow at full quality, so renders are coalesced: the camera moving, the
crosshair moving in a 2D view or the mouse wheel switch the scene to its level of detail; full quality
follows once things have been still for ``SETTLE_MS``.

A full-quality frame (0.2-1.2 s on OSMesa) never holds up the window: every render, paint events included
(QVTKRenderWindowInteractor's paintEvent would render at once), goes through the coalescing timer, and during
a full frame the ray caster's progress reports let the Qt event loop run every ``PUMP_INTERVAL_S``.  Whatever
would change the scene meanwhile (a state change, a control, a job's result, the panel closing) is queued by
:func:`_after_render` and runs when the frame ends; input on the 3D view itself is kept and replayed then.  A
press, wheel or key on the 3D view, or a queued change, abandons the frame (the last picture stays) and the
scene renders again: the level of detail while the reader interacts, full quality once still.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

import medview.render  # noqa: F401  (chooses the offscreen GL backend before any window exists)
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.qt.views.flow_layout import FlowLayout
from medview.qt.workers import Worker, release_when_done, start

SETTLE_MS = 300  # still this long after the last change: render at full quality
COALESCE_MS = 40  # changes closer than this share one render
PUMP_INTERVAL_S = 0.03
# the isosurface is for orientation: more triangles make every frame slower on software GL (860k: 0.25 s)
ISOSURFACE_MAX_TRIANGLES = 200_000  # during a full-quality frame the event loop runs at least this often
# input on the 3D view that abandons a full-quality frame (hover moves and enter/leave are only kept)
_ABORTING_INPUT = frozenset({QEvent.Type.MouseButtonPress, QEvent.Type.MouseButtonDblClick, QEvent.Type.Wheel,
                             QEvent.Type.KeyPress})
_KEPT_INPUT = _ABORTING_INPUT | {QEvent.Type.MouseButtonRelease, QEvent.Type.MouseMove, QEvent.Type.KeyRelease,
                                 QEvent.Type.Enter, QEvent.Type.Leave}
CLIP_CHOICES = ("No clipping", "Box around crosshair", "Cut at coronal plane", "Cut at axial plane",
                "Cut at sagittal plane", "Slab through crosshair")
SLAB_CHOICE = CLIP_CHOICES.index("Slab through crosshair")
CAMERA_BUTTONS = (("A", "anterior"), ("P", "posterior"), ("L", "left"), ("R", "right"), ("S", "superior"),
                  ("I", "inferior"))


def _after_render(method):
    """A method that changes the scene: called during a frame, it is queued to run when the frame ends (and
    the frame is abandoned); a deferred call returns None."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._in_render:
            self._deferred.append((method, args, kwargs))
            self._abort_wanted = True
            return None
        return method(self, *args, **kwargs)

    return wrapper


class _ViewEvents(QObject):
    """Event filter on the VTK widget: paints become coalesced renders; input during a frame is kept."""

    def __init__(self, view: VolumeView3D) -> None:
        super().__init__(view)
        self.view = view

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        view = self.view
        kind = event.type()
        if kind == QEvent.Type.Paint:
            if not view.closed and not view._in_render:  # a frame being drawn will show when it ends
                view.request_render()  # QVTKRenderWindowInteractor.paintEvent would render now, in full
            return True
        if view._in_render and kind in _KEPT_INPUT:
            if kind in _ABORTING_INPUT or (kind == QEvent.Type.MouseMove and event.buttons()):
                view._abort_wanted = True
            kept = view._kept_events
            if kind == QEvent.Type.MouseMove and kept and kept[-1].type() == QEvent.Type.MouseMove:
                kept.pop()  # moves in a row: the last one says where the mouse is (each would draw a frame)
            kept.append(event.clone())
            return True
        return False


def _vtk_qt_widget():
    import vtkmodules.qt

    vtkmodules.qt.PyQtImpl = "PySide6"
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor

    return QVTKRenderWindowInteractor


class VolumeView3D(QWidget):
    """Volume rendering, MPR planes, label and bone surfaces, clipping, picking, radiographs."""

    picked = Signal(object)  # world LPS point set as the crosshair
    rendered = Signal(str)  # "lod" or "full", after each render

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from vtkmodules.vtkInteractionStyle import vtkInteractorStyleTrackballCamera

        from medview.render.presets import get_preset, list_presets
        from medview.render.volume_scene import VolumeScene

        self.state = state
        self.vtk_widget = _vtk_qt_widget()(self)
        self.render_window = self.vtk_widget.GetRenderWindow()
        # the full-quality mapper computes its gradients in a thread (the first shaded frame froze 0.5-3 s)
        self.scene = VolumeScene(render_window=self.render_window, background_gradients=True)
        self.interactor = self.render_window.GetInteractor()
        self.style = vtkInteractorStyleTrackballCamera()
        self.interactor.SetInteractorStyle(self.style)
        self._observers = [
            (self.style, self.style.AddObserver("StartInteractionEvent", self._start_interaction)),
            (self.style, self.style.AddObserver("EndInteractionEvent", self._end_interaction)),
            (self.interactor, self.interactor.AddObserver("MouseWheelForwardEvent", self._wheel, 1.0)),
            (self.interactor, self.interactor.AddObserver("MouseWheelBackwardEvent", self._wheel, 1.0)),
            # The release of a click is seen through EndInteractionEvent: the trackball style grabs the
            # interactor's focus on press, so a LeftButtonReleaseEvent observer on the interactor never runs.
            (self.interactor, self.interactor.AddObserver("LeftButtonPressEvent", self._left_press, 1.0)),
        ]
        self._press_at: tuple[int, int] | None = None
        self._interacting = False
        self._last_change = 0.0
        self._volume_id: int | None = None
        self._surface_workers: list[Worker] = []
        self._jobs: list[Worker] = []
        self._iso_worker: Worker | None = None
        self._radiographs: list[QWidget] = []
        self.closed = False
        self._in_render = False  # a frame is being drawn from _render_now (the event loop runs inside it)
        self._abort_wanted = False
        self._render_again = False
        self._last_pump = 0.0
        self._deferred: list = []  # (method, args, kwargs) called during a frame: run when it ends
        self._kept_events: list = []  # input on the 3D view during a frame: replayed when it ends
        self.frames_abandoned = 0
        self._full_shown = False  # the last frame completed was full quality

        self.preset = QComboBox()
        for key in list_presets():
            self.preset.addItem(get_preset(key).name, key)
        self.preset.setToolTip("Transfer-function preset")
        self.preset.activated.connect(lambda _i: self.set_preset(self.preset.currentData()))
        self.shading = QCheckBox("Shading")
        self.shading.toggled.connect(self._shading_toggled)
        self.planes = QCheckBox("Planes")
        self.planes.setToolTip("Show the three MPR planes at the crosshair (they hide what lies behind them)")
        self.planes.toggled.connect(self._planes_toggled)
        self.surfaces = QCheckBox("Label surfaces")
        self.surfaces.setChecked(True)
        self.surfaces.toggled.connect(lambda _on: self._labels_changed())
        self.bone = QCheckBox("Isosurface")
        self.bone.setToolTip("Threshold surface at the given value (HU for CT), e.g. bone at 300 HU")
        self.bone_level = QSpinBox()
        self.bone_level.setRange(-3000, 30000)
        self.bone_level.setValue(300)
        self.bone_level.setSuffix(" HU")
        self.bone.toggled.connect(lambda _on: self._isosurface_changed())
        self.bone_level.editingFinished.connect(self._isosurface_changed)
        self.clip = QComboBox()
        self.clip.addItems(CLIP_CHOICES)
        self.clip.setToolTip("Clip the volume: a box around the crosshair, a cut through it, or a slab through "
                             "it facing the camera (for MinIP)")
        self.clip.activated.connect(lambda _i: self._update_clipping())
        self.clip_size = QSpinBox()
        self.clip_size.setRange(5, 1000)
        self.clip_size.setValue(60)
        self.clip_size.setPrefix("±")
        self.clip_size.setSuffix(" mm")
        self.clip_size.valueChanged.connect(lambda _v: self._update_clipping())
        self.tf_button = QPushButton("Transfer function…")
        self.tf_button.setCheckable(True)
        self.tf_button.toggled.connect(self._toggle_editor)
        export = QPushButton("Export surfaces…")
        export.setToolTip("Write the label surfaces as STL, OBJ or PLY (LPS coordinates)")
        export.clicked.connect(lambda: self.export_surfaces())
        drr_ap = QPushButton("Radiograph AP")
        drr_ap.clicked.connect(lambda: self.show_radiograph("ap"))
        drr_lat = QPushButton("Radiograph lateral")
        drr_lat.clicked.connect(lambda: self.show_radiograph("lateral"))

        # every control stays in sight: rows wrap when the panel is narrow (a tool bar's overflow menu hid
        # Export and Radiograph in the 2x2 layout)
        controls = QWidget()
        controls.setObjectName("controls_3d")
        flow = FlowLayout(controls)
        for w in (self.preset, self.shading, self.planes, self.surfaces, self.bone, self.bone_level):
            flow.addWidget(w)
        for text, view in CAMERA_BUTTONS:
            button = QToolButton()
            button.setText(text)
            button.setToolTip(f"View from {view}")
            button.clicked.connect(lambda _c=False, v=view: self.reset_camera(v))
            flow.addWidget(button)
        for w in (self.clip, self.clip_size, self.tf_button, export, drr_ap, drr_lat):
            flow.addWidget(w)
        self.info = QLabel("")
        self.info.setStyleSheet("color: #aaa;")
        flow.addWidget(self.info)
        self.cancel_button = QToolButton()
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip("Stop the isosurface, radiograph or export being computed")
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.cancel_button.hide()
        flow.addWidget(self.cancel_button)
        # the check boxes' boxes get a visible frame on the dark background (unchecked ones were near black)
        controls.setStyleSheet("QWidget#controls_3d { background: #222; } "
                               "QCheckBox, QLabel, QToolButton { color: #ddd; } "
                               "QCheckBox::indicator { width: 12px; height: 12px; border: 1px solid #aaa; "
                               "background: #3a3a3a; } "
                               "QCheckBox::indicator:checked { background: #5fa8ff; border: 1px solid #dde; } "
                               "QComboBox, QSpinBox, QPushButton, QToolButton { color: #eee; background: #3a3a3a; "
                               "border: 1px solid #555; padding: 1px 4px; }")
        controls.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.controls = controls
        self.editor: QWidget | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(controls)
        layout.addWidget(self.vtk_widget, 1)
        self._editor_slot = layout

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._render_now)
        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.timeout.connect(self._settle)
        self._full_quality_timer = QTimer(self)  # polls for the full-quality mapper prepared in a thread
        self._full_quality_timer.setInterval(30)
        self._full_quality_timer.timeout.connect(self._full_quality_ready)

        self._subscriptions = [("volume", self._volume_changed), ("cursor", self._cursor_changed),
                               ("window", self._window_changed), ("geometry_view", self._rotations_changed),
                               ("labels", self._labels_changed)]
        for event, handler in self._subscriptions:
            state.subscribe(event, handler)
        self._view_events = _ViewEvents(self)
        self.vtk_widget.installEventFilter(self._view_events)
        self.scene.set_render_progress(self._render_progress)
        self.vtk_widget.Initialize()
        self._volume_changed()

    # -- state -> scene ---------------------------------------------------------------------------------
    @_after_render
    def _volume_changed(self) -> None:
        volume = self.state.volume
        if volume is None or self.state.loading or volume.is_color or min(volume.geometry.shape) < 2:
            self.info.setText("" if volume is None or self.state.loading else "No 3D view of this image")
            return
        if id(volume) == self._volume_id:
            return
        self._volume_id = id(volume)
        self.scene.set_volume(volume, progressive=True)
        if self.scene.full_quality_pending:
            self._full_quality_timer.start()
        key = self.scene.preset.key if self.scene.preset is not None else None
        if key is not None:
            self.preset.setCurrentIndex(max(self.preset.findData(key), 0))
        self.shading.blockSignals(True)
        self.shading.setChecked(self.scene.shading)
        self.shading.blockSignals(False)
        self.scene.set_planes_visible(self.planes.isChecked())
        self._window_changed(render=False)
        self._rotations_changed(render=False)
        self.scene.set_cursor(self.state.cursor)
        self.scene.remove_actor("isosurface")
        self._labels_changed()
        self._isosurface_changed()
        self._update_clipping(render=False)
        self._refresh_editor()
        self.request_render(interactive=True)

    @_after_render
    def _cursor_changed(self) -> None:
        if self.scene.volume is None:
            return
        self.scene.set_cursor(self.state.cursor)
        if self.clip.currentIndex() > 0:
            self._update_clipping(render=False)
        if self.planes.isChecked() or self.clip.currentIndex() > 0:
            self.request_render(interactive=True)

    @_after_render
    def _window_changed(self, render: bool = True) -> None:
        w = self.state.window
        if self.scene.volume is None or not w.width > 0:
            return
        self.scene.set_plane_window(w.center, w.width)
        if render and self.planes.isChecked():
            self.request_render(interactive=True)

    @_after_render
    def _rotations_changed(self, render: bool = True) -> None:
        if self.scene.volume is None:
            return
        self.scene.set_plane_frames(dict(self.state.rotations))
        if render and self.planes.isChecked():
            self.request_render(interactive=True)

    @_after_render
    def _labels_changed(self) -> None:
        """Rebuild label surfaces in a worker (colour and visibility changes only restyle them)."""
        for name in [n for n in self.scene.actors if n.startswith("label-")]:
            self.scene.remove_actor(name)
        labels = self.state.labels
        for w in self._surface_workers:
            w.cancel()
        self._surface_workers = []
        if labels is None or self.scene.volume is None or not self.surfaces.isChecked():
            self.request_render()
            return
        from medview.render.surfaces import label_surfaces_arrays

        values = [e.value for e in labels.labels if e.visible and labels.voxel_count(e.value) > 0]
        if not values:
            self.request_render()
            return
        # VTK's contour and smoothing filters hold the GIL: in a thread they froze the event loop; in a process
        # of their own they cannot, and the arrays they return become actors here in a few milliseconds
        worker = Worker(label_surfaces_arrays, labels, values, in_process=True)
        worker.signals.finished.connect(lambda surfaces, lm=labels, w=worker: self._show_surfaces(lm, surfaces, w))
        worker.signals.failed.connect(lambda message: self.info.setText(f"Surfaces: {message}"))
        self._surface_workers.append(worker)
        self.info.setText("Building surfaces…")
        start(worker)

    @_after_render
    def _show_surfaces(self, labels, surfaces: dict, worker: Worker) -> None:
        if self.closed or worker not in self._surface_workers or labels is not self.state.labels:
            return
        from medview.render.surfaces import arrays_to_polydata, label_actor

        for value, surface in surfaces.items():
            self.scene.add_actor(f"label-{value}", label_actor(arrays_to_polydata(surface), labels.label(value)))
        self.info.setText(f"{len(surfaces)} surface(s)")
        self.request_render()

    @_after_render
    def _isosurface_changed(self) -> None:
        self.scene.remove_actor("isosurface")
        if self._iso_worker is not None:
            self._iso_worker.cancel()  # an earlier level's job: its process is killed
            self._iso_worker = None
        volume = self.scene.volume
        if volume is None or not self.bone.isChecked():
            self.request_render()
            return
        from medview.render.surfaces import threshold_surface_arrays

        # a coarse grid for big CTs: the surface is for orientation, meshes for export come from labels
        step = max(1, round((volume.array.size / 8_000_000) ** (1 / 3)))
        # in a process of its own: flying edges and smoothing hold the GIL (a 3 s freeze in a thread)
        worker = Worker(threshold_surface_arrays, volume, float(self.bone_level.value()), subsample=step,
                        max_triangles=ISOSURFACE_MAX_TRIANGLES, in_process=True)
        worker.signals.finished.connect(lambda surface, v=volume, w=worker: self._show_isosurface(v, surface, w))
        worker.signals.failed.connect(lambda message: self.info.setText(f"Isosurface: {message}"))
        self._iso_worker = worker
        self._track(worker, "Building isosurface")

    @_after_render
    def _show_isosurface(self, volume, surface, worker: Worker | None = None) -> None:
        if self.closed or volume is not self.scene.volume or not self.bone.isChecked():
            return
        if worker is not None and worker is not self._iso_worker:
            return  # a level the user has since changed
        self._iso_worker = None
        from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

        from medview.render.surfaces import arrays_to_polydata

        mapper = vtkPolyDataMapper()
        mapper.SetInputData(arrays_to_polydata(surface))
        mapper.ScalarVisibilityOff()
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetColor(0.95, 0.92, 0.84)
        self.scene.add_actor("isosurface", actor)
        self.info.setText(f"Isosurface at {self.bone_level.value()} ({surface.n_triangles} triangles)")
        self.request_render()

    @_after_render
    def _update_clipping(self, render: bool = True) -> None:
        if self.scene.volume is None:
            return
        choice = self.clip.currentIndex()
        c = np.asarray(self.state.cursor, dtype=float)
        self.scene.set_clip_box(None)
        self.scene.set_clip_plane(None)
        if choice == 1:
            r = float(self.clip_size.value())
            self.scene.set_clip_box([c[0] - r, c[0] + r, c[1] - r, c[1] + r, c[2] - r, c[2] + r])
        elif choice == SLAB_CHOICE:  # +-size along the axis the camera looks down, the whole volume across
            self.scene.set_clip_box(self.scene.slab_box(float(self.clip_size.value())))
        elif choice >= 2:
            name = ("coronal", "axial", "sagittal")[choice - 2]
            self.scene.set_clip_plane(c, self.scene.plane_normal(name))  # keeps the side the normal points to
        if render:
            self.request_render()

    # -- controls -----------------------------------------------------------------------------------------
    @_after_render
    def set_preset(self, key: str) -> None:
        try:
            self.scene.set_preset(key)
        except MedviewError as exc:
            QMessageBox.warning(self, "3D preset", str(exc))
            return
        self.preset.setCurrentIndex(max(self.preset.findData(key), 0))
        if self.scene.clip_box is not None and self.clip.currentIndex() == 0:
            # the scene clipped a MinIP to a slab (unclipped it is the air around the patient): show it
            from medview.render.volume_scene import MINIP_SLAB_HALF_MM

            for widget in (self.clip, self.clip_size):
                widget.blockSignals(True)
            self.clip.setCurrentIndex(SLAB_CHOICE)
            self.clip_size.setValue(int(MINIP_SLAB_HALF_MM))
            for widget in (self.clip, self.clip_size):
                widget.blockSignals(False)
            self._update_clipping(render=False)
        self.shading.blockSignals(True)
        self.shading.setChecked(self.scene.shading)
        self.shading.blockSignals(False)
        self._refresh_editor()
        self.request_render()

    @_after_render
    def _shading_toggled(self, on: bool) -> None:
        if self.scene.volume is not None:
            self.scene.set_shading(on)
            self.request_render()

    @_after_render
    def _planes_toggled(self, on: bool) -> None:
        self.scene.set_planes_visible(on)
        self.request_render()

    @_after_render
    def reset_camera(self, view: str = "anterior") -> None:
        if self.scene.volume is not None:
            self.scene.reset_camera(view)
            if self.clip.currentIndex() == SLAB_CHOICE:
                self._update_clipping(render=False)  # the slab faces the new camera
            self.request_render()

    def _toggle_editor(self, on: bool) -> None:
        if on and self.editor is None:
            from medview.qt.panels.transfer_function import TransferFunctionEditor

            self.editor = TransferFunctionEditor()
            self.editor.setMaximumHeight(230)  # the rendering keeps most of the panel
            self.editor.points_changed.connect(self._points_edited)
            self._editor_slot.addWidget(self.editor)
            self._refresh_editor(histogram=True)
        if self.editor is not None:
            self.editor.setVisible(on)

    def _refresh_editor(self, histogram: bool = False) -> None:
        if self.editor is None or self.scene.volume is None:
            return
        if histogram or getattr(self.editor, "_volume_id", None) != id(self.scene.volume):
            from medview.algorithms.statistics import intensity_histogram

            h = intensity_histogram(self.scene.volume.array)
            self.editor.set_histogram(h.edges, h.counts)
            self.editor._volume_id = id(self.scene.volume)
        self.editor.set_points(self.scene.colour_points, self.scene.opacity_points)

    @_after_render
    def _points_edited(self, colour_points, opacity_points) -> None:
        try:
            self.scene.set_transfer_function(colour_points, opacity_points)
        except MedviewError as exc:
            self.info.setText(str(exc))
            return
        self.request_render(interactive=True)

    # -- rendering ----------------------------------------------------------------------------------------
    def request_render(self, interactive: bool = False) -> None:
        """Render soon (coalesced); ``interactive`` renders the level of detail first, full quality later."""
        if self.closed:
            return
        if interactive:
            self._last_change = time.perf_counter()
            if not self.scene.interacting:
                self.scene.begin_interaction()
            self._settle_timer.start(SETTLE_MS)
        if not self._render_timer.isActive():
            self._render_timer.start(COALESCE_MS)

    def _render_now(self) -> None:
        if self.closed or not self.isVisible():
            return
        if self._in_render:  # the timer fired while a frame lets the event loop run
            self._render_again = True
            return
        full = not self.scene.interacting and not self.scene.full_quality_pending
        # the event loop runs inside every frame drawn from here (the interactor's own rotation frames, drawn
        # inside its mouse handlers, are short LOD frames and do not)
        self._in_render, self._abort_wanted, self._render_again = True, False, False
        self._last_pump = time.perf_counter()
        try:
            self.scene.render()
        finally:
            self._in_render = False
        aborted = self.scene.last_render_aborted
        self._run_deferred()
        if self.closed:
            return
        if aborted:
            self.frames_abandoned += 1
            self.request_render()  # full quality again (or the LOD, if the replayed input started a drag)
        else:
            if self._render_again:
                self.request_render()
            self._full_shown = full
            self.rendered.emit("full" if full else "lod")

    def _full_quality_ready(self) -> None:
        if self._in_render:
            return  # polled again in 30 ms, after the frame (a frame is not abandoned for this)
        if self.closed or not self.scene.full_quality_pending:
            self._full_quality_timer.stop()
        elif self.scene.take_full_quality():
            if not self.scene.full_quality_pending:  # the LOD's mapper came first: the full one is still to come
                self._full_quality_timer.stop()
            self.request_render()  # the new mapper now (after the settle time if the reader interacts)

    def _render_progress(self) -> bool:
        """The ray caster's progress during a frame: let the event loop run; True abandons the frame."""
        if not self._in_render or self.closed:
            return False
        if time.perf_counter() - self._last_pump >= PUMP_INTERVAL_S:
            QCoreApplication.processEvents()
            self._last_pump = time.perf_counter()
        return self._abort_wanted or self.closed

    def _run_deferred(self) -> None:
        """Run what was called during the frame, in order, then replay the input kept for the 3D view."""
        while self._deferred:
            method, args, kwargs = self._deferred.pop(0)
            method(self, *args, **kwargs)
        events, self._kept_events = self._kept_events, []
        for event in events:
            if self.closed:
                break
            QCoreApplication.sendEvent(self.vtk_widget, event)

    def settled(self) -> bool:
        """Full quality is on screen and nothing is about to change it (no frame being drawn or waiting, no
        surface job running): what a screenshot waits for."""
        return (not self.closed and not self._in_render and self._full_shown and not self.scene.interacting
                and not self.scene.full_quality_pending and not self._render_timer.isActive()
                and not self._settle_timer.isActive() and all(w.done for w in self._surface_workers)
                and all(w.done for w in self._jobs))

    def abandon_frame(self) -> None:
        """Stop the full-quality frame being drawn at the ray caster's next report (no-op when none is)."""
        if self._in_render:
            self._abort_wanted = True

    @property
    def rendering(self) -> bool:
        """A full-quality frame is being drawn (scene changes now are queued until it ends)."""
        return self._in_render

    def _settle(self) -> None:
        if self._in_render:  # try again once the frame being drawn has ended (it is not abandoned for this)
            self._settle_timer.start(COALESCE_MS)
            return
        if self.closed or self._interacting:
            return
        if self.scene.interacting:
            self.scene.end_interaction()
        self.request_render()

    def _start_interaction(self, *_args) -> None:
        self._interacting = True
        self._settle_timer.stop()
        self.scene.begin_interaction()

    def _end_interaction(self, *_args) -> None:
        self._interacting = False
        self._settle_timer.start(SETTLE_MS)
        self._left_release()

    def _wheel(self, *_args) -> None:
        self.scene.begin_interaction()
        self._settle_timer.start(SETTLE_MS)

    def _left_press(self, *_args) -> None:
        self._press_at = self.interactor.GetEventPosition()

    def _left_release(self, *_args) -> None:
        """The end of a left-button interaction: a click (moved <= 3 px) sets the crosshair at the volume."""
        pressed, self._press_at = self._press_at, None
        at = self.interactor.GetEventPosition()
        if pressed is None or abs(at[0] - pressed[0]) + abs(at[1] - pressed[1]) > 3:
            return  # a rotation, not a click
        self.pick_at(*at)

    @_after_render
    def pick_at(self, display_x: float, display_y: float) -> np.ndarray | None:
        """Set the crosshair where the rendered volume is hit (VTK display coordinates, origin bottom left)."""
        point = self.scene.pick(display_x, display_y)
        if point is not None:
            self.state.set_cursor(point)
            self.picked.emit(point)
        return point

    def capture(self) -> QImage:
        """The rendered picture (a grab of a VTK widget is black: read the render window instead)."""
        # during a frame (a capture asked for from the event loop it lets run) the picture shown now is read
        pixels = np.ascontiguousarray(self.scene.snapshot(render=not self._in_render))
        h, w = pixels.shape[:2]
        return QImage(pixels.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

    def paint_capture(self, pixmap: QPixmap, origin_in_pixmap) -> None:
        """Paint :meth:`capture` over the VTK widget's area of a grab of an ancestor widget."""
        image = self.capture()
        top_left = self.vtk_widget.mapTo(origin_in_pixmap, self.vtk_widget.rect().topLeft())
        painter = QPainter(pixmap)
        painter.drawImage(QRect(top_left, self.vtk_widget.size()), image, image.rect())
        painter.end()

    # -- exports ------------------------------------------------------------------------------------------
    def export_surfaces(self, path: str | None = None) -> Worker | None:
        """Write the label surfaces (every visible label) to STL/OBJ/PLY in a worker."""
        labels = self.state.labels
        if labels is None or not labels.present_values():
            QMessageBox.information(self, "Export surfaces", "There is no label map with labels to export.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export surfaces", "surface.stl",
                                                  "Meshes (*.stl *.obj *.ply)")
            if not path:
                return None
        from medview.app.rendering import export_label_meshes

        values = [e.value for e in labels.labels if e.visible and labels.voxel_count(e.value) > 0] or None
        worker = Worker(export_label_meshes, labels, path, values, in_process=True)  # VTK filters hold the GIL
        worker.signals.finished.connect(lambda r: self.info.setText(f"Wrote {', '.join(r.outputs)}"))
        worker.signals.failed.connect(lambda message: QMessageBox.warning(self, "Export surfaces", message))
        self._track(worker, "Writing surfaces")
        return worker

    def show_radiograph(self, view: str) -> Worker | None:
        """Compute an AP or lateral radiograph of the CT in a worker and open it in its own window."""
        volume = self.state.volume
        if volume is None or self.state.loading:
            return None
        from medview.algorithms.drr import drr
        from medview.qt.dialogs.radiograph import confirm_radiograph_input

        if not confirm_radiograph_input(self, volume):  # not a CT (or not known to be one): the user decides
            return None

        # in a process of its own (numpy over the whole CT): the window stays responsive, Cancel kills it
        worker = Worker(drr, volume, view, in_process=True)
        worker.signals.finished.connect(lambda image, v=view: self._open_radiograph(image, v))
        worker.signals.failed.connect(lambda message: QMessageBox.warning(self, "Radiograph", message))
        self._track(worker, "Computing radiograph")
        return worker

    def _track(self, worker: Worker, what: str) -> None:
        """Start a panel job: its progress in the info line, Cancel shown while any job runs."""
        signals = worker.signals
        signals.progress.connect(lambda f, _m: self.info.setText(f"{what}… {100 * f:.0f}%"))
        signals.cancelled.connect(lambda: self.info.setText(f"{what}: cancelled"))
        for signal in (signals.finished, signals.failed, signals.cancelled):
            signal.connect(self._jobs_changed)
        self._jobs = [w for w in self._jobs if not w.done] + [worker]
        self.info.setText(f"{what}…")
        start(worker)
        self._jobs_changed()

    def _jobs_changed(self, *_args) -> None:
        if not self.closed:
            self.cancel_button.setVisible(any(not w.done for w in self._jobs))

    def cancel_jobs(self) -> None:
        """Cancel the panel's running jobs (isosurface, radiograph, export): their processes are killed."""
        for w in self._jobs:
            if not w.done:
                w.cancel()

    def _open_radiograph(self, image, view: str) -> None:
        if self.closed:
            return
        from medview.qt.dialogs.radiograph import RadiographWindow

        window = RadiographWindow(image, view)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        window.destroyed.connect(lambda *_: self._radiographs.remove(window) if window in self._radiographs
                                 else None)
        self._radiographs.append(window)
        window.show()
        self.info.setText(f"Radiograph {view.upper()}")

    # -- lifetime -----------------------------------------------------------------------------------------
    @_after_render
    def shutdown(self) -> None:
        """Stop timers and jobs, release the scene and finalise the render window (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._render_timer.stop()
        self._settle_timer.stop()
        self._full_quality_timer.stop()
        for event, handler in self._subscriptions:
            self.state.unsubscribe(event, handler)
        for w in [*self._surface_workers, *self._jobs]:
            release_when_done(w)  # drops the result closures (they hold this panel)
        self._surface_workers, self._jobs = [], []
        for window in list(self._radiographs):
            window.close()
        for obj, tag in self._observers:
            obj.RemoveObserver(tag)
        self._observers = []
        self.scene.close()
        self.vtk_widget.Finalize()
        # QVTKRenderWindowInteractor's own observers hold its methods: a cycle through C++ that Python's
        # garbage collector cannot see, which would keep the render window alive for ever
        for event in ("CreateTimerEvent", "DestroyTimerEvent"):
            self.interactor.RemoveObservers(event)
        self.render_window.RemoveObservers("CursorChangedEvent")
        self.interactor = self.style = self.render_window = None

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.shutdown()
        super().closeEvent(event)
