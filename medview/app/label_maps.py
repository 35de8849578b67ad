"""Opening label maps onto a study, with their label table (names and colours) when one is shipped.

Label images (NIfTI, NRRD, MHA, DICOM images) and DICOM SEG files are accepted.  A label map whose grid
differs from the open image is resampled onto it with nearest neighbour (values and label table kept)
rather than refused; what was done is said in ``label_map.warnings``.

``warnings``: :class:`~medview.core.labels.LabelMap` has no field for notes about how it was made, so
:func:`open_label_map` sets a ``warnings`` attribute (a list of str, empty when all went as expected) on
the instance it returns.  Read it with :func:`label_map_warnings`, which also works on label maps made
elsewhere (it returns an empty list for them).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap, default_color
from medview.core.volume import Volume
from medview.io.label_tables import find_label_table
from medview.io.readers import open_image
from medview.io.seg import SegGridMismatchError, is_seg_file, read_seg

# Grids closer than this (a fraction of the finest voxel) are taken as the same grid: no resampling.
_SAME_GRID_VOXELS = 0.01


def label_map_warnings(labels: LabelMap) -> list[str]:
    """The notes :func:`open_label_map` attached to ``labels`` (resampled, thresholded...), else []."""
    return list(getattr(labels, "warnings", []))


def _table_for(path: Path) -> dict[int, dict]:
    """The label table next to the file: medview's ``<stem>_labels.json`` or ``label_table.json``, else an
    atlas's own text table (MRIcron/AAL ``.nii.txt`` + ``.lut``, FreeSurfer LUT, ITK-SNAP description:
    :func:`medview.io.label_tables.find_label_table`), so that AAL's region 114 is 'Vermis_8', not 'Label 114'."""
    stem = path.name.split(".")[0]
    # the file's own table first: a folder's label_table.json is for the files that have none
    for candidate in (path.parent / f"{stem}_labels.json", path.parent / f"{stem.replace('_atlas', '')}_labels.json",
                      path.parent / "label_table.json"):
        if candidate.exists():
            with open(candidate, encoding="utf-8") as fh:
                return {int(k): v for k, v in json.load(fh).items() if str(k).isdigit()}
    return find_label_table(path)[0]


def label_table_path(label_path: str | os.PathLike[str]) -> Path:
    """``<stem>_labels.json`` beside a label file: where its label table is written and read first."""
    path = Path(label_path)
    return path.parent / f"{path.name.split('.')[0]}_labels.json"


def write_label_table(labels: LabelMap, label_path: str | os.PathLike[str]) -> Path:
    """Write ``labels``' table (value -> name, colour) beside ``label_path`` atomically, the file
    :func:`open_label_map` reads back with it."""
    from medview.io.atomic import atomic_write_text

    table = {str(e.value): {"name": e.name, "color": list(e.color)} for e in labels.labels}
    return atomic_write_text(label_table_path(label_path), json.dumps(table, indent=1))


def _same_grid(a: Geometry, b: Geometry) -> bool:
    return a.is_same_grid(b, tol_mm=max(1e-2, _SAME_GRID_VOXELS * min(min(a.spacing), min(b.spacing))))


def _describe(geometry: Geometry) -> str:
    sx, sy, sz = geometry.spacing
    nx, ny, nz = geometry.size_xyz
    return f"{nx}x{ny}x{nz} voxels of {sx:.3g} x {sy:.3g} x {sz:.3g} mm ({geometry.orientation_code()})"


def _world_box(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """LPS bounding box (mm) of a grid's voxels, edges included."""
    n = np.array(geometry.size_xyz, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5)
                        for k in (-0.5, n[2] - 0.5)])
    world = geometry.index_to_world(corners)
    return world.min(axis=0), world.max(axis=0)


def _overlaps(source: Geometry, target: Geometry) -> bool:
    """True when the source grid's voxels reach into the target grid (tested in the target's index space)."""
    n = np.array(source.size_xyz, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5)
                        for k in (-0.5, n[2] - 0.5)])
    idx = target.world_to_index(source.index_to_world(corners))
    lo, hi = idx.min(axis=0), idx.max(axis=0)
    size = np.array(target.size_xyz, dtype=float)
    return bool(np.all(hi > -0.5) and np.all(lo < size - 0.5))


def _sitk_image(array: np.ndarray, geometry: Geometry):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def resample_label_map(labels: LabelMap, target: Geometry, name: str = "The label map") -> LabelMap:
    """``labels`` on the ``target`` grid by nearest neighbour, keeping values and label table.

    The result carries a ``warnings`` list saying from which grid it was resampled, how much of the
    labelled volume fell outside the target and which labels vanished.  Raises :class:`MedviewError`
    when the two grids do not overlap or no labelled voxel lands inside the target.
    """
    import SimpleITK as sitk

    source = labels.geometry
    if not _overlaps(source, target):
        (slo, shi), (tlo, thi) = _world_box(source), _world_box(target)
        raise MedviewError(
            f"{name} does not overlap the open image: it covers x {slo[0]:.0f}..{shi[0]:.0f}, "
            f"y {slo[1]:.0f}..{shi[1]:.0f}, z {slo[2]:.0f}..{shi[2]:.0f} mm, the image x {tlo[0]:.0f}..{thi[0]:.0f}, "
            f"y {tlo[1]:.0f}..{thi[1]:.0f}, z {tlo[2]:.0f}..{thi[2]:.0f} mm (LPS); "
            "it was probably drawn on another study")
    resampled = sitk.Resample(
        _sitk_image(labels.array, source), list(target.size_xyz), sitk.Transform(), sitk.sitkNearestNeighbor,
        target.origin, target.spacing, target.direction, 0)
    array = sitk.GetArrayFromImage(resampled).astype(labels.array.dtype, copy=False)
    before = {v: n * source.voxel_volume_mm3 for v, n in labels.voxel_counts().items()}
    out = LabelMap(array, target, labels=[Label(e.value, e.name, e.color, e.visible, e.opacity, e.locked)
                                          for e in labels.labels], source=labels.source)
    after = {v: n * target.voxel_volume_mm3 for v, n in out.voxel_counts().items()}
    if before and not after:
        raise MedviewError(f"None of the labelled voxels of {name} fall inside the open image "
                           f"({_describe(target)}); it was probably drawn on another study")
    warning = (f"{name} was resampled (nearest neighbour) onto the open image's grid, {_describe(target)}, "
               f"from {_describe(source)}")
    total_before, total_after = sum(before.values()), sum(after.values())
    if total_before and total_after < 0.99 * total_before:
        share = 1.0 - total_after / total_before
        warning += f"; {share:.0%} of the labelled volume lay outside the image and was dropped"
    lost = [v for v in before if v not in after]
    if lost:
        names = ", ".join(f"{v} ({out.label(v).name})" if any(e.value == v for e in out.labels) else str(v)
                          for v in lost[:5])
        warning += f"; label(s) {names} have no voxel left on the image's grid"
    out.warnings = [*label_map_warnings(labels), warning]  # type: ignore[attr-defined]
    return out


def _open_seg(path: Path, reference: Volume | None, task) -> LabelMap:
    try:
        return read_seg(path, reference, task=task)
    except SegGridMismatchError as exc:
        assert reference is not None  # mismatches are only found against a reference
        own = read_seg(path, None, task=task)
        resampled = resample_label_map(own, reference.geometry, path.name)
        resampled.warnings.insert(0, str(exc))  # type: ignore[attr-defined]
        return resampled


def _open_label_image(path: Path, reference: Volume | None, task) -> LabelMap:
    image = open_image(path, task=task)
    integral = not image.is_color and (np.issubdtype(image.array.dtype, np.integer)
                                       or bool(np.all(np.mod(image.array, 1) == 0)))
    if not integral:
        raise MedviewError(f"{path.name} is not a label map: it holds non-integer values")
    if image.array.min(initial=0) < 0 or image.array.max(initial=0) > 65535:
        raise MedviewError(f"{path.name} is not a label map: its values must lie between 0 and 65535")
    table = _table_for(path)
    array = image.array.astype(np.uint16 if image.array.max(initial=0) > 255 else np.uint8)
    labels = LabelMap(array, image.geometry, source=str(path))
    if table:
        labels.labels = [
            Label(v, str(table.get(v, {}).get("name", f"Label {v}")),
                  tuple(table.get(v, {}).get("color", default_color(v))))  # type: ignore[arg-type]
            for v in labels.present_values()
        ]
    labels.warnings = list(image.warnings)  # type: ignore[attr-defined]
    if reference is None:
        return labels
    if _same_grid(image.geometry, reference.geometry):
        labels.geometry = reference.geometry  # identical within float noise: share the image's grid exactly
        return labels
    return resample_label_map(labels, reference.geometry, path.name)


def open_label_map(path: str | os.PathLike[str], reference: Volume | None = None, task=None) -> LabelMap:
    """Read a label image (NIfTI, NRRD, MHA, DICOM) or a DICOM SEG as a LabelMap on ``reference``'s grid.

    Parameters
    ----------
    path
        The label file.  A DICOM file whose SOP class or modality says SEG is read as a segmentation
        (segment names and colours become the label table); other files as label images, with a
        ``label_table.json`` or ``<stem>_labels.json`` next to them supplying names and colours.
    reference
        The open image.  A label map on another grid is resampled onto it with nearest neighbour and a
        warning; one that does not overlap it at all is refused.

    Returns
    -------
    LabelMap
        With a ``warnings`` attribute (list of str; see :func:`label_map_warnings`).
    """
    path = Path(path)
    if is_seg_file(path):
        return _open_seg(path, reference, task)
    return _open_label_image(path, reference, task)


def open_label_map_with_history(path: str | os.PathLike[str], reference: Volume | None = None, task=None):
    """A label map and the undo history saved beside it (``<labels>.medview-history``), if any.

    Returns ``(labels, history or None, message or None)``: the history only when the file exists and
    still matches the label map (same grid and content); otherwise a message says why it was not used.
    A label map resampled onto the study has no usable history (its voxels are not the saved ones).
    """
    from medview.app.history import History, history_path_for

    labels = open_label_map(path, reference=reference, task=task)
    history_file = history_path_for(path)
    if not history_file.exists():
        return labels, None, None
    if label_map_warnings(labels):
        return labels, None, "The undo history beside the file was not loaded: the labels were resampled"
    history, message = History.load_or_empty(history_file, "labels", labels)
    if message is None and history.saved_table is not None and not is_seg_file(Path(path)) and not _table_for(
            Path(path)):
        # no table file beside the labels: the history file has the table its steps end at (names, colours)
        labels.labels = [replace(e) for e in history.saved_table]
        labels.add_missing_entries()
    return labels, (history if message is None else None), message
