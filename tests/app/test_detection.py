"""Detection commands on the bundled chest CT: the labelled tumour must be among the candidates."""

from __future__ import annotations

import numpy as np
import pytest

from medview.app.detection import detect_file, detect_volume
from medview.app.label_maps import open_label_map
from medview.app.samples import sample_path
from medview.core.detections import DetectionSet
from medview.core.errors import MedviewError, WriteError
from medview.core.geometry import Geometry
from medview.core.volume import Volume
from medview.io.readers import open_image

# Solid nodules of 8 mm and more (the size from which Fleischner follow-up starts), lung window -800..0 HU
DIAMETER = (8.0, 30.0)


@pytest.fixture(scope="module")
def ct_and_tumour():
    volume = open_image(str(sample_path("chest_ct")))
    labels = open_label_map(sample_path("chest_ct_label"), reference=volume)
    idx = np.argwhere(labels.array > 0)[:, ::-1]  # (x, y, z) voxel indices of the tumour
    corners = volume.geometry.index_to_world(np.array([idx.min(0), idx.max(0)], float))
    box = np.min(corners, 0), np.max(corners, 0)  # LPS bounding box of the tumour's voxel centres
    centroid = volume.geometry.index_to_world(idx.mean(0))
    return volume, labels, box, centroid


@pytest.fixture(scope="module")
def written(ct_and_tumour, tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "chest_detections.json"
    result = detect_file(sample_path("chest_ct"), out, diameter=DIAMETER,
                         params={"window_low": -800, "window_high": 0})
    return out, result


def _hits(result: DetectionSet, box) -> list[int]:
    """1-based ranks (by score) of detections whose centre lies in the box."""
    lo, hi = box
    return [rank for rank, d in enumerate(result.sorted_by_score(), 1)
            if np.all(np.array(d.center_lps) >= lo) and np.all(np.array(d.center_lps) <= hi)]


def test_tumour_is_among_the_candidates(ct_and_tumour, written):
    _, _, box, centroid = ct_and_tumour
    _, result = written
    ranks = _hits(result, box)
    print(f"tumour rank {ranks[0] if ranks else None} of {len(result)} candidates")
    assert ranks, "no detection centre inside the tumour's bounding box"
    best = result.sorted_by_score()[ranks[0] - 1]
    assert np.linalg.norm(np.array(best.center_lps) - centroid) <= 5.0  # mm: one slice of this 5 mm CT
    assert 8.0 <= best.diameter_mm <= 30.0
    # the sample's tumour is its strongest round blob; measured: rank 1 of 22 (LoG)
    assert ranks[0] == 1
    assert len(result) < 100


def test_written_json_reads_back_exactly(written):
    out, result = written
    loaded = DetectionSet.from_json(out)
    assert loaded == result
    assert loaded.method == "blob-log" and loaded.params["min_diameter"] == 8.0
    assert loaded.source.endswith("dicom")


def test_mask_file_restricts_the_search_to_the_tumour(ct_and_tumour, tmp_path):
    _, _, box, _ = ct_and_tumour
    result = detect_file(sample_path("chest_ct"), tmp_path / "masked.json", diameter=DIAMETER,
                         mask_path=sample_path("chest_ct_label"))
    assert len(result) >= 1
    assert _hits(result, box) == list(range(1, len(result) + 1))
    assert result.params["masked"] is True


@pytest.mark.parametrize("diameter, params", [
    ((30, 4), None),
    ((-4, 30), None),
    ((float("nan"), 30), None),
    ((4, 30, 50), None),
    ((4, 30), {"threshold": "-1"}),
    ((4, 30), {"radius": 3}),
])
def test_bad_parameters_are_refused_before_reading(diameter, params, tmp_path):
    with pytest.raises(MedviewError):
        detect_file(tmp_path / "does-not-exist", tmp_path / "out.json", diameter=diameter, params=params)


def test_bad_outputs_are_refused_before_reading(tmp_path):
    for out in (tmp_path, tmp_path / "missing" / "d.json", tmp_path / "d.txt"):
        with pytest.raises(WriteError):
            detect_file(tmp_path / "does-not-exist", out)
    with pytest.raises(MedviewError, match="Unknown detector"):
        detect_file(tmp_path / "does-not-exist", tmp_path / "d.json", method="yolo")


def test_detect_volume_on_a_synthetic_ball():
    spacing = 1.0
    g = Geometry((40, 40, 40), (spacing,) * 3, (-20.0, -20.0, -20.0))
    z, y, x = np.indices(g.shape)
    world = g.index_to_world(np.stack([x, y, z], -1).astype(float))
    centre = np.array([2.5, -3.0, 1.0])
    array = np.where(np.linalg.norm(world - centre, axis=-1) <= 6.0, 40.0, -900.0).astype(np.float32)
    result = detect_volume(Volume(array, g), diameter=(6, 20))
    assert len(result) == 1
    assert np.linalg.norm(np.array(result.detections[0].center_lps) - centre) <= 1.5
    assert result.detections[0].diameter_mm == pytest.approx(12.0, rel=0.25)
