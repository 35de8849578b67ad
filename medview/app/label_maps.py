"""Opening label maps onto a study, with their label table (names and colours) when one is shipped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from medview.core.errors import MedviewError
from medview.core.labels import Label, LabelMap, default_color
from medview.core.volume import Volume
from medview.io.readers import open_image


def _table_for(path: Path) -> dict[int, dict]:
    """A JSON label table next to the file: ``label_table.json`` or ``<stem>_labels.json``."""
    stem = path.name.split(".")[0]
    for candidate in (path.parent / "label_table.json", path.parent / f"{stem}_labels.json",
                      path.parent / f"{stem.replace('_atlas', '')}_labels.json"):
        if candidate.exists():
            with open(candidate, encoding="utf-8") as fh:
                return {int(k): v for k, v in json.load(fh).items() if str(k).isdigit()}
    return {}


def open_label_map(path: str | os.PathLike[str], reference: Volume | None = None, task=None) -> LabelMap:
    """Read a label image (NIfTI, NRRD, MHA, DICOM) as a LabelMap on ``reference``'s grid."""
    path = Path(path)
    image = open_image(path, task=task)
    integral = not image.is_color and (np.issubdtype(image.array.dtype, np.integer)
                                       or bool(np.all(np.mod(image.array, 1) == 0)))
    if not integral:
        raise MedviewError(f"{path.name} is not a label map: it holds non-integer values")
    if reference is not None and not image.geometry.is_same_grid(reference.geometry, tol_mm=1e-2):
        raise MedviewError(f"{path.name} is not on the grid of the open image "
                           f"({image.geometry.size_xyz} vs {reference.geometry.size_xyz} voxels)")
    table = _table_for(path)
    array = image.array.astype(np.uint16 if image.array.max(initial=0) > 255 else np.uint8)
    labels = LabelMap(array, reference.geometry if reference is not None else image.geometry, source=str(path))
    if table:
        labels.labels = [
            Label(v, str(table.get(v, {}).get("name", f"Label {v}")),
                  tuple(table.get(v, {}).get("color", default_color(v))))  # type: ignore[arg-type]
            for v in labels.present_values()
        ]
    return labels
