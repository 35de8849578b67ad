"""Per-label statistics: size, volume, intensity inside, bounding box, surface area, intensity histogram.

Surface area
------------
Area is the area of the triangle mesh that :func:`skimage.measure.marching_cubes` puts at level 0.5
through the label's binary mask (padded by one voxel so the surface is closed), with the voxel spacing
in mm, summed by :func:`skimage.measure.mesh_surface_area`.  This is the "surface area (mesh)" of the
IBSI radiomics standard and pyradiomics, so numbers agree with the tools researchers compare against.
Counting exposed voxel faces was rejected: for any smooth shape it overestimates by about 50 % (the
staircase of faces is as long as the Manhattan path), whatever the resolution.  The mesh also follows
the staircase, less so: for a sphere it overestimates by about 9 % with isotropic voxels and more with
thick slices (about 18 % at 0.7 x 0.7 x 2.5 mm); the test holds a 20 mm sphere on a 1 mm grid to
4 pi r^2 within +10 %.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from medview.core.atomic import atomic_write_bytes
from medview.core.errors import MedviewError, WriteError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume


@dataclass(frozen=True)
class LabelStatistics:
    """Statistics of one label.  Intensities are in the image's units (HU for CT); NaN without an image.

    Bounding boxes are inclusive and given by voxel centres: ``bbox_min_xyz``/``bbox_max_xyz`` are
    ``(x, y, z)`` indices, ``bbox_min_lps``/``bbox_max_lps`` the axis-aligned LPS box (mm) around the
    centres of the eight corner voxels.
    """

    value: int
    name: str
    voxels: int
    volume_ml: float
    mean: float
    std: float
    minimum: float
    maximum: float
    bbox_min_xyz: tuple[int, int, int]
    bbox_max_xyz: tuple[int, int, int]
    bbox_min_lps: tuple[float, float, float]
    bbox_max_lps: tuple[float, float, float]
    surface_mm2: float
    histogram_edges: np.ndarray = field(repr=False, compare=False)
    histogram_counts: np.ndarray = field(repr=False, compare=False)


CSV_COLUMNS = ("value", "name", "voxels", "volume_ml", "mean", "std", "min", "max",
               "bbox_min_x", "bbox_min_y", "bbox_min_z", "bbox_max_x", "bbox_max_y", "bbox_max_z",
               "bbox_min_l_mm", "bbox_min_p_mm", "bbox_min_s_mm", "bbox_max_l_mm", "bbox_max_p_mm", "bbox_max_s_mm",
               "surface_mm2")


def surface_area_mm2(mask: np.ndarray, spacing_xyz: Sequence[float]) -> float:
    """Area (mm^2) of the marching-cubes mesh around a boolean ``(z, y, x)`` mask; 0 for an empty mask."""
    from skimage import measure

    if not mask.any():
        return 0.0
    padded = np.pad(mask, 1).astype(np.float32)
    verts, faces, _, _ = measure.marching_cubes(padded, 0.5, spacing=tuple(float(s) for s in spacing_xyz[::-1]))
    return float(measure.mesh_surface_area(verts, faces))


def _image_array(image: Volume | np.ndarray | None, label_map: LabelMap) -> np.ndarray | None:
    if image is None:
        return None
    array = image.array if isinstance(image, Volume) else np.asarray(image)
    if array.ndim != 3:
        raise MedviewError("Label statistics need a greyscale image: colour images have no single intensity")
    if tuple(array.shape) != label_map.geometry.shape:
        raise MedviewError(f"The image {array.shape} is not on the label map's grid {label_map.geometry.shape}")
    return array


def _name(label_map: LabelMap, value: int) -> str:
    return next((entry.name for entry in label_map.labels if entry.value == value), f"Label {value}")


def label_statistics(label_map: LabelMap, image: Volume | np.ndarray | None = None,
                     values: Sequence[int] | None = None, bins: int = 64,
                     task: TaskContext | None = None) -> list[LabelStatistics]:
    """Statistics of each label (``values``, default: every label present), in ascending value order.

    Parameters
    ----------
    label_map
        The segmentation.
    image
        Greyscale image on the same grid, for the intensity statistics and histogram (optional).
    values
        Labels to describe; a requested label with no voxels gets a row with zero voxels.
    bins
        Histogram bins over each label's own [min, max] intensity range.
    """
    if bins < 1:
        raise MedviewError(f"A histogram needs at least one bin, got {bins}")
    pixels = _image_array(image, label_map)
    array = label_map.array
    wanted = sorted({int(v) for v in values}) if values is not None else label_map.present_values()
    report(task, 0.0, "Locating labels")
    boxes = ndimage.find_objects(array, max_label=max(wanted, default=0)) if wanted else []
    geometry = label_map.geometry
    out = []
    for i, value in enumerate(wanted):
        report(task, (i + 0.5) / max(len(wanted), 1), f"Label {value}")
        box = boxes[value - 1] if 0 < value <= len(boxes) else None
        if value == 0:  # background: every voxel outside the labels (no bounding box search needed)
            box = tuple(slice(0, n) for n in array.shape)
        mask = array[box] == value if box is not None else np.zeros((0, 0, 0), dtype=bool)
        count = int(np.count_nonzero(mask))
        if count == 0:
            out.append(_empty(label_map, value, bins))
            continue
        inside = pixels[box][mask].astype(np.float64) if pixels is not None else None
        if inside is not None:
            lo, hi = float(inside.min()), float(inside.max())
            counts, edges = np.histogram(inside, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
            mean, std = float(inside.mean()), float(inside.std())
        else:
            lo = hi = mean = std = math.nan
            counts, edges = np.zeros(0, dtype=np.int64), np.zeros(0)
        hits = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
        lo_zyx = [int(box[a].start) + int(hits[a][0]) for a in range(3)]
        hi_zyx = [int(box[a].start) + int(hits[a][-1]) for a in range(3)]
        corners = np.array([[x, y, z] for x in (lo_zyx[2], hi_zyx[2]) for y in (lo_zyx[1], hi_zyx[1])
                            for z in (lo_zyx[0], hi_zyx[0])], dtype=float)
        world = geometry.index_to_world(corners)
        out.append(LabelStatistics(
            value=value, name=_name(label_map, value), voxels=count,
            volume_ml=count * geometry.voxel_volume_mm3 / 1000.0,
            mean=mean, std=std, minimum=lo, maximum=hi,
            bbox_min_xyz=tuple(lo_zyx[::-1]), bbox_max_xyz=tuple(hi_zyx[::-1]),  # type: ignore[arg-type]
            bbox_min_lps=tuple(float(v) for v in world.min(axis=0)),  # type: ignore[arg-type]
            bbox_max_lps=tuple(float(v) for v in world.max(axis=0)),  # type: ignore[arg-type]
            surface_mm2=surface_area_mm2(mask, geometry.spacing),
            histogram_edges=edges, histogram_counts=counts,
        ))
    report(task, 1.0, "Statistics done", force=True)
    return out


def _empty(label_map: LabelMap, value: int, bins: int) -> LabelStatistics:
    nan3 = (math.nan, math.nan, math.nan)
    return LabelStatistics(value, _name(label_map, value), 0, 0.0, math.nan, math.nan, math.nan, math.nan,
                           (-1, -1, -1), (-1, -1, -1), nan3, nan3, 0.0, np.zeros(0), np.zeros(0, dtype=np.int64))


def _cell(value: object) -> object:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def to_csv(stats: Sequence[LabelStatistics], path: str | os.PathLike[str]) -> Path:
    """Write one row per label (columns :data:`CSV_COLUMNS`; empty cells for NaN) atomically to ``path``.

    Histograms are not part of the table.
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in stats:
        writer.writerow([_cell(v) for v in (
            s.value, s.name, s.voxels, s.volume_ml, s.mean, s.std, s.minimum, s.maximum,
            *s.bbox_min_xyz, *s.bbox_max_xyz, *s.bbox_min_lps, *s.bbox_max_lps, s.surface_mm2)])
    if not str(path).lower().endswith(".csv"):
        raise WriteError(f"Cannot write {os.path.basename(os.fspath(path))}: statistics are written as .csv")
    return atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
