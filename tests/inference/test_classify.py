"""Classification models: class probabilities from a tiny TorchScript and ONNX model made here, equal to the
softmax computed by hand from the study's mean normalised intensity."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from medview.core.errors import MedviewError
from tests.inference.models import card_data, sphere_phantom, write_card


def _mean_module():
    import torch

    class MeanClassifier(torch.nn.Module):
        """logits = (-4 m, 4 m) where m is the mean of the (normalised) input patch."""

        def forward(self, x):
            m = x.mean(dim=(1, 2, 3, 4))
            return torch.stack([-4.0 * m, 4.0 * m], dim=1)

    return MeanClassifier().eval()


def _model(folder: Path, fmt: str) -> Path:
    import torch

    folder.mkdir(parents=True)
    module = _mean_module()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "torchscript":
            weights = folder / "model.ts"
            torch.jit.script(module).save(str(weights))
        else:
            weights = folder / "model.onnx"
            torch.onnx.export(module, (torch.zeros(1, 1, 16, 16, 16),), str(weights), input_names=["image"],
                              output_names=["logits"], dynamo=False)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    write_card(folder, card_data(weights.name, sha, fmt=fmt, task="classification", name=f"mean-{fmt}",
                                 labels=[{"value": 1, "name": "dark", "color": [0, 0, 0]},
                                         {"value": 2, "name": "bright", "color": [255, 255, 255]}]))
    return folder


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_probabilities_equal_the_softmax_of_the_known_logits(tmp_path: Path, fmt: str) -> None:
    pytest.importorskip("torch")
    from medview.inference.pipeline import classify

    folder = _model(tmp_path / fmt, fmt)
    volume, mask = sphere_phantom(shape=(16, 16, 16), radius_mm=5.0)
    result = classify(str(folder), volume, device="cpu")
    # card: clip [0, 100], min-max -> the sphere is 1, the rest 0; the 16^3 grid is the patch itself
    m = float(mask.mean())
    expected = np.exp([-4 * m, 4 * m]) / np.exp([-4 * m, 4 * m]).sum()
    assert result["probabilities"]["dark"] == pytest.approx(expected[0], abs=1e-4)
    assert result["probabilities"]["bright"] == pytest.approx(expected[1], abs=1e-4)
    assert result["label"] == ("bright" if m > 0 else "dark") and result["model"] == f"mean-{fmt}"


def test_infer_file_writes_json_and_refuses_an_image_output(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from medview.app.inference import infer_file
    from medview.io.writers import write_image

    folder = _model(tmp_path / "m", "torchscript")
    volume, _ = sphere_phantom(shape=(16, 16, 16), radius_mm=5.0)
    study = tmp_path / "study.nii.gz"
    write_image(volume, study)
    out = tmp_path / "classes.json"
    result = infer_file(str(folder), str(study), str(out), device="cpu", allow_modality_mismatch=True)  # a NIfTI
    data = json.loads(out.read_text())
    assert data["label"] == result.result["label"] and set(data["probabilities"]) == {"dark", "bright"}
    with pytest.raises(MedviewError, match=r"output is a \.json file"):
        infer_file(str(folder), str(study), str(tmp_path / "x.nii.gz"), device="cpu")
