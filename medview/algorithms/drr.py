"""Virtual radiographs (digitally reconstructed radiographs, DRR) of CT volumes.

A DRR here is a parallel projection: every detector pixel is the line integral of the linear attenuation
coefficient along one ray through the patient, rays following a patient axis.

Physics
-------
CT numbers become attenuation with ``mu = mu_water * (1 + HU / 1000)`` (so air, -1000 HU, is 0; water
is ``mu_water``; bone, ~+1000 HU, about twice water), clipped at 0.  The default ``mu_water`` is
0.0195 /mm, water at about 70 keV (NIST XCOM: 0.195 cm^2/g at 70 keV, density 1 g/cm^3).  The integral
is the sum of ``mu`` along the ray times the step length in mm, so it is dimensionless (optical depth).

Output values
-------------
``output="line_integral"`` (default) returns that integral: linear in tissue, measurable (divide by
``mu_water`` for the water-equivalent path length in mm), and bright where a film is bright (bone).
``output="intensity"`` returns ``1 - exp(-integral)``, the fraction of the beam absorbed, in [0, 1):
what a film's blackening inverts to, with the soft compression of dense regions a real radiograph shows.

Orientation (the radiological display conventions of :mod:`medview.algorithms.reslice`)
---------------------------------------------------------------------------------------
* ``"ap"``: rays along patient A->P (LPS +y).  Rows run superior -> inferior; columns run from the
  patient's right to the patient's left, so the patient's right is on the viewer's left, as an AP or PA
  chest film is hung (and as medview's coronal view shows it).
* ``"lateral"``: rays along patient R->L (LPS +x).  Rows run superior -> inferior; columns run
  anterior -> posterior, so the patient faces the viewer's left, as a left-lateral film is hung (and as
  medview's sagittal view shows it).

The result is a single-slice :class:`~medview.core.volume.Volume` whose geometry places each detector
pixel in world LPS mm on the mid-plane of the projected volume, so the 2D viewer shows it with its
physical aspect ratio and measures it in mm.  Its slice spacing is the depth that was projected.

Oblique volumes (direction not a signed permutation of the patient axes) are first resampled, linearly,
onto a patient-aligned grid, so the rays really follow the patient's axes; volumes that are merely
flipped or have their axes permuted are only re-indexed (no interpolation).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.modality import modality_mismatch
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, VolumeMetadata

__all__ = ["DRR_MODALITY", "DRR_OUTPUTS", "DRR_VIEWS", "MU_WATER_PER_MM", "drr", "lps_aligned_grid",
           "modality_problem"]

DRR_VIEWS = ("ap", "lateral")
#: Hounsfield units are attenuation: of every other modality (MR, PET, US, ...) a ray sum is no radiograph
DRR_MODALITY = "CT"
DRR_OUTPUTS = ("line_integral", "intensity")
#: Linear attenuation of water at about 70 keV, per mm.
MU_WATER_PER_MM = 0.0195
#: HU given to points outside an oblique volume when it is resampled: air, which attenuates nothing.
AIR_HU = -1000.0
_AXIS_TOL = 1e-6
_CHUNK_VOXELS = 4_000_000  # ~16 MB of float32 per chunk: a cancel check every few tens of ms

# Detector axes in LPS per view: column direction, row direction, ray direction (right-handed frame).
_DETECTOR_FRAMES = {
    "ap": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([0.0, 1.0, 0.0])),
    "lateral": (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), np.array([-1.0, 0.0, 0.0])),
}


def _signed_permutation(direction: np.ndarray) -> list[tuple[int, float]] | None:
    """For each world axis (x, y, z): ``(index axis, sign)`` along it, or None for an oblique grid."""
    rounded = np.rint(direction)
    if not np.allclose(direction, rounded, atol=_AXIS_TOL):
        return None
    if not np.allclose(np.abs(rounded).sum(axis=0), 1) or not np.allclose(np.abs(rounded).sum(axis=1), 1):
        return None
    return [(int(np.flatnonzero(rounded[w])[0]), float(rounded[w][np.flatnonzero(rounded[w])[0]]))
            for w in range(3)]


def lps_aligned_grid(geometry: Geometry) -> Geometry:
    """The patient-aligned grid (identity direction) a DRR projects on.

    For an axis-aligned volume (any flips and axis order) it holds exactly the same voxel centres.  For
    an oblique one it covers the volume's bounding box, with each patient axis sampled at the spacing of
    the index axis closest to it.
    """
    d = geometry.direction_matrix
    perm = _signed_permutation(d)
    size = np.array(geometry.size_xyz)
    spacing = np.array(geometry.spacing)
    if perm is not None:
        axes = [i for i, _ in perm]
        corners = geometry.index_to_world(np.array([[0, 0, 0], size - 1], dtype=float))
        origin = corners.min(axis=0)
        new_size = size[axes]
        new_spacing = spacing[axes]
    else:
        # Greedy match of patient axes to index axes, most clearly aligned first (as acquisition_frame).
        axes = [-1, -1, -1]
        for w in np.argsort(-np.max(np.abs(d), axis=1)):
            axes[int(w)] = next(int(i) for i in np.argsort(-np.abs(d[w])) if int(i) not in axes)
        new_spacing = spacing[axes]
        edges = np.array([[i, j, k] for i in (-0.5, size[0] - 0.5) for j in (-0.5, size[1] - 0.5)
                          for k in (-0.5, size[2] - 0.5)])
        world = geometry.index_to_world(edges)
        lo, hi = world.min(axis=0), world.max(axis=0)
        new_size = np.maximum(np.ceil((hi - lo) / new_spacing - 1e-6).astype(int), 1)
        # Centre the new grid on the old box; voxel centres half a step in from the edges.
        origin = (lo + hi) / 2.0 - (new_size - 1) * new_spacing / 2.0
    return Geometry((int(new_size[2]), int(new_size[1]), int(new_size[0])), tuple(new_spacing), tuple(origin))


def _aligned_slabs(volume: Volume, grid: Geometry) -> Callable[[int, int], np.ndarray]:
    """Slabs ``[z0:z1]`` of the volume re-indexed onto ``grid`` (a view: transposes and flips only)."""
    perm = _signed_permutation(volume.geometry.direction_matrix)
    if perm is None:
        raise AssertionError("_aligned_slabs needs an axis-aligned volume")
    # numpy axis of index axis i is 2 - i; grid numpy axes are (z, y, x) = world axes (2, 1, 0).
    array = np.transpose(volume.array, [2 - perm[w][0] for w in (2, 1, 0)])
    flips = tuple(slice(None, None, -1) if perm[w][1] < 0 else slice(None) for w in (2, 1, 0))
    array = array[flips]
    if tuple(array.shape) != grid.shape:  # a programming error, not an input error
        raise AssertionError(f"re-indexed shape {array.shape} != grid {grid.shape}")
    return lambda z0, z1: array[z0:z1]


def _resampled_slabs(volume: Volume, grid: Geometry) -> Callable[[int, int], np.ndarray]:
    """Slabs ``[z0:z1]`` of ``grid`` sampled from an oblique volume (linear, air outside)."""
    import SimpleITK as sitk  # imported here: only oblique volumes need it

    source = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    g = volume.geometry
    source.SetSpacing(g.spacing)
    source.SetOrigin(g.origin)
    source.SetDirection(g.direction)
    _, ny, nx = grid.shape

    def slab(z0: int, z1: int) -> np.ndarray:
        resampler = sitk.ResampleImageFilter()
        resampler.SetSize((nx, ny, z1 - z0))
        resampler.SetOutputSpacing(grid.spacing)
        resampler.SetOutputOrigin(tuple(grid.index_to_world((0.0, 0.0, float(z0)))))
        resampler.SetOutputDirection(grid.direction)
        resampler.SetInterpolator(sitk.sitkLinear)
        resampler.SetDefaultPixelValue(AIR_HU)
        resampler.SetOutputPixelType(sitk.sitkFloat32)
        return sitk.GetArrayFromImage(resampler.Execute(source))  # a copy: the image is freed on return

    return slab


def modality_problem(volume: Volume) -> str | None:
    """None for a CT; else why a radiograph of ``volume`` would mean nothing (MR, or a file that does not say
    its modality, such as NRRD or NIfTI).  Callers ask the user before they project such an image anyway:
    :func:`drr` itself projects what it is given."""
    return modality_mismatch(DRR_MODALITY, volume.modality, "A virtual radiograph")


def drr(volume: Volume, view: str = "ap", *, mu_water_per_mm: float = MU_WATER_PER_MM,
        output: str = "line_integral", task: TaskContext | None = None) -> Volume:
    """Virtual radiograph of a CT volume by parallel ray sums of linear attenuation.

    Parameters
    ----------
    volume
        A 3D CT in Hounsfield units (any orientation; oblique volumes are resampled first).
    view
        ``"ap"`` (rays anterior -> posterior) or ``"lateral"`` (rays right -> left).
    mu_water_per_mm
        Linear attenuation coefficient of water in 1/mm (0.0195 at ~70 keV).
    output
        ``"line_integral"``: the dimensionless integral of ``mu`` along each ray (divide by
        ``mu_water_per_mm`` for the water-equivalent thickness in mm).  ``"intensity"``:
        ``1 - exp(-integral)``, the absorbed fraction of the beam.  Both show bone bright.
    task
        Progress and cancellation; checked between slabs of the volume.

    Returns
    -------
    Volume
        Shape ``(1, rows, columns)``, float32; see the module docstring for the orientation and the
        geometry (detector pixels in world LPS mm).

    Raises
    ------
    MedviewError
        For a 2D or colour image, an unknown view or output, or a non-positive ``mu_water_per_mm``.
    """
    key = str(view).strip().lower()
    if key not in DRR_VIEWS:
        raise MedviewError(f"Unknown radiograph view '{view}': use one of {', '.join(DRR_VIEWS)}")
    if output not in DRR_OUTPUTS:
        raise MedviewError(f"Unknown radiograph output '{output}': use one of {', '.join(DRR_OUTPUTS)}")
    if not (np.isfinite(mu_water_per_mm) and mu_water_per_mm > 0):
        raise MedviewError(f"The attenuation of water must be a positive value per mm, got {mu_water_per_mm}")
    if volume.is_color:
        raise MedviewError("A virtual radiograph needs a greyscale CT volume, not a colour image")
    if volume.is_2d:
        raise MedviewError("A virtual radiograph needs a 3D CT volume; this image is 2D (a single slice), "
                           "so there is nothing to project")

    grid = lps_aligned_grid(volume.geometry)
    oblique = _signed_permutation(volume.geometry.direction_matrix) is None
    slabs = _resampled_slabs(volume, grid) if oblique else _aligned_slabs(volume, grid)
    nz, ny, nx = grid.shape
    sx, sy, _ = grid.spacing
    ray_axis, step = (1, sy) if key == "ap" else (2, sx)
    integral = np.empty((nz, nx if key == "ap" else ny), dtype=np.float64)
    rows_per_chunk = max(1, _CHUNK_VOXELS // (ny * nx))
    what = "Resampling and projecting" if oblique else "Projecting"
    report(task, 0.0, f"{what} {key.upper()} radiograph", force=True)
    for z0 in range(0, nz, rows_per_chunk):
        z1 = min(nz, z0 + rows_per_chunk)
        hu = np.asarray(slabs(z0, z1), dtype=np.float32)
        # (HU + 1000) first: air (-1000 HU) becomes exactly 0, whatever the rounding of mu_water / 1000.
        mu = np.maximum((hu + np.float32(1000.0)) * np.float32(mu_water_per_mm / 1000.0), 0.0)
        integral[z0:z1] = mu.sum(axis=ray_axis, dtype=np.float64) * step
        report(task, z1 / nz, f"{what} {key.upper()} radiograph")
    check_cancel(task)

    image = integral[::-1]  # rows from superior to inferior
    if output == "intensity":
        image = -np.expm1(-image)
    u, v, n = _DETECTOR_FRAMES[key]
    # Pixel (0, 0): the grid's first column along u, its top slice, on the mid-plane along the ray.
    first, last = grid.index_to_world((0.0, 0.0, 0.0)), grid.index_to_world((nx - 1.0, ny - 1.0, nz - 1.0))
    middle = (first + last) / 2.0
    origin = np.where(np.abs(n) > 0, middle, first)
    origin[2] = last[2]
    depth = ny * sy if key == "ap" else nx * sx
    detector = Geometry((1, *image.shape), (grid.spacing[0 if key == "ap" else 1], grid.spacing[2], depth),
                        tuple(origin), tuple(np.column_stack([u, v, n]).ravel()))
    meta = volume.metadata
    metadata = VolumeMetadata(
        modality="OT", study_uid=meta.study_uid, patient_name=meta.patient_name, patient_id=meta.patient_id,
        study_date=meta.study_date, series_description=f"DRR {key.upper()} of {meta.series_description or 'CT'}",
        units="mu*mm" if output == "line_integral" else "absorbed fraction",
        warnings=[*meta.warnings, *(["Resampled from an oblique grid (linear)"] if oblique else [])],
        source=meta.source,
        extra={"drr": {"view": key, "output": output, "mu_water_per_mm": mu_water_per_mm,
                       "source_series_uid": meta.series_uid}},
    )
    report(task, 1.0, "Radiograph done", force=True)
    return Volume(image.astype(np.float32)[None], detector, metadata)
