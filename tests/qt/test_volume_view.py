"""The 3D panel driven through the real window: layout, crosshair, picking, level of detail, surfaces,
snapshots with the 3D picture, and 20 open/close cycles without VTK errors or leaked render windows."""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

import numpy as np
from vtkmodules.vtkCommonCore import vtkCommand

from medview.algorithms.reslice import slice_index_for
from medview.qt.main_window import MainWindow
from medview.qt.views.volume_view import SETTLE_MS, SLAB_CHOICE, VolumeView3D

_DELETED: list[str] = []
_OBSERVERS: list = []


def _watch_deletion(obj) -> None:
    """Record ``obj``'s class name in ``_DELETED`` when VTK deletes it.

    The observer is kept reachable from this module on purpose: a lambda referred to only by the VTK
    object's wrapper is collected together with it when the garbage collector frees a cycle, CPython
    clears a collected function's defaults first, and VTK's destructor then calls it and fails
    ("missing 1 required positional argument"): the deletion happened but went unrecorded.
    """
    name = obj.GetClassName()

    def deleted(_obj, _event) -> None:
        _DELETED.append(name)

    _OBSERVERS.append(deleted)
    obj.AddObserver(vtkCommand.DeleteEvent, deleted)


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    return blocker.args[0]


def _panel(qtbot, window: MainWindow) -> VolumeView3D:
    window.set_layout("2x2")
    panel = window.grid.view_3d
    assert isinstance(panel, VolumeView3D) and panel.isVisible()
    qtbot.waitUntil(lambda: panel.scene.volume is not None, timeout=10_000)
    return panel


def test_2x2_shows_the_volume_and_snapshots_include_it(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                        tmp_path: Path, vtk_messages) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    assert panel.scene.preset is not None and panel.scene.preset.key == "ct-bone"  # CT default
    picture = panel.scene.snapshot()
    lit = picture.max(axis=-1) > 40
    assert 0.05 < lit.mean() < 0.9
    # a layout snapshot holds the 3D picture (a plain grab of a GL widget would be black there)
    path = window.snapshot("layout", str(tmp_path / "layout.png"))
    from PySide6.QtGui import QImage

    image = QImage(path)
    area = panel.vtk_widget.geometry()
    origin = panel.vtk_widget.mapTo(window.grid, area.topLeft() - area.topLeft())
    pixels = [QImage.pixel(image, origin.x() + x, origin.y() + y)
              for x in range(0, area.width(), 7) for y in range(0, area.height(), 7)]
    bright = sum(1 for p in pixels if max((p >> 16) & 255, (p >> 8) & 255, p & 255) > 40)
    assert bright > 0.05 * len(pixels)


def test_crosshair_moves_the_planes_and_a_click_in_3d_moves_the_crosshair(qtbot, window: MainWindow,
                                                                          chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    g = volume.geometry
    target = g.index_to_world([100, 300, 30])
    window.state.set_cursor(target)
    np.testing.assert_allclose(panel.scene.cursor, window.state.cursor)
    # click the middle of the rendered chest (anterior view): the crosshair goes to the surface hit
    w, h = panel.render_window.GetSize()
    before = window.state.cursor.copy()
    point = panel.pick_at(w / 2, h / 2)
    assert point is not None
    np.testing.assert_allclose(window.state.cursor, point, atol=1e-6)
    assert not np.allclose(before, point)
    idx = g.world_to_index(point)
    assert np.all(idx > -1) and np.all(idx < np.array(g.size_xyz))
    # the 2D views follow: their slice indices are those of the picked point
    expected = np.rint(idx).astype(int)
    for name, axis in (("axial", 2), ("coronal", 1), ("sagittal", 0)):
        view = window.grid.views[name]
        assert slice_index_for(g, view.plane) == expected[axis]
    # the picked point is on the anterior surface of the body: in front of the centre (LPS: smaller y)
    centre = g.index_to_world((np.array(g.size_xyz) - 1) / 2)
    assert point[1] < centre[1]


def test_a_real_mouse_click_in_3d_moves_the_crosshair_and_a_drag_does_not(qtbot, window: MainWindow,
                                                                           chest_ct_sample: Path) -> None:
    """Qt mouse events on the VTK widget, as a reader clicks: the trackball style grabs the interactor's
    focus on press, so the release must be seen through the style (regression: clicks never moved it)."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    volume = _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    widget = panel.vtk_widget
    centre = QPoint(widget.width() // 2, widget.height() // 2)
    # a drag rotates the camera and leaves the crosshair where it was
    before = window.state.cursor.copy()
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseMove(widget, centre + QPoint(40, 10))
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre + QPoint(40, 10))
    np.testing.assert_allclose(window.state.cursor, before)
    panel.reset_camera("anterior")
    # a click moves it to the surface under the mouse, the same point a direct pick there gives
    _w, h = panel.render_window.GetSize()
    expected = panel.scene.pick(centre.x(), h - centre.y() - 1)
    assert expected is not None
    with qtbot.waitSignal(panel.picked, timeout=5_000):
        QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    np.testing.assert_allclose(window.state.cursor, expected, atol=1e-6)
    assert not np.allclose(window.state.cursor, before)
    idx = volume.geometry.world_to_index(window.state.cursor)
    assert np.all(idx > -1) and np.all(idx < np.array(volume.geometry.size_xyz))


def test_minip_preset_starts_as_a_slab_the_panel_shows(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    assert panel.clip.currentIndex() == 0
    panel.set_preset("ct-minip")
    assert panel.clip.currentText() == "Slab through crosshair" and panel.clip.currentIndex() == SLAB_CHOICE
    assert panel.clip_size.value() == 10
    picture = panel.scene.snapshot()
    assert (picture.max(axis=-1) > 40).mean() > 0.2  # not the black picture of an unclipped MinIP
    # the slab follows the camera and the crosshair
    panel.reset_camera("left")
    box = np.array(panel.scene.clip_box).reshape(3, 2)
    c = window.state.cursor
    np.testing.assert_allclose(box[0], [c[0] - 10, c[0] + 10])


def test_rotating_uses_the_level_of_detail_then_full_quality(qtbot, window: MainWindow, chest_ct_sample: Path
                                                              ) -> None:
    _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    qtbot.waitUntil(lambda: not panel.scene.interacting, timeout=5_000)
    panel.style.InvokeEvent(vtkCommand.StartInteractionEvent)
    assert panel.scene.interacting
    with qtbot.waitSignal(panel.rendered, timeout=5_000) as lod:
        panel.request_render()
    assert lod.args == ["lod"]
    panel.style.InvokeEvent(vtkCommand.EndInteractionEvent)
    with qtbot.waitSignal(panel.rendered, timeout=SETTLE_MS + 5_000, check_params_cb=lambda q: q == "full"):
        pass
    assert not panel.scene.interacting


def test_label_surface_is_added_where_the_label_is(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    from medview.render.surfaces import mesh_properties

    _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    panel = _panel(qtbot, window)
    qtbot.waitUntil(lambda: "label-1" in panel.scene.actors, timeout=20_000)
    labels = window.state.labels
    surface = panel.scene.actors["label-1"].GetMapper().GetInput()
    centroid = np.asarray(mesh_properties(surface)["centroid_lps"])
    voxels = np.argwhere(labels.array == 1)[:, ::-1]
    expected = labels.geometry.index_to_world(voxels.mean(axis=0))
    assert np.linalg.norm(centroid - expected) < 1.0
    window.state.set_label_visible(1, False)  # hiding the label removes its surface
    assert "label-1" not in panel.scene.actors


def test_closing_and_reopening_20_times_leaks_no_render_window(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                               vtk_messages) -> None:
    _open(qtbot, window, chest_ct_sample)
    created: list[str] = []
    deleted = _DELETED
    deleted.clear()
    _OBSERVERS.clear()
    for _ in range(20):
        panel = _panel(qtbot, window)
        panel.scene.render()
        for obj in (panel.render_window, panel.scene.renderer, panel.interactor):
            name = obj.GetClassName()
            created.append(name)
            _watch_deletion(obj)
        del obj
        window.grid.close_3d()
        assert window.grid.view_3d is None and window.grid.layout_name == "1x3"
        del panel
        qtbot.wait(1)  # deleteLater
        gc.collect()
    assert sum(c.endswith("RenderWindow") for c in created) == 20
    assert Counter(deleted) == Counter(created), f"still alive: {Counter(created) - Counter(deleted)}"


def test_20_windows_with_the_3d_panel_close_cleanly(qtbot, tmp_path: Path, vtk_messages) -> None:
    """Whole windows opened on the 2x2 layout and closed: every render window and interactor is deleted."""
    from PySide6.QtCore import QSettings

    from medview.core.geometry import Geometry
    from medview.core.volume import Volume, VolumeMetadata
    from medview.qt.workers import wait_for_all

    zz, yy, xx = np.mgrid[:24, :32, :32]
    ball = ((xx - 16) ** 2 + (yy - 16) ** 2 + ((zz - 12) * 2) ** 2 < 100).astype(np.int16) * 1200 - 1000
    volume = Volume(ball, Geometry(ball.shape, (1.0, 1.0, 2.0)), VolumeMetadata(modality="CT"))
    created: list[str] = []
    deleted = _DELETED
    deleted.clear()
    _OBSERVERS.clear()
    for i in range(20):
        w = MainWindow(settings=QSettings(str(tmp_path / f"s{i}.ini"), QSettings.Format.IniFormat))
        w.resize(800, 600)
        w.show()
        w.state.set_volume(volume)
        w.set_layout("2x2")
        panel = w.grid.view_3d
        panel.scene.render()
        for obj in (panel.render_window, panel.interactor):
            name = obj.GetClassName()
            created.append(name)
            _watch_deletion(obj)
        del obj, panel
        w.close()
        wait_for_all()
        w.deleteLater()
        del w
        qtbot.wait(1)
        gc.collect()
    assert sum(c.endswith("RenderWindow") for c in created) == 20
    assert Counter(deleted) == Counter(created), f"still alive: {Counter(created) - Counter(deleted)}"


def test_every_3d_control_is_in_sight_in_the_2x2_layout(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Export and Radiograph sat in a tool bar's overflow menu at 2x2: the controls now wrap into rows."""
    from PySide6.QtWidgets import QCheckBox, QPushButton

    _open(qtbot, window, chest_ct_sample)
    panel = _panel(qtbot, window)
    qtbot.wait(100)
    area = panel.rect()
    widgets = panel.controls.findChildren(QPushButton) + panel.controls.findChildren(QCheckBox)
    texts = {w.text() for w in widgets}
    assert {"Export surfaces…", "Radiograph AP", "Radiograph lateral", "Shading", "Isosurface"} <= texts
    for w in widgets:
        assert w.isVisible(), f"{w.text()} is hidden"
        top_left = w.mapTo(panel, w.rect().topLeft())
        assert area.contains(top_left) and area.contains(top_left + w.rect().bottomRight()), f"{w.text()} is cut"
    assert panel.vtk_widget.height() > panel.height() // 2  # the rows leave the picture most of the panel


def test_no_frame_on_the_gui_thread_computes_gradients(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """The first LOD frame computed the LOD's gradients on the GUI thread (vtkFixedPointVolumeRayCastMapper's
    gradient pass reports no progress: 200-600 ms without an event on a 2-core machine), and the panel's poll
    started the full mapper's thread before it, so both passes shared the cores.  Now both mappers are rendered
    once in a thread of their own, the LOD's first, before a frame on the GUI thread uses them."""
    _open(qtbot, window, chest_ct_sample)
    window.set_layout("3d")
    panel = window.grid.view_3d
    assert isinstance(panel, VolumeView3D)
    qtbot.waitUntil(lambda: panel.scene.volume is not None and panel.scene.backend is not None, timeout=10_000)
    lod_job, full_job = panel.scene._pending_lod, panel.scene._pending_full
    assert lod_job is not None and full_job is not None  # the CPU mapper's gradients: both made in threads
    seen: list[tuple[bool, bool, bool]] = []  # per frame: a volume mapper in use, the LOD from its job, done
    original = panel.scene.render

    def render() -> None:
        mapper = panel.scene.volume_prop.GetMapper()
        seen.append((mapper is not None, mapper in (lod_job.mapper, full_job.mapper), lod_job.done.is_set()))
        original()

    panel.scene.render = render
    qtbot.waitUntil(lambda: not panel.scene.full_quality_pending and panel._full_shown, timeout=60_000)
    with_volume = [s for s in seen if s[0]]
    assert with_volume and all(from_job and done for _, from_job, done in with_volume), seen
