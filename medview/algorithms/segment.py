"""Segmentation methods: intensity thresholds, Otsu, region growing, marker watershed and fast marching.

Each method is a plain function ``fn(volume, *, task=None, **params) -> LabelMap`` on the volume's grid,
with a label table (``"Threshold"``, ``"Otsu class 2 (-412 .. 96 HU)"``, ...).  Parameters are physical:

* intensities are in the volume's units (HU for CT), bounds inclusive;
* seeds are points in LPS mm (what the viewer reports under the cursor), converted with
  :meth:`Geometry.world_to_index` to the voxel that contains them; a seed outside the volume is refused
  with the volume's extent in the message;
* distances, radii and smoothing are in mm.

An empty result raises :class:`MedviewError` ("... found no voxels ...; nothing was changed") instead of
returning an empty map.  Long steps report progress and honour cancellation: between slabs for the numpy
steps, and through SimpleITK's progress events (``Abort()``) for ITK filters.

Libraries: SimpleITK for region growing, watershed and fast marching (ITK's filters, in physical units,
run through :mod:`medview.algorithms.sitk_bridge`);
scikit-image for the Otsu criteria (run on a histogram we accumulate in slabs, so a full CT needs no
float copy).  Importing this module registers its operations, and those of :mod:`medview.algorithms.cluster`,
in the ``segment`` catalogue; label-map clean-up lives in :mod:`medview.algorithms.morphology`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from medview.algorithms import cluster as _cluster  # noqa: F401  (registers the clustering methods)
from medview.algorithms.morphology import fill_holes_mask, open_mask
from medview.algorithms.operations import Operation, Param, register
from medview.algorithms.sitk_bridge import execute, to_sitk
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap, default_color
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume

__all__ = ["FillHoles", "confidence_connected", "connected_threshold", "fast_marching", "multi_otsu",
           "multi_otsu_thresholds", "otsu", "otsu_threshold", "seed_voxels", "threshold", "volume_extent_mm",
           "watershed"]

FillHoles = Literal["no", "3d", "slices"]
_SLAB_VOXELS = 4_000_000  # voxels per numpy step between progress reports / cancellation checks

Point = Sequence[float]


# -- shared helpers ------------------------------------------------------------------------------------------
def _grey(volume: Volume, method: str) -> np.ndarray:
    if not isinstance(volume, Volume):
        raise MedviewError(f"{method} needs an image volume, got {type(volume).__name__}")
    if volume.is_color:
        raise MedviewError(f"{method} needs a greyscale volume; this one has colour channels")
    return volume.array


def _units(volume: Volume) -> str:
    units = volume.metadata.units or ("HU" if volume.modality == "CT" else "")
    return f" {units}" if units else ""


def _slabs(shape: Sequence[int]) -> list[slice]:
    step = max(1, _SLAB_VOXELS // max(1, int(shape[1]) * int(shape[2])))
    return [slice(a, min(int(shape[0]), a + step)) for a in range(0, int(shape[0]), step)]


def _value_range(array: np.ndarray, task: TaskContext | None) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for zs in _slabs(array.shape):
        check_cancel(task)
        part = array[zs]
        lo, hi = min(lo, float(np.nanmin(part))), max(hi, float(np.nanmax(part)))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise MedviewError("The volume holds no finite values")
    return lo, hi


def _label_map(array: np.ndarray, volume: Volume, names: Sequence[tuple[int, str]], source: str) -> LabelMap:
    labels = [Label(value, name, default_color(value)) for value, name in names]
    return LabelMap(array, volume.geometry, labels, source=source)


def _nothing_found(what: str, volume: Volume, task: TaskContext | None, hint: str = "") -> MedviewError:
    lo, hi = _value_range(volume.array, task)
    u = _units(volume)
    return MedviewError(f"{what} found no voxels (the image ranges from {lo:g} to {hi:g}{u}){hint}; "
                        "nothing was changed")


def volume_extent_mm(geometry: Geometry) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """The LPS box (x, y, z) min..max in mm covered by the voxels (their outer edges)."""
    n = np.array(geometry.size_xyz, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5) for k in (-0.5, n[2] - 0.5)])
    world = geometry.index_to_world(corners)
    return tuple((float(world[:, a].min()), float(world[:, a].max())) for a in range(3))  # type: ignore[return-value]


def seed_voxels(geometry: Geometry, seeds: Sequence[Point], what: str = "seed") -> list[tuple[int, int, int]]:
    """The ``(x, y, z)`` voxel index containing each LPS mm point; a point outside raises MedviewError."""
    try:
        arr = np.asarray(seeds if seeds is not None else [], dtype=float)
    except (TypeError, ValueError):
        raise MedviewError(f"{what.capitalize()}s must be points x,y,z in LPS mm, got {seeds!r}") from None
    if arr.ndim == 1 and arr.size == 3:  # a single point given on its own
        arr = arr[None, :]
    if arr.size == 0:
        raise MedviewError(f"Give at least one {what} point (x,y,z in LPS mm), e.g. the cursor position "
                           "inside the structure")
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise MedviewError(f"{what.capitalize()}s must be points x,y,z in LPS mm, got {seeds!r}")
    out = []
    size = np.array(geometry.size_xyz)
    for i, p in enumerate(arr.tolist(), 1):
        if not all(math.isfinite(c) for c in p):
            raise MedviewError(f"{what.capitalize()} {i} must be three finite numbers x,y,z in mm, got {tuple(p)}")
        index = np.floor(geometry.world_to_index(p) + 0.5).astype(int)
        if np.any(index < 0) or np.any(index >= size):
            ext = volume_extent_mm(geometry)
            raise MedviewError(
                f"{what.capitalize()} {i} at ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm lies outside the volume, "
                f"which spans x {ext[0][0]:.1f}..{ext[0][1]:.1f}, y {ext[1][0]:.1f}..{ext[1][1]:.1f}, "
                f"z {ext[2][0]:.1f}..{ext[2][1]:.1f} mm (LPS)")
        out.append((int(index[0]), int(index[1]), int(index[2])))
    return out


def _sitk_image(array: np.ndarray, geometry: Geometry, start_xyz: Sequence[int] = (0, 0, 0)) -> Any:
    """A SimpleITK image of ``array`` (z, y, x) placed where voxel ``start_xyz`` of ``geometry`` is
    (a crop keeps its place in the world)."""
    if array.dtype == bool:
        array = array.view(np.uint8)
    # ITK filters used here are float32-accurate: a float64 volume is not copied at double size
    image = to_sitk(array, geometry, dtype=np.float32 if array.dtype == np.float64 else None)
    if any(start_xyz):
        image.SetOrigin(tuple(float(v) for v in geometry.index_to_world(np.asarray(start_xyz, dtype=float))))
    return image


def _execute(filt: Any, inputs: Sequence[Any], task: TaskContext | None, message: str,
             span: tuple[float, float] = (0.0, 1.0)) -> Any:
    """Run an ITK filter as part of the task (progress, and a cancel honoured within ~0.1 s: sitk_bridge)."""
    return execute(filt, *inputs, task=task, message=message, span=span)


# -- thresholds ----------------------------------------------------------------------------------------------
def threshold(volume: Volume, *, lower: float | None = None, upper: float | None = None,
              task: TaskContext | None = None) -> LabelMap:
    """Label the voxels with ``lower <= value <= upper`` (either bound may be left out).

    Parameters
    ----------
    lower, upper
        Inclusive bounds in the volume's units (HU for CT), e.g. ``lower=-450`` for everything denser than
        aerated lung, ``lower=200`` for contrast and bone.
    """
    array = _grey(volume, "Threshold")
    if lower is None and upper is None:
        raise MedviewError("Threshold needs a lower and/or an upper bound")
    lo = -math.inf if lower is None else float(lower)
    hi = math.inf if upper is None else float(upper)
    if math.isnan(lo) or math.isnan(hi):
        raise MedviewError("Threshold bounds must be numbers")
    if lo > hi:
        raise MedviewError(f"The lower bound ({lo:g}) is above the upper bound ({hi:g})")
    out = np.zeros(array.shape, dtype=np.uint8)
    slabs = _slabs(array.shape)
    for i, zs in enumerate(slabs):
        report(task, i / len(slabs), "Threshold")
        part = array[zs]
        out[zs] = (part >= lo) & (part <= hi)
    u = _units(volume)
    window = (f"{lo:g} .. {hi:g}{u}" if lower is not None and upper is not None
              else f">= {lo:g}{u}" if lower is not None else f"<= {hi:g}{u}")
    if not out.any():
        raise _nothing_found(f"Threshold {window}", volume, task)
    report(task, 1.0, "Threshold", force=True)
    return _label_map(out, volume, [(1, f"Threshold {window}")], f"threshold({window})")


def _histogram(array: np.ndarray, bins: int, task: TaskContext | None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin centres of ``bins`` equal bins over the data range, accumulated slab by slab
    (the same bins as ``skimage.exposure.histogram`` uses for float images)."""
    if int(bins) < 2:
        raise MedviewError(f"The histogram needs at least 2 bins, got {bins}")
    lo, hi = _value_range(array, task)
    if lo == hi:
        raise MedviewError(f"The image has a single value ({lo:g}): there is nothing to separate; "
                           "nothing was changed")
    edges = np.histogram_bin_edges(np.array([lo, hi]), bins=int(bins), range=(lo, hi))
    counts = np.zeros(int(bins), dtype=np.int64)
    slabs = _slabs(array.shape)
    for i, zs in enumerate(slabs):
        report(task, 0.5 * i / len(slabs), "Histogram")
        part = array[zs]
        counts += np.histogram(part[np.isfinite(part)] if part.dtype.kind == "f" else part, bins=edges)[0]
    return counts, (edges[:-1] + edges[1:]) / 2.0


def otsu_threshold(volume: Volume, *, bins: int = 256, task: TaskContext | None = None) -> float:
    """Otsu's threshold (the value maximising the between-class variance) over ``bins`` histogram bins.

    Equal to ``skimage.filters.threshold_otsu(volume.array, nbins=bins)`` for float images; for integer
    images skimage uses one bin per integer instead, which can move the threshold by up to one bin width.
    """
    from skimage.filters import threshold_otsu

    counts, centres = _histogram(_grey(volume, "Otsu"), bins, task)
    return float(threshold_otsu(hist=(counts, centres)))


def otsu(volume: Volume, *, bins: int = 256, task: TaskContext | None = None) -> LabelMap:
    """Label the voxels above Otsu's threshold (e.g. body versus air on CT, tissue versus background on MR)."""
    t = otsu_threshold(volume, bins=bins, task=task)
    array = volume.array
    out = np.zeros(array.shape, dtype=np.uint8)
    for zs in _slabs(array.shape):
        check_cancel(task)
        out[zs] = array[zs] > t
    if not out.any():  # pragma: no cover - Otsu's threshold lies below the maximum by construction
        raise _nothing_found(f"Otsu's threshold ({t:g})", volume, task)
    u = _units(volume)
    report(task, 1.0, "Otsu", force=True)
    return _label_map(out, volume, [(1, f"Otsu > {t:.4g}{u}")], f"otsu(bins={int(bins)}) threshold={t:g}")


def multi_otsu_thresholds(volume: Volume, *, classes: int = 3, bins: int = 256,
                          task: TaskContext | None = None) -> list[float]:
    """The ``classes - 1`` multi-Otsu thresholds (``skimage.filters.threshold_multiotsu`` on the same bins)."""
    from skimage.filters import threshold_multiotsu

    if not 2 <= int(classes) <= 6:
        raise MedviewError(f"Multi-Otsu needs between 2 and 6 classes, got {classes}")
    counts, centres = _histogram(_grey(volume, "Multi-Otsu"), bins, task)
    if np.count_nonzero(counts) < int(classes):
        raise MedviewError(f"The image has fewer distinct intensity levels than the {classes} classes asked for; "
                           "nothing was changed")
    try:
        return [float(t) for t in threshold_multiotsu(hist=(counts, centres), classes=int(classes))]
    except ValueError as exc:
        raise MedviewError(f"Multi-Otsu could not separate {classes} classes: {exc}; nothing was changed") from None


def multi_otsu(volume: Volume, *, classes: int = 3, bins: int = 256, task: TaskContext | None = None) -> LabelMap:
    """Split the intensities into ``classes`` by the multi-Otsu criterion.

    The darkest class is background (0); the brighter ones are labels 1 .. classes-1, in order of intensity
    (each voxel's value is ``numpy.digitize(value, thresholds)``, as in scikit-image's example).
    """
    ts = multi_otsu_thresholds(volume, classes=classes, bins=bins, task=task)
    array = volume.array
    dtype = np.uint8
    out = np.zeros(array.shape, dtype=dtype)
    for zs in _slabs(array.shape):
        check_cancel(task)
        out[zs] = np.digitize(array[zs], ts)
    u = _units(volume)
    bounds = [*ts, math.inf]
    names = [(k, f"Otsu class {k + 1} ({bounds[k - 1]:.4g} .. {bounds[k]:.4g}{u})" if k < len(ts)
              else f"Otsu class {k + 1} (> {bounds[k - 1]:.4g}{u})") for k in range(1, len(ts) + 1)]
    report(task, 1.0, "Multi-Otsu", force=True)
    return _label_map(out, volume, names, f"multi_otsu(classes={int(classes)}, bins={int(bins)}) "
                                          f"thresholds={[round(t, 4) for t in ts]}")


# -- region growing ------------------------------------------------------------------------------------------
def _post_process(mask: np.ndarray, volume: Volume, seeds_xyz: Sequence[tuple[int, int, int]], what: str,
                  opening_mm: float, fill_holes: str, task: TaskContext | None) -> np.ndarray:
    """Optional opening (keeping the pieces that hold a seed) and hole filling of a grown region."""
    from scipy import ndimage

    if fill_holes not in ("no", "3d", "slices"):
        raise MedviewError(f"fill_holes must be one of no, 3d, slices, got {fill_holes!r}")
    if opening_mm is None or opening_mm == 0:
        pass
    elif not math.isfinite(float(opening_mm)) or float(opening_mm) < 0:
        raise MedviewError(f"The opening radius must be 0 (none) or a positive distance in mm, got {opening_mm!r}")
    else:
        report(task, 0.8, f"{what}: opening by {float(opening_mm):g} mm")
        opened = open_mask(mask, volume.geometry.spacing, float(opening_mm), task)
        labels, _ = ndimage.label(opened)
        keep = {int(labels[z, y, x]) for x, y, z in seeds_xyz} - {0}
        if not keep:
            raise MedviewError(f"{what} found no voxels left at the seeds after opening by {float(opening_mm):g} mm "
                               f"(the region there is thinner than {2 * float(opening_mm):g} mm); use a smaller "
                               "opening radius; nothing was changed")
        mask = np.isin(labels, sorted(keep))
    if fill_holes != "no":
        report(task, 0.9, f"{what}: filling holes")
        mask = fill_holes_mask(mask, slice_wise=fill_holes == "slices", task=task)
    return mask


def _check_window_at_seeds(volume: Volume, seeds_xyz: Sequence[tuple[int, int, int]], lo: float, hi: float,
                           what: str) -> None:
    values = [float(volume.array[z, y, x]) for x, y, z in seeds_xyz]
    if not any(lo <= v <= hi for v in values):
        u = _units(volume)
        listed = ", ".join(f"{v:g}" for v in values)
        raise MedviewError(f"{what} found no voxels: the seed value{'s' if len(values) > 1 else ''} ({listed}{u}) "
                           f"lie outside the window {lo:g} .. {hi:g}{u}, and the region grows only through voxels "
                           "inside it; nothing was changed")


def _int_bounds(dtype: np.dtype, lo: float, hi: float) -> tuple[float, float]:
    """Inclusive float bounds as ITK needs them for an integer image (it casts, i.e. truncates, them)."""
    if dtype.kind not in "iu":
        return lo, hi
    info = np.iinfo(dtype)
    return float(min(max(math.ceil(lo), info.min), info.max)), float(max(min(math.floor(hi), info.max), info.min))


def connected_threshold(volume: Volume, *, seeds: Sequence[Point], lower: float, upper: float,
                        opening_mm: float = 0.0, fill_holes: FillHoles = "no",
                        task: TaskContext | None = None) -> LabelMap:
    """Region growing: the voxels inside ``lower .. upper`` connected (by faces) to a seed.

    ITK's ``ConnectedThresholdImageFilter`` (it reports no progress while it grows; a cancel still returns
    at once, see :mod:`medview.algorithms.sitk_bridge`).  ``opening_mm`` > 0 then opens the region by
    that radius and keeps the pieces holding a seed, which cuts thin bridges (vessels, pleura) through
    which the growth leaked; ``fill_holes`` fills enclosed background in 3D or in each axial slice.

    Parameters
    ----------
    seeds
        Points in LPS mm inside the structure.
    lower, upper
        Inclusive intensity window (volume units, HU for CT); e.g. -400 .. 400 HU grows through soft tissue
        but not aerated lung.
    opening_mm
        Radius in mm of the opening applied to the grown region (0: none).
    fill_holes
        ``"no"``, ``"3d"`` or ``"slices"``.
    """
    import SimpleITK as sitk

    array = _grey(volume, "Region growing")
    lo, hi = float(lower), float(upper)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise MedviewError(f"Region growing needs lower <= upper, got {lower!r} .. {upper!r}")
    what = "Region growing"
    seeds_xyz = seed_voxels(volume.geometry, seeds)
    _check_window_at_seeds(volume, seeds_xyz, lo, hi, what)
    ilo, ihi = _int_bounds(array.dtype, lo, hi)
    filt = sitk.ConnectedThresholdImageFilter()
    filt.SetSeedList([list(s) for s in seeds_xyz])
    filt.SetLower(ilo)
    filt.SetUpper(ihi)
    filt.SetReplaceValue(1)
    image = _sitk_image(array, volume.geometry)
    grown = _execute(filt, [image], task, what, (0.0, 0.8))
    mask = sitk.GetArrayViewFromImage(grown).astype(bool)  # the view needs its image alive until copied
    del image
    mask = _post_process(mask, volume, seeds_xyz, what, opening_mm, fill_holes, task)
    u = _units(volume)
    report(task, 1.0, what, force=True)
    return _label_map(mask.view(np.uint8), volume, [(1, f"Region {lo:g} .. {hi:g}{u}")],
                      f"connected_threshold(lower={lo:g}, upper={hi:g}, opening_mm={float(opening_mm or 0):g}, "
                      f"fill_holes={fill_holes}, seeds={len(seeds_xyz)})")


def confidence_connected(volume: Volume, *, seeds: Sequence[Point], multiplier: float = 2.5, iterations: int = 1,
                         initial_radius: int = 1, opening_mm: float = 0.0, fill_holes: FillHoles = "no",
                         task: TaskContext | None = None) -> LabelMap:
    """Region growing with a window learnt from the seeds: mean +- ``multiplier`` x standard deviation.

    ITK's ``ConfidenceConnectedImageFilter``: the statistics start from the cubes of ``initial_radius``
    voxels around the seeds and are re-estimated from the grown region ``iterations`` times.  A smaller
    multiplier (1.5-2) keeps a heterogeneous tumour from leaking into its surroundings.
    """
    import SimpleITK as sitk

    array = _grey(volume, "Confidence connected")
    what = "Confidence-connected region growing"
    if not (math.isfinite(float(multiplier)) and float(multiplier) > 0):
        raise MedviewError(f"The multiplier must be a positive number of standard deviations, got {multiplier!r}")
    if int(iterations) < 0 or int(initial_radius) < 1:
        raise MedviewError(f"iterations must be >= 0 and initial_radius >= 1 voxel, got {iterations}, "
                           f"{initial_radius}")
    seeds_xyz = seed_voxels(volume.geometry, seeds)
    filt = sitk.ConfidenceConnectedImageFilter()
    filt.SetSeedList([list(s) for s in seeds_xyz])
    filt.SetMultiplier(float(multiplier))
    filt.SetNumberOfIterations(int(iterations))
    filt.SetInitialNeighborhoodRadius(int(initial_radius))
    filt.SetReplaceValue(1)
    image = _sitk_image(array, volume.geometry)
    grown = _execute(filt, [image], task, what, (0.0, 0.8))
    mask = sitk.GetArrayViewFromImage(grown).astype(bool)  # the view needs its image alive until copied
    del image
    if not mask.any():
        raise _nothing_found(what, volume, task, " (the seeds' neighbourhood varies too much for the window)")
    mean, sigma = filt.GetMean(), math.sqrt(max(filt.GetVariance(), 0.0))
    mask = _post_process(mask, volume, seeds_xyz, what, opening_mm, fill_holes, task)
    u = _units(volume)
    low, high = mean - float(multiplier) * sigma, mean + float(multiplier) * sigma
    report(task, 1.0, what, force=True)
    return _label_map(mask.view(np.uint8), volume, [(1, f"Region {low:.4g} .. {high:.4g}{u}")],
                      f"confidence_connected(multiplier={float(multiplier):g}, iterations={int(iterations)}, "
                      f"initial_radius={int(initial_radius)}, opening_mm={float(opening_mm or 0):g}, "
                      f"fill_holes={fill_holes}) mean={mean:g} sd={sigma:g}")


# -- marker watershed and fast marching ------------------------------------------------------------------------
def _gradient(array: np.ndarray, geometry: Geometry, sigma_mm: float, task: TaskContext | None,
              span: tuple[float, float], start_xyz: Sequence[int] = (0, 0, 0)) -> Any:
    import SimpleITK as sitk

    if not (math.isfinite(float(sigma_mm)) and float(sigma_mm) > 0):
        raise MedviewError(f"The smoothing sigma must be a positive distance in mm, got {sigma_mm!r}")
    filt = sitk.GradientMagnitudeRecursiveGaussianImageFilter()
    filt.SetSigma(float(sigma_mm))  # ITK uses the image spacing: sigma is in mm
    return _execute(filt, [sitk.Cast(_sitk_image(array, geometry, start_xyz), sitk.sitkFloat32)], task,
                    "Gradient magnitude", span)


def _quantised(gradient: Any, task: TaskContext | None) -> Any:
    """The gradient magnitude as uint16 (0 .. its maximum in 65,535 steps).

    ITK's morphological watershed floods level by level: on float32 it needs ~7x the time and 3x the memory
    (56 s and 1.5 GB on a 512 x 512 x 61 CT, against 8 s and 0.5 GB), for the same basins to a voxel or so.
    """
    import SimpleITK as sitk

    values = sitk.GetArrayViewFromImage(gradient)
    top = float(values.max())
    out = np.zeros(values.shape, dtype=np.uint16)
    if top > 0:
        scale = np.float32(65535.0 / top)
        for zs in _slabs(values.shape):
            check_cancel(task)
            out[zs] = np.rint(values[zs] * scale)
    image = sitk.GetImageFromArray(out)
    image.CopyInformation(gradient)
    return image


def watershed(volume: Volume, *, seeds: Sequence[Point], background_seeds: Sequence[Point] = (),
              sigma_mm: float = 1.0, task: TaskContext | None = None) -> LabelMap:
    """Marker-controlled watershed of the gradient magnitude: each seed grows its own label until it meets
    another, along the strongest edges (ITK ``MorphologicalWatershedFromMarkers`` on the gradient quantised
    to 16 bits; about a minute and 1.2 GB on a 512 x 512 x 300 CT, progress reported and cancellable
    as it floods).

    Parameters
    ----------
    seeds
        One point (LPS mm) per structure; seed *i* becomes label *i*.
    background_seeds
        Points in the background; their basins are returned as background (0).  With a single structure,
        give at least one, otherwise the one label floods the whole image.
    sigma_mm
        Gaussian smoothing (mm) of the gradient magnitude; larger values ignore noise and fine edges.
    """
    import SimpleITK as sitk

    array = _grey(volume, "Watershed")
    objects = seed_voxels(volume.geometry, seeds)
    backgrounds = seed_voxels(volume.geometry, background_seeds, "background seed") if background_seeds else []
    if len(objects) + (1 if backgrounds else 0) < 2:
        raise MedviewError("The watershed needs at least two markers: give a second seed or a background seed "
                           "(otherwise the single label floods the whole image)")
    if len(objects) > 65534:
        raise MedviewError(f"Too many seeds ({len(objects)}); at most 65534")
    gradient = _quantised(_gradient(array, volume.geometry, sigma_mm, task, (0.0, 0.4)), task)
    markers = np.zeros(array.shape, dtype=np.uint16)
    background_value = len(objects) + 1
    for x, y, z in backgrounds:
        markers[z, y, x] = background_value
    for i, (x, y, z) in enumerate(objects, 1):  # a seed wins over a background seed in the same voxel
        markers[z, y, x] = i
    filt = sitk.MorphologicalWatershedFromMarkersImageFilter()
    filt.SetMarkWatershedLine(False)
    filt.SetFullyConnected(False)
    result = _execute(filt, [gradient, _sitk_image(markers, volume.geometry)], task, "Watershed", (0.4, 1.0))
    del gradient, markers
    out = sitk.GetArrayFromImage(result)
    out[out == background_value] = 0
    present = set(np.unique(out).tolist()) - {0}
    if not present:
        raise _nothing_found("The watershed", volume, task)
    dtype = np.uint8 if len(objects) < 256 else np.uint16
    report(task, 1.0, "Watershed", force=True)
    return _label_map(out.astype(dtype), volume, [(i, f"Watershed {i}") for i in sorted(present)],
                      f"watershed(sigma_mm={float(sigma_mm):g}, seeds={len(objects)}, "
                      f"background_seeds={len(backgrounds)})")


def fast_marching(volume: Volume, *, seeds: Sequence[Point], distance_mm: float = 30.0, sigma_mm: float = 1.0,
                  edge: float | None = None, task: TaskContext | None = None) -> LabelMap:
    """Fast marching from the seeds on an edge-stopped speed: the region a front reaches within a travel
    distance, slowing down across edges (ITK ``FastMarchingImageFilter``).

    The speed is ``1 / (1 + (g / edge)^2)`` where ``g`` is the gradient magnitude (units per mm, Gaussian
    ``sigma_mm``): 1 in flat regions, 1/2 on an edge of strength ``edge``, near 0 on much stronger ones.
    The region is where the arrival time (mm of travel at full speed) is at most ``distance_mm``; since the
    front never outruns distance, only a box of ``distance_mm`` around the seeds is computed.  ITK's scheme
    is first order: it overestimates oblique paths (by up to ~25% on anisotropic voxels), so in a flat
    region the result is a slightly rounded diamond inscribed in the ball of ``distance_mm``.

    Parameters
    ----------
    distance_mm
        How far the front travels at full speed (about the structure's radius plus a margin).
    edge
        Gradient (units/mm, e.g. HU/mm) that halves the speed; default: the 90th percentile of the gradient
        in that box, i.e. the strongest 10% of edges stop the front.
    """
    import SimpleITK as sitk

    array = _grey(volume, "Fast marching")
    d = float(distance_mm)
    if not (math.isfinite(d) and d > 0):
        raise MedviewError(f"The travel distance must be a positive distance in mm, got {distance_mm!r}")
    if edge is not None and not (math.isfinite(float(edge)) and float(edge) > 0):
        raise MedviewError(f"The edge strength must be a positive gradient (units per mm), got {edge!r}")
    g = volume.geometry
    seeds_xyz = seed_voxels(g, seeds)
    # the box the front can reach, plus room for the smoothing kernel and the scheme's discretisation
    seeds_arr = np.array(seeds_xyz)
    margin = np.ceil((d + 3.0 * float(sigma_mm)) / np.array(g.spacing)).astype(int) + 2
    start = np.maximum(seeds_arr.min(axis=0) - margin, 0)
    stop = np.minimum(seeds_arr.max(axis=0) + margin + 1, np.array(g.size_xyz))
    box = (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))
    gradient = _gradient(array[box], g, sigma_mm, task, (0.0, 0.3), start)
    gradient_np = sitk.GetArrayViewFromImage(gradient)
    k = float(edge) if edge is not None else float(np.percentile(gradient_np, 90))
    if k <= 0:
        raise MedviewError("The image is flat around the seeds (no gradient): give the edge strength explicitly")
    speed_np = (1.0 / (1.0 + (gradient_np / np.float32(k)) ** 2)).astype(np.float32)
    speed = sitk.GetImageFromArray(speed_np)
    speed.CopyInformation(gradient)
    del gradient, gradient_np, speed_np
    check_cancel(task)
    filt = sitk.FastMarchingImageFilter()
    for x, y, z in seeds_xyz:
        filt.AddTrialPoint((int(x - start[0]), int(y - start[1]), int(z - start[2]), 0))
    filt.SetStoppingValue(d * 1.01 + 1.0)
    filt.SetNormalizationFactor(1.0)
    arrival_image = _execute(filt, [speed], task, "Fast marching", (0.3, 1.0))
    arrival = sitk.GetArrayViewFromImage(arrival_image)  # a view: arrival_image must outlive it
    out = np.zeros(array.shape, dtype=np.uint8)
    out[box] = arrival <= d
    if not out.any():  # pragma: no cover - the seeds themselves arrive at time 0
        raise _nothing_found("Fast marching", volume, task)
    report(task, 1.0, "Fast marching", force=True)
    return _label_map(out, volume, [(1, f"Fast marching {d:g} mm")],
                      f"fast_marching(distance_mm={d:g}, sigma_mm={float(sigma_mm):g}, edge={k:g}, "
                      f"seeds={len(seeds_xyz)})")


# -- the catalogue ------------------------------------------------------------------------------------------
def _op(name: str, fn: Callable[..., LabelMap], params: tuple[Param, ...], help: str, library: str,
        aliases: tuple[str, ...] = (), at_least_one: tuple[str, ...] = ()) -> None:
    register(Operation(name, "segment", fn, params=params, help=help, library=library, aliases=aliases,
                       at_least_one=at_least_one))


_SEEDS = Param("seeds", "points", required=True, unit="mm", help="seed points x,y,z in LPS mm, ';'-separated")
_OPENING = Param("opening_mm", "float", 0.0, minimum=0.0, unit="mm",
                 help="open the region by this radius to cut thin leaks (0: none)")
_FILL = Param("fill_holes", "choice", "no", choices=("no", "3d", "slices"),
              help="fill enclosed background in 3D or in each axial slice")
_BINS = Param("bins", "int", 256, minimum=2, maximum=4096, help="histogram bins between the minimum and maximum")

_op("threshold", threshold, (
    Param("lower", "float", None, help="lowest value kept, inclusive (HU for CT)"),
    Param("upper", "float", None, help="highest value kept, inclusive (HU for CT)"),
), "Label voxels inside an intensity window.", "NumPy", at_least_one=("lower", "upper"))
_op("otsu", otsu, (_BINS,), "Label voxels above Otsu's automatic threshold.", "scikit-image")
_op("multi-otsu", multi_otsu, (
    Param("classes", "int", 3, minimum=2, maximum=6, help="intensity classes; the darkest is background"),
    Param("bins", "int", 256, minimum=8, maximum=1024, help="histogram bins (the search grows as bins^(classes-1))"),
), "Split intensities into classes by the multi-Otsu criterion.", "scikit-image")
_op("connected-threshold", connected_threshold, (
    _SEEDS,
    Param("lower", "float", required=True, help="lowest value the region grows through, inclusive"),
    Param("upper", "float", required=True, help="highest value the region grows through, inclusive"),
    _OPENING, _FILL,
), "Region growing from seeds through voxels inside an intensity window.", "SimpleITK", ("region-grow",))
_op("confidence-connected", confidence_connected, (
    _SEEDS,
    Param("multiplier", "float", 2.5, minimum=0.0, exclusive_minimum=True, maximum=10.0,
          help="window half-width in standard deviations of the region"),
    Param("iterations", "int", 1, minimum=0, maximum=20, help="times the statistics are re-estimated"),
    Param("initial_radius", "int", 1, minimum=1, maximum=10, unit="voxels",
          help="cube around each seed for the first statistics"),
    _OPENING, _FILL,
), "Region growing with a window learnt from the seeds' neighbourhood.", "SimpleITK")
_op("watershed", watershed, (
    _SEEDS,
    Param("background_seeds", "points", None, unit="mm", help="points in the background, ';'-separated"),
    Param("sigma_mm", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm",
          help="Gaussian smoothing of the gradient"),
), "Marker-controlled watershed of the gradient magnitude.", "SimpleITK")
_op("fast-marching", fast_marching, (
    _SEEDS,
    Param("distance_mm", "float", 30.0, minimum=0.0, exclusive_minimum=True, unit="mm",
          help="how far the front travels at full speed"),
    Param("sigma_mm", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm",
          help="Gaussian smoothing of the gradient"),
    Param("edge", "float", None, minimum=0.0, exclusive_minimum=True, unit="per mm",
          help="gradient that halves the speed (default: 90th percentile near the seeds)"),
), "Front propagation from seeds that slows down at edges.", "SimpleITK")
