"""NIfTI-1/NIfTI-2 (``.nii``, ``.nii.gz``): the header read here, the voxels read with numpy.

Why not SimpleITK, as for NRRD and MetaImage: ITK prefers the qform over an sform of another code
(a file with sform_code 2 and qform_code 1 came out 10-30 mm off), drops a 2D image's z offset, and
reports a scaled file as float voxels, which made the old length check refuse every file with
``scl_slope``/``scl_inter``.  Why not nibabel: it is the independent reference the tests compare with;
reading with it would compare nibabel with itself.  The header is 348 (540) bytes of fixed fields, so
it is parsed here with :mod:`struct`, following the NIfTI-1 standard and nibabel's reading of it:

* **Orientation**: the sform when ``sform_code > 0``, else the qform when ``qform_code > 0``, else the
  voxel sizes alone (nibabel's base affine: x flipped, grid centred), with a warning.  When both are set
  and place voxels more than :data:`SAME_PLACE_MM` (or 1 % of a voxel) apart, a warning says by how much
  and that the sform is used.  A sheared sform (columns not perpendicular beyond that tolerance) cannot
  be shown without resampling: the qform is used instead, with a warning giving the distance, when the
  file has one; otherwise the file is refused.  Never silently moved.
* **Values**: ``scl_slope``/``scl_inter`` are applied (slope 0 or not finite means no scaling, as the
  standard says).  An integral slope and intercept whose scaled range fits an integer type keep integer
  voxels (the stored type when it fits, else int16/int32); otherwise the voxels are float32.
* The world is RAS in the file and LPS in medview: converted here, once.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from medview.core.errors import CorruptFileError, MedviewError, ResourceLimitError, UnsupportedFormatError
from medview.core.geometry import Geometry, ras_to_lps_affine
from medview.core.tasks import TaskContext, report
from medview.io.limits import check_allocation, format_bytes, memory_budget_bytes

NIFTI_EXTENSIONS = (".nii", ".nii.gz")
SAME_PLACE_MM = 0.01  # two transforms closer than this (or 1 % of the finest voxel) place voxels alike

# NIfTI datatype code -> (numpy type, components)
_DATATYPES: dict[int, tuple[str, int]] = {
    2: ("u1", 1), 4: ("i2", 1), 8: ("i4", 1), 16: ("f4", 1), 64: ("f8", 1), 128: ("u1", 3),
    256: ("i1", 1), 512: ("u2", 1), 768: ("u4", 1), 1024: ("i8", 1), 1280: ("u8", 1), 2304: ("u1", 4),
}
_UNSUPPORTED = {32: "complex64", 1792: "complex128", 1536: "float128", 2048: "complex256", 1: "binary"}
_XFORM_NAMES = {1: "scanner", 2: "aligned", 3: "Talairach", 4: "MNI152", 5: "template"}


@dataclass(frozen=True)
class NiftiHeader:
    """The fields of a NIfTI-1 or NIfTI-2 header that medview uses."""

    version: int
    endian: str
    dim: tuple[int, ...]
    datatype: int
    pixdim: tuple[float, ...]
    vox_offset: int
    scl_slope: float
    scl_inter: float
    qform_code: int
    sform_code: int
    quatern: tuple[float, float, float]
    qoffset: tuple[float, float, float]
    srow: tuple[tuple[float, ...], ...]
    descrip: str

    @property
    def ndim(self) -> int:
        return self.dim[0]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        """Voxels along i, j, k (1 for missing axes of a 2D image)."""
        n = self.ndim
        return tuple(int(self.dim[a]) if a <= n else 1 for a in (1, 2, 3))  # type: ignore[return-value]

    @property
    def volumes(self) -> int:
        """Volumes along the 4th axis (1 for a 3D image)."""
        return int(self.dim[4]) if self.ndim >= 4 else 1

    @property
    def slope_inter(self) -> tuple[float, float] | None:
        """``(slope, intercept)``, or None when the file says no scaling (slope 0 or not finite)."""
        slope, inter = self.scl_slope, self.scl_inter
        if slope == 0 or not math.isfinite(slope):
            return None
        inter = inter if math.isfinite(inter) else 0.0
        return (slope, inter) if (slope, inter) != (1.0, 0.0) else None


def is_nifti_path(path: str) -> bool:
    return path.lower().endswith(NIFTI_EXTENSIONS)


def _open(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def read_header(path: str) -> NiftiHeader:
    """Parse the header of ``path``; raise :class:`CorruptFileError` (one line) when it is not a NIfTI."""
    name = os.path.basename(path)
    try:
        with _open(path) as fh:
            head = fh.read(540)
    except (OSError, EOFError, zlib.error) as exc:
        reason = "the gzip stream is damaged" if path.lower().endswith(".gz") else str(exc.strerror or exc)
        raise CorruptFileError(f"Cannot read the NIfTI header of {name}: {reason}") from None
    for endian in ("<", ">"):
        size = struct.unpack(endian + "i", head[:4])[0] if len(head) >= 4 else 0
        if size == 348 and len(head) >= 348:
            return _nifti1(head, endian)
        if size == 540 and len(head) >= 540:
            return _nifti2(head, endian)
    raise CorruptFileError(f"{name} is not a NIfTI file: its header is missing or damaged "
                           f"({len(head)} bytes, no NIfTI-1/2 header size at the start)")


def _nifti1(h: bytes, e: str) -> NiftiHeader:
    u = struct.unpack_from
    srow = tuple(u(e + "4f", h, 280 + 16 * r) for r in range(3))
    return NiftiHeader(
        version=1, endian=e, dim=u(e + "8h", h, 40), datatype=u(e + "h", h, 70)[0], pixdim=u(e + "8f", h, 76),
        vox_offset=int(u(e + "f", h, 108)[0]) if math.isfinite(u(e + "f", h, 108)[0]) else -1,
        scl_slope=u(e + "f", h, 112)[0], scl_inter=u(e + "f", h, 116)[0],
        qform_code=u(e + "h", h, 252)[0], sform_code=u(e + "h", h, 254)[0],
        quatern=u(e + "3f", h, 256), qoffset=u(e + "3f", h, 268), srow=srow, descrip=_text(h[148:228]))


def _nifti2(h: bytes, e: str) -> NiftiHeader:
    u = struct.unpack_from
    srow = tuple(u(e + "4d", h, 400 + 32 * r) for r in range(3))
    return NiftiHeader(
        version=2, endian=e, dim=u(e + "8q", h, 16), datatype=u(e + "h", h, 12)[0], pixdim=u(e + "8d", h, 104),
        vox_offset=u(e + "q", h, 168)[0], scl_slope=u(e + "d", h, 176)[0], scl_inter=u(e + "d", h, 184)[0],
        qform_code=u(e + "i", h, 344)[0], sform_code=u(e + "i", h, 348)[0],
        quatern=u(e + "3d", h, 352), qoffset=u(e + "3d", h, 376), srow=srow, descrip=_text(h[240:320]))


# -- orientation ------------------------------------------------------------------------------------
def qform_affine(h: NiftiHeader) -> np.ndarray | None:
    """The qform as a 4x4 RAS affine (NIfTI-1 standard, method 2), or None when its quaternion is invalid."""
    b, c, d = (float(v) for v in h.quatern)
    rest = 1.0 - (b * b + c * c + d * d)
    if not all(math.isfinite(v) for v in (b, c, d, *h.qoffset)) or rest < -1e-5:
        return None
    a = math.sqrt(max(rest, 0.0))
    rot = np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
    vox = np.array([abs(float(v)) for v in h.pixdim[1:4]])
    if not np.all(np.isfinite(vox)):
        return None
    vox[vox == 0] = 1.0
    if h.pixdim[0] < 0:  # qfac
        vox[2] = -vox[2]
    out = np.eye(4)
    out[:3, :3] = rot * vox[None, :]
    out[:3, 3] = h.qoffset
    return out


def sform_affine(h: NiftiHeader) -> np.ndarray:
    out = np.eye(4)
    out[:3, :] = np.array(h.srow, dtype=float)
    return out


def base_affine(h: NiftiHeader) -> np.ndarray:
    """nibabel's affine for a file with neither transform: voxel sizes, x flipped, grid centre at 0."""
    zooms = np.array([abs(float(v)) or 1.0 for v in h.pixdim[1:4]])
    zooms[h.ndim:] = 1.0
    zooms[0] = -zooms[0]
    out = np.eye(4)
    out[:3, :3] = np.diag(zooms)
    out[:3, 3] = -(np.array(h.size_xyz, dtype=float) - 1) / 2.0 * zooms
    return out


def _corners(size_xyz: tuple[int, int, int]) -> np.ndarray:
    n = np.array(size_xyz) - 1
    return np.array([[x, y, z, 1.0] for x in (0, n[0]) for y in (0, n[1]) for z in (0, n[2])])


def _distance_mm(a: np.ndarray, b: np.ndarray, size_xyz: tuple[int, int, int]) -> float:
    """The largest distance (mm) between where two affines put the grid's corner voxels."""
    c = _corners(size_xyz)
    return float(np.max(np.linalg.norm((c @ a.T - c @ b.T)[:, :3], axis=1)))


def _orthogonal(affine_ras: np.ndarray, size_xyz: tuple[int, int, int]) -> tuple[np.ndarray | None, float]:
    """The nearest affine with perpendicular axes (same voxel sizes) and how far (mm) it moves the corners;
    (None, inf) when an axis has zero length or is not finite."""
    m = affine_ras[:3, :3].copy()
    if not np.all(np.isfinite(affine_ras)):
        return None, math.inf
    spacing = np.linalg.norm(m, axis=0)
    for axis in range(3):  # a 2D image may leave its third column zero: make it the slice normal
        if spacing[axis] == 0 and size_xyz[axis] == 1:
            normal = np.cross(m[:, (axis + 1) % 3], m[:, (axis + 2) % 3])
            if np.linalg.norm(normal) > 0:
                m[:, axis] = normal / np.linalg.norm(normal)
                spacing[axis] = 1.0
    if np.any(spacing <= 0):
        return None, math.inf
    u, _, vt = np.linalg.svd(m / spacing[None, :])
    fixed = affine_ras.copy()
    fixed[:3, :3] = (u @ vt) * spacing[None, :]
    return fixed, _distance_mm(fixed, affine_ras, size_xyz)


def _tolerance(affine_ras: np.ndarray) -> float:
    spacing = np.linalg.norm(affine_ras[:3, :3], axis=0)
    spacing = spacing[spacing > 0]
    return max(SAME_PLACE_MM, 0.01 * float(spacing.min())) if spacing.size else SAME_PLACE_MM


def _code_name(code: int) -> str:
    return f"code {code}, {_XFORM_NAMES[code]}" if code in _XFORM_NAMES else f"code {code}"


def choose_affine(h: NiftiHeader, name: str) -> tuple[np.ndarray, list[str]]:
    """The RAS affine medview uses (nibabel's rule, see the module docstring) and the warnings to show."""
    size = h.size_xyz
    warnings: list[str] = []
    qform = qform_affine(h) if h.qform_code > 0 else None
    if h.qform_code > 0 and qform is None:
        warnings.append(f"{name}: its qform ({_code_name(h.qform_code)}) is invalid and was ignored")
    if h.sform_code > 0:
        sform = sform_affine(h)
        fixed, moved = _orthogonal(sform, size)
        if fixed is not None and moved <= _tolerance(sform):
            if qform is not None:
                apart = _distance_mm(sform, qform, size)
                if apart > _tolerance(sform):
                    warnings.append(
                        f"{name}: its sform ({_code_name(h.sform_code)}) and qform ({_code_name(h.qform_code)}) "
                        f"disagree, placing voxels up to {apart:.1f} mm apart; the sform is used, as nibabel, "
                        "FSL and SPM do")
            return fixed, warnings
        what = "has a zero-length or invalid axis" if fixed is None else (
            f"is sheared (its axes are not perpendicular: an orthogonal grid would put voxels up to "
            f"{moved:.2f} mm from where it says)")
        if qform is None:
            raise UnsupportedFormatError(
                f"{name} cannot be shown without resampling: its sform {what} and it has no qform to use "
                "instead. Resample it onto an orthogonal grid (e.g. with a registration tool) and open that")
        apart = _distance_mm(sform, qform, size)
        warnings.append(f"{name}: its sform {what}; medview shows only orthogonal grids, so the qform is used "
                        f"instead, placing voxels up to {apart:.1f} mm from where the sform (used by nibabel and "
                        "FSL) does")
        return qform, warnings
    if qform is not None:
        fixed, _ = _orthogonal(qform, size)
        return (fixed if fixed is not None else qform), warnings
    warnings.append(f"{name} states no orientation (sform_code and qform_code are 0): positions come from the "
                    "voxel size only (x flipped, grid centred on 0, as nibabel reads it)")
    return base_affine(h), warnings


def geometry_from_header(h: NiftiHeader, name: str) -> tuple[Geometry, list[str]]:
    """The LPS :class:`Geometry` of the first volume and the orientation warnings."""
    affine_ras, warnings = choose_affine(h, name)
    nx, ny, nz = h.size_xyz
    try:
        return Geometry.from_affine((nz, ny, nx), ras_to_lps_affine(affine_ras)), warnings
    except MedviewError as exc:
        raise CorruptFileError(f"{name} has invalid geometry: {exc}") from None


# -- voxels -----------------------------------------------------------------------------------------
def _check_layout(h: NiftiHeader, name: str) -> tuple[np.dtype, int]:
    if h.datatype in _UNSUPPORTED:
        raise UnsupportedFormatError(f"{name} holds {_UNSUPPORTED[h.datatype]} voxels; medview opens "
                                     "integer, float and RGB(A) images")
    if h.datatype not in _DATATYPES:
        raise CorruptFileError(f"{name} has an unknown NIfTI datatype code {h.datatype}")
    if not 2 <= h.ndim <= 7 or any(int(v) < 1 for v in h.dim[1:h.ndim + 1]):
        raise CorruptFileError(f"{name} has invalid dimensions {list(h.dim[1:max(h.ndim, 0) + 1])}")
    if any(int(v) > 1 for v in h.dim[5:h.ndim + 1]):
        raise UnsupportedFormatError(f"{name} has {h.ndim} dimensions; medview opens 2D, 3D and 4D images")
    code, components = _DATATYPES[h.datatype]
    return np.dtype(h.endian + code), components


def data_offset(h: NiftiHeader) -> int:
    """Where the voxels start: ``vox_offset``, at least just past the header (as nibabel fixes it)."""
    least = 352 if h.version == 1 else 544
    return max(h.vox_offset, least)


@dataclass(frozen=True)
class NiftiLayout:
    header: NiftiHeader
    stored: np.dtype
    components: int

    @property
    def voxels(self) -> int:
        nx, ny, nz = self.header.size_xyz
        return nx * ny * nz * self.components

    @property
    def volume_bytes(self) -> int:
        return self.voxels * self.stored.itemsize


def read_layout(path: str) -> tuple[NiftiLayout, Geometry, list[str]]:
    """Header, geometry and warnings of ``path`` without reading voxels; refuses truncated files."""
    name = os.path.basename(path)
    h = read_header(path)
    stored, components = _check_layout(h, name)
    layout = NiftiLayout(h, stored, components)
    geometry, warnings = geometry_from_header(h, name)
    if h.volumes > 1:
        warnings.append(f"4D image with {h.volumes} volumes: only the first is opened")
    out_size = 4 if h.slope_inter else stored.itemsize
    check_allocation(layout.voxels * (stored.itemsize + out_size), f"{name} ({'x'.join(map(str, h.size_xyz))})")
    expected = data_offset(h) + layout.volume_bytes * h.volumes
    if path.lower().endswith(".gz"):
        claimed = _gzip_claimed_size(path)
        if claimed is not None and claimed > memory_budget_bytes():
            raise ResourceLimitError(f"{path} decompresses to {format_bytes(claimed)}, over the memory budget")
        if claimed is not None and expected < (1 << 32) and claimed < expected:
            raise CorruptFileError(f"{path} is truncated or damaged: the compressed stream holds "
                                   f"{format_bytes(claimed)}, its header describes {format_bytes(expected)}")
    else:
        actual = os.path.getsize(path)
        if actual < expected:
            raise CorruptFileError(f"{path} is truncated: {format_bytes(actual)} on disk, its header describes "
                                   f"{format_bytes(expected)}")
    return layout, geometry, warnings


def _gzip_claimed_size(path: str) -> int | None:
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return None
            fh.seek(-4, os.SEEK_END)
            return struct.unpack("<I", fh.read(4))[0]
    except OSError:
        return None


def read_voxels(path: str, layout: NiftiLayout, task: TaskContext | None = None) -> np.ndarray:
    """The first volume as ``(z, y, x)`` (``(z, y, x, c)`` for RGB), scaled to real units."""
    h = layout.header
    raw = np.empty(layout.voxels, dtype=layout.stored)
    view = memoryview(raw).cast("B")
    chunk = 16 << 20
    try:
        with _open(path) as fh:
            fh.seek(data_offset(h))
            done = 0
            while done < len(view):
                n = fh.readinto(view[done:done + chunk])
                if not n:
                    raise EOFError
                done += n
                report(task, 0.9 * done / len(view), f"Reading {os.path.basename(path)}")
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(f"{path} is truncated or damaged: the voxel data end before the "
                               f"{format_bytes(layout.volume_bytes)} its header describes"
                               + ("" if isinstance(exc, EOFError) else " (the compressed stream is damaged)")) from None
    nx, ny, nz = h.size_xyz
    shape = (nz, ny, nx) if layout.components == 1 else (nz, ny, nx, layout.components)
    array = raw.reshape(shape)
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    if layout.components == 1 and h.slope_inter is not None:
        array = apply_scaling(array, *h.slope_inter)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    return array


def apply_scaling(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """``raw * slope + inter``: integer when slope and intercept are integral and the result fits the stored
    type (else int16/int32), float32 otherwise."""
    if np.issubdtype(raw.dtype, np.integer) and float(slope).is_integer() and float(inter).is_integer() \
            and raw.size:
        lo, hi = sorted((int(raw.min()) * int(slope) + int(inter), int(raw.max()) * int(slope) + int(inter)))
        for candidate in (raw.dtype, np.dtype(np.int16), np.dtype(np.int32)):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                out = raw.astype(candidate)
                out *= candidate.type(slope)
                out += candidate.type(inter)
                return out
    work = np.float64 if raw.dtype.itemsize >= 4 else np.float32
    out = raw.astype(work)
    out *= work(slope)
    out += work(inter)
    return out.astype(np.float32, copy=False)


def pixel_type_text(layout: NiftiLayout) -> str:
    """What the info listing shows, e.g. ``'int16 (scaled: x 2.5 + -1024)'``."""
    text = "RGB" if layout.components == 3 else "RGBA" if layout.components == 4 else layout.stored.name
    scaling = layout.header.slope_inter
    return f"{text} (scaled: x {scaling[0]:g} + {scaling[1]:g})" if scaling else text
