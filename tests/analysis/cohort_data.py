"""Small cohorts for the batch tests and benchmark: sphere phantoms with their labels, made with numpy and
written with medview's writer, a deliberately broken case, and the real cases of ../shared/data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SHARED_CASES = ("lung1", "lung2", "brain1", "brain2", "breast1")


def sphere_case(folder: Path, case_id: str, size: int = 48, radius: float = 12.0, seed: int = 0,
                foreground: float = 200.0, noise: float = 10.0) -> tuple[Path, Path]:
    """``<case_id>_image.nii.gz`` (a bright noisy sphere, 1 mm voxels) and ``<case_id>_label.nii.gz`` (the
    sphere, label 1)."""
    from medview.core.geometry import Geometry
    from medview.core.labels import LabelMap
    from medview.core.volume import Volume
    from medview.io.writers import write_image

    z, y, x = np.mgrid[:size, :size, :size]
    c = (size - 1) / 2.0
    mask = ((z - c) ** 2 + (y - c) ** 2 + (x - c) ** 2) <= radius**2
    rng = np.random.default_rng(seed)
    array = (np.where(mask, foreground, 0.0) + rng.normal(0.0, noise, mask.shape)).astype(np.float32)
    geometry = Geometry((size, size, size), (1.0, 1.0, 1.0), (-c, -c, -c), tuple(np.eye(3).ravel()))
    image, label = folder / f"{case_id}_image.nii.gz", folder / f"{case_id}_label.nii.gz"
    write_image(Volume(array, geometry), image)
    write_image(LabelMap(mask.astype(np.uint8), geometry), label)
    return image, label


def broken_case(folder: Path, case_id: str = "broken") -> tuple[Path, Path]:
    """A truncated NRRD (gzip stream cut in half: its header promises more voxels than the file holds) with a
    valid label map."""
    from medview.io.readers import open_image
    from medview.io.writers import write_image

    image, label = sphere_case(folder, f"{case_id}_src", size=32, radius=8.0)
    cut = folder / f"{case_id}_image.nrrd"
    write_image(open_image(image), cut)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    image.unlink()
    good_label = folder / f"{case_id}_label.nii.gz"
    label.rename(good_label)
    return cut, good_label


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["case_id", "image", "label", "target"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in ("case_id", "image", "label", "target")})
    return path


def phantom_rows(folder: Path, n: int, size: int = 48, base_radius: float = 9.0) -> list[dict]:
    """``n`` sphere phantoms of growing radius; targets alternate 0/1."""
    rows = []
    for i in range(n):
        image, label = sphere_case(folder, f"phantom{i}", size=size, radius=base_radius + i, seed=i)
        rows.append({"case_id": f"phantom{i}", "image": image.name, "label": label.name, "target": i % 2})
    return rows
