"""MPR behaviour a reader relies on: orientation letters, oblique MPR, thick slabs, cine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt
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
        t = view._view_to_device()
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
