"""Event-loop stalls of the 3D panel (issue 17 items 17 and 20), medview against plain VTK on the GUI thread.

Both warm, in this one process, the real main window on the bundled sample CT (512 x 512 x 48), offscreen Qt and
OSMesa.  A 5 ms precise QTimer (``tests/qt/stall_probe.py``) measures the longest time the event loop could not
answer, from the action until a full-quality frame has been shown.

* medview: the 3D panel as the reader uses it (frames through the coalescing timer, the event loop running inside
  full-quality frames, the full mapper's gradients computed in a thread, jobs in processes);
* peer: what a VTK application does, the same window's ``VolumeScene`` asked to ``render()`` the full-quality frame
  at once on the GUI thread (QVTKRenderWindowInteractor's own paintEvent does the same): for the first shaded
  frame of a fresh scene (the gradients) and for a preset change.

Runs alternate (peer, medview, peer, ...) ``MEDVIEW_BENCH_STALL_REPEATS`` times (default 3); ranges are printed
with the ratio peer / medview of the medians.  Rotation: frames per second while the camera turns (3 degree
azimuth steps drawn as the interactor draws them) at two view sizes, medview's level of detail (which coarsens
whenever a frame is slower than 100 ms) against full-quality frames.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
from PySide6.QtCore import QCoreApplication, QSettings

from tests.qt.stall_probe import StallProbe

REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_STALL_REPEATS", "3") or 3), 1)


def _spin_until(until, timeout_s: float = 120.0, then_s: float = 0.3) -> None:
    t0 = time.perf_counter()
    while not until():
        QCoreApplication.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - t0 > timeout_s:
            raise TimeoutError("the 3D panel did not finish")
    end = time.perf_counter() + then_s
    while time.perf_counter() < end:
        QCoreApplication.processEvents()
        time.sleep(0.001)


def _range(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f} ms (median {statistics.median(values):.0f})"


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDVIEW_DATA_DIR", str(tmp_path / "data"))
    from medview.app.samples import sample_path
    from medview.qt.app import configure
    from medview.qt.main_window import MainWindow

    configure()
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    with qtbot.waitSignal(w.load_finished, timeout=120_000):
        w.open_path(str(sample_path("chest_ct")))
    _spin_until(lambda: not w.grid._preload, 30.0, 0.5)  # a reader looks at the slices before asking for 3D
    yield w
    w.close()
    from medview.qt.workers import wait_for_all

    wait_for_all()


def _full_frame(panel, action) -> float:
    frames: list[str] = []
    panel.rendered.connect(frames.append)
    try:
        with StallProbe() as probe:
            action()
            _spin_until(lambda: "full" in frames)
    finally:
        panel.rendered.disconnect(frames.append)
    return probe.longest_ms


def _iso_frame(panel) -> float:
    """Isosurface on: until the surface is in the scene and a full-quality frame shows it."""
    frames: list[str] = []
    panel.rendered.connect(frames.append)
    with StallProbe() as probe:
        panel.bone.setChecked(True)
        _spin_until(lambda: "isosurface" in panel.scene.actors and "full" in frames[-1:])
    panel.rendered.disconnect(frames.append)
    return probe.longest_ms


def _peer_frame(panel, change) -> float:
    """The same change, then the full-quality frame rendered at once on the GUI thread (plain VTK)."""
    scene = panel.scene
    scene.wait_full_quality()
    with StallProbe() as probe:
        change()
        scene.end_interaction()
        scene.set_render_progress(None)
        try:
            scene.render()
        finally:
            scene.set_render_progress(panel._render_progress)
        _spin_until(lambda: True, 1.0, 0.1)
    return probe.longest_ms


def test_3d_stalls_against_plain_vtk(window) -> None:
    from medview.render.volume_scene import VolumeScene

    grid = window.grid
    medview_ms: dict[str, list[float]] = {"open": [], "preset": [], "shading": [], "isosurface": []}
    peer_ms: dict[str, list[float]] = {"open": [], "preset": []}
    for _ in range(REPEATS):
        # peer, open: a fresh scene in the panel's window, its first shaded full frame rendered at once
        panel = grid.ensure_3d()
        window.set_layout("3d")
        _spin_until(lambda p=panel: not p.scene.full_quality_pending, 60.0)

        def fresh_scene(p=panel) -> None:
            scene = VolumeScene(render_window=p.render_window)  # no thread: gradients in the first frame
            scene.set_volume(window.state.volume)
            p.scene.renderer.SetDraw(0)
            try:
                with StallProbe() as probe:
                    scene.render()
                    _spin_until(lambda: True, 1.0, 0.1)
            finally:
                scene.close()
                p.scene.renderer.SetDraw(1)
            peer_ms["open"].append(probe.longest_ms)

        fresh_scene()
        grid.close_3d()
        _spin_until(lambda: True, 1.0, 0.5)
        # medview, open: the layout asks for the panel; until its first full-quality frame
        with StallProbe() as probe:
            window.set_layout("3d")
            opened: list[str] = []
            grid.view_3d.rendered.connect(opened.append)  # made by set_layout; frames come from the timer
            _spin_until(lambda seen=opened: "full" in seen)
        medview_ms["open"].append(probe.longest_ms)
        panel = grid.view_3d
        # preset change: peer then medview
        peer_ms["preset"].append(_peer_frame(panel, lambda p=panel: p.scene.set_preset("ct-soft-tissue")))
        medview_ms["preset"].append(_full_frame(panel, lambda p=panel: p.set_preset("ct-bone")))
        medview_ms["shading"].append(
            _full_frame(panel, lambda p=panel: p.shading.setChecked(not p.shading.isChecked())))
        medview_ms["isosurface"].append(_iso_frame(panel))
        assert "isosurface" in panel.scene.actors
    view = grid.view_3d.vtk_widget
    print(f"\n3D panel stalls, sample CT, view {view.width()}x{view.height()}, {REPEATS} alternating rounds, "
          "warm, one process:")
    for what in ("open", "preset"):
        ratio = statistics.median(peer_ms[what]) / max(statistics.median(medview_ms[what]), 1.0)
        print(f"  {what:10s} medview {_range(medview_ms[what])}, plain VTK {_range(peer_ms[what])}: "
              f"{ratio:.1f}x shorter")
    for what in ("shading", "isosurface"):
        print(f"  {what:10s} medview {_range(medview_ms[what])}")


@pytest.mark.parametrize("size", [(955, 877), (476, 414)])
def test_rotation_fps(window, size) -> None:
    from vtkmodules.vtkCommonCore import vtkCommand

    window.set_layout("3d")
    panel = window.grid.view_3d
    _spin_until(lambda: not panel.scene.full_quality_pending, 60.0)
    extra_w = window.width() - panel.vtk_widget.width()
    extra_h = window.height() - panel.vtk_widget.height()
    window.resize(size[0] + extra_w, size[1] + extra_h)
    _spin_until(lambda: True, 1.0, 1.0)
    w, h = panel.vtk_widget.width(), panel.vtk_widget.height()
    camera = panel.scene.renderer.GetActiveCamera()
    results = {}
    for mode in ("full", "lod", "full", "lod"):
        if mode == "lod":
            panel.style.InvokeEvent(vtkCommand.StartInteractionEvent)
        times = []
        for _ in range(12):
            camera.Azimuth(3.0)
            t = time.perf_counter()
            panel.render_window.Render()  # as the trackball style draws its frames
            times.append(time.perf_counter() - t)
        if mode == "lod":
            panel.style.InvokeEvent(vtkCommand.EndInteractionEvent)
        _spin_until(lambda: True, 1.0, 0.5)
        results.setdefault(mode, []).append(1.0 / statistics.median(times[2:]))
    lod, full = results["lod"], results["full"]
    print(f"\nrotation at {w}x{h}: medview (LOD) {min(lod):.1f}-{max(lod):.1f} fps, full-quality frames "
          f"{min(full):.1f}-{max(full):.1f} fps: {statistics.median(lod) / statistics.median(full):.1f}x")
