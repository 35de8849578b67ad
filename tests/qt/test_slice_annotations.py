"""Each view's slice position, checked against the cursor's LPS position read by SimpleITK (not the view's code),
and the status bar's value under the mouse after another study opens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PySide6.QtTest import QTest

from medview.app.samples import sample_path
from medview.qt.main_window import MainWindow
from tests.conftest import shared_case

pytestmark = pytest.mark.qt


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.wait(50)
    return blocker.args[0]


def _position_line(window: MainWindow, view: str) -> str:
    """The annotation line under the slice's name (bottom left): the slice's position."""
    name_line, position_line = window.grid.views[view].overlay.corners["bottom_left"][:2]
    assert name_line.lower().startswith(view)
    return position_line


def _side(value: float, negative: str, positive: str) -> str:
    """Slicer's style, written out here: the side's letter and the distance (LPS: x<0 R, y<0 A, z<0 I)."""
    rounded = round(value, 1) + 0.0
    return f"{positive if rounded >= 0 else negative} {abs(rounded):.1f} mm"


def _check_aligned_views(window: MainWindow, point_lps: np.ndarray) -> None:
    window.state.set_cursor(point_lps)
    np.testing.assert_allclose(window.state.cursor, point_lps, atol=1e-6)  # a voxel centre: no snapping
    x, y, z = point_lps
    assert _position_line(window, "axial") == _side(z, "I", "S")
    assert _position_line(window, "coronal") == _side(y, "A", "P")
    assert _position_line(window, "sagittal") == _side(x, "R", "L")


def _check_oblique_views(qtbot, window: MainWindow, point_lps: np.ndarray) -> None:
    """Turn the crosshair 30 degrees in the axial view: coronal and sagittal cut the volume obliquely."""
    window.state.rotate("axial", 30.0)
    qtbot.wait(20)
    assert _position_line(window, "axial") == _side(point_lps[2], "I", "S")  # the axial plane itself stays
    for view, axis, letters in (("coronal", 1, "AP"), ("sagittal", 0, "RL")):
        normal = window.grid.views[view].plane.normal()
        # the normal is the patient axis turned 30 degrees about the feet-head axis
        assert abs(normal[2]) < 1e-9
        assert np.degrees(np.arccos(abs(normal[axis]))) == pytest.approx(30.0, abs=1e-6)
        towards_positive = normal if normal[axis] > 0 else -normal  # towards P (coronal), L (sagittal)
        expected = round(float(point_lps @ towards_positive), 1) + 0.0
        assert _position_line(window, view) == f"{letters} {expected:+.1f} mm", view


def test_positions_on_the_sample_ct_at_the_tumour(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """The tumour lies on the patient's right (LPS x < 0): sagittal showed "pos 22.2 mm" there."""
    _open(qtbot, window, chest_ct_sample)
    label = sitk.ReadImage(str(sample_path("chest_ct_label")))  # ITK reads NRRD in LPS
    zyx = np.argwhere(sitk.GetArrayViewFromImage(label) > 0)
    centre_xyz = [int(v) for v in np.rint(zyx.mean(axis=0))[::-1]]
    point = np.array(label.TransformIndexToPhysicalPoint(centre_xyz))
    assert point[0] < 0  # the patient's right
    _check_aligned_views(window, point)
    assert _position_line(window, "sagittal").startswith("R ")
    _check_oblique_views(qtbot, window, point)


def test_positions_on_brain1_stored_posterior_to_anterior(qtbot, window: MainWindow) -> None:
    path = shared_case("brain1_image.nrrd")
    volume = _open(qtbot, window, path)
    image = sitk.ReadImage(str(path))
    assert image.GetDirection()[4] == pytest.approx(-1.0)  # y runs anterior: a flipped grid
    assert volume.geometry.direction_matrix[1, 1] == pytest.approx(-1.0)
    for index in ((40, 200, 3), (200, 30, 20)):  # far from the centre, on both sides of each axis
        _check_aligned_views(window, np.array(image.TransformIndexToPhysicalPoint(index)))
    _check_oblique_views(qtbot, window, np.array(image.TransformIndexToPhysicalPoint((200, 30, 20))))


def test_status_bar_forgets_the_value_of_the_previous_study(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    world = volume.geometry.index_to_world([300, 200, 24])
    window.state.set_cursor(world)
    QTest.mouseMove(axial.graphics.viewport(), axial.world_to_widget(world).toPoint())
    qtbot.waitUntil(lambda: "HU" in window.position_label.text(), timeout=3000)
    shown_for_ct = window.position_label.text()
    _open(qtbot, window, sample_path("brain_mr"))  # another study, the mouse not moved since
    qtbot.wait(3 * 30)  # longer than the views' hover interval
    text = window.position_label.text()
    assert text != shown_for_ct
    assert "HU" not in text, text  # the CT's value is gone
