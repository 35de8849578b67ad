"""MPR behaviour a reader relies on: orientation letters, oblique MPR, thick slabs, cine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from medview.algorithms.reslice import slice_index_for
from medview.qt.main_window import MainWindow
from tests.conftest import dicom_files

pytestmark = pytest.mark.qt
STANDARD = {"axial": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
            "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
            "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"}}


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    return blocker.args[0]


def test_letters_on_brain_with_flipped_y(qtbot, window: MainWindow, brain1_series: Path) -> None:
    volume = _open(qtbot, window, brain1_series)
    assert volume.geometry.direction_matrix[1, 1] == pytest.approx(-1.0)  # stored posterior-to-anterior
    for name, view in window.grid.views.items():
        assert view.overlay.letters == STANDARD[name], name
    axial = window.grid.views["axial"]
    rows = axial.image_data.shape[0]
    top, bottom = axial.plane.pixel_to_world(0, 0), axial.plane.pixel_to_world(0, rows - 1)
    assert top[1] < bottom[1]  # anterior (smaller LPS y) at the top even though the file stores it last
    z = slice_index_for(volume.geometry, axial.plane)
    np.testing.assert_array_equal(axial.image_data, volume.array[z][::-1, :])  # the flip undone on screen


def _oblique_copy(src: Path, dst: Path, degrees: float) -> Path:
    shutil.copytree(src, dst)
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    for f in dicom_files(dst):
        ds = pydicom.dcmread(f)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([rot @ iop[:3], rot @ iop[3:]])]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in rot @ ipp]
        ds.save_as(f)
    return dst


def test_oblique_acquisition_shows_native_slices_with_oblique_letters(qtbot, window: MainWindow,
                                                                      chest_ct_sample: Path, tmp_path: Path) -> None:
    volume = _open(qtbot, window, _oblique_copy(chest_ct_sample, tmp_path / "oblique", 35.0))
    axial = window.grid.views["axial"]
    # the acquired slices are shown as acquired: no interpolation
    z = slice_index_for(volume.geometry, axial.plane)
    assert z is not None
    np.testing.assert_array_equal(axial.image_data, volume.array[z])
    # the in-plane axes are turned 35 degrees about the feet-head axis: +x of the grid points
    # left and posterior, so the screen's right edge is 'LP' and the top 'AL'
    assert axial.overlay.letters == {"left": "RA", "right": "LP", "top": "AL", "bottom": "PR"}
    assert window.grid.views["coronal"].overlay.letters["top"] == "S"


def test_rotating_the_crosshair_gives_oblique_planes(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    views = window.grid.views
    axial_plane = views["axial"].plane
    window.grid.set_active("axial")
    for _ in range(6):
        QTest.keyClick(window, Qt.Key.Key_BracketRight)  # +5 degrees each
    qtbot.wait(20)
    assert views["axial"].plane == axial_plane  # the view being rotated keeps its plane
    coronal_normal = views["coronal"].plane.normal()
    angle = np.degrees(np.arccos(abs(coronal_normal @ np.array([0.0, 1.0, 0.0]))))
    assert angle == pytest.approx(30.0, abs=1e-6)
    assert abs(coronal_normal[2]) < 1e-9  # turned about the axial normal only
    assert abs(views["axial"].lines["coronal"].angle % 180 - 30.0) < 1e-6 or \
        abs(views["axial"].lines["coronal"].angle % 180 - 150.0) < 1e-6
    assert "oblique" in views["coronal"].overlay.texts()
    QTest.keyClick(window, Qt.Key.Key_O)
    assert not window.state.is_oblique


def test_thick_slab_mip_equals_numpy(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    z = slice_index_for(volume.geometry, axial.plane)
    window.slab_mode.setCurrentText("MIP")
    window.slab_mm.setValue(10.0)  # +/- 5 mm on 5 mm slices: three slices
    np.testing.assert_array_equal(axial.image_data, volume.array[z - 1:z + 2].max(axis=0))
    window.slab_mode.setCurrentText("MINIP")
    np.testing.assert_array_equal(axial.image_data, volume.array[z - 1:z + 2].min(axis=0))
    assert any("MINIP 10 mm" in t for t in axial.overlay.texts())


def test_cine_steps_through_slices(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    window.grid.set_active("axial")
    window.cine_fps.setValue(50)
    seen = set()
    window.state.subscribe("cursor", lambda: seen.add(slice_index_for(volume.geometry, axial.plane)))
    window.cine_action.setChecked(True)
    qtbot.waitUntil(lambda: len(seen) >= 30, timeout=10_000)
    window.cine_action.setChecked(False)
    assert 0 in seen and 47 in seen  # it wrapped from the last slice to the first


def test_slider_moves_through_slices(qtbot, window: MainWindow, brain1_series: Path) -> None:
    """The slider follows the slice index, also for brain1 whose y (coronal) axis is stored flipped."""
    volume = _open(qtbot, window, brain1_series)
    for name in ("axial", "coronal"):
        view = window.grid.views[name]
        k = slice_index_for(volume.geometry, view.plane)
        assert view.slider.value() == k
        view.slider.setValue(k + 3)
        assert slice_index_for(volume.geometry, view.plane) == k + 3
        assert view.slider.value() == k + 3


@pytest.mark.parametrize("inverted", [False, True])
def test_slider_handle_is_drawn_where_the_style_puts_it(qtbot, inverted: bool) -> None:
    """The slice slider draws its handle from a cached handle rectangle and the style's own position rule:
    it must sit where the style (which also handles the mouse) has it, for every value, size and range."""
    from PySide6.QtWidgets import QStyle, QStyleOptionSlider

    from medview.qt.views.slice_view import SliceSlider

    slider = SliceSlider(Qt.Orientation.Horizontal)
    qtbot.addWidget(slider)
    slider.setInvertedAppearance(inverted)
    checked = 0
    for width, maximum in ((320, 47), (321, 511), (150, 304), (90, 1)):
        slider.resize(width, 20)
        slider.setRange(0, maximum)
        for value in sorted({0, 1, maximum // 3, maximum // 2, maximum - 1, maximum}):
            slider.setValue(value)
            option = QStyleOptionSlider()
            slider.initStyleOption(option)
            expected = slider.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                                     QStyle.SubControl.SC_SliderHandle, slider)
            assert slider._handle_rect() == expected, (width, maximum, value)
            checked += 1
    assert checked >= 20
    slider.show()
    qtbot.waitExposed(slider)
    assert not slider.grab().toImage().isNull()  # paints with the cached look


def _crosshair_pixels(view, paint) -> np.ndarray:
    from PySide6.QtGui import QImage, QPainter

    w, h = view.graphics.viewport().width(), view.graphics.viewport().height()
    image = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    paint(painter, w, h)
    painter.end()
    return np.frombuffer(image.constBits(), np.uint32).reshape(h, w).copy()


def _reference_crosshair(view):
    """Each crosshair line as Qt draws a one-pixel line with the line's pen across the viewport."""
    from PySide6.QtCore import QLineF, QPointF

    def paint(painter, w, h) -> None:
        t = view.view_box.childGroup.deviceTransform(view.graphics.viewportTransform())
        for line in view.lines.values():
            a = np.radians(line.angle)
            p0, p1 = t.map(line.pos), t.map(line.pos + QPointF(float(np.cos(a)), float(np.sin(a))))
            d = np.array([p1.x() - p0.x(), p1.y() - p0.y()])
            d = d / np.linalg.norm(d) * (w + h)
            painter.setPen(line.pen)
            painter.drawLine(QLineF(p0.x() - d[0], p0.y() - d[1], p0.x() + d[0], p0.y() + d[1]))

    return paint


def test_crosshair_pixels_are_those_of_qt_lines(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Lines along a screen axis are filled as one pixel row or column: exactly the pixels of Qt's own
    one-pixel line at that position, at fractional positions too, and turned lines are still lines."""
    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    compared = 0
    for rotated in (False, True):
        if rotated:
            window.state.rotate("axial", 30.0)
        for t in (0.31, 0.5, 0.77):
            window.state.set_cursor(g.index_to_world([t * (g.size_xyz[0] - 1), (1 - t) * (g.size_xyz[1] - 1),
                                                      t * (g.size_xyz[2] - 1)]))
            qtbot.wait(1)
            for name, view in window.grid.views.items():
                if not view.isVisible() or view.plane is None:
                    continue
                ours = _crosshair_pixels(view, view._paint_crosshair)
                reference = _crosshair_pixels(view, _reference_crosshair(view))
                assert np.count_nonzero(ours) > view.graphics.viewport().width()  # at least one whole line
                assert np.array_equal(ours, reference), (name, rotated, t)
                compared += 1
    assert compared >= 12


def test_crosshair_follows_zoom_pan_resize_and_layout(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """After each zoom, pan, window resize and layout change the crosshair is painted where the cursor is on
    screen, with the view's current view-to-screen transform."""
    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    window.state.set_cursor(g.index_to_world([0.4 * (g.size_xyz[0] - 1), 0.6 * (g.size_xyz[1] - 1),
                                              0.5 * (g.size_xyz[2] - 1)]))
    axial = window.grid.views["axial"]
    steps = [("zoom", lambda: axial.view_box.scaleBy((0.5, 0.5))),
             ("pan", lambda: axial.view_box.translateBy(x=17.3, y=-9.1)),
             ("resize", lambda: window.resize(window.width() - 137, window.height() - 61)),
             ("layout", lambda: window.set_layout("1x1")),
             ("zoom again", lambda: axial.view_box.scaleBy((1.7, 1.7))),
             ("layout back", lambda: window.set_layout("1x3"))]
    checked = 0
    for what, step in steps:
        step()
        qtbot.wait(20)
        for name, view in window.grid.views.items():
            if not view.isVisible() or view.plane is None:
                continue
            view.graphics.viewport().repaint()  # a paint, as the screen would get one
            fresh = view.view_box.childGroup.deviceTransform(view.graphics.viewportTransform())
            assert view._view_to_device() == fresh, (what, name)
            pixels = _crosshair_pixels(view, view._paint_crosshair)
            at = fresh.map(view.world_to_view(window.state.cursor))  # world_to_widget rounds to whole pixels
            h, w = pixels.shape
            row, col = int(np.floor(at.y())), int(np.floor(at.x()))
            if 0 <= row < h:
                assert np.count_nonzero(pixels[row]) == w, (what, name)
            if 0 <= col < w:
                assert np.count_nonzero(pixels[:, col]) == h, (what, name)
            assert np.count_nonzero(pixels) <= 2 * (w + h), (what, name)  # two lines, nothing left behind
            checked += 1
    assert checked >= 12


def _on_screen(window: MainWindow) -> dict[str, np.ndarray]:
    """Each visible view's pixels as the window's backing store holds them: what the views painted, frame
    after frame, where they asked for a repaint (the offscreen platform grabs its backing store)."""
    image = window.screen().grabWindow(window.winId()).toImage()
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGB32)
    rows = np.frombuffer(image.constBits(), np.uint32, image.sizeInBytes() // 4).reshape(image.height(), -1)
    out = {}
    for name, view in window.grid.views.items():
        vp = view.graphics.viewport()
        if not view.isVisible():
            continue
        at = vp.mapTo(window, vp.rect().topLeft())
        out[name] = rows[at.y():at.y() + vp.height(), at.x():at.x() + vp.width()].copy()
    return out


def test_the_screen_shows_what_a_fresh_repaint_shows(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """After each step a reader could take, what is on screen (the window's backing store, painted by the event
    loop from the views' own update requests) must be what painting every view afresh gives: no old
    crosshair line, slice, slice number or measurement left behind by a change that asked for no repaint."""
    from medview.app.measurements import Measurement
    from medview.core.volume import WindowPreset

    volume = _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    g = volume.geometry
    nx, ny, nz = g.size_xyz
    state = window.state
    axial = window.grid.views["axial"]
    vp = axial.graphics.viewport()

    def cursor(fx: float, fy: float, fz: float) -> None:
        state.set_cursor(g.index_to_world([fx * (nx - 1), fy * (ny - 1), fz * (nz - 1)]))

    def mouse_drag() -> None:
        window.set_tool("crosshair")
        start = vp.rect().center()
        QTest.mousePress(vp, Qt.MouseButton.LeftButton, pos=start)
        for d in range(3, 40, 3):
            qtbot.wait(12)
            QTest.mouseMove(vp, start + QPoint(d, -d // 2))
        QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=start + QPoint(39, -19))

    def distance() -> None:
        a = g.index_to_world([0.3 * nx, 0.3 * ny, state_index_z()])
        b = g.index_to_world([0.6 * nx, 0.5 * ny, state_index_z()])
        steps_state["m"] = state.add_measurement(Measurement("distance", [a, b], view="axial",
                                                             plane=axial.plane))

    def state_index_z() -> float:
        return float(np.rint(g.world_to_index(state.cursor))[2])

    steps_state: dict = {}
    steps = [
        ("crosshair x and y", lambda: cursor(0.3, 0.6, 0.5)),
        ("crosshair x only", lambda: cursor(0.55, 0.6, 0.5)),
        ("crosshair y only", lambda: cursor(0.55, 0.35, 0.5)),
        ("crosshair z (axial slice)", lambda: cursor(0.55, 0.35, 0.8)),
        ("two moves in one turn", lambda: (cursor(0.2, 0.2, 0.4), cursor(0.7, 0.75, 0.45))),
        ("mouse drag", mouse_drag),
        ("window/level", lambda: state.set_window(WindowPreset(40.0, 400.0, "Mediastinum"))),
        ("scroll", lambda: state.scroll("coronal", 5)),
        ("label outline", lambda: state.set_label_outline(True)),
        ("hide identifiers", lambda: state.set_hide_phi(True)),
        ("measurement", distance),
        ("measurement removed", lambda: state.remove_measurement(steps_state["m"])),
        ("zoom", lambda: axial.view_box.scaleBy((0.6, 0.6))),
        ("pan", lambda: axial.view_box.translateBy(x=23.0, y=-11.0)),
        ("crosshair after zoom", lambda: cursor(0.45, 0.5, 0.5)),
        ("turned", lambda: state.rotate("axial", 25.0)),
        ("crosshair while turned", lambda: cursor(0.5, 0.45, 0.5)),
        ("turned back", lambda: state.rotate("axial", -25.0)),
        ("crosshair after turning back", lambda: cursor(0.35, 0.55, 0.5)),
    ]
    compared = 0
    for what, step in steps:
        step()
        for _ in range(3):
            qtbot.wait(15)  # the event loop paints what was asked for
        shown = _on_screen(window)
        for view in window.grid.views.values():
            view.graphics.viewport().repaint()  # every pixel painted afresh
        fresh = _on_screen(window)
        assert shown.keys() == fresh.keys() and len(shown) == 3
        for name in shown:
            differ = int(np.count_nonzero(shown[name] != fresh[name]))
            assert differ == 0, (what, name, differ)
            compared += 1
    assert compared == 3 * len(steps)


def test_slices_changing_every_frame_are_drawn_without_the_pixmap_cache(qtbot, window: MainWindow,
                                                                       chest_ct_sample: Path) -> None:
    """While the crosshair is dragged in the axial view, the coronal and sagittal slices change on every frame:
    they are drawn directly; the axial slice stays and keeps its pixmap.  Once the slices stop changing all
    three keep a pixmap again, and the pixels are the same either way."""
    from PySide6.QtWidgets import QGraphicsItem

    cached, direct = QGraphicsItem.CacheMode.DeviceCoordinateCache, QGraphicsItem.CacheMode.NoCache
    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    views = window.grid.views

    def repaint_unchanged() -> None:
        for _ in range(4):
            for v in views.values():
                v.graphics.viewport().update()
            qtbot.wait(15)

    repaint_unchanged()  # the load changed the slices frame by frame; now they stay
    assert all(v.image.cacheMode() == cached for v in views.values())
    for t in np.linspace(0.3, 0.6, 8):
        window.state.set_cursor(g.index_to_world([t * (g.size_xyz[0] - 1), t * (g.size_xyz[1] - 1),
                                                  0.5 * (g.size_xyz[2] - 1)]))
        qtbot.wait(15)
    modes = {name: v.image.cacheMode() for name, v in views.items()}
    assert modes == {"axial": cached, "coronal": direct, "sagittal": direct}
    drawn_directly = {name: _on_screen(window)[name] for name in ("coronal", "sagittal")}
    repaint_unchanged()
    assert {v.image.cacheMode() for v in views.values()} == {cached}
    for name, pixels in drawn_directly.items():
        assert np.array_equal(pixels, _on_screen(window)[name]), name
