"""Model commands shared by the GUI and the CLI: list, show, infer a file, estimate the time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medview.app import inference
from medview.app.label_maps import open_label_map
from medview.core.errors import InputNotFoundError, MedviewError, UnsupportedFormatError
from medview.io.readers import open_image
from medview.io.writers import write_image
from tests.inference.models import dice, rotation, sphere_phantom, torchscript_model


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A user models folder holding the sphere model, and no shipped models."""
    (tmp_path / "resources" / "models").mkdir(parents=True)
    monkeypatch.setenv("MEDVIEW_RESOURCES", str(tmp_path / "resources"))
    monkeypatch.setenv("MEDVIEW_MODELS_DIR", str(tmp_path / "models"))
    return torchscript_model(tmp_path / "models" / "sphere")


@pytest.fixture
def study(tmp_path):
    volume, mask = sphere_phantom(direction=rotation().reshape(-1))
    path = tmp_path / "study.nrrd"
    write_image(volume, path)
    return path, mask


def test_list_and_show(installed):
    rows = inference.list_models()
    assert [(r["name"], r["status"], r["source"], r["task"]) for r in rows] == [
        ("sphere-test", "ready", "user", "segmentation")]
    shown = inference.show_model("sphere-test")
    assert shown["weights_verified"] is True and shown["labels"][0]["name"] == "sphere"
    assert shown["license"] == "CC0-1.0" and shown["weights"]["format"] == "torchscript"
    assert len(shown["card_hash"]) == 64 and "not for clinical use" in shown["disclaimer"]
    assert inference.show_model(str(installed))["name"] == "sphere-test"


def test_infer_file_writes_labels_on_the_studys_grid_with_their_table(installed, study, tmp_path):
    path, mask = study
    output = tmp_path / "out" / "sphere_seg.nii.gz"
    output.parent.mkdir()
    # a NIfTI does not say its modality: the CT model runs on it only when told to
    result = inference.infer_file("sphere-test", str(path), str(output), device="cpu", allow_modality_mismatch=True)
    assert result.output == str(output) and result.seconds > 0
    assert result.model["model"] == "sphere-test" and result.model["version"] == "1.0.0"
    table = json.loads((output.parent / "sphere_seg_labels.json").read_text())
    assert table["1"] == {"name": "sphere", "color": [255, 0, 0]} and table["model"]["card_hash"] == \
        result.model["card_hash"]
    image = open_image(path)
    labels = open_label_map(output, reference=image)
    assert labels.geometry.is_same_grid(image.geometry) and not getattr(labels, "warnings", [])
    assert labels.label(1).name == "sphere"
    assert labels.array.dtype == np.uint8 and dice(labels.array == 1, mask) > 0.9


def test_infer_file_checks_output_and_model_before_reading(installed, tmp_path):
    with pytest.raises(UnsupportedFormatError, match="must end in one of"):
        inference.infer_file("sphere-test", str(tmp_path / "missing.nrrd"), str(tmp_path / "out.png"))
    with pytest.raises(InputNotFoundError, match="No model named 'other'"):
        inference.infer_file("other", str(tmp_path / "missing.nrrd"), str(tmp_path / "out.nrrd"))
    with pytest.raises(MedviewError, match="Device must be one of"):
        inference.estimate_time("sphere-test", str(tmp_path / "missing.nrrd"), device="tpu")


def test_estimate_time(installed, study):
    path, _ = study
    estimate = inference.estimate_time("sphere-test", str(path), device="cpu")
    assert estimate["seconds"] > 0 and estimate["windows"] > 1
    assert estimate["model"] == "sphere-test" and len(estimate["model_grid_shape"]) == 3
