"""Where the bundled sample studies live (resources/samples, shipped in the repository)."""

from __future__ import annotations

import os
from pathlib import Path

from medview.core.errors import InputNotFoundError


def resources_dir() -> Path:
    """The ``resources`` folder: ``MEDVIEW_RESOURCES`` or the one next to the package."""
    configured = os.environ.get("MEDVIEW_RESOURCES")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "resources"


def sample_path(name: str = "chest_ct") -> Path:
    """Path of a bundled sample: ``chest_ct`` (DICOM folder) or ``brain_mr`` (NIfTI T1)."""
    candidates = {
        "chest_ct": resources_dir() / "samples" / "chest_ct" / "dicom",
        "chest_ct_label": resources_dir() / "samples" / "chest_ct" / "tumour_label.nrrd",
        "brain_mr": resources_dir() / "samples" / "brain_mr" / "colin27_t1.nii.gz",
        "brain_mr_atlas": resources_dir() / "samples" / "brain_mr" / "aal_atlas.nii.gz",
    }
    if name not in candidates:
        raise InputNotFoundError(f"No sample called {name}; samples: {', '.join(candidates)}")
    path = candidates[name]
    if not path.exists():
        raise InputNotFoundError(f"The bundled sample {name} is missing at {path}")
    return path
