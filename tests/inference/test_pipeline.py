"""The inference pipeline: model grid, sliding window, labels back on the study's exact grid."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from medview.core.errors import CancelledError, MedviewError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext
from medview.core.volume import Volume
from medview.inference import backends, pipeline
from medview.inference.cards import load_card
from tests.inference.models import (
    card_data,
    dice,
    onnx_model,
    rotation,
    sphere_phantom,
    threshold_module,
    torchscript_model,
    write_card,
)


@pytest.fixture(scope="module")
def ts_card(tmp_path_factory):
    return load_card(torchscript_model(tmp_path_factory.mktemp("models") / "sphere"))


@pytest.mark.parametrize("case", ["axial", "oblique", "anisotropic"])
def test_segmentation_lands_on_the_sphere_on_the_studys_grid(ts_card, case):
    kwargs = {"axial": {}, "oblique": {"direction": rotation().reshape(-1)},
              "anisotropic": {"shape": (12, 48, 48), "spacing": (0.7, 0.7, 3.0)}}[case]
    volume, mask = sphere_phantom(**kwargs)
    before = volume.array.copy()
    result = pipeline.run_model(ts_card, volume, device="cpu")
    assert isinstance(result, LabelMap)
    assert result.geometry == volume.geometry  # exact: same shape, spacing, origin and direction
    assert result.array.dtype == np.uint8 and set(np.unique(result.array)) == {0, 1}
    assert dice(result.array == 1, mask) > 0.9
    assert [(e.value, e.name, e.color) for e in result.labels] == [(1, "sphere", (255, 0, 0))]
    assert ts_card.card_hash[:12] in result.source and "sphere-test 1.0.0" in result.source
    assert result.provenance["card_hash"] == ts_card.card_hash and result.provenance["version"] == "1.0.0"
    assert np.array_equal(volume.array, before) and volume.array.dtype == np.int16
    assert not hasattr(result, "probabilities")


def test_model_grid_is_axis_aligned_and_covers_an_oblique_study():
    volume, _ = sphere_phantom(direction=rotation().reshape(-1))
    grid = pipeline.model_grid(volume.geometry, (1.5, 1.5, 2.0))
    assert grid.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0) and grid.spacing == (1.5, 1.5, 2.0)
    n = np.array(volume.geometry.size_xyz)
    corners = np.array([[i, j, k] for i in (0, n[0] - 1) for j in (0, n[1] - 1) for k in (0, n[2] - 1)])
    index = grid.world_to_index(volume.geometry.index_to_world(corners))
    assert index.min() >= -0.5 and np.all(index.max(axis=0) <= np.array(grid.size_xyz) - 0.5)


def test_probabilities_only_when_asked_and_float32(ts_card):
    volume, mask = sphere_phantom()
    result = pipeline.run_model(ts_card, volume, device="cpu", probabilities=True)
    probability = result.probabilities[1]
    assert isinstance(probability, Volume) and probability.array.dtype == np.float32
    assert probability.geometry == volume.geometry
    assert probability.array[mask].mean() > 0.9 and probability.array[~mask].mean() < 0.1


def test_onnx_and_torchscript_agree(ts_card, tmp_path):
    onnx_card = load_card(onnx_model(tmp_path / "onnx"))
    torch_backend = backends.load_backend(ts_card, "cpu")
    onnx_backend = backends.load_backend(onnx_card, "cpu")
    batch = np.random.default_rng(0).uniform(-0.5, 1.5, (2, 1, 16, 16, 16)).astype(np.float32)
    a, b = torch_backend.predict(batch), onnx_backend.predict(batch)
    assert a.shape == b.shape == (2, 2, 16, 16, 16) and a.dtype == b.dtype == np.float32
    assert np.allclose(a, b, atol=1e-5)
    volume, _ = sphere_phantom(direction=rotation().reshape(-1))
    labels_torch = pipeline.run_model(ts_card, volume, device="cpu")
    labels_onnx = pipeline.run_model(onnx_card, volume, device="cpu")
    assert np.array_equal(labels_torch.array, labels_onnx.array) and labels_onnx.array.any()


def test_onnx_cuda_without_its_provider_is_a_clear_error(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    card = load_card(onnx_model(tmp_path / "onnx"))
    assert backends.device_for(card, "auto") == "cpu"
    with pytest.raises(MedviewError, match="no CUDA provider"):
        backends.load_backend(card, "cuda")


def test_monai_bundle_with_network_config_runs_offline(ts_card, tmp_path):
    import torch

    bundle = tmp_path / "bundle-model" / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    network = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": network}))
    torch.save(threshold_module().state_dict(), bundle / "models" / "model.pt")
    sha = hashlib.sha256((bundle / "models" / "model.pt").read_bytes()).hexdigest()
    write_card(bundle.parent, card_data("bundle", sha, fmt="monai_bundle"))
    card = load_card(bundle.parent)
    volume, _ = sphere_phantom()
    assert np.array_equal(pipeline.run_model(card, volume, device="cpu").array,
                          pipeline.run_model(ts_card, volume, device="cpu").array)


def test_monai_bundle_with_torchscript_runs_and_a_bundle_without_weights_is_refused(ts_card, tmp_path):
    import shutil

    bundle = tmp_path / "ts-bundle" / "bundle"
    (bundle / "models").mkdir(parents=True)
    shutil.copy(ts_card.weights.path, bundle / "models" / "model.ts")
    write_card(bundle.parent, card_data("bundle", ts_card.weights.sha256, fmt="monai_bundle"))
    card = load_card(bundle.parent)
    volume, mask = sphere_phantom()
    assert dice(pipeline.run_model(card, volume, device="cpu").array == 1, mask) > 0.9
    (bundle / "models" / "model.ts").unlink()
    with pytest.raises(MedviewError, match=r"has neither models/model\.ts nor models/model\.pt"):
        load_card(bundle.parent)


def _counting(monkeypatch):
    calls = {"windows": 0}
    original = backends.TorchBackend.predict_tensor

    def predict_tensor(self, batch):
        calls["windows"] += int(batch.shape[0])
        return original(self, batch)

    monkeypatch.setattr(backends.TorchBackend, "predict_tensor", predict_tensor)
    return calls


def test_cancel_stops_within_one_window_and_leaves_the_input(ts_card, monkeypatch):
    calls = _counting(monkeypatch)
    volume, _ = sphere_phantom()
    before = volume.array.copy()
    total = pipeline.count_windows(pipeline.model_grid(volume.geometry, ts_card.spacing_mm).shape,
                                   ts_card.patch_size)
    assert total == 48
    state = {}
    task = TaskContext(min_interval_s=0.0)

    def on_progress(fraction, message):
        if "window 5 of" in message:
            state["at_cancel"] = calls["windows"]
            task.token.cancel()

    task.on_progress = on_progress
    with pytest.raises(CancelledError):
        pipeline.run_model(ts_card, volume, device="cpu", task=task, batch_size=1)
    assert state["at_cancel"] == 5
    assert calls["windows"] - state["at_cancel"] == 0  # no window started after the cancel
    assert np.array_equal(volume.array, before)


@pytest.mark.parametrize("shape", [(40, 48, 48), (10, 20, 33), (16, 16, 16), (17, 60, 9)])
def test_window_count_matches_monai(ts_card, monkeypatch, shape):
    calls = _counting(monkeypatch)
    volume, _ = sphere_phantom(shape=shape, radius_mm=4.0, centre_offset_mm=(0.0, 0.0, 0.0))
    messages = []
    pipeline.run_model(ts_card, volume, device="cpu", batch_size=1,
                       task=TaskContext(on_progress=lambda f, m: messages.append(m), min_interval_s=0.0))
    grid = pipeline.model_grid(volume.geometry, ts_card.spacing_mm)
    assert calls["windows"] == pipeline.count_windows(grid.shape, ts_card.patch_size)
    assert f"window {calls['windows']} of {calls['windows']}" in " ".join(messages)


def test_batch_size_follows_the_memory_budget(ts_card, monkeypatch):
    per_window_mb = 16**3 * 4 * (1 + 2 * 2) * pipeline.ACTIVATION_FACTOR / 2**20
    assert pipeline.choose_batch_size(ts_card, "cpu", memory_budget_mb=per_window_mb * 0.5) == 1
    assert pipeline.choose_batch_size(ts_card, "cpu", memory_budget_mb=per_window_mb * 3.5) == 3
    assert pipeline.choose_batch_size(ts_card, "cpu", memory_budget_mb=1e6) == pipeline.MAX_BATCH
    with pytest.raises(MedviewError, match="Memory budget must be positive"):
        pipeline.choose_batch_size(ts_card, "cpu", memory_budget_mb=0)
    calls = _counting(monkeypatch)
    volume, mask = sphere_phantom()
    result = pipeline.run_model(ts_card, volume, device="cpu", memory_budget_mb=per_window_mb * 3.5)
    assert calls["windows"] == 48 and dice(result.array == 1, mask) > 0.9


def test_largest_component_keeps_the_bigger_sphere(tmp_path):
    card = load_card(torchscript_model(tmp_path / "lcc", postprocess={"largest_component": True}))
    volume, big = sphere_phantom(radius_mm=9.0, centre_offset_mm=(-8.0, -8.0, 0.0))
    _, small = sphere_phantom(radius_mm=4.0, centre_offset_mm=(12.0, 12.0, 0.0))
    array = volume.array.copy()
    array[small] = 100
    result = pipeline.run_model(card, volume.with_array(array), device="cpu")
    assert dice(result.array == 1, big) > 0.9 and not result.array[small].any()


def test_image_to_image_model_gives_a_float32_volume_on_the_studys_grid(tmp_path):
    import torch

    folder = tmp_path / "identity"
    folder.mkdir()
    conv = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    with pytest.warns(DeprecationWarning):
        torch.jit.script(conv.eval()).save(str(folder / "model.ts"))
    sha = hashlib.sha256((folder / "model.ts").read_bytes()).hexdigest()
    write_card(folder, card_data("model.ts", sha, task="image-to-image", labels=[]))
    volume, mask = sphere_phantom(spacing=(0.8, 0.8, 1.2))
    result = pipeline.run_model(load_card(folder), volume, device="cpu")
    assert isinstance(result, Volume) and result.array.dtype == np.float32
    assert result.geometry == volume.geometry and result.metadata.extra["provenance"]["model"] == "sphere-test"
    core = volume.with_array(mask.astype(np.int16))  # min-max normalised: 1 inside the sphere, 0 outside
    assert np.abs(result.array - core.array)[10:30, 10:38, 10:38].mean() < 0.1


def test_cuda_requested_without_cuda_is_a_clear_error(ts_card):
    if backends.cuda_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(MedviewError, match="Device 'cuda' was requested but no CUDA GPU"):
        pipeline.run_model(ts_card, sphere_phantom()[0], device="cuda")
    with pytest.raises(MedviewError, match="Device must be one of auto, cpu, cuda"):
        backends.resolve_device("gpu")
    assert backends.resolve_device("auto", available=False) == "cpu"
    assert backends.resolve_device("auto", available=True) == "cuda"


def test_wrong_channel_count_is_explained(tmp_path):
    card = load_card(torchscript_model(tmp_path / "three", labels=[
        {"value": 1, "name": "a", "color": [1, 2, 3]}, {"value": 2, "name": "b", "color": [4, 5, 6]}]))
    with pytest.raises(MedviewError, match=r"returned 2 channels but its card lists 2 label\(s\), so 3"):
        pipeline.run_model(card, sphere_phantom()[0], device="cpu")


def test_estimate_seconds_is_positive_and_proportional_to_windows(ts_card, monkeypatch):
    small, _ = sphere_phantom(shape=(16, 16, 16))
    large, _ = sphere_phantom()
    assert pipeline.estimate_seconds(ts_card, large, device="cpu") > 0
    monkeypatch.setattr(pipeline, "time_one_window", lambda card, backend: 0.25)
    windows = [pipeline.count_windows(pipeline.model_grid(v.geometry, ts_card.spacing_mm).shape,
                                      ts_card.patch_size) for v in (small, large)]
    assert windows == [1, 48]
    assert pipeline.estimate_seconds(ts_card, small, device="cpu") == pytest.approx(0.25)
    assert pipeline.estimate_seconds(ts_card, large, device="cpu") == pytest.approx(0.25 * 48)
