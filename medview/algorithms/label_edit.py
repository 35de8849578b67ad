"""Label editing as diffs: brush (2D disc or 3D sphere), erase, threshold-limited paint, flood fill.

Every function here is pure: it reads the label map and returns an :class:`Edit` (the changed bounding
box with the values before and after) without touching the array.  The caller applies it
(:meth:`Edit.apply`, or :meth:`medview.app.history.History.perform`, which also records it for undo), so
a brush preview, an undo step and a saved history all share one representation, and no edit ever needs
a copy of the whole label map.

Conventions
-----------
* Points are LPS mm; they are mapped to voxels with :meth:`Geometry.world_to_index`.
* A 2D brush lies in the index plane normal to the view's axis: ``'axial'`` -> z, ``'coronal'`` -> y,
  ``'sagittal'`` -> x (``'z'``, ``'y'``, ``'x'`` are accepted too).  Its radius is in mm, measured with
  the spacing of the two in-plane axes, so it is round on screen for anisotropic voxels.
* A voxel belongs to a brush when its centre lies within the radius of the brush centre; the voxel
  holding the centre always belongs, so the smallest brush paints one voxel.
* Voxels of a *locked* label are never overwritten, and editing a locked label itself is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from scipy import ndimage

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume

BBox = tuple[slice, slice, slice]
BrushShape = Literal["disc", "sphere"]
ImageLike = Volume | np.ndarray

# view name -> array axis (z, y, x) normal to the view
VIEW_AXES = {"axial": 0, "coronal": 1, "sagittal": 2, "z": 0, "y": 1, "x": 2}
EMPTY_BBOX: BBox = (slice(0, 0), slice(0, 0), slice(0, 0))


# -- the diff -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Edit:
    """A change of one array: the values in ``bbox`` go from ``before`` to ``after``.

    ``bbox`` is a tuple of three index slices ``(z, y, x)`` with explicit start and stop; ``before`` and
    ``after`` have the bbox's shape and the array's dtype.  An edit that changes nothing has an empty
    bbox (:attr:`is_empty`).
    """

    bbox: BBox
    before: np.ndarray
    after: np.ndarray
    description: str = ""

    def __post_init__(self) -> None:
        shape = bbox_shape(self.bbox)
        if self.before.shape != shape or self.after.shape != shape:
            raise ValueError(f"Edit arrays {self.before.shape}/{self.after.shape} do not match the bbox {shape}")
        if self.before.dtype != self.after.dtype:
            raise ValueError(f"Edit arrays differ in dtype: {self.before.dtype} vs {self.after.dtype}")

    @property
    def is_empty(self) -> bool:
        return self.before.size == 0

    @property
    def changed_voxels(self) -> int:
        return int(np.count_nonzero(self.before != self.after))

    @property
    def nbytes(self) -> int:
        """Memory held by the uncompressed before/after arrays (bytes)."""
        return int(self.before.nbytes + self.after.nbytes)

    def apply(self, array: np.ndarray) -> None:
        """Write ``after`` into ``array`` (in place)."""
        if not self.is_empty:
            array[self.bbox] = self.after

    def revert(self, array: np.ndarray) -> None:
        """Write ``before`` back into ``array`` (in place)."""
        if not self.is_empty:
            array[self.bbox] = self.before


def bbox_shape(bbox: BBox) -> tuple[int, int, int]:
    return tuple(max(int(s.stop) - int(s.start), 0) for s in bbox)  # type: ignore[return-value]


def _tight(bbox: BBox, changed: np.ndarray) -> BBox | None:
    """The smallest bbox (absolute) holding every True of ``changed`` (which covers ``bbox``)."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(changed.any(axis=other))
        if hit.size == 0:
            return None
        start = int(bbox[axis].start)
        out.append(slice(start + int(hit[0]), start + int(hit[-1]) + 1))
    return tuple(out)  # type: ignore[return-value]


def make_edit(array: np.ndarray, bbox: BBox, after: np.ndarray, description: str = "") -> Edit:
    """An :class:`Edit` turning ``array[bbox]`` into ``after``, shrunk to the voxels that really change."""
    before = array[bbox]
    changed = before != after
    tight = _tight(bbox, changed)
    if tight is None:
        return empty_edit(array.dtype, description)
    local = tuple(slice(t.start - b.start, t.stop - b.start) for t, b in zip(tight, bbox, strict=True))
    return Edit(tight, np.array(before[local], copy=True), np.array(after[local], copy=True), description)


def empty_edit(dtype: np.dtype | type = np.uint8, description: str = "") -> Edit:
    empty = np.zeros((0, 0, 0), dtype=dtype)
    return Edit(EMPTY_BBOX, empty, empty.copy(), description)


def diff_edit(before: np.ndarray, after: np.ndarray, description: str = "") -> Edit:
    """The edit from a whole array ``before`` to ``after`` (e.g. a morphology result): only the changed bbox."""
    if before.shape != after.shape:
        raise MedviewError(f"The new array has shape {after.shape}, the edited one {before.shape}")
    if after.dtype != before.dtype:
        integral = np.issubdtype(before.dtype, np.integer)
        after = _cast_labels(after, before.dtype) if integral else after.astype(before.dtype)
    full = tuple(slice(0, n) for n in before.shape)
    return make_edit(before, full, after, description)  # type: ignore[arg-type]


def replace_array(label_map: LabelMap, new_array: np.ndarray, description: str = "Replace labels") -> Edit:
    """Edit replacing the whole label array (morphology, a segmentation result); locked labels stay as they are.

    Raises when a locked label's voxels would change, naming the label.
    """
    new_array = np.asarray(new_array)
    edit = diff_edit(label_map.array, new_array, description)
    locked = _locked_values(label_map)
    if edit.is_empty or not locked:
        return edit
    changed = edit.before != edit.after
    for values in (edit.before, edit.after):
        hit = changed & np.isin(values, locked)
        if hit.any():
            name = _label_name(label_map, int(values[hit][0]))
            raise MedviewError(f"{name} is locked: unlock it before replacing the labels")
    return edit


def combine_edits(array: np.ndarray, edits: Sequence[Edit], description: str = "") -> Edit:
    """One edit equal to ``edits`` applied in order, for an ``array`` that already holds their result.

    Used to turn the dabs of one brush stroke into a single undo step.
    """
    parts = [e for e in edits if not e.is_empty]
    if not parts:
        return empty_edit(array.dtype, description)
    union = tuple(slice(min(int(e.bbox[a].start) for e in parts), max(int(e.bbox[a].stop) for e in parts))
                  for a in range(3))
    after = np.array(array[union], copy=True)
    before = after.copy()
    for e in reversed(parts):  # undo in reverse order: the first dab's "before" wins
        local = tuple(slice(s.start - u.start, s.stop - u.start) for s, u in zip(e.bbox, union, strict=True))
        before[local] = e.before
    return make_edit_from_pair(union, before, after, description)  # type: ignore[arg-type]


def make_edit_from_pair(bbox: BBox, before: np.ndarray, after: np.ndarray, description: str = "") -> Edit:
    """An :class:`Edit` from explicit before/after arrays of ``bbox``, shrunk to what changes."""
    changed = before != after
    tight = _tight(bbox, changed)
    if tight is None:
        return empty_edit(before.dtype, description)
    local = tuple(slice(t.start - b.start, t.stop - b.start) for t, b in zip(tight, bbox, strict=True))
    return Edit(tight, np.array(before[local], copy=True), np.array(after[local], copy=True), description)


# -- brush regions ----------------------------------------------------------------------------------
class Region(NamedTuple):
    """Voxels selected by a brush: a bbox and a boolean mask of the bbox's shape."""

    slices: BBox
    mask: np.ndarray


def view_axis(view: str | int) -> int:
    """Array axis (0 = z, 1 = y, 2 = x) normal to ``view``."""
    if isinstance(view, int | np.integer) and 0 <= int(view) <= 2:
        return int(view)
    axis = VIEW_AXES.get(str(view).lower())
    if axis is None:
        raise MedviewError(f"Unknown view {view!r}; choose axial, coronal or sagittal")
    return axis


def point_to_voxel(geometry: Geometry, point_lps: Sequence[float] | np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    """Continuous ``(z, y, x)`` index of an LPS point and the voxel holding it; raises outside the volume."""
    point = np.asarray(point_lps, dtype=float).reshape(-1)
    if point.size != 3 or not np.all(np.isfinite(point)):
        raise MedviewError(f"A point needs three finite coordinates in mm, got {np.asarray(point_lps).tolist()}")
    xyz = geometry.world_to_index(point)
    if not geometry.contains_index(xyz):
        raise MedviewError(
            f"The point ({point[0]:.1f}, {point[1]:.1f}, {point[2]:.1f}) mm lies outside the volume")
    zyx = xyz[::-1].copy()
    return zyx, tuple(int(v) for v in np.rint(zyx))


def _check_radius(radius_mm: float) -> float:
    radius = float(radius_mm)
    if not np.isfinite(radius) or radius < 0:
        raise MedviewError(f"The brush radius must be zero or more mm, got {radius_mm}")
    return radius


def brush_region(geometry: Geometry, center_lps: Sequence[float] | np.ndarray, radius_mm: float,
                 shape: BrushShape = "disc", view: str | int = "axial") -> Region:
    """The voxels of a brush at ``center_lps``: a disc in the view's slice or a sphere, ``radius_mm`` in mm.

    Parameters
    ----------
    geometry
        The label map's grid.
    center_lps
        Brush centre, LPS mm; must lie inside the volume.
    radius_mm
        Radius in mm (>= 0); distances use the voxel spacing, so the brush is round in mm.
    shape
        ``'disc'`` (2D, in the slice through the centre normal to ``view``) or ``'sphere'`` (3D).
    view
        For a disc: ``'axial'`` (z), ``'coronal'`` (y) or ``'sagittal'`` (x).
    """
    radius = _check_radius(radius_mm)
    if shape not in ("disc", "sphere"):
        raise MedviewError(f"Unknown brush shape {shape!r}; choose disc or sphere")
    center, voxel = point_to_voxel(geometry, center_lps)
    spacing_zyx = np.array(geometry.spacing[::-1])
    dims = geometry.shape
    in_plane = (0, 1, 2)
    normal = view_axis(view) if shape == "disc" else None
    if normal is not None:
        in_plane = tuple(a for a in range(3) if a != normal)
    slices, axes = [], []
    for a in range(3):
        if a not in in_plane:
            slices.append(slice(voxel[a], voxel[a] + 1))
            axes.append(np.zeros(1))
            continue
        reach = radius / spacing_zyx[a]
        lo = max(min(int(np.ceil(center[a] - reach - 1e-9)), voxel[a]), 0)
        hi = min(max(int(np.floor(center[a] + reach + 1e-9)), voxel[a]), dims[a] - 1)
        slices.append(slice(lo, hi + 1))
        axes.append((np.arange(lo, hi + 1) - center[a]) * spacing_zyx[a])
    dz, dy, dx = np.ix_(*axes)
    mask = dz * dz + dy * dy + dx * dx <= radius * radius * (1 + 1e-9) + 1e-12
    mask[tuple(voxel[a] - slices[a].start for a in range(3))] = True
    return Region(tuple(slices), mask)  # type: ignore[arg-type]


# -- painting -------------------------------------------------------------------------------------
def _locked_values(label_map: LabelMap) -> list[int]:
    return [int(entry.value) for entry in label_map.labels if entry.locked]


def _label_name(label_map: LabelMap, value: int) -> str:
    for entry in label_map.labels:
        if entry.value == value:
            return f"Label '{entry.name}' ({value})"
    return f"Label {value}"


def _check_value(label_map: LabelMap, value: int, action: str) -> int:
    value = int(value)
    limit = int(np.iinfo(label_map.array.dtype).max)
    if not 0 <= value <= limit:
        raise MedviewError(f"Label values must lie between 0 and {limit} for this {label_map.array.dtype} label map, "
                           f"got {value}")
    if value and value in _locked_values(label_map):
        raise MedviewError(f"{_label_name(label_map, value)} is locked: unlock it to {action} it")
    return value


def _cast_labels(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    limit = int(np.iinfo(dtype).max)
    if not np.issubdtype(array.dtype, np.integer) and not np.all(np.mod(array, 1) == 0):
        raise MedviewError("The new labels hold non-integer values; a label map stores whole numbers only")
    if array.size and (int(array.min()) < 0 or int(array.max()) > limit):
        raise MedviewError(f"The new labels hold values outside 0-{limit}, which this {np.dtype(dtype)} label map "
                           "cannot store")
    return array.astype(dtype)


def _image_array(image: ImageLike, label_map: LabelMap) -> np.ndarray:
    array = image.array if isinstance(image, Volume) else np.asarray(image)
    if array.ndim != 3:
        raise MedviewError("Threshold-limited editing needs a greyscale 3D image (colour images have no single "
                           "intensity)")
    if tuple(array.shape) != label_map.geometry.shape:
        raise MedviewError(f"The image {array.shape} is not on the label map's grid {label_map.geometry.shape}")
    return array


def _intensity_gate(image: ImageLike | None, label_map: LabelMap, bbox: BBox, low: float | None,
                    high: float | None) -> np.ndarray | None:
    if low is None and high is None:
        return None
    if image is None:
        raise MedviewError("An intensity range needs the image it applies to")
    if low is not None and high is not None and float(low) > float(high):
        raise MedviewError(f"The intensity range is empty: low {low} is above high {high}")
    values = _image_array(image, label_map)[bbox]
    gate = np.ones(values.shape, dtype=bool)
    if low is not None:
        gate &= values >= low
    if high is not None:
        gate &= values <= high
    return gate


def paint(label_map: LabelMap, region: Region, value: int, image: ImageLike | None = None,
          low: float | None = None, high: float | None = None, paint_over: int | None = None,
          description: str = "") -> Edit:
    """Set the voxels of ``region`` to ``value`` (0 erases); returns the :class:`Edit`, not yet applied.

    Parameters
    ----------
    label_map
        The label map to edit (read only here).
    region
        From :func:`brush_region` (or any bbox + mask).
    value
        Label value to paint, 0 for background.
    image, low, high
        Threshold-limited paint: only voxels whose ``image`` value lies in ``[low, high]`` (image units,
        e.g. HU; either bound may be None) change.
    paint_over
        Only voxels currently holding this value change (e.g. 0: never paint over other labels).
    """
    value = _check_value(label_map, value, "paint" if value else "erase")
    bbox, mask = region
    if mask.shape != bbox_shape(bbox):
        raise ValueError(f"Region mask {mask.shape} does not match its bbox {bbox_shape(bbox)}")
    current = label_map.array[bbox]
    select = mask.copy()
    gate = _intensity_gate(image, label_map, bbox, low, high)
    if gate is not None:
        select &= gate
    locked = _locked_values(label_map)
    if locked:
        select &= ~np.isin(current, locked)
    if paint_over is not None:
        select &= current == int(paint_over)
    after = current.copy()
    after[select] = value
    return make_edit(label_map.array, bbox, after, description or (f"Paint label {value}" if value else "Erase"))


def erase(label_map: LabelMap, region: Region, value: int | None = None, image: ImageLike | None = None,
          low: float | None = None, high: float | None = None, description: str = "") -> Edit:
    """Set the voxels of ``region`` to background; only those of label ``value`` when given."""
    if value is not None:
        _check_value(label_map, value, "erase")
    return paint(label_map, region, 0, image=image, low=low, high=high, paint_over=value,
                 description=description or ("Erase" if value is None else f"Erase label {int(value)}"))


# -- flood fill -------------------------------------------------------------------------------------
def fill(label_map: LabelMap, seed_lps: Sequence[float] | np.ndarray, value: int, view: str | int | None = "axial",
         image: ImageLike | None = None, low: float | None = None, high: float | None = None,
         task: TaskContext | None = None, description: str = "") -> Edit:
    """Flood fill from ``seed_lps`` with ``value``: the face-connected region of voxels holding the seed's label.

    The region is bounded by other labels and, when ``low``/``high`` are given, by the intensity range of
    ``image``.  ``view`` names the slice for a 2D fill (``'axial'``, ``'coronal'``, ``'sagittal'``);
    ``None`` fills in 3D.  Raises when nothing would change (the seed already holds ``value``, lies
    outside the intensity range, or belongs to a locked label).
    """
    value = _check_value(label_map, value, "fill")
    _, voxel = point_to_voxel(label_map.geometry, seed_lps)
    seed_value = int(label_map.array[voxel])
    if seed_value and seed_value in _locked_values(label_map):
        raise MedviewError(f"Nothing to fill: the point lies in {_label_name(label_map, seed_value)}, which is locked")
    if seed_value == value:
        raise MedviewError(f"Nothing to fill: the point already belongs to {_label_name(label_map, value)}"
                           if value else "Nothing to fill: the point is already background")
    dims = label_map.geometry.shape
    if view is None:
        bbox: BBox = tuple(slice(0, n) for n in dims)  # type: ignore[assignment]
    else:
        axis = view_axis(view)
        bbox = tuple(slice(voxel[a], voxel[a] + 1) if a == axis else slice(0, dims[a]) for a in range(3))  # type: ignore[assignment]
    check_cancel(task)
    candidate = label_map.array[bbox] == seed_value
    gate = _intensity_gate(image, label_map, bbox, low, high)
    if gate is not None:
        candidate &= gate
    local_seed = tuple(voxel[a] - bbox[a].start for a in range(3))
    if not candidate[local_seed]:
        value_at = float(_image_array(image, label_map)[voxel])  # type: ignore[arg-type]
        raise MedviewError(f"Nothing to fill: the image value at the point ({value_at:g}) is outside "
                           f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]")
    report(task, 0.2, "Finding the connected region")
    components, _ = ndimage.label(candidate, structure=ndimage.generate_binary_structure(3, 1))
    check_cancel(task)
    region = components == components[local_seed]
    del components
    tight = _tight(bbox, region)
    assert tight is not None  # the seed is in the region
    local = tuple(slice(t.start - b.start, t.stop - b.start) for t, b in zip(tight, bbox, strict=True))
    region = region[local]
    before = np.array(label_map.array[tight], copy=True)
    after = before.copy()
    after[region] = value
    report(task, 1.0, "Fill done", force=True)
    return Edit(tight, before, after, description or (f"Fill label {value}" if value else "Fill background"))
