"""Model cards: validation with messages naming the file and field, weights checked; the model registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from medview.core.errors import MedviewError
from medview.inference import cards
from tests.inference.models import card_data, torchscript_model, write_card


@pytest.fixture
def model_dir(tmp_path):
    return torchscript_model(tmp_path / "sphere")


@pytest.fixture
def isolated_registry(tmp_path, monkeypatch):
    """Empty shipped and user model folders, so only what a test installs is seen."""
    resources = tmp_path / "resources"
    (resources / "models").mkdir(parents=True)
    user = tmp_path / "user-models"
    user.mkdir()
    monkeypatch.setenv("MEDVIEW_RESOURCES", str(resources))
    monkeypatch.setenv("MEDVIEW_MODELS_DIR", str(user))
    return resources / "models", user


def _rewrite(model_dir, **changes):
    data = json.loads((model_dir / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    write_card(model_dir, data)
    return model_dir / "model.json"


def test_valid_card_is_read_with_every_field(model_dir):
    card = cards.load_card(model_dir)
    assert card.name == "sphere-test" and card.version == "1.0.0" and card.task == "segmentation"
    assert card.spacing_mm == (1.0, 1.0, 1.0) and card.patch_size == (16, 16, 16)
    assert card.preprocessing.clip == (0.0, 100.0) and card.preprocessing.normalize == "minmax"
    assert [(e.value, e.name, e.color) for e in card.labels] == [(1, "sphere", (255, 0, 0))]
    assert card.weights.format == "torchscript" and card.weights.path == (model_dir / "model.ts").resolve()
    assert card.in_channels == 1 and card.output == "logits" and card.largest_component is False
    assert card.card_hash == hashlib.sha256((model_dir / "model.json").read_bytes()).hexdigest()
    assert card.provenance["metrics"] == {"dice": 1.0}
    assert "not for clinical use" in card.disclaimer
    assert card.num_classes == 2


@pytest.mark.parametrize("field", ["name", "task", "spacing_mm", "patch_size", "labels", "license", "weights",
                                   "preprocessing", "provenance"])
def test_missing_field_is_named(model_dir, field):
    path = _rewrite(model_dir, **{field: None})
    with pytest.raises(MedviewError) as err:
        cards.load_card(path)
    assert f"'{field}' is missing" in str(err.value)
    assert str(path) in str(err.value)


def test_wrong_sha256_is_refused(model_dir):
    data = json.loads((model_dir / "model.json").read_text())
    data["weights"]["sha256"] = "0" * 64
    write_card(model_dir, data)
    with pytest.raises(MedviewError, match=r"'weights\.sha256' does not match model\.ts"):
        cards.load_card(model_dir)
    assert cards.load_card(model_dir, verify_weights=False).weights.sha256 == "0" * 64


def test_malformed_sha256_and_unknown_format_are_named(model_dir):
    data = json.loads((model_dir / "model.json").read_text())
    data["weights"]["sha256"] = "abc"
    write_card(model_dir, data)
    with pytest.raises(MedviewError, match=r"'weights\.sha256' must be 64 hexadecimal digits"):
        cards.load_card(model_dir)
    data = json.loads((model_dir / "model.json").read_text())
    data["weights"] = {**data["weights"], "sha256": "1" * 64, "format": "keras"}
    write_card(model_dir, data)
    with pytest.raises(MedviewError, match=r"'weights\.format' must be one of torchscript, onnx, monai_bundle"):
        cards.load_card(model_dir)


@pytest.mark.parametrize(("changes", "field"), [
    ({"task": "regression"}, "'task' must be one of"),
    ({"spacing_mm": [1.0, 0.0, 1.0]}, "'spacing_mm' must be positive"),
    ({"patch_size": [16, 16]}, "'patch_size' must be a list of 3 whole numbers"),
    ({"orientation": "RAS"}, "'orientation' must be one of LPS"),
    ({"labels": [{"value": 1, "name": "a", "color": [300, 0, 0]}]}, r"'labels\[0\]\.color'"),
    ({"labels": [{"value": 1, "name": "a"}, {"value": 1, "name": "b"}]}, "'labels' has repeated values"),
    ({"preprocessing": {"normalize": "robust"}}, r"'preprocessing\.normalize' must be one of"),
    ({"preprocessing": {"clip": [10, 5]}}, r"'preprocessing\.clip' must be \[low, high\]"),
    ({"postprocess": {"largest_component": "yes"}}, r"'postprocess\.largest_component'"),
    ({"in_channels": 0}, "'in_channels' must be a positive whole number"),
])
def test_bad_values_are_named(model_dir, changes, field):
    _rewrite(model_dir, **changes)
    with pytest.raises(MedviewError, match=field):
        cards.load_card(model_dir)


def test_missing_weights_and_bad_json(model_dir, tmp_path):
    (model_dir / "model.ts").unlink()
    with pytest.raises(MedviewError, match=r"'weights\.file' names model\.ts, which is not in"):
        cards.load_card(model_dir)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{not json")
    with pytest.raises(MedviewError, match="is not valid JSON"):
        cards.load_card(broken)
    with pytest.raises(MedviewError, match="No model card"):
        cards.load_card(tmp_path / "nowhere")


def test_registry_finds_user_and_shipped_models_and_paths(tmp_path, isolated_registry):
    shipped, user = isolated_registry
    torchscript_model(shipped / "shipped", name="shipped-model")
    torchscript_model(user / "mine", name="my-model")
    outside = torchscript_model(tmp_path / "elsewhere", name="outside-model")
    rows = {e.name: e for e in cards.list_models()}
    assert rows["shipped-model"].source == "resources" and rows["my-model"].source == "user"
    assert rows["my-model"].status == "ready" and "outside-model" not in rows
    assert cards.find_model("my-model").folder == (user / "mine").resolve()
    assert cards.find_model(str(outside)).name == "outside-model"
    assert cards.find_model(str(outside / "model.json")).name == "outside-model"
    with pytest.raises(MedviewError, match=r"No model named 'nope'; known models: shipped-model, my-model"):
        cards.find_model("nope")


def test_registry_lists_invalid_cards_and_explains_them(isolated_registry):
    _, user = isolated_registry
    folder = torchscript_model(user / "broken")
    data = json.loads((folder / "model.json").read_text())
    del data["license"]
    write_card(folder, data)
    rows = {e.name: e for e in cards.list_models()}
    assert rows["broken"].status == "invalid" and "'license' is missing" in rows["broken"].message
    with pytest.raises(MedviewError, match="'license' is missing"):
        cards.find_model("broken")


def test_totalsegmentator_listed_only_when_installed(tmp_path, isolated_registry, monkeypatch):
    assert "totalsegmentator" not in {e.name for e in cards.list_models()}  # package absent here: skipped
    package = tmp_path / "site" / "totalsegmentator"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    home = tmp_path / "totalseg-home"
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(home))
    entry = {e.name: e for e in cards.list_models()}["totalsegmentator"]
    assert entry.status == "weights missing"
    assert "totalseg_download_weights" in entry.message and "never downloads" in entry.message
    (home / "nnunet" / "results" / "Dataset291").mkdir(parents=True)
    entry = {e.name: e for e in cards.list_models()}["totalsegmentator"]
    assert entry.status == "external"
    with pytest.raises(MedviewError, match="cannot be run by medview"):
        cards.find_model("totalsegmentator")


def test_card_data_helper_matches_required_fields():
    assert set(cards.REQUIRED) <= set(card_data("w", "0" * 64))


def test_importing_inference_does_not_import_torch():
    code = ("import sys, medview.inference.pipeline, medview.inference.backends, medview.app.inference; "
            "print('torch' in sys.modules, 'onnxruntime' in sys.modules, 'monai' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
