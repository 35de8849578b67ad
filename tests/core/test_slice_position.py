"""A slice's position as a reader names it: the patient side's letter and the distance (3D Slicer's "R 22.1 mm")."""

from __future__ import annotations

import numpy as np
import pytest

from medview.core.errors import MedviewError
from medview.core.geometry import slice_position_text

# LPS: x < 0 is patient right, x > 0 left; y < 0 anterior, y > 0 posterior; z > 0 superior, z < 0 inferior
CASES = [
    ((-22.1, 5.0, 7.0), (1, 0, 0), "R 22.1 mm"),
    ((22.1, 5.0, 7.0), (1, 0, 0), "L 22.1 mm"),
    ((3.0, -40.25, 7.0), (0, 1, 0), "A 40.2 mm"),  # round half to even, as Python formats 40.25
    ((3.0, 40.0, 7.0), (0, 1, 0), "P 40.0 mm"),
    ((3.0, 5.0, 45.0), (0, 0, 1), "S 45.0 mm"),
    ((3.0, 5.0, -112.5), (0, 0, 1), "I 112.5 mm"),
    ((0.0, 0.0, 0.0), (0, 0, 1), "S 0.0 mm"),
    ((0.0, 0.0, -0.04), (0, 0, 1), "S 0.0 mm"),  # no "I 0.0"
]


@pytest.mark.parametrize(("point", "normal", "text"), CASES)
def test_plane_across_a_patient_axis_is_named_by_its_side(point, normal, text) -> None:
    assert slice_position_text(point, normal) == text
    # the normal's sign (a view's normal is patient right for sagittal, posterior for coronal) does not matter
    assert slice_position_text(point, -np.asarray(normal, dtype=float)) == text


def test_the_sagittal_normal_pointing_right_still_gives_the_lps_side() -> None:
    """The bug: the sagittal view's normal points to patient right, so x = -22.1 was shown as +22.2."""
    assert slice_position_text(np.array([-22.1, 0.0, 0.0]), np.array([-1.0, 0.0, 0.0])) == "R 22.1 mm"


def test_a_tiny_tilt_is_still_the_patient_axis_but_a_real_one_is_oblique() -> None:
    tilt = np.radians(0.01)
    assert slice_position_text((0, 0, 45.0), (np.sin(tilt), 0, np.cos(tilt))) == "S 45.0 mm"
    a = np.radians(30.0)
    normal = np.array([0.0, np.sin(a), np.cos(a)])  # 30 degrees from superior towards posterior
    point = np.array([10.0, 20.0, 30.0])
    expected = point @ normal  # the normal already points to the positive (S) side of its closest axis
    assert slice_position_text(point, normal) == f"IS {expected:+.1f} mm"
    assert slice_position_text(point, -normal) == f"IS {expected:+.1f} mm"
    assert slice_position_text(-point, normal) == f"IS {-expected:+.1f} mm"


def test_oblique_planes_name_the_closest_axis_of_their_normal() -> None:
    a = np.radians(35.0)
    coronal_turned = np.array([-np.sin(a), np.cos(a), 0.0])  # mostly posterior
    sagittal_turned = np.array([np.cos(a), np.sin(a), 0.0])  # mostly left
    assert slice_position_text((0, 0, 0), coronal_turned) == "AP +0.0 mm"
    assert slice_position_text((0, -100.0, 0), coronal_turned) == f"AP {-100.0 * np.cos(a):+.1f} mm"
    assert slice_position_text((-50.0, 0, 0), sagittal_turned) == f"RL {-50.0 * np.cos(a):+.1f} mm"
    # an unnormalised normal gives the same distance
    assert slice_position_text((-50.0, 0, 0), 7 * sagittal_turned) == f"RL {-50.0 * np.cos(a):+.1f} mm"


@pytest.mark.parametrize("normal", [(0, 0, 0), (np.nan, 0, 1)])
def test_a_degenerate_normal_is_refused(normal) -> None:
    with pytest.raises(MedviewError, match="normal"):
        slice_position_text((0, 0, 0), normal)
