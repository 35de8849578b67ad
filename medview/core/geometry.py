"""Voxel grid geometry in DICOM patient coordinates (LPS, millimetres).

Arrays are indexed ``(z, y, x)`` (slice, row, column) everywhere in medview.  Geometry follows the
DICOM/ITK convention: ``spacing``, ``origin`` and the columns of ``direction`` are given in
``(x, y, z)`` order, so that

    world = origin + direction @ (spacing * (x, y, z))

where ``origin`` is the centre of voxel ``(0, 0, 0)``.  Conversion to RAS (NIfTI) happens only at
file boundaries: see :func:`lps_to_ras_affine`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from medview.core.errors import MedviewError

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_tuple(values: Sequence[float] | np.ndarray, n: int, name: str) -> tuple[float, ...]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size != n:
        raise MedviewError(f"{name} needs {n} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise MedviewError(f"{name} contains a non-finite value: {arr.tolist()}")
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Geometry:
    """Immutable description of a voxel grid in LPS world coordinates.

    Parameters
    ----------
    shape
        Array shape ``(z, y, x)`` in voxels.
    spacing
        Voxel size ``(x, y, z)`` in mm; all positive.
    origin
        World position (LPS, mm) of the centre of voxel ``(0, 0, 0)``.
    direction
        3x3 matrix whose columns are the world directions of the +x, +y and +z index axes.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise MedviewError(f"A volume needs three positive dimensions, got shape {self.shape}")
        spacing = _as_tuple(self.spacing, 3, "spacing")
        if min(spacing) <= 0:
            raise MedviewError(f"Voxel spacing must be positive, got {spacing} mm")
        direction = _as_tuple(self.direction, 9, "direction")
        d = np.array(direction).reshape(3, 3)
        if abs(abs(np.linalg.det(d)) - 1.0) > 1e-3:
            raise MedviewError(f"Direction matrix is not a rotation (det={np.linalg.det(d):.4f})")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _as_tuple(self.origin, 3, "origin"))
        object.__setattr__(self, "direction", direction)

    # -- derived matrices -------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 array; column ``i`` is the world direction of index axis ``i`` (x, y, z)."""
        return np.array(self.direction, dtype=float).reshape(3, 3)

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous ``(x, y, z, 1)`` indices to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction_matrix * np.array(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    @property
    def ras_affine(self) -> np.ndarray:
        """The affine as NIfTI stores it: ``(x, y, z)`` indices to RAS mm."""
        return lps_to_ras_affine(self.affine)

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Grid size in ``(x, y, z)`` order, as ITK and NIfTI report it."""
        z, y, x = self.shape
        return (x, y, z)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Physical size ``(x, y, z)`` in mm, from the first to the last voxel edge."""
        return tuple(n * s for n, s in zip(self.size_xyz, self.spacing, strict=True))  # type: ignore[return-value]

    # -- coordinate transforms ------------------------------------------------------------------
    @cached_property
    def _to_world(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(index->mm matrix transposed, its inverse transposed, origin), computed once per grid."""
        m = self.direction_matrix * np.array(self.spacing)[None, :]
        return m.T.copy(), np.linalg.inv(m).T.copy(), np.array(self.origin)

    def index_to_world(self, index_xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map ``(..., 3)`` continuous indices in ``(x, y, z)`` order to LPS mm."""
        m_t, _, origin = self._to_world
        return np.asarray(index_xyz, dtype=float) @ m_t + origin

    def world_to_index(self, point_lps: np.ndarray | Sequence[float]) -> np.ndarray:
        """Map ``(..., 3)`` LPS mm points to continuous ``(x, y, z)`` indices."""
        _, inv_t, origin = self._to_world
        return (np.asarray(point_lps, dtype=float) - origin) @ inv_t

    def contains_index(self, index_xyz: Sequence[float]) -> bool:
        """True when the rounded ``(x, y, z)`` index lies inside the grid."""
        i = np.rint(np.asarray(index_xyz, dtype=float)).astype(int)
        return bool(np.all(i >= 0) and np.all(i < np.array(self.size_xyz)))

    def subgrid(self, start_zyx: Sequence[int], shape_zyx: Sequence[int]) -> Geometry:
        """The grid of the box of ``shape_zyx`` voxels whose first voxel is ``start_zyx`` (numpy order; it may
        lie outside this grid, e.g. for a padded crop): same spacing and direction, voxels in place."""
        z, y, x = (int(v) for v in start_zyx)
        origin = self.index_to_world(np.array([x, y, z], dtype=float))
        return Geometry(tuple(int(n) for n in shape_zyx), self.spacing, tuple(float(c) for c in origin),
                        self.direction)

    def slice_normal(self) -> np.ndarray:
        """World direction of increasing slice index (z)."""
        return self.direction_matrix[:, 2].copy()

    def is_same_grid(self, other: Geometry, tol_mm: float = 1e-3) -> bool:
        """True when both grids place every voxel within ``tol_mm`` of each other."""
        if self.shape != other.shape:
            return False
        corners = np.array(
            [[0, 0, 0], [self.size_xyz[0] - 1, self.size_xyz[1] - 1, self.size_xyz[2] - 1]], dtype=float
        )
        return bool(np.allclose(self.index_to_world(corners), other.index_to_world(corners), atol=tol_mm))

    @classmethod
    def from_affine(cls, shape: Sequence[int], affine_lps: np.ndarray) -> Geometry:
        """Build from a 4x4 LPS affine (index ``(x, y, z)`` -> mm)."""
        a = np.asarray(affine_lps, dtype=float)
        m = a[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        if np.any(spacing <= 0):
            raise MedviewError("Affine has a zero-length axis")
        direction = m / spacing[None, :]
        # Re-orthonormalise tiny float noise (e.g. from NIfTI's float32 sform) via polar decomposition.
        u, _, vt = np.linalg.svd(direction)
        return cls(tuple(shape), tuple(spacing), tuple(a[:3, 3]), tuple((u @ vt).reshape(-1)))

    def acquisition_frame(self) -> np.ndarray:
        """Rotation taking the patient axes (L, P, S) to the grid axes nearest to each.

        Each column is the direction of the index axis closest to that patient axis, signed to point
        the same way.  The identity for grids aligned with the patient (any flips or axis order);
        for an oblique acquisition, slice views turned by it show the native, uninterpolated slices.
        Falls back to the identity if the grid is left-handed.
        """
        d = self.direction_matrix
        frame = np.zeros((3, 3))
        used: set[int] = set()
        for k in np.argsort(-np.max(np.abs(d), axis=1)):  # most clearly aligned patient axis first
            i = next(int(i) for i in np.argsort(-np.abs(d[k, :])) if int(i) not in used)
            used.add(i)
            frame[:, k] = d[:, i] * (1.0 if d[k, i] >= 0 else -1.0)
        if np.linalg.det(frame) < 0.5:
            return np.eye(3)
        return frame

    def orientation_code(self) -> str:
        """Three letters naming where +x, +y, +z point, e.g. ``'LPS'`` for standard axial DICOM."""
        letters = (("L", "R"), ("P", "A"), ("S", "I"))
        code = []
        for col in self.direction_matrix.T:
            axis = int(np.argmax(np.abs(col)))
            code.append(letters[axis][0] if col[axis] > 0 else letters[axis][1])
        return "".join(code)


# per LPS world axis the letters of its (negative, positive) side: x<0 is patient right, y<0 anterior, z<0 inferior
PATIENT_SIDES = (("R", "L"), ("A", "P"), ("I", "S"))
# a plane whose normal is within this of a patient axis (off-axis components, ~0.06 degrees) is named by that axis
ALIGNED_NORMAL_TOL = 1e-3


def slice_position_text(point_lps: Sequence[float] | np.ndarray, normal_lps: Sequence[float] | np.ndarray) -> str:
    """Where the plane through ``point_lps`` with normal ``normal_lps`` lies, as a reader names it.

    The distance is the plane's signed distance from the world origin along its normal, the normal
    turned to point to the positive LPS side (L, P or S) of the patient axis it is closest to.

    Returns
    -------
    str
        A plane across a patient axis: that side's letter and the distance in mm, as 3D Slicer writes it
        (``'R 22.1 mm'`` for x = -22.1, ``'S 45.0 mm'`` for z = 45.0; 0 takes the positive side's letter).
        An oblique plane: the letter pair of the normal's closest axis, from its negative to its positive side,
        and the signed distance along the normal (``'IS +45.0 mm'``, ``'RL -12.3 mm'``).
    """
    nx, ny, nz = (float(c) for c in np.ravel(normal_lps)[:3])  # plain floats: drawn once per slice shown
    length = (nx * nx + ny * ny + nz * nz) ** 0.5
    if not length > 0 or not np.isfinite(length):
        raise MedviewError(f"A slice normal needs a non-zero finite direction, got {[nx, ny, nz]}")
    n = [nx / length, ny / length, nz / length]
    axis = max(range(3), key=lambda i: abs(n[i]))
    if n[axis] < 0:
        n = [-c for c in n]
    px, py, pz = (float(c) for c in np.ravel(point_lps)[:3])
    distance = round(px * n[0] + py * n[1] + pz * n[2], 1) + 0.0  # + 0.0: no "-0.0"
    negative, positive = PATIENT_SIDES[axis]
    if 1.0 - n[axis] <= ALIGNED_NORMAL_TOL ** 2 / 2:  # the off-axis part is at most ALIGNED_NORMAL_TOL
        return f"{positive if distance >= 0 else negative} {abs(distance):.1f} mm"
    return f"{negative}{positive} {distance:+.1f} mm"


def lps_to_ras_affine(affine_lps: np.ndarray) -> np.ndarray:
    """Convert an index->LPS affine into index->RAS (flip the first two world axes)."""
    return _LPS_TO_RAS @ np.asarray(affine_lps, dtype=float)


def ras_to_lps_affine(affine_ras: np.ndarray) -> np.ndarray:
    """Convert an index->RAS affine (NIfTI) into index->LPS."""
    return _LPS_TO_RAS @ np.asarray(affine_ras, dtype=float)


def mask_box(mask: np.ndarray, margin: int | Sequence[int] = 0) -> tuple[tuple[int, int], ...] | None:
    """Per numpy axis ``(start, stop)`` of the bounding box of ``mask``'s true voxels, grown by ``margin``
    voxels (one value or one per axis; the box may then leave the grid); None for an empty mask."""
    margins = [int(margin)] * mask.ndim if np.isscalar(margin) else [int(m) for m in margin]  # type: ignore[arg-type]
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hits.size == 0:
            return None
        box.append((int(hits[0]) - margins[axis], int(hits[-1]) + 1 + margins[axis]))
    return tuple(box)
