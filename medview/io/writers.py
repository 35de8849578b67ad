"""Writing volumes and label maps to NIfTI, NRRD and MetaImage with exact geometry (via SimpleITK)."""

from __future__ import annotations

import os

import numpy as np

from medview.core.errors import UnsupportedFormatError, WriteError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume

WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _to_sitk(array: np.ndarray, geometry: Geometry):
    import SimpleITK as sitk

    vector = array.ndim == 4
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def write_image(image: Volume | LabelMap, path: str | os.PathLike[str], compress: bool = True) -> str:
    """Write ``image`` to ``path``; the format follows the extension.  Returns the path written."""
    path = os.fspath(path)
    if not path.lower().endswith(WRITE_EXTENSIONS):
        raise UnsupportedFormatError(
            f"Cannot write {os.path.basename(path)}: use one of {', '.join(WRITE_EXTENSIONS)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise WriteError(f"The folder {parent} does not exist")
    import SimpleITK as sitk

    sitk_image = _to_sitk(image.array, image.geometry)
    try:
        sitk.WriteImage(sitk_image, path, useCompression=compress and not path.lower().endswith(".nii"))
    except RuntimeError as exc:
        raise WriteError(f"Could not write {path}: {str(exc).strip().splitlines()[-1]}") from None
    return path
