"""The bundled demo model ``demo-body-lungs``: found by the registry, and as good as its card says.

The card states the Dice per label that medview's own ``run_model`` reached on the held-out case lung2
against the classical labels of ``packaging/models/train_demo_model.py``; this test re-measures it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from medview.core.labels import LabelMap
from medview.inference.cards import find_model
from medview.inference.pipeline import run_model
from medview.io.readers import open_image
from tests.conftest import REPO, shared_case

pytest.importorskip("torch")
pytest.importorskip("monai")

SCRIPT = REPO / "packaging" / "models" / "train_demo_model.py"
TOLERANCE = 0.02


def _training_script():
    """The training script as a module (its classical label pipeline is the reference)."""
    spec = importlib.util.spec_from_file_location("train_demo_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def card():
    return find_model("demo-body-lungs", verify_weights=True)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_card_is_complete(card):
    assert card.folder == Path(REPO / "resources" / "models" / "demo-body-lungs").resolve()
    assert card.task == "segmentation" and card.modality == "CT" and card.orientation == "LPS"
    assert [(e.value, e.name) for e in card.labels] == [(1, "Body"), (2, "Lungs")]
    assert card.license == "BSD-3-Clause"
    assert "not for clinical use" in card.disclaimer
    assert card.weights.format == "torchscript" and card.weights.path.stat().st_size < 20 * 2**20
    assert card.provenance["script"] == "packaging/models/train_demo_model.py"
    stated = card.provenance["metrics"]["dice_held_out_lung2"]
    assert set(stated) == {"Body", "Lungs"}


def test_held_out_dice_matches_the_card(card):
    volume = open_image(shared_case("lung2_image.nrrd"))
    reference = _training_script().classical_labels(volume)
    result = run_model(card, volume, device="cpu")
    assert isinstance(result, LabelMap) and result.geometry == volume.geometry
    stated = card.provenance["metrics"]["dice_held_out_lung2"]
    for entry in card.labels:
        measured = _dice(result.array == entry.value, reference == entry.value)
        assert measured >= stated[entry.name] - TOLERANCE, (entry.name, measured, stated[entry.name])


def test_lungs_on_the_bundled_sample_lie_in_air(card):
    from medview.app.samples import sample_path

    volume = open_image(sample_path("chest_ct"))
    result = run_model(card, volume, device="cpu")
    lungs = result.array == 2
    assert lungs.sum() > 0
    # 1 mL at least: a real pair of lungs, not a few stray voxels
    assert lungs.sum() * np.prod(volume.geometry.spacing) > 1000.0
    assert float((volume.array[lungs] < -400).mean()) >= 0.90
    assert (result.array == 1).sum() > 0


def test_onnx_export_gives_the_same_labels_as_torchscript(card, tmp_path: Path):
    """The bundled TorchScript exported to ONNX (offline) and run through ONNX Runtime: same probabilities
    (float32 tolerance) and the same label map on the bundled CT."""
    import hashlib
    import json
    import shutil
    import warnings

    import torch

    from medview.app.samples import sample_path

    folder = tmp_path / "demo-onnx"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load: still how TorchScript is read
        module = torch.jit.load(str(card.weights.path)).eval()
    patch = torch.zeros((1, 1, *card.patch_size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (patch,), str(folder / "model.onnx"), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n"}, "logits": {0: "n"}},
                          dynamo=False)
    data = json.loads(Path(card.card_path).read_text())
    data["name"] = "demo-body-lungs-onnx"
    data["weights"] = {"format": "onnx", "file": "model.onnx",
                       "sha256": hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()}
    (folder / "model.json").write_text(json.dumps(data))
    shutil.copy(Path(card.card_path).parent / "README.md", folder / "README.md")
    volume = open_image(sample_path("chest_ct"))
    from_torch = run_model(card, volume, device="cpu")
    from_onnx = run_model(str(folder), volume, device="cpu")
    assert isinstance(from_onnx, LabelMap) and from_onnx.geometry == from_torch.geometry
    agree = float(np.mean(from_onnx.array == from_torch.array))
    assert agree > 0.9999, agree
