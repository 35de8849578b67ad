"""Measurements on views: distances, angles, and region-of-interest statistics on a 2D image.

Pixel coordinates are continuous ``(col, row)`` with integer values at pixel centres, as in
:class:`medview.algorithms.reslice.Plane`.  Region masks select the pixels whose *centre* lies inside
the shape, with a half-open rule on the boundary (a centre on a left or top edge is in, on a right or
bottom edge is out), so a shape with integer corners covers exactly its area in pixels and shapes that
share an edge never share a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medview.core.errors import MedviewError

__all__ = ["RoiStats", "angle_deg", "distance_mm", "ellipse_area_mm2", "ellipse_mask", "polygon_area_mm2",
           "polygon_mask", "rectangle_mask", "roi_stats"]

PointLike = Sequence[float] | np.ndarray


def _point(p: PointLike, name: str) -> np.ndarray:
    arr = np.asarray(p, dtype=float).reshape(-1)
    if arr.size not in (2, 3) or not np.all(np.isfinite(arr)):
        raise MedviewError(f"{name} must be a finite 2D or 3D point (mm), got {arr.tolist()}")
    return arr


def _shape2d(shape: Sequence[int]) -> tuple[int, int]:
    dims = tuple(int(s) for s in shape)
    if len(dims) < 2 or min(dims[:2]) < 0:
        raise MedviewError(f"A mask needs an image shape (rows, cols), got {tuple(shape)}")
    return dims[0], dims[1]


def distance_mm(a_lps: PointLike, b_lps: PointLike) -> float:
    """Euclidean distance (mm) between two world points (LPS, mm)."""
    a, b = _point(a_lps, "First point"), _point(b_lps, "Second point")
    if a.size != b.size:
        raise MedviewError("Both points of a distance need the same number of coordinates")
    return float(np.linalg.norm(b - a))


def angle_deg(a_lps: PointLike, vertex_lps: PointLike, b_lps: PointLike) -> float:
    """Angle (degrees, 0-180) at ``vertex_lps`` between the arms to ``a_lps`` and ``b_lps`` (LPS, mm)."""
    a, o, b = _point(a_lps, "First point"), _point(vertex_lps, "Vertex"), _point(b_lps, "Last point")
    if not a.size == o.size == b.size:
        raise MedviewError("All points of an angle need the same number of coordinates")
    p, q = np.zeros(3), np.zeros(3)
    p[: a.size], q[: b.size] = a - o, b - o
    if np.linalg.norm(p) == 0 or np.linalg.norm(q) == 0:
        raise MedviewError("An angle needs both arms to have a length: a point coincides with the vertex")
    # atan2 of |cross| and dot stays accurate for angles near 0 and 180 degrees, unlike arccos.
    return float(np.degrees(np.arctan2(np.linalg.norm(np.cross(p, q)), p @ q)))


def polygon_mask(shape: Sequence[int], vertices_colrow: PointLike | Sequence[PointLike]) -> np.ndarray:
    """Pixels whose centre lies inside a polygon (even-odd rule).

    Parameters
    ----------
    shape
        Image shape ``(rows, cols)``.
    vertices_colrow
        ``(N, 2)`` polygon vertices in continuous pixel coordinates ``(col, row)``; the polygon is closed
        implicitly.  Self-intersecting polygons follow the even-odd rule.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``shape``.
    """
    rows, cols = _shape2d(shape)
    pts = np.asarray(vertices_colrow, dtype=float).reshape(-1, 2)
    mask = np.zeros((rows, cols), dtype=bool)
    if len(pts) < 3 or rows == 0 or cols == 0:
        return mask
    if not np.all(np.isfinite(pts)):
        raise MedviewError("A polygon vertex is not a finite position")
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # Scanline crossings: each edge crosses the rows r with min(y) <= r < max(y) (half-open, so a vertex
    # shared by two edges counts once and horizontal edges never count).
    r_first = np.ceil(np.minimum(y0, y1)).astype(np.int64)
    r_stop = np.ceil(np.maximum(y0, y1)).astype(np.int64)
    r_first, r_stop = np.clip(r_first, 0, rows), np.clip(r_stop, 0, rows)
    counts = r_stop - r_first
    if counts.sum() == 0:
        return mask
    edge = np.repeat(np.arange(len(pts)), counts)
    row = np.repeat(r_first, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    t = (row - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    # A crossing at x toggles every pixel with centre col >= x; the parity of toggles gives inside.
    first_col = np.clip(np.ceil(x), 0, cols).astype(np.int64)
    toggles = np.zeros((rows, cols + 1), dtype=np.int32)
    np.add.at(toggles, (row, first_col), 1)
    return (np.cumsum(toggles[:, :cols], axis=1) % 2).astype(bool)


def rectangle_mask(shape: Sequence[int], corner_a_colrow: PointLike, corner_b_colrow: PointLike) -> np.ndarray:
    """Pixels whose centre lies in the axis-aligned rectangle spanned by two opposite corners ``(col, row)``."""
    rows, cols = _shape2d(shape)
    a, b = _point(corner_a_colrow, "Corner"), _point(corner_b_colrow, "Corner")
    (c0, c1), (r0, r1) = sorted((a[0], b[0])), sorted((a[1], b[1]))
    c = np.arange(cols)
    r = np.arange(rows)
    return ((r >= r0) & (r < r1))[:, None] & ((c >= c0) & (c < c1))[None, :]


def ellipse_mask(shape: Sequence[int], center_colrow: PointLike, radii_colrow: PointLike) -> np.ndarray:
    """Pixels whose centre lies inside the axis-aligned ellipse (boundary included).

    Parameters
    ----------
    shape
        Image shape ``(rows, cols)``.
    center_colrow
        Centre in continuous pixel coordinates ``(col, row)``.
    radii_colrow
        Semi-axes in pixels along columns and rows; a zero radius gives an empty mask.
    """
    rows, cols = _shape2d(shape)
    cc, cr = _point(center_colrow, "Ellipse centre")[:2]
    rc, rr = np.abs(_point(radii_colrow, "Ellipse radii")[:2])
    mask = np.zeros((rows, cols), dtype=bool)
    if rc == 0 or rr == 0:
        return mask
    # Evaluate only the bounding box: a small ROI on a large image stays cheap while dragging.
    r_lo, r_hi = max(0, int(np.ceil(cr - rr))), min(rows, int(np.floor(cr + rr)) + 1)
    c_lo, c_hi = max(0, int(np.ceil(cc - rc))), min(cols, int(np.floor(cc + rc)) + 1)
    if r_lo >= r_hi or c_lo >= c_hi:
        return mask
    dr = ((np.arange(r_lo, r_hi) - cr) / rr) ** 2
    dc = ((np.arange(c_lo, c_hi) - cc) / rc) ** 2
    mask[r_lo:r_hi, c_lo:c_hi] = dr[:, None] + dc[None, :] <= 1.0
    return mask


@dataclass
class RoiStats:
    """Statistics of the pixels of a region, in the image's units (HU for CT).

    ``std`` is the population standard deviation (ddof=0); ``area_mm2`` is the pixel count times the
    pixel area.
    """

    mean: float
    std: float
    min: float
    max: float
    n_pixels: int
    area_mm2: float


def roi_stats(image2d: np.ndarray, mask: np.ndarray, spacing_uv: Sequence[float]) -> RoiStats:
    """Statistics of ``image2d`` over the pixels selected by ``mask``.

    Parameters
    ----------
    image2d
        ``(rows, cols)`` image, e.g. from :func:`medview.algorithms.reslice.reslice`.
    mask
        Boolean mask of the same shape.
    spacing_uv
        Pixel size ``(along columns, along rows)`` in mm.
    """
    image = np.asarray(image2d)
    m = np.asarray(mask, dtype=bool)
    if image.ndim != 2:
        raise MedviewError(f"Region statistics need a single-channel 2D image, got shape {image.shape}")
    if m.shape != image.shape:
        raise MedviewError(f"The region mask {m.shape} does not match the image {image.shape}")
    su, sv = (float(s) for s in np.asarray(spacing_uv, dtype=float).reshape(-1)[:2])
    values = image[m].astype(np.float64)
    if values.size == 0:
        raise MedviewError("The region contains no pixels: draw it larger or inside the image")
    return RoiStats(mean=float(values.mean()), std=float(values.std()), min=float(values.min()),
                    max=float(values.max()), n_pixels=int(values.size), area_mm2=float(values.size * su * sv))


def ellipse_area_mm2(radii_mm: Sequence[float]) -> float:
    """Area (mm^2) of an ellipse with semi-axes ``(a, b)`` in mm: ``pi * a * b``."""
    a, b = np.abs(np.asarray(radii_mm, dtype=float).reshape(-1)[:2])
    return float(np.pi * a * b)


def polygon_area_mm2(vertices_mm: PointLike | Sequence[PointLike]) -> float:
    """Area (mm^2) of a simple polygon from its vertices in mm (shoelace formula).

    Accepts ``(N, 2)`` in-plane coordinates or ``(N, 3)`` world points of a planar polygon.
    """
    pts = np.asarray(vertices_mm, dtype=float)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise MedviewError(f"Polygon vertices must be (N, 2) or (N, 3) mm coordinates, got shape {pts.shape}")
    if len(pts) < 3:
        return 0.0
    nxt = np.roll(pts, -1, axis=0)
    if pts.shape[1] == 2:
        return float(abs(np.sum(pts[:, 0] * nxt[:, 1] - nxt[:, 0] * pts[:, 1])) / 2.0)
    # Planar 3D polygon: half the norm of the summed cross products (vector shoelace).
    return float(np.linalg.norm(np.cross(pts - pts[0], nxt - pts[0]).sum(axis=0)) / 2.0)
