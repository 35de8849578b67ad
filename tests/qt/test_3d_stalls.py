"""Issue 17 item 17 (3D panel): opening the 3D view, a preset or shading change, the isosurface and the
radiograph never stall the window's event loop for more than 250 ms (the goal is 50 ms; the bound leaves room
for a loaded machine), although a full-quality frame takes 0.2-1.2 s on software OpenGL.

The real main window on the bundled sample CT, the 3D layout at 1400 x 900 (the VTK view about 1100 x 800):
each test starts the action, then spins the event loop until the panel says a full-quality frame was shown
(``rendered('full')``) and 0.5 s more.  A full frame lets the event loop run from the ray caster's progress
reports; input on the 3D view abandons it.  Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, QPoint, Qt, QTimer
from PySide6.QtTest import QTest

from medview.qt.main_window import MainWindow
from medview.qt.views.volume_view import VolumeView3D
from tests.qt.stall_probe import StallProbe

BOUND_MS = 250.0


def _open(qtbot, window: MainWindow, path: Path) -> None:
    """Open the study and wait as a reader does before asking for 3D: the idle time imports VTK."""
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.wait(300)
    qtbot.waitUntil(lambda: not window.grid._preload and "medview.render.volume_scene" in sys.modules
                    and "vtkmodules.qt.QVTKRenderWindowInteractor" in sys.modules, timeout=30_000)


def _spin_until(until, timeout_s: float = 60.0, then_s: float = 0.5) -> None:
    t0 = time.perf_counter()
    while not until():
        QCoreApplication.processEvents()
        time.sleep(0.001)
        assert time.perf_counter() - t0 < timeout_s, "timed out"
    end = time.perf_counter() + then_s
    while time.perf_counter() < end:
        QCoreApplication.processEvents()
        time.sleep(0.001)


def _measured(action, done, what: str, timeout_s: float = 60.0) -> StallProbe:
    probe = StallProbe()
    t0 = time.perf_counter()
    with probe:
        action()
        _spin_until(done, timeout_s)
    print(f"\n3D {what}: longest stall {probe.longest_ms:.0f} ms, {time.perf_counter() - t0:.1f} s, "
          f"stalls over 50 ms: {probe.stalls}")
    return probe


def _during_a_frame(panel: VolumeView3D, action, after_s: float = 0.05) -> list[float]:
    """Call ``action`` once a frame drawn by the panel has run ``after_s`` (from the event loop the frame lets
    run); returns [when it was called]."""
    called: list[float] = []
    began: list[float] = []
    timer = QTimer()
    timer.setInterval(5)

    def poll() -> None:
        if called:
            return
        if not panel.rendering:
            began.clear()
        elif not began:
            began.append(time.perf_counter())
        elif time.perf_counter() - began[0] >= after_s:
            called.append(time.perf_counter())
            timer.stop()
            action()

    timer.timeout.connect(poll)
    timer.start()
    panel._test_timer = timer  # kept alive with the panel
    return called


def _full_frames(panel: VolumeView3D) -> list[float]:
    frames: list[float] = []
    panel.rendered.connect(lambda kind: frames.append(panel.scene.last_frame_s) if kind == "full" else None)
    return frames


def _3d(qtbot, window: MainWindow) -> VolumeView3D:
    window.set_layout("3d")
    panel = window.grid.view_3d
    assert isinstance(panel, VolumeView3D)
    frames = _full_frames(panel)
    _spin_until(lambda: bool(frames), 60.0, 0.2)
    return panel


def test_opening_the_3d_view_keeps_the_event_loop_free(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    def full_frame_shown() -> bool:
        panel = window.grid.view_3d
        return panel is not None and getattr(panel, "_test_full", False)

    def open_3d() -> None:
        window.set_layout("3d")
        panel = window.grid.view_3d
        panel.rendered.connect(lambda kind: setattr(panel, "_test_full", True) if kind == "full" else None)

    probe = _measured(open_3d, full_frame_shown, "open")
    panel = window.grid.view_3d
    assert panel.vtk_widget.width() > 600 and panel.scene.last_frame_s is not None
    print(f"  full frame {panel.scene.last_frame_s * 1000:.0f} ms at {panel.vtk_widget.width()}x"
          f"{panel.vtk_widget.height()}")
    assert probe.longest_ms < BOUND_MS, probe.stalls


def test_preset_and_shading_changes_keep_the_event_loop_free(qtbot, window: MainWindow,
                                                             chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _3d(qtbot, window)
    frames = _full_frames(panel)
    for what, action in (("preset CT soft tissue", lambda: panel.set_preset("ct-soft-tissue")),
                         ("shading off", lambda: panel.shading.setChecked(False)),
                         ("shading on", lambda: panel.shading.setChecked(True)),
                         ("preset CT bone", lambda: panel.set_preset("ct-bone"))):
        before = len(frames)
        probe = _measured(action, lambda b=before: len(frames) > b, what)
        assert probe.longest_ms < BOUND_MS, (what, probe.stalls)
    # the full frames were real, slow frames (not a picture that had nothing to draw)
    assert max(frames) > BOUND_MS / 1000 * 0.5, frames
    picture = panel.capture()
    assert not picture.isNull()


def test_a_press_on_the_view_abandons_a_full_frame_and_rotation_starts_at_once(qtbot, window: MainWindow,
                                                                                chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _3d(qtbot, window)
    camera = panel.scene.renderer.GetActiveCamera()
    position = np.array(camera.GetPosition())
    abandoned = panel.frames_abandoned
    kinds: list[tuple[str, float]] = []
    panel.rendered.connect(lambda kind: kinds.append((kind, time.perf_counter())))
    frames: list[tuple[bool, float]] = []  # every frame drawn (the interactor's rotation frames too)
    tag = panel.scene.renderer.AddObserver(
        "EndEvent", lambda *_: frames.append((panel.scene.interacting, time.perf_counter())))
    centre = panel.vtk_widget.rect().center()
    pressed_at: list[float] = []

    def drag() -> None:  # 60 ms into the full frame: press and drag 80 px on the 3D view
        assert panel.rendering and not panel.scene.interacting, "the full frame is still being drawn"
        pressed_at.append(time.perf_counter())
        QTest.mousePress(panel.vtk_widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
        for dx in range(0, 81, 20):
            QTest.mouseMove(panel.vtk_widget, centre + QPoint(dx, 0))

    with StallProbe() as probe:
        _during_a_frame(panel, drag, 0.06)
        panel.set_preset("ct-soft-tissue")  # a change: a full frame follows
        _spin_until(lambda: bool(pressed_at) and not panel.rendering, 10.0, 0.3)
        QTest.mouseRelease(panel.vtk_widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                           centre + QPoint(80, 0))
        _spin_until(lambda: any(k == "full" for k, _ in kinds), 30.0, 0.2)
    assert panel.frames_abandoned == abandoned + 1
    assert not np.allclose(camera.GetPosition(), position), "the drag made during the frame rotated the camera"
    panel.scene.renderer.RemoveObserver(tag)
    lod = [t for interacting, t in frames if interacting and t > pressed_at[0]]
    assert lod and lod[0] - pressed_at[0] < BOUND_MS / 1000, "the rotation's first frame came late"
    assert probe.longest_ms < BOUND_MS, probe.stalls


def test_a_crosshair_move_during_a_full_frame_reaches_the_scene_after_it(qtbot, window: MainWindow,
                                                                          chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _3d(qtbot, window)
    target = np.asarray(window.state.cursor, dtype=float) + (12.0, -8.0, 10.0)
    seen_during: list[np.ndarray] = []

    def move() -> None:
        assert panel.rendering
        window.state.set_cursor(target)
        seen_during.append(panel.scene.cursor.copy())  # queued: the scene is not changed inside the frame

    _during_a_frame(panel, move, 0.03)
    panel.set_preset("ct-soft-tissue")
    _spin_until(lambda: bool(seen_during) and not panel.rendering, 10.0, 0.3)
    assert not np.allclose(seen_during[0], target)
    np.testing.assert_allclose(panel.scene.cursor, window.state.cursor, atol=1e-6)


def test_isosurface_and_radiograph_keep_the_event_loop_free(qtbot, window: MainWindow,
                                                            chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _3d(qtbot, window)
    frames = _full_frames(panel)

    def surface_shown() -> bool:
        return "isosurface" in panel.scene.actors and len(frames) > before

    before = len(frames)
    probe = _measured(lambda: panel.bone.setChecked(True), surface_shown, "isosurface", 120.0)
    assert probe.longest_ms < BOUND_MS, probe.stalls
    worker = []
    probe = _measured(lambda: worker.append(panel.show_radiograph("ap")), lambda: bool(panel._radiographs),
                      "radiograph AP", 120.0)
    assert worker[0] is not None and panel._radiographs[0].isVisible()
    assert probe.longest_ms < BOUND_MS, probe.stalls
