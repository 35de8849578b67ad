from __future__ import annotations

import numpy as np
import pytest

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry, lps_to_ras_affine, ras_to_lps_affine


def _oblique() -> Geometry:
    a = np.radians(30)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    return Geometry((20, 30, 40), (0.5, 0.8, 2.5), (-100.0, 50.0, 10.0), tuple(d.reshape(-1)))


def test_index_world_round_trip() -> None:
    g = _oblique()
    idx = np.array([[0, 0, 0], [39, 29, 19], [3.5, 7.25, 11.0]])
    np.testing.assert_allclose(g.world_to_index(g.index_to_world(idx)), idx, atol=1e-9)


def test_affine_matches_definition() -> None:
    g = _oblique()
    x, y, z = 4.0, 5.0, 6.0
    expected = np.array(g.origin) + g.direction_matrix @ (np.array(g.spacing) * [x, y, z])
    np.testing.assert_allclose(g.affine @ [x, y, z, 1], [*expected, 1])
    np.testing.assert_allclose(g.index_to_world([x, y, z]), expected)


def test_ras_conversion_flips_first_two_world_axes() -> None:
    g = Geometry((2, 2, 2), (1, 1, 1), (10, 20, 30))
    ras = g.ras_affine
    np.testing.assert_allclose(ras[:3, 3], [-10, -20, 30])
    np.testing.assert_allclose(ras_to_lps_affine(lps_to_ras_affine(g.affine)), g.affine)


def test_from_affine_recovers_geometry() -> None:
    g = _oblique()
    h = Geometry.from_affine(g.shape, g.affine)
    assert h.is_same_grid(g, tol_mm=1e-9)
    np.testing.assert_allclose(h.spacing, g.spacing)


@pytest.mark.parametrize(("direction", "code"), [
    ((1, 0, 0, 0, 1, 0, 0, 0, 1), "LPS"),
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "RAS"),
    ((1, 0, 0, 0, 0, 1, 0, -1, 0), "LIP"),  # columns: +x->L, +y->I, +z->P (a coronal stack)
])
def test_orientation_code(direction: tuple, code: str) -> None:
    assert Geometry((1, 1, 1), direction=direction).orientation_code() == code


def test_invalid_geometry_is_rejected_with_a_message() -> None:
    with pytest.raises(MedviewError, match="positive"):
        Geometry((1, 1, 1), (1.0, 0.0, 1.0))
    with pytest.raises(MedviewError, match="rotation"):
        Geometry((1, 1, 1), direction=(1, 0, 0, 1, 0, 0, 0, 0, 1))
    with pytest.raises(MedviewError, match="three positive"):
        Geometry((0, 4, 4))


def test_geometry_is_frozen() -> None:
    g = Geometry((1, 2, 3))
    with pytest.raises(AttributeError):
        g.spacing = (2.0, 2.0, 2.0)  # type: ignore[misc]


def test_acquisition_frame_of_aligned_grids_is_identity() -> None:
    for direction in ((1, 0, 0, 0, 1, 0, 0, 0, 1), (1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 0, 0, 0, 0, 1, 0, -1, 0)):
        np.testing.assert_allclose(Geometry((2, 2, 2), direction=direction).acquisition_frame(), np.eye(3))


def test_acquisition_frame_follows_an_oblique_grid() -> None:
    a = np.radians(20)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    frame = Geometry((2, 2, 2), direction=tuple(d.reshape(-1))).acquisition_frame()
    np.testing.assert_allclose(frame, d)  # +x of the grid is nearest L, +y nearest P
    flipped = d @ np.diag([1.0, -1.0, -1.0])  # same planes, y and z index axes reversed
    frame2 = Geometry((2, 2, 2), direction=tuple(flipped.reshape(-1))).acquisition_frame()
    np.testing.assert_allclose(frame2, d)


def test_subgrid_keeps_every_voxel_in_place_and_mask_box_grows_by_the_margin() -> None:
    import numpy as np

    from medview.core.geometry import Geometry, mask_box

    d = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # rotated in-plane
    g = Geometry((10, 20, 30), (0.5, 0.8, 2.0), (5.0, -3.0, 7.0), tuple(d.reshape(-1)))
    sub = g.subgrid((2, 4, 6), (3, 5, 7))
    assert sub.shape == (3, 5, 7) and sub.spacing == g.spacing and sub.direction == g.direction
    for ijk in ([0, 0, 0], [6, 4, 2], [3, 1, 2]):  # (x, y, z) in the sub-grid = that plus (6, 4, 2) in g
        assert np.allclose(sub.index_to_world(ijk), g.index_to_world(np.add(ijk, [6, 4, 2])))
    mask = np.zeros((10, 20, 30), bool)
    assert mask_box(mask) is None
    mask[3:5, 7, 10:12] = True
    assert mask_box(mask) == ((3, 5), (7, 8), (10, 12))
    assert mask_box(mask, 4) == ((-1, 9), (3, 12), (6, 16))
    assert mask_box(mask, (1, 2, 3)) == ((2, 6), (5, 10), (7, 15))
