"""Writing volumes and label maps to NIfTI, NRRD and MetaImage with exact geometry (via SimpleITK)."""

from __future__ import annotations

import os

import numpy as np

from medview.core.errors import UnsupportedFormatError, WriteError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume
from medview.io.atomic import atomic_path

WRITE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _to_sitk(array: np.ndarray, geometry: Geometry):
    import SimpleITK as sitk

    vector = array.ndim == 4
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def check_output_path(path: str) -> None:
    """Raise a clear error if ``path`` cannot be written: unknown extension, missing or read-only folder."""
    if not path.lower().endswith(WRITE_EXTENSIONS):
        raise UnsupportedFormatError(
            f"Cannot write {os.path.basename(path)}: the output must end in one of {', '.join(WRITE_EXTENSIONS)}")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise WriteError(f"The output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WriteError(f"The output folder {parent} is not writable")


def write_image(image: Volume | LabelMap, path: str | os.PathLike[str], compress: bool = True) -> str:
    """Write ``image`` to ``path``; the format follows the extension.  Returns the path written.

    Atomic (:func:`medview.io.atomic.atomic_path`): a write that fails or is killed leaves the previous
    file whole, never an empty or truncated one.
    """
    path = os.fspath(path)
    check_output_path(path)
    import SimpleITK as sitk

    sitk_image = _to_sitk(image.array, image.geometry)
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(sitk_image, str(tmp), useCompression=compress and not path.lower().endswith(".nii"))
    except RuntimeError as exc:
        raise WriteError(f"Could not write {path}: {str(exc).strip().splitlines()[-1]}") from None
    return path


PICTURE_EXTENSIONS = (".png",)


def check_picture_path(path: str) -> None:
    """Raise a clear error unless ``path`` is a ``.png`` in an existing, writable folder."""
    if not path.lower().endswith(PICTURE_EXTENSIONS):
        raise UnsupportedFormatError(f"Cannot write {os.path.basename(path)}: pictures are written as .png")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise WriteError(f"The output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WriteError(f"The output folder {parent} is not writable")


def write_picture(pixels: np.ndarray, path: str | os.PathLike[str]) -> str:
    """Write 8-bit grey ``(h, w)`` or colour ``(h, w, 3|4)`` pixels (top row first) as a PNG.

    Written to a temporary name in the same folder and moved into place, so a failed write never
    leaves a truncated picture behind.
    """
    path = os.fspath(path)
    check_picture_path(path)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"write_picture needs uint8 (h, w) or (h, w, 3|4) pixels, got {pixels.dtype} {pixels.shape}")
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(pixels), isVector=pixels.ndim == 3)
    try:
        with atomic_path(path) as tmp:
            sitk.WriteImage(image, str(tmp))
    except RuntimeError as exc:
        raise WriteError(f"Could not write {path}: {str(exc).strip().splitlines()[-1]}") from None
    return path
