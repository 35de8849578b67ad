"""Measurements: distances and angles of known geometry, ROI masks against each other and analytic areas,
ROI statistics against numpy on the selected pixels."""

from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.measure import (
    RoiStats,
    angle_deg,
    distance_mm,
    ellipse_area_mm2,
    ellipse_mask,
    polygon_area_mm2,
    polygon_mask,
    rectangle_mask,
    roi_stats,
)
from medview.core.errors import MedviewError


def test_distance_of_known_points() -> None:
    assert distance_mm((0, 0, 0), (3, 4, 12)) == pytest.approx(13.0)
    assert distance_mm((-10.5, 2.0, 7.0), (-10.5, 2.0, 7.0)) == 0.0
    assert distance_mm((1, 1), (4, 5)) == pytest.approx(5.0)


def test_angles_of_known_triangles() -> None:
    assert angle_deg((10, 0, 0), (0, 0, 0), (0, 0, -3)) == pytest.approx(90.0)
    assert angle_deg((1, 0, 5), (0, 0, 5), (2, 2, 5)) == pytest.approx(45.0)
    assert angle_deg((1, 0, 0), (0, 0, 0), (-1, 0, 0)) == pytest.approx(180.0)
    assert angle_deg((1, 0, 0), (0, 0, 0), (1, 1e-9, 0)) == pytest.approx(np.degrees(1e-9), rel=1e-6)
    with pytest.raises(MedviewError, match="vertex"):
        angle_deg((0, 0, 0), (0, 0, 0), (1, 0, 0))


def test_polygon_mask_of_a_square_equals_the_rectangle_mask() -> None:
    square = [(10, 12), (30, 12), (30, 32), (10, 32)]
    poly = polygon_mask((50, 40), square)
    rect = rectangle_mask((50, 40), (30, 32), (10, 12))  # opposite corners, in any order
    np.testing.assert_array_equal(poly, rect)
    assert poly.sum() == 400  # half-open edges: an integer-cornered square covers its area in pixels
    rows, cols = np.nonzero(poly)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 31, 10, 29)
    # Fractional corners, clockwise order and clipping at the image border give the same answer too.
    square = [(-5.5, 3.2), (-5.5, 20.7), (12.3, 20.7), (12.3, 3.2)]
    np.testing.assert_array_equal(polygon_mask((15, 10), square), rectangle_mask((15, 10), (-5.5, 3.2), (12.3, 20.7)))


def test_polygon_mask_matches_a_brute_force_even_odd_test() -> None:
    rng = np.random.default_rng(7)
    vertices = rng.uniform(-5, 45, size=(9, 2))  # random, self-intersecting, partly outside the image
    mask = polygon_mask((40, 35), vertices)
    rows, cols = np.indices((40, 35))
    inside = np.zeros((40, 35), dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        crosses = (y0 <= rows) != (y1 <= rows)  # half-open in y, as the scanline rule
        with np.errstate(divide="ignore", invalid="ignore"):
            x = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x <= cols)
    np.testing.assert_array_equal(mask, inside)
    assert 0 < mask.sum() < mask.size


def test_polygon_triangle_area_and_degenerate_inputs() -> None:
    triangle = [(0, 0), (100, 0), (0, 100)]
    mask = polygon_mask((200, 200), triangle)
    assert abs(mask.sum() - 5000) / 5000 < 0.02
    assert polygon_area_mm2(np.array(triangle) * 0.5) == pytest.approx(1250.0)
    assert not polygon_mask((10, 10), [(1, 1), (5, 5)]).any()
    assert not polygon_mask((10, 10), [(1, 1), (8, 1), (4, 1)]).any()  # zero area


def test_ellipse_mask_area_is_pi_a_b() -> None:
    mask = ellipse_mask((120, 150), (70.3, 55.6), (40, 25))
    assert abs(mask.sum() - np.pi * 40 * 25) / (np.pi * 40 * 25) < 0.02
    rows, cols = np.nonzero(mask)
    assert cols.min() >= 70.3 - 40 and cols.max() <= 70.3 + 40 and rows.min() >= 55.6 - 25 and rows.max() <= 55.6 + 25
    # Clipped at the border: the same pixels as the unclipped ellipse cut to the image.
    big = ellipse_mask((200, 200), (100, 100), (40, 25))
    np.testing.assert_array_equal(ellipse_mask((200, 120), (100, 100), (40, 25)), big[:, :120])
    assert not ellipse_mask((10, 10), (5, 5), (0, 3)).any()


def test_roi_stats_equal_numpy_on_the_masked_pixels() -> None:
    rng = np.random.default_rng(11)
    image = rng.normal(40.0, 15.0, size=(64, 80)).astype(np.float32)
    mask = ellipse_mask(image.shape, (40, 30), (20, 12))
    stats = roi_stats(image, mask, (0.7, 1.25))
    values = image[mask].astype(np.float64)
    assert isinstance(stats, RoiStats)
    assert stats.n_pixels == values.size == int(mask.sum())
    assert stats.mean == pytest.approx(values.mean())
    assert stats.std == pytest.approx(np.sqrt(np.mean((values - values.mean()) ** 2)))  # population
    assert (stats.min, stats.max) == (pytest.approx(values.min()), pytest.approx(values.max()))
    assert stats.area_mm2 == pytest.approx(values.size * 0.7 * 1.25)
    ints = roi_stats(np.full((4, 4), 32767, dtype=np.int16), np.ones((4, 4), bool), (1, 1))
    assert ints.mean == 32767.0 and ints.std == 0.0  # no int16 overflow


def test_empty_or_mismatched_roi_raises() -> None:
    with pytest.raises(MedviewError, match="contains no pixels"):
        roi_stats(np.zeros((5, 5)), np.zeros((5, 5), dtype=bool), (1.0, 1.0))
    with pytest.raises(MedviewError, match="does not match"):
        roi_stats(np.zeros((5, 5)), np.ones((4, 5), dtype=bool), (1.0, 1.0))


def test_analytic_areas() -> None:
    assert ellipse_area_mm2((10.0, 4.0)) == pytest.approx(np.pi * 40.0)
    assert polygon_area_mm2([(0, 0), (4, 0), (4, 3), (0, 3)]) == pytest.approx(12.0)
    assert polygon_area_mm2([(0, 0), (0, 3), (4, 3), (4, 0)]) == pytest.approx(12.0)  # either winding
    # A planar polygon given as 3D world points: a 4 x 3 mm rectangle tilted out of every axis plane.
    rot = np.linalg.qr(np.random.default_rng(2).normal(size=(3, 3)))[0]
    pts = np.array([(0, 0, 0), (4, 0, 0), (4, 3, 0), (0, 3, 0)], float) @ rot.T + (10.0, -20.0, 5.0)
    assert polygon_area_mm2(pts) == pytest.approx(12.0)
