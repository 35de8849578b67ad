"""Label-map morphology in physical units: grow, shrink, open, close, fill holes, clean up islands, smooth.

Every public function takes a :class:`~medview.core.labels.LabelMap` and returns a new one (the input is
never modified), operating on one label value or on every label (``label=0``).  Sizes are physical:
radii and sigmas in mm, island sizes in mm^3, so the same settings mean the same thing on a 0.5 mm MR and
a 5 mm CT.

Conventions
-----------
* The structuring element of radius ``r`` mm is the anisotropic ellipsoid of voxel offsets ``d`` (x, y, z)
  with ``sqrt(sum((d * spacing)^2)) <= r``: on spacing (0.5, 0.5, 2.0) mm a 2 mm radius reaches 4 voxels
  in-plane and 1 along z (:func:`structuring_element`).
* Dilation and erosion are computed exactly as with that element, through the Euclidean distance transform
  (``scipy.ndimage.distance_transform_edt`` with the voxel spacing) on the label's bounding box in slabs,
  so the cost does not grow with the radius and memory stays bounded on a 512 x 512 x 300 CT.
* Outside the volume counts as "unknown": erosion does not eat a label from the image border (ITK's
  ``BoundaryToForeground``), and dilation does not grow in from it.
* Labels grow only into background (value 0); voxels of a *locked* label are never changed, and asking to
  change a locked label is refused.  With ``label=0`` locked labels are skipped; unlocked labels are
  processed in ascending value order (a lower value grows first where two labels compete for a voxel).
* A result that would remove a label entirely raises :class:`MedviewError` ("...; nothing was changed")
  rather than returning a silently emptied map.

The array-level helpers (:func:`dilate_mask`, :func:`erode_mask`, :func:`open_mask`, :func:`close_mask`,
:func:`fill_holes_mask`) take a boolean ``(z, y, x)`` mask and the spacing ``(x, y, z)`` in mm; the
segmentation methods use them for their post-processing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from medview.algorithms.operations import Param
from medview.core.errors import MedviewError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, check_cancel, report

__all__ = ["LABEL_OPERATIONS", "close_mask", "closing", "dilate", "dilate_mask", "erode", "erode_mask",
           "fill_holes", "fill_holes_mask", "keep_largest_component", "open_mask", "opening", "remove_islands",
           "smooth_labels", "structuring_element"]

_TOL_MM = 1e-6  # a voxel exactly on the sphere of radius r belongs to it, whatever the float rounding
_SLAB_VOXELS = 8_000_000  # voxels per slab of a distance transform (its work arrays are ~20 bytes per voxel)

Spacing = Sequence[float]  # (x, y, z) mm, as Geometry.spacing


# -- structuring element and masks --------------------------------------------------------------------------
def _check_radius(radius_mm: float, what: str = "radius") -> float:
    r = float(radius_mm)
    if not math.isfinite(r) or r <= 0:
        raise MedviewError(f"The {what} must be a positive distance in mm, got {radius_mm!r}")
    return r


def _reach(spacing_xyz: Spacing, radius_mm: float) -> tuple[int, int, int]:
    """Whole voxels the element reaches along (z, y, x)."""
    sx, sy, sz = (float(s) for s in spacing_xyz)
    return tuple(math.floor((radius_mm + _TOL_MM) / s) for s in (sz, sy, sx))  # type: ignore[return-value]


def structuring_element(spacing_xyz: Spacing, radius_mm: float) -> np.ndarray:
    """The ellipsoid of voxel offsets within ``radius_mm`` for voxels of ``spacing_xyz`` (x, y, z) mm.

    Returns a boolean ``(z, y, x)`` array of odd sizes ``2 * reach + 1`` centred on the origin voxel.
    """
    r = _check_radius(radius_mm)
    nz, ny, nx = _reach(spacing_xyz, r)
    sx, sy, sz = (float(s) for s in spacing_xyz)
    z, y, x = np.ogrid[-nz:nz + 1, -ny:ny + 1, -nx:nx + 1]
    return np.sqrt((z * sz) ** 2 + (y * sy) ** 2 + (x * sx) ** 2) <= r + _TOL_MM


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    found = ndimage.find_objects(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8))
    return found[0] if found and found[0] is not None else None


def _grown(box: tuple[slice, ...], margin: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin, shape, strict=True))


def _slabs(n: int, plane_voxels: int) -> list[tuple[int, int]]:
    step = max(1, _SLAB_VOXELS // max(1, plane_voxels))
    return [(a, min(n, a + step)) for a in range(0, n, step)]


def dilate_mask(mask: np.ndarray, spacing_xyz: Spacing, radius_mm: float,
                task: TaskContext | None = None) -> np.ndarray:
    """Binary dilation by the ellipsoid of ``radius_mm`` (same result as ``scipy.ndimage.binary_dilation``
    with :func:`structuring_element`), via the distance transform on the mask's bounding box."""
    r = _check_radius(radius_mm)
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = _bbox(mask)
    if box is None:
        return out
    reach = _reach(spacing_xyz, r)
    zs, ys, xs = _grown(box, reach, mask.shape)
    sampling = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))
    plane = (ys.stop - ys.start) * (xs.stop - xs.start)
    for a, b in _slabs(zs.stop - zs.start, plane):
        check_cancel(task)
        a, b = a + zs.start, b + zs.start
        lo, hi = max(zs.start, a - reach[0]), min(zs.stop, b + reach[0])
        crop = mask[lo:hi, ys, xs]
        if not crop.any():
            continue
        distance = ndimage.distance_transform_edt(~crop, sampling=sampling)  # mm to the nearest mask voxel
        out[a:b, ys, xs] = distance[a - lo:b - lo] <= r + _TOL_MM
    return out


def erode_mask(mask: np.ndarray, spacing_xyz: Spacing, radius_mm: float,
               task: TaskContext | None = None) -> np.ndarray:
    """Binary erosion by the ellipsoid of ``radius_mm``; outside the volume counts as foreground (same as
    ``scipy.ndimage.binary_erosion(mask, structuring_element(...), border_value=1)``)."""
    r = _check_radius(radius_mm)
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    box = _bbox(mask)
    if box is None:
        return out
    reach = _reach(spacing_xyz, r)
    zs, ys, xs = _grown(box, [n + 1 for n in reach], mask.shape)
    sampling = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))
    plane = (ys.stop - ys.start) * (xs.stop - xs.start)
    for a, b in _slabs(zs.stop - zs.start, plane):
        check_cancel(task)
        a, b = a + zs.start, b + zs.start
        lo, hi = max(zs.start, a - reach[0]), min(zs.stop, b + reach[0])
        crop = mask[lo:hi, ys, xs]
        if not crop.any():
            continue
        if crop.all():  # no background within reach: nothing erodes
            out[a:b, ys, xs] = True
            continue
        distance = ndimage.distance_transform_edt(crop, sampling=sampling)  # mm to the nearest background
        out[a:b, ys, xs] = distance[a - lo:b - lo] > r + _TOL_MM
    return out


def open_mask(mask: np.ndarray, spacing_xyz: Spacing, radius_mm: float,
              task: TaskContext | None = None) -> np.ndarray:
    """Erosion then dilation: removes parts (spurs, bridges) thinner than ``2 * radius_mm``."""
    return dilate_mask(erode_mask(mask, spacing_xyz, radius_mm, task), spacing_xyz, radius_mm, task)


def close_mask(mask: np.ndarray, spacing_xyz: Spacing, radius_mm: float,
               task: TaskContext | None = None) -> np.ndarray:
    """Dilation then erosion: closes gaps and notches narrower than ``2 * radius_mm``."""
    return erode_mask(dilate_mask(mask, spacing_xyz, radius_mm, task), spacing_xyz, radius_mm, task)


def fill_holes_mask(mask: np.ndarray, slice_wise: bool = False, task: TaskContext | None = None) -> np.ndarray:
    """Fill the background enclosed by ``mask`` (same as ``scipy.ndimage.binary_fill_holes``).

    ``slice_wise=True`` fills each axial (index z) slice in 2D, which also closes cavities that are open
    towards the slices above or below.  Background counts as connected through faces (6 neighbours in
    3D, 4 in 2D), as in scipy.
    """
    mask = np.asarray(mask, dtype=bool)
    out = mask.copy()
    box = _bbox(mask)
    if box is None:
        return out
    if slice_wise:
        for z in range(box[0].start, box[0].stop):
            check_cancel(task)
            out[z, box[1], box[2]] = _fill(mask[z, box[1], box[2]])
    else:
        out[box] = _fill(mask[box])
    return out


def _fill(crop: np.ndarray) -> np.ndarray:
    # label the background once (union-find, fast) instead of scipy's iterative propagation from the border
    padded = np.pad(~crop, 1, constant_values=True)
    labels, _ = ndimage.label(padded)
    outside = labels.flat[0]  # the padding is one connected background component
    inner = tuple(slice(1, -1) for _ in crop.shape)
    return crop | ((labels[inner] != outside) & (labels[inner] != 0))


# -- label-map level -------------------------------------------------------------------------------------------
def _name(label_map: LabelMap, value: int) -> str:
    for entry in label_map.labels:
        if entry.value == value:
            return f"label {value} ({entry.name!r})"
    return f"label {value}"


def _locked(label_map: LabelMap) -> set[int]:
    return {e.value for e in label_map.labels if e.locked}


def _selected(label_map: LabelMap, label: int | None, action: str) -> list[int]:
    """The values to process: ``label`` (checked), or every unlocked present value for ``0``/``None``."""
    present = label_map.present_values()
    if not present:
        raise MedviewError(f"The label map is empty: there is nothing to {action}")
    if label:
        value = int(label)
        if value not in present:
            raise MedviewError(f"Cannot {action} label {value}: the label map has no voxels with that value "
                               f"(present: {', '.join(map(str, present))})")
        if value in _locked(label_map):
            raise MedviewError(f"Cannot {action} {_name(label_map, value)}: it is locked; unlock it first")
        return [value]
    values = [v for v in present if v not in _locked(label_map)]
    if not values:
        raise MedviewError(f"Cannot {action}: every label in the map is locked; unlock one first")
    return values


def _result(label_map: LabelMap, array: np.ndarray, source: str) -> LabelMap:
    return LabelMap(array, label_map.geometry, [replace(e) for e in label_map.labels],
                    source=f"{label_map.source} | {source}" if label_map.source else source)


def _per_label(label_map: LabelMap, label: int | None, action: str, source: str,
               change: Callable[[np.ndarray, int], np.ndarray], task: TaskContext | None,
               empty_hint: str = "") -> LabelMap:
    """Apply ``change(mask, value) -> new mask`` to each selected label; grow only into background."""
    values = _selected(label_map, label, action)
    original = label_map.array
    array = original.copy()
    for i, value in enumerate(values):
        report(task, i / len(values), f"{action.capitalize()}: {_name(label_map, value)}")
        mask = original == value
        new = change(mask, value)
        if not new.any():
            raise MedviewError(f"{action.capitalize()} found no voxels left of {_name(label_map, value)}"
                               f"{empty_hint}; nothing was changed")
        array[mask & ~new] = 0
        array[new & ~mask & (array == 0)] = value
    report(task, 1.0, f"{action.capitalize()}: done", force=True)
    return _result(label_map, array, source)


def _radius_changes_something(label_map: LabelMap, radius_mm: float, action: str) -> float:
    r = _check_radius(radius_mm)
    if max(_reach(label_map.geometry.spacing, r)) == 0:
        raise MedviewError(f"A {r:g} mm radius is smaller than the smallest voxel spacing "
                           f"({min(label_map.geometry.spacing):g} mm), so {action} would change nothing; "
                           "nothing was changed")
    return r


def dilate(label_map: LabelMap, *, radius_mm: float, label: int = 0, task: TaskContext | None = None) -> LabelMap:
    """Grow a label (or every label) by ``radius_mm`` into the background.

    Parameters
    ----------
    radius_mm
        Margin in mm (> 0); the anisotropic ellipsoid of :func:`structuring_element`.
    label
        The label value to grow, or 0 for every unlocked label (lower values first).
    """
    r = _radius_changes_something(label_map, radius_mm, "dilating")
    spacing = label_map.geometry.spacing
    return _per_label(label_map, label, "dilate", f"dilate(radius_mm={r:g})",
                      lambda m, v: dilate_mask(m, spacing, r, task), task)


def erode(label_map: LabelMap, *, radius_mm: float, label: int = 0, task: TaskContext | None = None) -> LabelMap:
    """Shrink a label (or every label) by ``radius_mm``; freed voxels become background."""
    r = _radius_changes_something(label_map, radius_mm, "eroding")
    spacing = label_map.geometry.spacing
    return _per_label(label_map, label, "erode", f"erode(radius_mm={r:g})",
                      lambda m, v: erode_mask(m, spacing, r, task), task,
                      f" after eroding by {r:g} mm (it is nowhere thicker than {2 * r:g} mm)")


def opening(label_map: LabelMap, *, radius_mm: float, label: int = 0, task: TaskContext | None = None) -> LabelMap:
    """Erode then dilate by ``radius_mm``: removes spurs, thin bridges and specks narrower than 2 r."""
    r = _radius_changes_something(label_map, radius_mm, "opening")
    spacing = label_map.geometry.spacing
    return _per_label(label_map, label, "open", f"opening(radius_mm={r:g})",
                      lambda m, v: open_mask(m, spacing, r, task), task,
                      f" after opening by {r:g} mm (it is nowhere thicker than {2 * r:g} mm)")


def closing(label_map: LabelMap, *, radius_mm: float, label: int = 0, task: TaskContext | None = None) -> LabelMap:
    """Dilate then erode by ``radius_mm``: closes gaps, notches and small holes narrower than 2 r."""
    r = _radius_changes_something(label_map, radius_mm, "closing")
    spacing = label_map.geometry.spacing
    return _per_label(label_map, label, "close", f"closing(radius_mm={r:g})",
                      lambda m, v: close_mask(m, spacing, r, task), task)


def fill_holes(label_map: LabelMap, *, slice_wise: bool = False, label: int = 0,
               task: TaskContext | None = None) -> LabelMap:
    """Fill background enclosed by a label, in 3D or in each axial slice (``slice_wise``).

    Enclosed voxels of *other* labels are left as they are: only background is filled.
    """
    mode = "slice-wise" if slice_wise else "3D"
    return _per_label(label_map, label, "fill holes in", f"fill_holes({mode})",
                      lambda m, v: fill_holes_mask(m, slice_wise, task), task)


def _structure(connectivity: int) -> np.ndarray:
    if int(connectivity) not in (1, 2, 3):
        raise MedviewError(f"connectivity must be 1 (faces, 6 neighbours), 2 (edges, 18) or 3 (corners, 26), "
                           f"got {connectivity!r}")
    return ndimage.generate_binary_structure(3, int(connectivity))


def _components(mask: np.ndarray, structure: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
    """Component labels on the mask's bounding box, their sizes (index 0 unused) and that box."""
    box = _bbox(mask)
    assert box is not None  # a selected label always has voxels
    labels, n = ndimage.label(mask[box], structure=structure)
    return labels, np.bincount(labels.ravel(), minlength=n + 1), box


def keep_largest_component(label_map: LabelMap, *, label: int = 0, connectivity: int = 1,
                           task: TaskContext | None = None) -> LabelMap:
    """Keep only the largest connected piece of a label (or of each label).

    ``connectivity`` is 1 (voxels touching by faces), 2 (edges) or 3 (corners), as in
    ``scipy.ndimage.generate_binary_structure``.  Ties keep the piece found first (lowest z, y, x).
    """
    structure = _structure(connectivity)

    def change(mask: np.ndarray, value: int) -> np.ndarray:
        labels, sizes, box = _components(mask, structure)
        out = np.zeros_like(mask)
        out[box] = labels == int(np.argmax(sizes[1:]) + 1)
        return out

    return _per_label(label_map, label, "keep the largest component of",
                      f"keep_largest_component(connectivity={int(connectivity)})", change, task)


def remove_islands(label_map: LabelMap, *, min_size_mm3: float, label: int = 0, connectivity: int = 1,
                   task: TaskContext | None = None) -> LabelMap:
    """Remove connected pieces of a label (or of each label) smaller than ``min_size_mm3`` (mm^3)."""
    min_size = float(min_size_mm3)
    if not math.isfinite(min_size) or min_size <= 0:
        raise MedviewError(f"The minimum island size must be a positive volume in mm^3, got {min_size_mm3!r}")
    structure = _structure(connectivity)
    voxel_mm3 = label_map.geometry.voxel_volume_mm3

    def change(mask: np.ndarray, value: int) -> np.ndarray:
        labels, sizes, box = _components(mask, structure)
        keep = sizes * voxel_mm3 >= min_size
        keep[0] = False
        if not keep.any():
            raise MedviewError(f"Removing islands under {min_size:g} mm^3 found no voxels left of "
                               f"{_name(label_map, value)} (its largest piece is "
                               f"{sizes[1:].max() * voxel_mm3:.1f} mm^3); nothing was changed")
        out = np.zeros_like(mask)
        out[box] = keep[labels]
        return out

    return _per_label(label_map, label, "remove islands from",
                      f"remove_islands(min_size_mm3={min_size:g}, connectivity={int(connectivity)})", change, task)


def smooth_labels(label_map: LabelMap, *, sigma_mm: float = 1.0, label: int = 0,
                  task: TaskContext | None = None) -> LabelMap:
    """Smooth label boundaries: Gaussian-blur each label's mask (``sigma_mm``), then give every voxel the
    label (or background) with the highest blurred value.

    Only background and the selected labels take part; voxels of other (or locked) labels stay as they are.
    For a single label this keeps the voxels where its blurred mask exceeds 0.5.
    """
    sigma = _check_radius(sigma_mm, "smoothing sigma")
    values = _selected(label_map, label, "smooth")
    g = label_map.geometry
    sigma_zyx = tuple(sigma / s for s in (g.spacing[2], g.spacing[1], g.spacing[0]))
    margin = [math.ceil(4.0 * s) + 1 for s in sigma_zyx]  # scipy truncates the kernel at 4 sigma
    original = label_map.array
    boxes = ndimage.find_objects(original)
    shape = original.shape

    def grown(value: int) -> tuple[slice, ...]:
        return _grown(boxes[value - 1], margin, shape)

    region = tuple(slice(min(grown(v)[k].start for v in values), max(grown(v)[k].stop for v in values))
                   for k in range(3))
    part = original[region]
    movable = part == 0
    for v in values:
        movable |= part == v
    report(task, 0.0, "Smoothing: background")
    best = ndimage.gaussian_filter((part == 0).astype(np.float32), sigma_zyx, mode="nearest")
    best_value = np.zeros(part.shape, dtype=original.dtype)
    for i, value in enumerate(values):
        report(task, (i + 1) / (len(values) + 1), f"Smoothing: {_name(label_map, value)}")
        sub = tuple(slice(s.start - r.start, s.stop - r.start) for s, r in zip(grown(value), region, strict=True))
        score = ndimage.gaussian_filter((part[sub] == value).astype(np.float32), sigma_zyx, mode="nearest")
        better = score > best[sub]
        best[sub][better] = score[better]
        best_value[sub][better] = value
    array = original.copy()
    out = array[region]
    out[movable] = best_value[movable]
    for value in values:
        if not (out == value).any():
            raise MedviewError(f"Smoothing with sigma {sigma:g} mm found no voxels left of {_name(label_map, value)} "
                               f"(it is smaller than the smoothing); nothing was changed")
    report(task, 1.0, "Smoothing: done", force=True)
    return _result(label_map, array, f"smooth_labels(sigma_mm={sigma:g})")


# -- what the app offers for label maps -----------------------------------------------------------------------
_LABEL = Param("label", "int", 0, minimum=0, maximum=65535, help="label value to change; 0 = every unlocked label")
_RADIUS = Param("radius_mm", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm",
                help="radius of the ellipsoidal structuring element")
_CONNECTIVITY = Param("connectivity", "int", 1, minimum=1, maximum=3,
                      help="neighbours that connect: 1 faces (6), 2 edges (18), 3 corners (26)")

#: Operations on a label map (not a volume), for the app's label tools: name -> (function, parameters).
#: Each is called ``function(label_map, task=..., **params)`` and returns a new LabelMap.
LABEL_OPERATIONS: dict[str, tuple[Callable[..., LabelMap], tuple[Param, ...]]] = {
    "dilate": (dilate, (_RADIUS, _LABEL)),
    "erode": (erode, (_RADIUS, _LABEL)),
    "opening": (opening, (_RADIUS, _LABEL)),
    "closing": (closing, (_RADIUS, _LABEL)),
    "fill-holes": (fill_holes, (Param("slice_wise", "bool", False,
                                      help="fill each axial slice in 2D (also closes cavities open in z)"), _LABEL)),
    "keep-largest-component": (keep_largest_component, (_LABEL, _CONNECTIVITY)),
    "remove-islands": (remove_islands, (Param("min_size_mm3", "float", 100.0, minimum=0.0, exclusive_minimum=True,
                                              unit="mm^3", help="pieces smaller than this are removed"),
                                        _LABEL, _CONNECTIVITY)),
    "smooth": (smooth_labels, (Param("sigma_mm", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm",
                                     help="Gaussian sigma applied to each label's mask"), _LABEL)),
}
