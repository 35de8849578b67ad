"""Train medview's bundled demo model ``demo-body-lungs`` (CT: body and lungs), offline and reproducibly.

What it does
------------
1. **Labels** from a classical pipeline (:func:`classical_labels`) on the real chest CTs of the pyradiomics
   test cases (``lung1_image.nrrd``, ``lung2_image.nrrd``; BSD-3-Clause, Copyright 2017 Harvard Medical
   School), on each study's own grid:

   * body: HU > -500, largest 3D component (6-connected), holes filled in each axial slice;
   * lungs: HU < -400 inside the body, 3D components touching the in-plane (x/y) border of the volume
     dropped (air outside the patient; the z border is allowed because these partial chest scans cut
     through the lungs), the two largest components kept (the second only if it is at least 10 % of the
     largest, i.e. one component when the lungs are joined), then a 5 mm closing;
   * label 1 = body without the lungs, label 2 = lungs.

2. **Training data** on the model's grid exactly as :func:`medview.inference.pipeline.run_model` builds it:
   :func:`~medview.inference.pipeline.model_grid` at 4 mm isotropic LPS, linear resampling (outside the
   study = study minimum), :func:`~medview.inference.pipeline.preprocess` (clip -1000..500 HU, min-max);
   labels resampled with nearest neighbour.  Training uses lung1 only; lung2 is held out.
3. **Training**: MONAI 3D UNet (channels 8-16-32-64, strides 2, one residual unit), random 48^3 crops
   of lung1 with augmentation from :func:`medview.analysis.augment.training_transforms` (left-right flip,
   rotation up to 10 degrees about each axis, scaling 0.85-1.15, intensity scale/shift; the MONAI composition
   the weights were trained with, moved there unchanged) plus synthetic table-like clutter
   (:func:`add_clutter`), Dice + cross-entropy loss, Adam, fixed iteration count, CPU, seeds fixed (torch,
   numpy, random) so a re-run gives the same weights on the same software.
4. **Export** TorchScript (``torch.jit.trace``) to ``resources/models/demo-body-lungs/model.ts``, write the
   card, then run medview's own :func:`run_model` on lung2 and record the Dice per label against the
   classical labels in the card's provenance.

Run from the repository root::

    .venv/bin/python packaging/models/train_demo_model.py [--data /work/shared/data/radiomics-cases]
        [--iterations 1500] [--threads 1] [--out FOLDER] [--labels-only] [--save-labels FOLDER]

About 5 minutes on one CPU core (1500 iterations, batch 2).  With the same software a re-run gives
bit-identical weight tensors; the ``model.ts`` file's bytes (and so its SHA-256) still differ, because
TorchScript stores a random serialization id and debug records in the archive.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from medview.algorithms.morphology import close_mask, fill_holes_mask  # noqa: E402
from medview.analysis.augment import training_transforms  # noqa: E402
from medview.core.volume import Volume  # noqa: E402
from medview.inference.cards import Preprocessing  # noqa: E402
from medview.inference.pipeline import model_grid, preprocess, resample_array  # noqa: E402
from medview.io.readers import open_image  # noqa: E402

NAME = "demo-body-lungs"
VERSION = "1.0.0"
OUT_DIR = REPO / "resources" / "models" / NAME
DEFAULT_DATA = Path("/work/shared/data/radiomics-cases")
SPACING_MM = (4.0, 4.0, 4.0)
PATCH = (48, 48, 48)
CLIP = (-1000.0, 500.0)
PREPROCESSING = Preprocessing(normalize="minmax", clip=CLIP)
LABELS = [{"value": 1, "name": "Body", "color": [230, 190, 138]},
          {"value": 2, "name": "Lungs", "color": [80, 160, 255]}]
SEED = 20261121
BODY_HU, LUNG_HU, CLOSING_MM, SECOND_LUNG_FRACTION = -500.0, -400.0, 5.0, 0.10
FACE = ndimage.generate_binary_structure(3, 1)


# -- classical labels -----------------------------------------------------------------------------------------
def body_mask(hu: np.ndarray) -> np.ndarray:
    """HU > -500, largest 6-connected 3D component, holes filled per axial slice."""
    labels, n = ndimage.label(hu > BODY_HU, structure=FACE)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return fill_holes_mask(labels == int(np.argmax(sizes)), slice_wise=True)


def lung_mask(hu: np.ndarray, body: np.ndarray, spacing_xyz) -> np.ndarray:
    """Air (HU < -400) inside the body; no component touching the in-plane border; two largest; closing."""
    labels, n = ndimage.label((hu < LUNG_HU) & body, structure=FACE)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    border = np.unique(np.concatenate([labels[:, 0, :].ravel(), labels[:, -1, :].ravel(),
                                       labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    order = np.argsort(sizes)[::-1]
    keep = [order[0]]
    if n > 1 and sizes[order[1]] >= SECOND_LUNG_FRACTION * sizes[order[0]]:
        keep.append(order[1])
    lungs = np.isin(labels, keep)
    return close_mask(lungs, spacing_xyz, CLOSING_MM) & body


def classical_labels(volume: Volume) -> np.ndarray:
    """uint8 (z, y, x) on the volume's grid: 1 body (without lungs), 2 lungs."""
    hu = volume.array
    body = body_mask(hu)
    lungs = lung_mask(hu, body, volume.geometry.spacing)
    out = np.zeros(hu.shape, dtype=np.uint8)
    out[body] = 1
    out[lungs] = 2
    return out


def volumes_ml(labels: np.ndarray, spacing_xyz) -> dict[str, float]:
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    return {e["name"]: round(float((labels == e["value"]).sum()) * voxel_ml, 1) for e in LABELS}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = float(a.sum() + b.sum())
    return 2.0 * float((a & b).sum()) / total if total else 1.0


# -- training data on the model grid -----------------------------------------------------------------------------
def on_model_grid(volume: Volume, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 (z, y, x) normalised as at inference, labels uint8) on the 4 mm LPS grid."""
    grid = model_grid(volume.geometry, SPACING_MM)
    low = float(np.min(volume.array))
    moved = resample_array(volume.array, volume.geometry, grid, nearest=False, default=low)
    image = preprocess(moved[None], SimpleNamespace(preprocessing=PREPROCESSING), volume.array)[0]
    target = resample_array(labels, volume.geometry, grid, nearest=True)
    return image.astype(np.float32), target.astype(np.uint8)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_network():
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(8, 16, 32, 64), strides=(2, 2, 2),
                num_res_units=1)


def add_clutter(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, max_plates: int = 3) -> np.ndarray:
    """Synthetic clutter outside the patient: 1-3 thin curved plates (like a CT table or mattress) of soft
    tissue to bone density, drawn only where the label is background and at least 2 voxels from the body.

    lung1 has no table in its field of view; without this the network calls air enclosed by a table "lung".
    """
    out = image.copy()
    nz, ny, nx = image.shape
    outside = ~ndimage.binary_dilation(target > 0, iterations=2)
    x = np.arange(nx)
    for _ in range(int(rng.integers(1, max_plates + 1))):
        y0, xc = rng.uniform(0, ny), rng.uniform(0, nx)
        curve = rng.uniform(-0.02, 0.02)
        thickness = int(rng.integers(1, 3))
        value = rng.uniform(0.45, 0.9)
        z0, z1 = sorted(rng.integers(0, nz + 1, size=2))
        if z1 - z0 < nz // 3:
            z0, z1 = 0, nz
        rows = np.round(y0 + curve * (x - xc) ** 2).astype(int)
        for dy in range(thickness):
            ys = rows + dy
            ok = (ys >= 0) & (ys < ny)
            plate = np.zeros(image.shape, dtype=bool)
            plate[z0:z1, ys[ok], x[ok]] = True
            out[plate & outside] = value
    return out


def train(image: np.ndarray, target: np.ndarray, iterations: int, batch: int, scale: float = 0.15,
          clutter_prob: float = 0.5, max_plates: int = 3, log=print):
    import torch
    from monai.losses import DiceCELoss

    seed_everything(SEED)
    net = build_network()
    transform = training_transforms(("image", "label"), PATCH, SEED, scale)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=iterations, eta_min=1e-4)
    rng = np.random.default_rng(SEED)
    label = torch.from_numpy(target[None].astype(np.float32))
    start = time.perf_counter()
    net.train()
    for it in range(1, iterations + 1):
        items = []
        for _ in range(batch):
            cluttered = add_clutter(image, target, rng, max_plates) if rng.random() < clutter_prob else image
            items.append(transform({"image": torch.from_numpy(cluttered[None]), "label": label}))
        x = torch.stack([torch.as_tensor(d["image"]).float() for d in items])
        y = torch.stack([torch.as_tensor(d["label"]).float() for d in items]).round()
        optimiser.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        optimiser.step()
        scheduler.step()
        if it % 25 == 0 or it == 1:
            log(f"iteration {it}/{iterations} loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    net.eval()
    return net


def export(net, folder: Path) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.ts"
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.zeros(1, 1, *PATCH), check_trace=False)
    traced.save(str(path))
    return path


def card(weights: Path, settings: dict, metrics: dict, label_volumes: dict) -> dict:
    return {
        "name": NAME, "version": VERSION, "task": "segmentation", "modality": "CT",
        "spacing_mm": list(SPACING_MM), "orientation": "LPS",
        "preprocessing": {"clip": list(CLIP), "normalize": "minmax"},
        "intensity_range": [-1024.0, 3071.0],  # HU of the training CTs (12-bit CT range); others are warned of
        "patch_size": list(PATCH), "in_channels": 1, "output": "logits",
        "labels": LABELS,
        "postprocess": {"largest_component": False},
        "license": "BSD-3-Clause",
        "license_note": ("Weights released under BSD-3-Clause to match their training data (pyradiomics test "
                         "cases, BSD-3-Clause, Copyright 2017 Harvard Medical School; notice in README.md)."),
        "provenance": {
            "training_data": ("lung1_image.nrrd (chest CT, 512x512x48, 0.570x0.570x5.0 mm) from the pyradiomics "
                              "test cases, BSD-3-Clause, Copyright 2017 Harvard Medical School"),
            "held_out_data": "lung2_image.nrrd (chest CT, 512x512x61, 0.627x0.627x5.0 mm), same source",
            "script": "packaging/models/train_demo_model.py",
            "labels_from": ("classical pipeline, no manual annotation: body = HU > -500, largest 3D component, holes "
                            "filled per axial slice; lungs = HU < -400 inside the body, components touching the "
                            "in-plane volume border removed, two largest components kept (one if joined: the "
                            "second must be >= 10 % of the largest), 5 mm closing; label 1 = body without lungs, "
                            "2 = lungs"),
            "label_volumes_ml": label_volumes,
            "training": settings,
            "metrics": metrics,
        },
        "weights": {"format": "torchscript", "file": weights.name,
                    "sha256": hashlib.sha256(weights.read_bytes()).hexdigest()},
        "disclaimer": "Demo model for showing the workflow; not for clinical use.",
    }


def evaluate(card_path: Path, volume: Volume, labels: np.ndarray) -> dict[str, float]:
    """Dice per label of medview's own run_model on ``volume`` against the classical labels."""
    from medview.inference.cards import load_card
    from medview.inference.pipeline import run_model

    result = run_model(load_card(card_path), volume, device="cpu")
    return {e["name"]: round(dice(result.array == e["value"], labels == e["value"]), 4) for e in LABELS}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=2)
    # one thread: on shared cores, a second OpenMP thread waiting on a busy core slows training ~10x
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scale", type=float, default=0.15, help="random scaling 1 +- SCALE")
    parser.add_argument("--clutter-prob", type=float, default=0.5, help="probability of synthetic table plates")
    parser.add_argument("--max-plates", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="model folder to write")
    parser.add_argument("--labels-only", action="store_true", help="compute and report the classical labels only")
    parser.add_argument("--save-labels", type=Path, help="write the classical labels (NRRD) to this folder")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cases = {}
    label_volumes = {}
    for case in ("lung1", "lung2"):
        volume = open_image(args.data / f"{case}_image.nrrd")
        labels = classical_labels(volume)
        cases[case] = (volume, labels)
        label_volumes[case] = volumes_ml(labels, volume.geometry.spacing)
        print(f"{case}: grid {volume.geometry.shape} classical label volumes (mL) {label_volumes[case]}")
        if args.save_labels:
            from medview.core.labels import Label, LabelMap
            from medview.io.writers import write_image

            args.save_labels.mkdir(parents=True, exist_ok=True)
            table = [Label(e["value"], e["name"], tuple(e["color"])) for e in LABELS]
            write_image(LabelMap(labels, volume.geometry, table), str(args.save_labels / f"{case}_classical.nrrd"))
    if args.labels_only:
        return 0

    image, target = on_model_grid(*cases["lung1"])
    print(f"lung1 on the model grid: {image.shape}, label voxels {np.bincount(target.ravel(), minlength=3)}")
    net = train(image, target, args.iterations, args.batch, args.scale, args.clutter_prob, args.max_plates)
    train_seconds = time.perf_counter() - start
    weights = export(net, args.out)
    settings = {"network": "monai.networks.nets.UNet(spatial_dims=3, in_channels=1, out_channels=3, "
                           "channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=1)",
                "iterations": args.iterations, "batch_size": args.batch, "patch_size": list(PATCH),
                "loss": "DiceCELoss (softmax, one-hot)", "optimizer": "Adam lr 3e-3, cosine to 1e-4",
                "augmentation": (f"left-right flip p=0.5; affine p=0.8 (rotation <= 10 deg per axis, scale "
                                 f"{1 - args.scale:.2f}-{1 + args.scale:.2f}, translation <= 4 voxels); random 48^3 "
                                 "crop; intensity scale +-10 % and shift +-0.05 p=0.5; synthetic table-like plates "
                                 f"(1-{args.max_plates}) outside the body p={args.clutter_prob} (add_clutter)"),
                "seed": SEED, "device": "cpu", "threads": args.threads,
                "software": f"torch {torch.__version__}, monai {__import__('monai').__version__}",
                "wall_time_s": round(train_seconds)}
    card_path = args.out / "model.json"
    card_path.write_text(json.dumps(card(weights, settings, {}, label_volumes), indent=2) + "\n")
    held_out = evaluate(card_path, *cases["lung2"])
    train_fit = evaluate(card_path, *cases["lung1"])
    metrics = {"dice_held_out_lung2": held_out, "dice_training_lung1": train_fit,
               "how": ("medview.inference.pipeline.run_model on the whole study, label map on the study's own "
                       "grid compared with the classical labels (Dice per label)")}
    card_path.write_text(json.dumps(card(weights, settings, metrics, label_volumes), indent=2) + "\n")
    size_mb = weights.stat().st_size / 2**20
    print(f"Dice lung2 (held out): {held_out}; lung1 (training): {train_fit}")
    print(f"weights {weights} {size_mb:.2f} MB; total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
