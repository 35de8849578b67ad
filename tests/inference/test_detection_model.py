"""Detection models: a heatmap network built in the test finds spheres at known world positions, on
axial, oblique and anisotropic studies, with the classical detector's output type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medview.core.detections import DetectionSet
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import CancelToken, TaskContext
from medview.core.volume import Volume, VolumeMetadata
from medview.inference.cards import load_card
from medview.inference.pipeline import detect
from tests.inference.models import detection_model, rotation

pytest.importorskip("torch")

CENTRES_OFFSET_MM = [(-12.0, -9.0, -6.0), (11.0, 8.0, 4.0), (10.0, -10.0, -5.0)]
RADIUS_MM = 4.0


def _spheres(shape, spacing, direction=None) -> tuple[Volume, np.ndarray]:
    """Three bright spheres (r = 4 mm, 100) placed in world coordinates around the grid's centre."""
    nz, ny, nx = shape
    d = np.eye(3) if direction is None else np.asarray(direction, float).reshape(3, 3)
    g = Geometry(shape, tuple(spacing), (-20.0, 15.0, -40.0), tuple(d.reshape(-1)))
    middle = g.index_to_world((np.array([nx, ny, nz]) - 1) / 2.0)
    centres = middle + np.array(CENTRES_OFFSET_MM)
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = g.index_to_world(np.stack([x, y, z], -1).reshape(-1, 3)).reshape(nz, ny, nx, 3)
    array = np.zeros(shape, np.int16)
    for c in centres:
        array[np.linalg.norm(world - c, axis=-1) <= RADIUS_MM] = 100
    return Volume(array, g, VolumeMetadata(modality="CT")), centres


@pytest.fixture(scope="module")
def card(tmp_path_factory):
    return load_card(detection_model(tmp_path_factory.mktemp("det") / "sphere-detector") / "model.json")


@pytest.mark.parametrize("case", ["axial", "oblique", "anisotropic"])
def test_detections_land_on_the_sphere_centres_in_world_coordinates(card, case) -> None:
    kwargs = {"axial": ((40, 48, 48), (1.0, 1.0, 1.0), None),
              "oblique": ((40, 48, 48), (1.0, 1.0, 1.0), rotation().reshape(-1)),
              "anisotropic": ((20, 56, 56), (0.8, 0.8, 2.0), None)}[case]
    volume, centres = _spheres(*kwargs)
    before = volume.array.copy()
    found = detect(card, volume, device="cpu")
    assert isinstance(found, DetectionSet)
    assert len(found.detections) == 3, [d.center_lps for d in found.detections]
    largest_spacing = max(volume.geometry.spacing)
    for c in centres:
        distances = [np.linalg.norm(np.array(d.center_lps) - c) for d in found.detections]
        assert min(distances) <= largest_spacing, (case, c, min(distances))  # within one study voxel
        # and, with the parabolic refinement, within half a voxel of the model's 1 mm grid (measured <= 0.25)
        assert min(distances) <= 0.5, (case, c, min(distances))
    d = found.detections[0]
    assert d.label == "sphere" and 0.5 <= d.score <= 1.0 and d.diameter_mm == 8.0
    assert np.allclose(np.array(d.box_lps[3:]) - np.array(d.box_lps[:3]), 8.0)
    assert [x.score for x in found.detections] == sorted((x.score for x in found.detections), reverse=True)
    assert found.method.startswith("sphere-detector") and found.params["threshold"] == 0.5
    np.testing.assert_array_equal(volume.array, before)


def test_threshold_override_and_empty_study(card) -> None:
    volume, _ = _spheres((40, 48, 48), (1.0, 1.0, 1.0))
    assert detect(card, volume, device="cpu", threshold=0.999999).detections == []
    empty = Volume(np.zeros((24, 24, 24), np.int16), Geometry((24, 24, 24)), VolumeMetadata(modality="CT"))
    assert detect(card, empty, device="cpu").detections == []


def test_cancel_stops_and_bad_cards_are_refused(card, tmp_path) -> None:
    volume, _ = _spheres((40, 48, 48), (1.0, 1.0, 1.0))
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        detect(card, volume, device="cpu", task=TaskContext(token=token))
    bad = load_card(detection_model(tmp_path / "bad", detection={"treshold": 0.5}) / "model.json")
    with pytest.raises(MedviewError, match="unknown detection setting"):
        detect(bad, volume, device="cpu")
    two = load_card(detection_model(tmp_path / "two", labels=[{"value": 1, "name": "a", "color": [1, 2, 3]},
                                                              {"value": 2, "name": "b", "color": [3, 2, 1]}])
                    / "model.json")
    with pytest.raises(MedviewError, match="1 channels but its card lists 2"):
        detect(two, volume, device="cpu")


def test_cli_infer_with_a_detection_model_writes_detections_json(tmp_path: Path, capsys) -> None:
    from medview.cli.main import main
    from medview.io.writers import write_image

    volume, centres = _spheres((40, 48, 48), (1.0, 1.0, 1.0))
    image = write_image(volume, tmp_path / "spheres.nii.gz")
    folder = detection_model(tmp_path / "sphere-detector")
    out = tmp_path / "found.json"
    assert main(["infer", str(folder), image, str(out), "--device", "cpu", "--allow-modality-mismatch"]) == 0
    assert "3 detection(s)" in capsys.readouterr().out
    found = DetectionSet.from_dict(json.loads(out.read_text()))
    for c in centres:
        assert min(np.linalg.norm(np.array(d.center_lps) - c) for d in found.detections) <= 1.0
    assert main(["infer", str(folder), image, str(tmp_path / "found.nii.gz"), "--device", "cpu"]) == 3
    assert "detection model: its output is a .json file" in capsys.readouterr().err
