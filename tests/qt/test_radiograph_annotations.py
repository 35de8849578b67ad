"""A radiograph in the main window's slice view: named by its modality, lettered by its PatientOrientation.

PS3.3 C.7.6.1.1.1: PatientOrientation's first value is the patient direction of the rows (toward the last
column: the right edge on screen), the second that of the columns (toward the last row: the bottom edge).
The expected letters are written out here from the standard, not taken from medview.
"""

from __future__ import annotations

import numpy as np
import pytest

from medview.qt.main_window import MainWindow
from tests.io.test_radiographs import write_radiograph

pytestmark = pytest.mark.qt


def _open(qtbot, window: MainWindow, path) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.wait(50)


def _image_view(window: MainWindow):
    """The slice view showing the radiograph's own plane (its name line is not 'Coronal'/'Sagittal')."""
    view = window.grid.views["axial"]
    assert view.isVisible()
    return view


@pytest.mark.parametrize(("orientation", "expected"), [
    (("L", "F"), {"right": "L", "left": "R", "bottom": "F", "top": "H"}),
    (("P", "FR"), {"right": "P", "left": "A", "bottom": "FR", "top": "HL"}),
])
def test_cr_shows_its_patient_orientation(qtbot, window: MainWindow, tmp_path, orientation, expected):
    stored = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) % 4096)
    _open(qtbot, window, write_radiograph(tmp_path / "cr.dcm", stored, orientation=orientation))
    view = _image_view(window)
    assert view.overlay.letters == expected
    name_line = view.overlay.corners["bottom_left"]
    assert name_line[0].startswith("CR"), name_line
    assert not any(line.startswith(("Axial", "S ", "I ")) for line in name_line), name_line  # no made-up slice


def test_cr_without_patient_orientation_gets_no_letters(qtbot, window: MainWindow, tmp_path):
    _open(qtbot, window, write_radiograph(tmp_path / "cr.dcm", np.zeros((32, 40), np.uint16), orientation=None))
    view = _image_view(window)
    assert view.overlay.letters == {}
    assert view.overlay.corners["bottom_left"][0].startswith("CR")


def test_ct_keeps_its_world_letters(qtbot, window: MainWindow, chest_ct_sample):
    _open(qtbot, window, chest_ct_sample)
    axial = window.grid.views["axial"]
    assert axial.overlay.letters == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert axial.overlay.corners["bottom_left"][0].startswith("Axial")
