"""Where the bundled sample studies live (resources/samples, shipped in the repository)."""

from __future__ import annotations

from pathlib import Path

from medview.core.errors import InputNotFoundError
from medview.core.resources import resources_dir


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
