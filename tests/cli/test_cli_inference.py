"""``medview models`` and ``medview infer`` as a user runs them, with a tiny TorchScript model made here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests.inference.models import dice, rotation, sphere_phantom, torchscript_model


def run(*args: str, models_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if models_dir is not None:
        env["MEDVIEW_MODELS_DIR"] = str(models_dir)
    return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_models_list_show_and_infer_on_an_oblique_study(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from medview.io.writers import write_image

    models = tmp_path / "models"
    torchscript_model(models / "sphere")
    r = run("models", "list", "--json", models_dir=models)
    assert r.returncode == 0, r.stderr
    names = [m["name"] for m in json.loads(r.stdout)]
    assert "sphere-test" in names and names.count("sphere-test") == 1  # the user's model, beside the bundled
    r = run("models", "show", "sphere-test", models_dir=models)
    assert r.returncode == 0 and json.loads(r.stdout)["weights_verified"] is True
    volume, mask = sphere_phantom(spacing=(0.9, 0.9, 2.0), direction=rotation())
    study = tmp_path / "study.nii.gz"
    write_image(volume, study)
    out = tmp_path / "labels.nii.gz"
    r = run("infer", "sphere-test", str(study), str(out), "--device", "cpu", "--allow-modality-mismatch",  # a NIfTI
            models_dir=models)
    assert r.returncode == 0, r.stderr
    assert "sphere-test 1.0.0" in r.stdout
    written = sitk.ReadImage(str(out))
    source = sitk.ReadImage(str(study))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    assert dice(sitk.GetArrayFromImage(written) == 1, mask) > 0.9
    table = json.loads((tmp_path / "labels_labels.json").read_text())
    assert table["1"]["name"] == "sphere" and table["model"]["model"] == "sphere-test"
    est = run("infer", "sphere-test", str(study), str(out), "--estimate", models_dir=models)
    assert est.returncode == 0 and "windows" in est.stdout


@pytest.mark.parametrize("args, message", [
    (["infer", "nosuch", "{study}", "{tmp}/o.nii.gz"], "No model named 'nosuch'"),
    (["infer", "sphere-test", "{study}", "{tmp}/o.nii.gz", "--device", "cuda"], "CUDA"),
    (["infer", "sphere-test", "{study}", "{tmp}/o.png"], "Cannot write o.png"),
    (["models", "show", "nosuch"], "No model named"),
])
def test_bad_input_exits_3(args, message, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from medview.io.writers import write_image

    models = tmp_path / "models"
    torchscript_model(models / "sphere")
    volume, _ = sphere_phantom()
    study = tmp_path / "study.nii.gz"
    write_image(volume, study)
    r = run(*[a.format(study=study, tmp=tmp_path) for a in args], models_dir=models)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.glob("o.*"))
