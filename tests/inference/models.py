"""Tiny models built in the tests: a 1x1x1 convolution that splits intensity into two classes."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata


def threshold_module():
    """Logits (background, sphere) = (-10 x + 5, 10 x - 5): class 1 where the normalised value exceeds 0.5."""
    import torch

    conv = torch.nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([-10.0, 10.0]).reshape(2, 1, 1, 1, 1)
        conv.bias[:] = torch.tensor([5.0, -5.0])
    return conv.eval()


def card_data(weights_file: str, sha: str, fmt: str = "torchscript", **changes) -> dict:
    data = {
        "name": "sphere-test", "version": "1.0.0", "task": "segmentation", "modality": "CT",
        "spacing_mm": [1.0, 1.0, 1.0], "orientation": "LPS",
        "preprocessing": {"clip": [0, 100], "normalize": "minmax"},
        "patch_size": [16, 16, 16],
        "labels": [{"value": 1, "name": "sphere", "color": [255, 0, 0]}],
        "license": "CC0-1.0",
        "provenance": {"training_data": "none (analytic threshold)", "script": "tests/inference/models.py",
                       "metrics": {"dice": 1.0}},
        "weights": {"format": fmt, "file": weights_file, "sha256": sha},
        "output": "logits", "disclaimer": "Test model; not for clinical use.",
    }
    data.update(changes)
    return data


def write_card(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def torchscript_model(folder: Path, **changes) -> Path:
    """A model folder holding the threshold network as TorchScript and its card."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script: still how TorchScript is made
        torch.jit.script(threshold_module()).save(str(weights))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    write_card(folder, card_data("model.ts", sha, **changes))
    return folder


def onnx_model(folder: Path, **changes) -> Path:
    """The same network exported to ONNX (offline, TorchScript-based exporter) with its card."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.onnx"
    axes = {0: "n", 2: "z", 3: "y", 4: "x"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(threshold_module(), (torch.zeros(1, 1, 8, 8, 8),), str(weights), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": axes, "logits": axes}, dynamo=False)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    write_card(folder, card_data("model.onnx", sha, fmt="onnx", **changes))
    return folder


def sphere_phantom(shape=(40, 48, 48), spacing=(1.0, 1.0, 1.0), direction=None, radius_mm=12.0,
                   centre_offset_mm=(3.0, -2.0, 1.5)) -> tuple[Volume, np.ndarray]:
    """A CT-like volume (0 outside, 100 inside a sphere) and the analytic sphere mask on its grid.

    The sphere's centre is placed in world coordinates near the grid's centre, so it lands in the same
    physical place whatever the direction matrix.
    """
    nz, ny, nx = shape
    spacing = np.asarray(spacing, dtype=float)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    origin = np.array([-10.0, 20.0, -30.0])
    geometry = Geometry(shape, tuple(spacing), tuple(origin), tuple(d.reshape(-1)))
    centre = geometry.index_to_world((np.array([nx, ny, nz]) - 1) / 2.0) + np.asarray(centre_offset_mm)
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    world = geometry.index_to_world(np.stack([x, y, z], axis=-1).reshape(-1, 3)).reshape(nz, ny, nx, 3)
    mask = np.linalg.norm(world - centre, axis=-1) <= radius_mm
    array = np.where(mask, 100.0, 0.0).astype(np.int16)
    return Volume(array, geometry, VolumeMetadata(modality="CT")), mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def rotation(axis_angles_deg=(20.0, -15.0, 30.0)) -> np.ndarray:
    ax, ay, az = np.radians(axis_angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def heatmap_module(sigma_vox: float = 2.0, size: int = 9):
    """A detection network: Gaussian smoothing (sigma in voxels of the model grid), then a sigmoid that
    turns a blurred bright sphere into a heatmap peaking at its centre (logits = 20 (blur - 0.5))."""
    import torch

    r = np.arange(size) - size // 2
    g = np.exp(-(r**2) / (2 * sigma_vox**2))
    kernel = np.einsum("i,j,k->ijk", g, g, g)
    kernel /= kernel.sum()
    conv = torch.nn.Conv3d(1, 1, kernel_size=size, padding=size // 2, bias=True)
    with torch.no_grad():
        conv.weight[:] = torch.from_numpy(20.0 * kernel.astype(np.float32)).reshape(1, 1, size, size, size)
        conv.bias[:] = torch.tensor([-10.0])
    return conv.eval()


def detection_model(folder: Path, **changes) -> Path:
    """A detection model folder (TorchScript heatmap network + card with a ``detection`` block)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(heatmap_module()).save(str(weights))
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    data = card_data("model.ts", sha, name="sphere-detector", task="detection",
                     labels=[{"value": 1, "name": "sphere", "color": [0, 255, 0]}],
                     detection={"threshold": 0.5, "min_distance_mm": 6.0, "diameter_mm": 8.0},
                     patch_size=[32, 32, 32])  # windows well beyond the 9-voxel kernel: no edge effects
    data.update(changes)
    write_card(folder, data)
    return folder
