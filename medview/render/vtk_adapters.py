"""Core objects as VTK data, in one convention used by every render pipeline.

VTK image data here is axis-aligned: origin 0, the volume's spacing, no direction matrix. The volume's
true placement (origin and direction, LPS mm) travels as a 4x4 *index frame* matrix given to props
(``vtkProp3D.SetUserMatrix``) and to surface filters. Not every VTK mapper and filter honours
``vtkImageData``'s direction matrix (ray-cast CPU mappers and flying edges ignore it in places), so one
explicit matrix is the only way to be sure that volume, planes and surfaces share world coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (registers the OpenGL factories)
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from medview.core.geometry import Geometry

_KEEP_ALIVE_ATTR = "_medview_numpy_owner"


def vtk_image(array_zyx: np.ndarray, geometry: Geometry, name: str = "scalars") -> vtkImageData:
    """Wrap a ``(z, y, x)`` array as axis-aligned ``vtkImageData`` without copying when possible.

    Parameters
    ----------
    array_zyx
        Scalar array on ``geometry``'s grid (a sub-sampled grid is fine if ``geometry`` matches it).
    geometry
        Only ``spacing`` is written to the image; use :func:`index_frame_matrix` for placement.
    name
        Name of the point-data scalars.

    Notes
    -----
    VTK's x index runs fastest, which is numpy's C order for ``(z, y, x)``; a C-contiguous array is
    shared, anything else is copied once. The numpy array is kept alive by the returned object.
    """
    arr = np.asarray(array_zyx)
    if arr.ndim != 3:
        raise ValueError(f"vtk_image needs a 3D (z, y, x) array, got shape {arr.shape}")
    if tuple(arr.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {arr.shape} does not match geometry shape {geometry.shape}")
    if arr.dtype == np.bool_:
        arr = arr.view(np.uint8)
    if arr.dtype == np.float16 or arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("=") if arr.dtype != np.float16 else np.float32)
    flat = np.ascontiguousarray(arr).reshape(-1)
    image = vtkImageData()
    nz, ny, nx = arr.shape
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*geometry.spacing)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_support.numpy_to_vtk(flat, deep=False)
    scalars.SetName(name)
    image.GetPointData().SetScalars(scalars)
    setattr(image, _KEEP_ALIVE_ATTR, flat)
    return image


def index_frame_array(geometry: Geometry) -> np.ndarray:
    """4x4 numpy matrix from axis-aligned image coordinates (index * spacing, mm) to LPS world mm."""
    m = np.eye(4)
    m[:3, :3] = geometry.direction_matrix
    m[:3, 3] = geometry.origin
    return m


def index_frame_matrix(geometry: Geometry) -> vtkMatrix4x4:
    """:func:`index_frame_array` as a ``vtkMatrix4x4`` for ``SetUserMatrix`` and transform filters."""
    return to_vtk_matrix(index_frame_array(geometry))


def to_vtk_matrix(m: np.ndarray) -> vtkMatrix4x4:
    """Copy a 4x4 numpy array into a new ``vtkMatrix4x4``."""
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def from_vtk_matrix(m: vtkMatrix4x4) -> np.ndarray:
    """Copy a ``vtkMatrix4x4`` into a 4x4 numpy array."""
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def image_to_array(image: vtkImageData) -> np.ndarray:
    """Point scalars of a ``vtkImageData`` as a ``(z, y, x[, components])`` numpy array (a view)."""
    nx, ny, nz = image.GetDimensions()
    data = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    comps = image.GetNumberOfScalarComponents()
    shape: tuple[Any, ...] = (nz, ny, nx) if comps == 1 else (nz, ny, nx, comps)
    return data.reshape(shape)
