"""The workstation as a user drives it: open, hover, click, measure, window, layouts, snapshots."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pydicom
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt, QTimer
from PySide6.QtTest import QTest

from medview.algorithms.reslice import slice_index_for
from medview.core.volume import Volume
from medview.qt.main_window import MainWindow
from tests.conftest import SPHERE_CENTRE_LPS, SPHERE_RADIUS_MM, dicom_files

pytestmark = pytest.mark.qt


def _open(qtbot, window: MainWindow, path: Path, series: str | None = None):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path), series)
    qtbot.wait(50)
    return blocker.args[0]


def _pos(view, world) -> QPoint:
    return view.world_to_widget(np.asarray(world, dtype=float)).toPoint()


def test_hover_shows_hounsfield_value_of_the_voxel(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    z = slice_index_for(volume.geometry, axial.plane)
    assert z == 24
    col, row = 300, 200
    world = volume.geometry.index_to_world([col, row, z])
    centre = axial.world_to_view(world)
    # zoom in (as a reader does to point at one voxel): a voxel spans several screen pixels
    axial.view_box.setRange(xRange=(centre.x() - 12, centre.x() + 12), yRange=(centre.y() - 12, centre.y() + 12),
                            padding=0)
    qtbot.wait(20)
    assert axial.view_box.viewPixelSize()[0] < volume.geometry.spacing[0] / 3
    QTest.mouseMove(axial.graphics.viewport(), _pos(axial, world))
    # the status bar follows the mouse within HOVER_MS: wait for this voxel's line
    qtbot.waitUntil(lambda: f"voxel ({col}, {row}, {z})" in window.position_label.text(), timeout=3000)
    text = window.position_label.text()
    assert f"value {float(volume.array[z, row, col]):.1f} HU" in text, text
    assert f"voxel ({col}, {row}, {z})" in text


def test_click_in_axial_moves_coronal_and_sagittal(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    views = window.grid.views
    col, row, z = 140, 355, 24
    world = volume.geometry.index_to_world([col, row, z])
    axial = views["axial"]
    centre = axial.world_to_view(world)
    # zoomed in so that one screen pixel is well inside one voxel (a click lands on the voxel meant)
    axial.view_box.setRange(xRange=(centre.x() - 30, centre.x() + 30), yRange=(centre.y() - 30, centre.y() + 30),
                            padding=0)
    qtbot.wait(20)
    assert axial.view_box.viewPixelSize()[0] < volume.geometry.spacing[0] / 2
    QTest.mouseClick(views["axial"].graphics.viewport(), Qt.MouseButton.LeftButton, pos=_pos(views["axial"], world))
    qtbot.waitUntil(lambda: slice_index_for(volume.geometry, views["coronal"].plane) == row, timeout=3000)
    # expected indices computed from the geometry, independently of the views
    expected = np.rint(volume.geometry.world_to_index(window.state.cursor)).astype(int)
    assert (expected[0], expected[1]) == (col, row)
    assert slice_index_for(volume.geometry, views["coronal"].plane) == expected[1]
    assert slice_index_for(volume.geometry, views["sagittal"].plane) == expected[0]
    assert slice_index_for(volume.geometry, views["axial"].plane) == z  # the clicked view stays


def test_a_crosshair_drag_moves_the_cursor_without_hover_events(qtbot, window: MainWindow,
                                                                chest_ct_sample: Path) -> None:
    """Hover events reach the view's items while the mouse moves freely; during a drag (the item holding it
    gets drag events) they are skipped, and the drag still moves the crosshair on every move."""
    _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    scene = axial.graphics.scene()
    hovered: list[tuple[bool, bool]] = []  # (acceptable, an item held a drag)

    class Probe(pg.GraphicsObject):  # covers the whole slice, records the hover events it is sent
        def boundingRect(self):  # noqa: N802 - Qt override
            return axial.image.boundingRect()

        def paint(self, *args) -> None:
            pass

        def hoverEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph's name
            hovered.append((bool(ev.acceptable), scene.dragItem is not None))

    probe = Probe()
    axial.view_box.addItem(probe, ignoreBounds=True)
    vp = axial.graphics.viewport()
    start = vp.rect().center()
    for dx in (0, 3, 6):  # free moves: hover events
        qtbot.wait(15)  # pyqtgraph drops moves closer than 10 ms
        QTest.mouseMove(vp, start + QPoint(dx, 0))
    assert hovered and all(acceptable for acceptable, _ in hovered)
    hovered.clear()
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
    cursors = []
    for d in range(4, 40, 4):
        qtbot.wait(15)
        QTest.mouseMove(vp, start + QPoint(d, d))
        cursors.append(tuple(window.state.cursor))
    assert scene.dragItem is not None  # the drag went to an item
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=start + QPoint(36, 36))
    assert len(set(cursors)) >= len(cursors) - 1  # the crosshair followed the moves
    # only the moves before an item took the drag sent (unacceptable) hover events
    assert not [h for h in hovered if h[1]], hovered
    assert len(hovered) < len(cursors) / 2
    qtbot.wait(15)
    QTest.mouseMove(vp, start + QPoint(10, 10))
    assert hovered and hovered[-1] == (True, False)  # free moves are hover events again


def test_distance_across_the_sphere_phantom(qtbot, window: MainWindow, sphere_phantom: Path) -> None:
    volume = _open(qtbot, window, sphere_phantom)
    window.set_layout("1x1")
    axial = window.grid.views["axial"]
    window.state.set_cursor(SPHERE_CENTRE_LPS)
    qtbot.wait(50)
    # zoom in so one screen pixel is well under the 0.5 mm tolerance
    axial.view_box.setRange(xRange=(5, 75), yRange=(5, 75), padding=0)
    qtbot.wait(50)
    assert axial.view_box.viewPixelSize()[0] < 0.15
    window.set_tool("distance")
    centre = np.array(SPHERE_CENTRE_LPS)
    a = _pos(axial, centre - [SPHERE_RADIUS_MM, 0, 0])
    b = _pos(axial, centre + [SPHERE_RADIUS_MM, 0, 0])
    vp = axial.graphics.viewport()
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0, 1, 8)[1:]:
        QTest.mouseMove(vp, QPoint(round(a.x() + t * (b.x() - a.x())), round(a.y() + t * (b.y() - a.y()))))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=b)
    qtbot.waitUntil(lambda: len(window.state.measurements) == 1, timeout=3000)
    (m,) = window.state.measurements
    assert m.kind == "distance"
    assert m.results["value"] == pytest.approx(2 * SPHERE_RADIUS_MM, abs=0.5)
    assert window.measurements.table.rowCount() == 1
    # the sphere edges really are where we clicked: the profile crosses half-way between -1000 and 100 HU
    line = volume.array[slice_index_for(volume.geometry, axial.plane)]
    assert volume.value_at_world(centre) == 100 and line.min() == -1000


def test_window_presets_and_right_drag(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    assert window.state.window.name == "LUNG"  # the file's own preset comes first
    QTest.keyClick(window, Qt.Key.Key_8)  # bone
    assert (window.state.window.center, window.state.window.width) == (400, 1800)
    axial = window.grid.views["axial"]
    shown = axial.image.displayed_rgb()  # what is on screen: grey pixels after the bone window
    expected = np.clip((axial.image_data.astype(float) + 500) * 255 / 1800, 0, 255).astype(np.uint8)
    assert np.abs(shown.astype(int) - expected[..., None].astype(int)).max() <= 1
    before = window.state.window
    vp = axial.graphics.viewport()
    start = vp.rect().center()
    QTest.mousePress(vp, Qt.MouseButton.RightButton, pos=start)
    for dx in range(10, 70, 10):
        QTest.mouseMove(vp, start + QPoint(dx, -dx // 2))
    QTest.mouseRelease(vp, Qt.MouseButton.RightButton, pos=start + QPoint(60, -30))
    after = window.state.window
    assert after.width > before.width and after.center > before.center

    def expected_grey() -> np.ndarray:  # the LINEAR_EXACT window of the slice on screen, from its HU values
        low = after.center - after.width / 2
        return np.clip((axial.image_data.astype(np.float32) - low) * np.float32(255 / after.width), 0, 255)

    # re-windowed slices, then the next slices (their table index goes into the buffer the view keeps)
    first = axial.slice_index()
    for _ in range(3):
        shown = axial.image.displayed_rgb()
        assert np.abs(shown.astype(int) - expected_grey()[..., None].astype(int)).max() <= 1
        window.state.scroll("axial", 1)
    assert axial.slice_index() != first


def test_histogram_region_follows_the_window_and_sets_it(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """The window panel's region shows the window (at most REGION_FOLLOW_MS behind a drag), and dragging the
    region sets the window."""
    from medview.core.volume import WindowPreset
    from medview.qt.panels.histogram import REGION_FOLLOW_MS

    volume = _open(qtbot, window, chest_ct_sample)
    curve = window.histogram.curve  # the histogram itself, counted in a worker thread
    qtbot.waitUntil(lambda: curve.getData()[0] is not None and len(curve.getData()[0]) == 257, timeout=20_000)
    edges, log_counts = curve.getData()
    assert edges[0] == pytest.approx(float(volume.array.min()))
    assert edges[-1] == pytest.approx(float(volume.array.max()))
    assert log_counts.max() > 5  # log1p of the counts: thousands of voxels in the fullest bin
    region = window.histogram.region
    for i in range(5):  # a quick drag: the region lands on the last window
        window.state.set_window(WindowPreset(40.0 + 10 * i, 400.0 + 20 * i, "drag"))
    w = window.state.window
    qtbot.waitUntil(lambda: np.allclose(region.getRegion(), (w.low, w.high)), timeout=REGION_FOLLOW_MS * 10)
    region.setRegion((-200.0, 300.0))  # the reader drags the region
    assert (window.state.window.low, window.state.window.high) == pytest.approx((-200.0, 300.0))
    qtbot.wait(REGION_FOLLOW_MS * 3)
    assert region.getRegion() == pytest.approx((-200.0, 300.0))  # not pulled back by its own echo
    # another study starts loading: the previous one's histogram is not shown for it; once complete, its own is
    other = Volume(np.clip(volume.array, -500, 500).astype(np.int16), volume.geometry)
    window.state.set_volume(other, loading=True)
    assert len(curve.getData()[1]) == 1 and curve.getData()[1][0] == 0
    window.state.set_volume(other, keep_view=True)
    qtbot.waitUntil(lambda: len(curve.getData()[0]) == 257, timeout=20_000)
    assert curve.getData()[0][0] == pytest.approx(-500) and curve.getData()[0][-1] == pytest.approx(500)


def _all_texts(window: MainWindow) -> list[str]:
    """Every text the window shows: overlays, labels, tree rows, tooltips, title, status bar."""
    from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItemIterator

    texts = [t for v in window.grid.views.values() for t in v.overlay.texts()]
    texts += [w.text() for w in window.findChildren(QLabel)]
    for tree in window.findChildren(QTreeWidget):
        it = QTreeWidgetItemIterator(tree)
        while it.value():
            item = it.value()
            texts += [item.text(c) for c in range(tree.columnCount())] + [item.toolTip(0)]
            it += 1
    return [*texts, window.windowTitle(), window.statusBar().currentMessage()]


def test_phi_switch_removes_identifiers_from_every_text(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    secrets = {volume.metadata.patient_name.replace("^", " "), volume.metadata.patient_id}
    shown = " ".join(_all_texts(window))
    assert all(s in shown for s in secrets)  # identifiers are shown by default...
    QTest.keyClick(window, Qt.Key.Key_P)
    assert window.state.hide_phi
    texts = _all_texts(window)
    assert not any(s in t for s in secrets for t in texts), [t for t in texts if any(s in t for s in secrets)]
    window.set_layout("1x1")  # ...and stay hidden in every layout
    assert not any(s in t for s in secrets for t in _all_texts(window))


def test_drop_and_recent_files(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    from PySide6.QtCore import QMimeData, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(chest_ct_sample))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.dropEvent(event)
    assert window.recent_files()[0] == str(chest_ct_sample)
    assert [a.text() for a in window.recent_menu.actions()] == [str(chest_ct_sample)]


def test_layouts_and_snapshot(qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    for name in ("1x1", "2x2", "1x3"):
        window.set_layout(name)
        visible = [v for v, w in window.grid.views.items() if w.isVisible()]
        assert len(visible) == {"1x1": 1, "2x2": 3, "1x3": 3}[name]
    out = window.snapshot("layout", str(tmp_path / "layout.png"))
    from PySide6.QtGui import QImage

    img = QImage(out)
    assert img.width() > 600
    arr = np.array([[img.pixelColor(x, y).lightness() for x in range(0, img.width(), 7)]
                    for y in range(0, img.height(), 7)])
    assert arr.std() > 20 and (arr > 128).mean() > 0.05  # an image, not a blank or black frame


def test_scroll_wheel_and_keys_move_one_slice(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    z0 = slice_index_for(volume.geometry, axial.plane)
    axial.setFocus()
    QTest.keyClick(axial, Qt.Key.Key_Up)
    assert slice_index_for(volume.geometry, axial.plane) == z0 + 1
    QTest.keyClick(axial, Qt.Key.Key_PageDown)
    assert slice_index_for(volume.geometry, axial.plane) == z0 - 9


def test_bad_folder_reports_error_and_window_survives(qtbot, window: MainWindow, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with qtbot.waitSignal(window.load_failed, timeout=10_000) as blocker:
        window.open_path(str(tmp_path))
    assert "No DICOM images" in blocker.args[0]
    assert not window.progress.isVisible()


def test_event_loop_stays_responsive_while_loading_scrolling_and_windowing(
        qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path) -> None:
    """A heartbeat timer: no event waits more than 100 ms during load + scrolling + W/L drag."""
    study = tmp_path / "study"
    for k in range(4):  # 192 files, 4 series: the scan parses all of them
        dst = study / f"s{k}"
        shutil.copytree(chest_ct_sample, dst)
        uid = pydicom.uid.generate_uid()
        for f in dicom_files(dst):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.save_as(f)
    target = pydicom.dcmread(dicom_files(study / "s2")[0]).SeriesInstanceUID
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    volume = _open(qtbot, window, study, series=target)
    axial = window.grid.views["axial"]
    vp = axial.graphics.viewport()
    for _ in range(20):
        QTest.keyClick(axial, Qt.Key.Key_Up)
        qtbot.wait(10)
    start = vp.rect().center()
    QTest.mousePress(vp, Qt.MouseButton.RightButton, pos=start)
    for dx in range(0, 200, 10):
        QTest.mouseMove(vp, start + QPoint(dx, dx // 3))
        qtbot.wait(10)
    QTest.mouseRelease(vp, Qt.MouseButton.RightButton, pos=start + QPoint(190, 63))
    timer.stop()
    assert volume.array.shape == (48, 512, 512)
    assert len(gaps) > 20
    worst = max(gaps[1:])
    print(f"largest event-loop gap during load + scroll + W/L drag: {worst * 1000:.0f} ms")
    assert worst < 0.100, f"the event loop stalled for {worst * 1000:.0f} ms"


def test_cancel_during_loading(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Cancel pressed while slices arrive (right after the middle one is shown) stops the job."""
    finished: list[object] = []
    window.load_finished.connect(finished.append)
    from medview.io.readers import scan

    (info,) = scan(chest_ct_sample)
    window.load_series(str(chest_ct_sample), info)
    window.worker.signals.partial.connect(
        lambda *_: QTest.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton))
    with qtbot.waitSignal(window.load_cancelled, timeout=10_000):
        pass
    assert finished == [] and window.worker.done
    assert not window.progress.isVisible() and not window.cancel_button.isVisible()


def test_label_overlay_draws_the_tumour(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # read in a worker after the CT
    labels = window.state.labels
    assert labels is not None and labels.present_values() == [1] and labels.labels[0].name == "Tumour"
    z, y, x = (int(np.median(a)) for a in np.nonzero(labels.array))
    window.state.set_cursor(labels.geometry.index_to_world([x, y, z]))
    axial = window.grid.views["axial"]
    rgba = axial.shown_labels()
    assert rgba is not None and (rgba[..., 3] > 0).sum() == (labels.array[z] > 0).sum()
    assert tuple(rgba[labels.array[z] > 0][0, :3]) == labels.labels[0].color
    window.state.set_label_visible(1, False)
    hidden = axial.shown_labels()
    assert hidden is None or (hidden[..., 3] > 0).sum() == 0
    window.state.set_label_visible(1, True)
    window.state.set_label_outline(True)
    outline = (axial.shown_labels()[..., 3] > 0).sum()
    assert 0 < outline < (labels.array[z] > 0).sum()
    window.state.set_cursor(labels.geometry.index_to_world([x, y, 2]))  # a slice without tumour
    assert axial.shown_labels() is None


def test_labels_composited_into_the_slice_look_as_qt_would_blend_them(qtbot, window: MainWindow,
                                                                       chest_ct_sample: Path) -> None:
    """The labels are drawn into the slice's own pixels (one table lookup); Qt's source-over of the same
    label layer over the same slice is the reference: every pixel within one level per channel."""
    from PySide6.QtGui import QImage, QPainter

    _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    labels = window.state.labels
    z, y, x = (int(np.median(a)) for a in np.nonzero(labels.array))
    window.state.set_label_opacity(1, 0.6)
    window.state.set_cursor(labels.geometry.index_to_world([x, y, z]))
    coronal = window.grid.views["coronal"]  # 48 slices of 5 mm: fewer pixels than it covers on screen
    assert coronal.image._base is not None  # composited
    base, rgba = coronal.image.displayed_rgb(), coronal.shown_labels()
    assert rgba is not None and 0 < rgba[..., 3].max() < 255  # translucent: the blend matters
    shown = coronal.image._words  # what the item blits
    h, w = base.shape[:2]
    under = np.ascontiguousarray((0xFF << 24) | (base[..., 0].astype(np.uint32) << 16)
                                 | (base[..., 1].astype(np.uint32) << 8) | base[..., 2].astype(np.uint32))
    over = np.ascontiguousarray((rgba[..., 3].astype(np.uint32) << 24) | (rgba[..., 0].astype(np.uint32) << 16)
                                | (rgba[..., 1].astype(np.uint32) << 8) | rgba[..., 2].astype(np.uint32))
    target = QImage(under.data, w, h, w * 4, QImage.Format.Format_RGB32).copy()
    painter = QPainter(target)
    painter.drawImage(0, 0, QImage(over.data, w, h, w * 4, QImage.Format.Format_ARGB32))
    painter.end()
    ref = np.frombuffer(target.constBits(), np.uint32, count=w * h).reshape(h, w)
    for shift in (16, 8, 0):
        diff = np.abs(((shown >> shift) & 0xFF).astype(int) - ((ref >> shift) & 0xFF).astype(int))
        assert diff.max() <= 1, shift
    assert not np.array_equal(shown, under)  # the labels are in the pixels


def test_labels_of_a_slice_much_larger_than_its_screen_area_are_a_layer(qtbot, window: MainWindow,
                                                                         chest_ct_sample: Path) -> None:
    """Up to COMPOSITE_UP_TO slice pixels per screen pixel the labels go into the slice's pixels; a slice
    zoomed out further keeps them as a layer the screen blends (fewer pixels to colour per frame)."""
    from medview.core.volume import WindowPreset
    from medview.qt.views.slice_view import COMPOSITE_UP_TO

    _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    labels = window.state.labels
    z, y, x = (int(np.median(a)) for a in np.nonzero(labels.array))
    window.state.set_cursor(labels.geometry.index_to_world([x, y, z]))
    axial = window.grid.views["axial"]
    axial.view_box.scaleBy((0.7, 0.7))  # zoomed in a little: 512^2 on about twice the screen pixels
    window.state.set_window(WindowPreset(-600.0, 1500.0, "Lung"))  # drawn again
    assert 1.0 < axial.image_data.size / axial._screen_pixels() <= COMPOSITE_UP_TO
    assert axial.image._base is not None and axial.image._label_image is None  # composited
    axial.view_box.scaleBy((3.0, 3.0))  # zoomed out: a ninth of those screen pixels
    window.state.set_window(WindowPreset(40.0, 400.0, "Mediastinum"))
    assert axial.image_data.size / axial._screen_pixels() > COMPOSITE_UP_TO
    assert axial.image._base is None and axial.image._label_image is not None  # a layer over the slice
    rgba = axial.shown_labels()
    assert rgba is not None and (rgba[..., 3] > 0).sum() == (labels.array[z] > 0).sum()  # the same labels


def test_shortcuts_help_lists_keys(qtbot, window: MainWindow) -> None:
    window.show_shortcuts()
    from PySide6.QtWidgets import QMessageBox

    boxes = [w for w in window.findChildren(QMessageBox) if w.isVisible()]
    assert boxes and "window/level" in boxes[-1].text()
    assert QPointF is not None


def test_rectangle_roi_statistics_and_csv(qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path) -> None:
    import csv

    volume = _open(qtbot, window, chest_ct_sample)
    window.set_layout("1x1")
    axial = window.grid.views["axial"]
    g = volume.geometry
    z = slice_index_for(g, axial.plane)
    # a box from voxel (200, 180) to (260, 230): corners on voxel edges so the expected voxels are exact
    a = g.index_to_world([199.5, 179.5, z])
    b = g.index_to_world([259.5, 229.5, z])
    centre = axial.world_to_view((a + b) / 2)
    axial.view_box.setRange(xRange=(centre.x() - 25, centre.x() + 25), yRange=(centre.y() - 25, centre.y() + 25),
                            padding=0)
    qtbot.wait(20)
    window.set_tool("rectangle")
    vp = axial.graphics.viewport()
    pa, pb = _pos(axial, a), _pos(axial, b)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=pa)
    QTest.mouseMove(vp, QPoint((pa.x() + pb.x()) // 2, (pa.y() + pb.y()) // 2))
    QTest.mouseMove(vp, pb)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=pb)
    qtbot.waitUntil(lambda: len(window.state.measurements) == 1, timeout=3000)
    (m,) = window.state.measurements
    region = volume.array[z, 180:230, 200:260].astype(float)  # the voxels inside, straight from the array
    # mouse positions are whole screen pixels (< 0.2 mm here), so allow one voxel row/column either way
    assert abs(m.results["n_pixels"] - region.size) <= 60 + 50 + 1
    assert m.results["mean"] == pytest.approx(region.mean(), abs=3.0)
    assert m.results["area_mm2"] == pytest.approx(region.size * g.spacing[0] * g.spacing[1], rel=0.04)
    out = window.state.measurements.to_csv(tmp_path / "m.csv")
    with open(out, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["kind"] == "rectangle" and float(rows[0]["mean"]) == pytest.approx(m.results["mean"], abs=1e-3)
    window.measurements.table.selectRow(0)
    window.measurements.delete_selected()
    assert len(window.state.measurements) == 0 and window.measurements.table.rowCount() == 0


def test_every_view_is_fitted_to_its_image_after_opening(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Coronal and sagittal wait for the whole volume while it loads; then they must show all of it."""
    _open(qtbot, window, chest_ct_sample)
    for name, view in window.grid.views.items():
        (x0, x1), (y0, y1) = view.view_box.viewRange()
        rect = view.image.mapRectToParent(view.image.boundingRect())
        assert x0 <= rect.left() + 1e-6 and rect.right() <= x1 + 1e-6, name
        assert y0 <= rect.top() + 1e-6 and rect.bottom() <= y1 + 1e-6, name
        assert (x1 - x0) < 3 * rect.width() or (y1 - y0) < 3 * rect.height(), name  # fitted, not lost in space


def test_other_slices_are_read_after_the_middle_one_is_shown(qtbot, window: MainWindow, lung1_series: Path,
                                                             monkeypatch) -> None:
    """The loader shows the middle slice first and reads the rest once the window has drawn it: read beside
    that event-loop turn, the reading threads' turns at the GIL stretched it past 50 ms."""
    from medview.io.dicom import load

    events: list[tuple[str, int]] = []  # list.append is atomic: the reading threads and the GUI share it
    original = load._NativeReader.read

    readers: dict[int, int] = {}  # reader -> slices it read: the series browser's thumbnail reads the middle
    # slice with a reader of its own, in a thread of this process when the worker pool is not in use

    def read(self, z, rec) -> None:
        readers[id(self)] = readers.get(id(self), 0) + 1
        events.append(("read", z, id(self)))
        original(self, z, rec)

    monkeypatch.setattr(load._NativeReader, "read", read)

    def on_volume() -> None:
        if window.state.loading and not any(e[0] == "shown" for e in events):
            events.append(("shown", 0, 0))

    window.state.subscribe("volume", on_volume)
    volume = _open(qtbot, window, lung1_series)  # uncompressed: read by threads of this process
    n = volume.array.shape[0]
    loader = max(readers, key=readers.get)  # the volume's reader read every slice
    events = [e for e in events if e[0] == "shown" or e[2] == loader]
    events = [(kind, z) for kind, z, _ in events]
    kinds = [kind for kind, _ in events]
    assert kinds.count("shown") == 1 and kinds.count("read") == n, kinds
    shown_at = kinds.index("shown")
    assert shown_at == 1 and events[0] == ("read", n // 2), events[:4]  # the middle slice, then shown
    assert sorted(z for kind, z in events if kind == "read") == list(range(n))


def test_f1_lists_every_shortcut_of_the_window(qtbot, window) -> None:
    """The F1 list is made from the actions: brush/eraser/region-grow keys and undo/redo were missing."""
    from PySide6.QtGui import QAction, QKeySequence

    rows = dict(window.shortcut_rows())
    for keys in ("B", "X", "G", "Ctrl+Z", "Ctrl+Shift+Z", "F1", "Ctrl+L", "Space", "I", "P"):
        assert keys in rows, f"{keys} is not in the F1 list"
    assert rows["Ctrl+Z"] == "Undo" and rows["B"] == "Paint" and rows["G"] == "Fill" and rows["X"] == "Erase"
    every = {a.shortcut().toString(QKeySequence.SequenceFormat.NativeText) for a in window.findChildren(QAction)}
    assert every - {""} <= set(rows)
