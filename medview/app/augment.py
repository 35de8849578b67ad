"""``medview augment``: write randomly augmented copies of an image and its label map, with a record.

Reads the image (any format :func:`medview.io.readers.open_image` takes) and, optionally, a label map onto
its grid (:func:`medview.app.label_maps.open_label_map`; one on another grid is resampled onto the image
first, as everywhere in medview), runs :func:`medview.analysis.augment.iter_augment`, and writes into
``OUT_DIR``:

* ``<stem>_aug000.nii.gz`` ... the augmented images, and ``<stem>_aug000_label.nii.gz`` ... their label
  maps on the identical grid;
* ``label_table.json``: the label names and colours, which :func:`open_label_map` reads back for any label
  file in the folder;
* ``augment.json``: seed, spec, the parameters each copy received, the source paths and medview's version,
  so a training set says how it was made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medview import __version__
from medview.analysis.augment import AugmentSpec, iter_augment
from medview.core.errors import InputNotFoundError, MedviewError, WriteError
from medview.core.tasks import TaskContext
from medview.io.atomic import atomic_write_text
from medview.io.readers import ITK_EXTENSIONS, open_image
from medview.io.writers import write_image


def output_stem(image_path: str | os.PathLike[str]) -> str:
    """File name without its image extension (``case.nii.gz`` -> ``case``); a folder's name for DICOM."""
    name = Path(image_path).name
    for ext in (*ITK_EXTENSIONS, ".dcm", ".zip"):
        if name.lower().endswith(ext):
            return name[: -len(ext)] or "image"
    return name or "image"


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise WriteError(f"The output folder {out_dir} is a file")
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise WriteError(f"Cannot create {out_dir}: the folder {out_dir.parent} does not exist")
        try:
            out_dir.mkdir()
        except OSError as exc:
            raise WriteError(f"Cannot create the output folder {out_dir}: {exc.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise WriteError(f"The output folder {out_dir} is not writable")


def augment_files(image_path: str | os.PathLike[str], label_path: str | os.PathLike[str] | None,
                  out_dir: str | os.PathLike[str], n: int = 10, seed: int = 0, series: str | None = None,
                  spec: AugmentSpec | None = None, task: TaskContext | None = None) -> dict[str, Any]:
    """Write ``n`` augmented copies of the image (and label map) at the given paths into ``out_dir``.

    Returns the record also written to ``out_dir/augment.json``: ``out_dir``, ``seed``, ``n``, ``spec``,
    ``image``/``labels`` (source paths), ``warnings`` and ``samples`` (per copy: files written and the
    parameters applied).
    """
    spec = spec or AugmentSpec()
    if int(n) < 1:
        raise MedviewError(f"The number of augmented copies must be at least 1, got {n}")
    for path in (image_path, label_path):
        if path is not None and not Path(path).exists():
            raise InputNotFoundError(f"{path} does not exist")
    out = Path(out_dir)
    _check_out_dir(out)
    volume = open_image(image_path, series=series, task=task)
    labels = None
    warnings: list[str] = []
    if label_path is not None:
        from medview.app.label_maps import label_map_warnings, open_label_map

        labels = open_label_map(label_path, reference=volume, task=task)
        warnings = list(label_map_warnings(labels))
        table = {str(e.value): {"name": e.name, "color": list(e.color)} for e in labels.labels}
        atomic_write_text(out / "label_table.json", json.dumps(table, indent=2))
    stem = output_stem(image_path)
    record: dict[str, Any] = {
        "medview_version": __version__, "image": os.path.abspath(image_path),
        "labels": os.path.abspath(label_path) if label_path is not None else None, "series": series,
        "seed": int(seed), "n": int(n), "spec": spec.to_dict(), "warnings": warnings, "samples": [],
    }
    for i, (image, label_map, params) in enumerate(iter_augment(volume, labels, n=n, seed=seed, spec=spec,
                                                                task=task)):
        image_file = out / f"{stem}_aug{i:03d}.nii.gz"
        write_image(image, image_file)
        sample = {"image": image_file.name, "labels": None, "params": params}
        if label_map is not None:
            label_file = out / f"{stem}_aug{i:03d}_label.nii.gz"
            write_image(label_map, label_file)
            sample["labels"] = label_file.name
        record["samples"].append(sample)
    atomic_write_text(out / "augment.json", json.dumps(record, indent=2))
    record["out_dir"] = str(out)
    return record
