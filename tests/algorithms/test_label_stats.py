"""Per-label statistics against analytic shapes and plain numpy, and their CSV export."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from medview.algorithms.label_stats import CSV_COLUMNS, label_statistics, surface_area_mm2, to_csv
from medview.core.errors import MedviewError, WriteError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume


def _sphere(geometry: Geometry, centre_xyz_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    z, y, x = np.indices(geometry.shape)
    world = geometry.index_to_world(np.stack([x, y, z], axis=-1).astype(float))
    return np.linalg.norm(world - np.array(centre_xyz_mm), axis=-1) <= radius_mm


def test_sphere_surface_and_volume_against_analytic_values() -> None:
    """Marching cubes on a binary mask follows the voxel staircase: within +10 % of 4 pi r^2 at 1 mm."""
    g = Geometry((50, 50, 50), (1.0, 1.0, 1.0), (-24.5, -24.5, -24.5))
    r = 20.0
    lm = LabelMap(_sphere(g, (0.3, -0.2, 0.1), r).astype(np.uint8), g)
    (s,) = label_statistics(lm)
    area = 4 * math.pi * r**2
    assert area <= s.surface_mm2 <= 1.10 * area
    assert s.volume_ml == pytest.approx(4 / 3 * math.pi * r**3 / 1000, rel=0.01)


def test_anisotropic_sphere_surface_uses_the_spacing() -> None:
    g = Geometry((40, 60, 60), (0.8, 0.8, 1.25), (-23.6, -23.6, -24.375))
    r = 15.0
    mask = _sphere(g, (0.0, 0.0, 0.0), r)
    area = 4 * math.pi * r**2
    assert area <= surface_area_mm2(mask, g.spacing) <= 1.15 * area
    assert surface_area_mm2(np.zeros((3, 3, 3), bool), g.spacing) == 0.0


def test_intensity_statistics_bbox_and_histogram() -> None:
    g = Geometry((8, 20, 30), (0.5, 0.6, 2.0), (100.0, -50.0, 20.0), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    rng = np.random.default_rng(3)
    image = rng.normal(40, 25, g.shape).astype(np.int16)
    arr = np.zeros(g.shape, np.uint16)
    arr[2:5, 3:9, 10:20] = 7
    arr[6, 0, 0] = 300
    lm = LabelMap(arr, g, labels=[Label(7, "tumour"), Label(300, "dot"), Label(9, "empty")])
    stats = label_statistics(lm, Volume(image, g), bins=16)
    assert [s.value for s in stats] == [7, 300]
    s = stats[0]
    inside = image[2:5, 3:9, 10:20].astype(float)
    assert s.name == "tumour" and s.voxels == 180
    assert s.volume_ml == pytest.approx(180 * 0.5 * 0.6 * 2.0 / 1000)
    assert (s.mean, s.std) == (pytest.approx(inside.mean()), pytest.approx(inside.std()))
    assert (s.minimum, s.maximum) == (inside.min(), inside.max())
    assert s.bbox_min_xyz == (10, 3, 2) and s.bbox_max_xyz == (19, 8, 4)
    # x points to patient right (direction -1): the LPS box runs from the last column to the first
    assert s.bbox_min_lps == pytest.approx((100.0 - 19 * 0.5, -50.0 + 3 * 0.6, 20.0 + 2 * 2.0))
    assert s.bbox_max_lps == pytest.approx((100.0 - 10 * 0.5, -50.0 + 8 * 0.6, 20.0 + 4 * 2.0))
    assert s.histogram_counts.sum() == 180 and len(s.histogram_edges) == 17
    assert s.histogram_edges[0] == inside.min() and s.histogram_edges[-1] == inside.max()
    dot = stats[1]
    assert dot.voxels == 1 and dot.std == 0.0 and dot.surface_mm2 > 0
    empty = label_statistics(lm, image, values=[9])[0]
    assert empty.voxels == 0 and empty.name == "empty" and math.isnan(empty.mean)


def test_without_an_image_intensities_are_nan() -> None:
    g = Geometry((3, 4, 5))
    arr = np.zeros(g.shape, np.uint8)
    arr[1, 1, 1:3] = 2
    (s,) = label_statistics(LabelMap(arr, g))
    assert s.voxels == 2 and math.isnan(s.mean) and s.histogram_counts.size == 0


def test_bad_inputs_are_reported() -> None:
    g = Geometry((3, 4, 5))
    lm = LabelMap(np.ones(g.shape, np.uint8), g)
    with pytest.raises(MedviewError, match="greyscale"):
        label_statistics(lm, np.zeros((*g.shape, 3)))
    with pytest.raises(MedviewError, match="not on the label map's grid"):
        label_statistics(lm, np.zeros((3, 4, 6)))
    with pytest.raises(MedviewError, match="at least one bin"):
        label_statistics(lm, bins=0)


def test_csv_export_reads_back(tmp_path) -> None:
    g = Geometry((5, 6, 7), (1.0, 1.0, 2.0))
    arr = np.zeros(g.shape, np.uint8)
    arr[1:3, 2:4, 2:5] = 1
    arr[4, 5, 6] = 2
    image = np.arange(arr.size, dtype=np.float32).reshape(g.shape)
    lm = LabelMap(arr, g, labels=[Label(1, "liver, left lobe"), Label(2, "spot")])
    stats = label_statistics(lm, image)
    out = to_csv(stats, tmp_path / "stats.csv")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0]["name"] == "liver, left lobe" and int(rows[0]["voxels"]) == 12
    assert float(rows[0]["volume_ml"]) == pytest.approx(0.024)
    assert float(rows[0]["mean"]) == pytest.approx(image[arr == 1].mean())
    assert rows[1]["bbox_min_x"] == "6" and rows[1]["bbox_max_s_mm"] == "8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.csv"]  # no temporary file left
    with pytest.raises(WriteError, match=r"\.csv"):
        to_csv(stats, tmp_path / "stats.txt")
    with pytest.raises(WriteError, match="does not exist"):
        to_csv(stats, tmp_path / "missing" / "stats.csv")
