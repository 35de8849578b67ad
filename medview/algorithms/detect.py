"""Classical blob detection (nodule candidates): scale-space LoG / DoG on an isotropic grid.

How :func:`detect_blobs` works
------------------------------
1. The volume (cropped to the optional mask's bounding box plus a margin) is mapped through an
   intensity window to 0..1 (``window_low`` HU -> 0, ``window_high`` HU -> 1, clipped) and resampled with
   SimpleITK (linear) to an **isotropic** grid with the volume's origin and direction, so that a sphere
   stays a sphere whatever the slice thickness.
2. The wanted diameter range ``[min_diameter, max_diameter]`` (mm) becomes a range of Gaussian scales
   on that grid: in 3D a bright ball of radius ``r`` gives its strongest scale-normalised LoG response
   ``sigma**2 * -lap(G_sigma * I)`` at its centre for ``sigma = r / sqrt(3)`` (the response there is
   ``sqrt(2/pi) x**3 exp(-x**2/2)`` with ``x = r/sigma``, largest at ``x = sqrt(3)``, where it is 0.925 for a
   ball of contrast 1).  The scales are geometric (steps of at most 1.2) and extended by one step beyond
   each end, so a blob whose best scale lies outside the range peaks at an end scale and is dropped
   instead of being reported at the nearest allowed size.
3. scikit-image's ``blob_log`` (or ``blob_dog``, the faster difference-of-Gaussians approximation) finds
   the local maxima of the scale space above ``threshold``; the grid is cut into overlapping tiles so
   memory stays bounded and the job can report progress and be cancelled between tiles.  The tiles are
   slabs of whole planes, as large as a budget of scale-space elements allows (one slab for a chest CT at
   the default spacing), so a cancel waits for at most one slab's ``blob_log`` call (about 3 s for a
   chest CT at 2 mm on one core); the resampling is aborted at once (SimpleITK, see ``sitk_bridge``).
4. Each candidate is scored and refined on the scale-normalised LoG itself, evaluated exactly at its
   3 x 3 x 3 neighbourhood and at the neighbouring scales (separable kernels identical to
   ``scipy.ndimage.gaussian_laplace``): the score is the LoG response at the centre and scale (0..~0.93,
   in units of the window's contrast), the centre and the scale are refined to sub-voxel / sub-step
   precision by fitting a parabola along each axis and along log(sigma).
5. A LoG maximum is not always a ball: on the bright side of a larger object's surface and along a
   vessel the LoG also peaks.  Candidates whose Hessian (at their scale) is not curved in all three
   directions (:func:`hessian_roundness` below ``min_roundness``) are dropped, and so are candidates
   outside the diameter range or outside the mask; overlapping candidates are
   pruned greedily, strongest first (a weaker blob is removed when more than ``overlap`` of the smaller
   sphere's volume lies inside a stronger one).  Centres are converted to LPS mm with the isotropic grid's
   geometry, so they are exact world positions for any direction matrix.

The result is a :class:`~medview.core.detections.DetectionSet`, the same type a detection model returns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import SimpleITK as sitk
from skimage.feature import blob_dog, blob_log

from medview.algorithms.operations import Param
from medview.algorithms.sitk_bridge import execute, from_sitk, geometry_of, to_sitk
from medview.core.detections import Detection, DetectionSet, parabola_peak_offset
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry, mask_box
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume

__all__ = ["DETECTORS", "NODULE_WINDOW_HU", "Detector", "detect_blobs", "get_detector"]

SQRT3 = math.sqrt(3.0)
TRUNCATE = 4.0  # Gaussian kernels reach 4 sigma, as scipy.ndimage's and scikit-image's do
MAX_SCALE_STEP = 1.2  # ratio between successive scales: about +-10 % size quantisation before refinement
CUBE_BUDGET = 40_000_000  # scale-space elements per slab (float32: 160 MB, about three times that at peak)
NODULE_WINDOW_HU = (-800.0, 0.0)  # aerated lung -> 0, solid nodule -> 1


# -- the scale-normalised LoG, evaluated exactly in a small neighbourhood -----------------------------
def _kernels(sigma: float) -> tuple[int, np.ndarray, np.ndarray]:
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=float)
    phi = np.exp(-0.5 * x * x / (sigma * sigma))
    phi /= phi.sum()
    return radius, phi, phi * (x * x / sigma**4 - 1.0 / sigma**2)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """scipy.ndimage's 'reflect' boundary (d c b a | a b c d | d c b a) for any index."""
    period = 2 * n
    i = np.mod(index, period)
    return np.where(i >= n, period - 1 - i, i)


def _windows(kernel: np.ndarray) -> np.ndarray:
    """(3, len + 2): the kernel placed to give the outputs at offsets -1, 0, +1 from the patch centre."""
    w = np.zeros((3, kernel.size + 2))
    for k in range(3):
        w[k, k:k + kernel.size] = kernel
    return w


def log_neighbourhood(image: np.ndarray, center_zyx: tuple[int, int, int], sigma: float) -> np.ndarray:
    """``sigma**2 * -gaussian_laplace(image, sigma)`` at the 3 x 3 x 3 voxels around ``center_zyx``.

    Equal to the full-image computation with scipy's defaults (reflect boundary, 4-sigma kernels), at a
    cost independent of the image size.
    """
    radius, phi, d2 = _kernels(sigma)
    idx = [_reflect(np.arange(c - radius - 1, c + radius + 2), n) for c, n in zip(center_zyx, image.shape, strict=True)]
    patch = image[np.ix_(*idx)].astype(float)
    w0, w2 = _windows(phi), _windows(d2)
    a0 = np.einsum("ai,ijk->ajk", w0, patch)
    a2 = np.einsum("ai,ijk->ajk", w2, patch)
    b00 = np.einsum("bj,ajk->abk", w0, a0)
    b20 = np.einsum("bj,ajk->abk", w0, a2)
    b02 = np.einsum("bj,ajk->abk", w2, a0)
    lap = np.einsum("ck,abk->abc", w0, b20 + b02) + np.einsum("ck,abk->abc", w2, b00)
    return -(sigma * sigma) * lap


def hessian_roundness(image: np.ndarray, center_zyx: tuple[int, int, int], sigma: float) -> float:
    """How ball-like the intensity is at ``center_zyx`` on scale ``sigma``: 0 (sheet, tube, dark) to 1.

    The eigenvalues of the Hessian of the Gaussian-smoothed image are all negative at a bright ball's
    centre and equal for a sphere; on the bright side of a large object's surface one is strongly
    negative and the others near zero (an edge, not a blob), along a vessel one is near zero.  Returns
    ``max(-largest eigenvalue, 0) / -smallest eigenvalue`` (0 when the smallest is not negative).
    """
    radius, phi, d2 = _kernels(sigma)
    x = np.arange(-radius, radius + 1, dtype=float)
    d1 = phi * (-x / sigma**2)
    idx = [_reflect(np.arange(c - radius, c + radius + 1), n) for c, n in zip(center_zyx, image.shape, strict=True)]
    patch = image[np.ix_(*idx)].astype(float)
    kernels = {0: phi, 1: d1, 2: d2}
    h = np.empty((3, 3))
    for a in range(3):
        for b in range(a, 3):
            orders = [0, 0, 0]
            orders[a] += 1
            orders[b] += 1
            k = [kernels[o] for o in orders]
            h[a, b] = h[b, a] = np.einsum("i,j,k,ijk->", k[0], k[1], k[2], patch)
    eig = np.linalg.eigvalsh(h)  # ascending: eig[0] most negative
    if eig[0] >= 0:
        return 0.0
    return float(max(-eig[2], 0.0) / -eig[0])


# -- helpers -----------------------------------------------------------------------------------------
def _finite(value: Any, name: str, unit: str = "") -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise MedviewError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise MedviewError(f"{name} must be a finite number{f' ({unit})' if unit else ''}, got {value!r}")
    return out


def _mask_array(mask: np.ndarray | LabelMap | None, geometry: Geometry) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, LabelMap):
        if not mask.geometry.is_same_grid(geometry):
            raise MedviewError("The detection mask is not on the image's grid; resample it onto the image first")
        array = mask.array
    else:
        array = np.asarray(mask)
    if array.shape != geometry.shape:
        raise MedviewError(f"The detection mask's shape {array.shape} does not match the image {geometry.shape}")
    return array != 0


def _crop(volume: Volume, mask: np.ndarray | None, margin_mm: float) -> tuple[np.ndarray, Geometry] | None:
    """The volume's array and geometry restricted to the mask's bounding box plus ``margin_mm``."""
    g = volume.geometry
    if mask is None:
        return volume.array, g
    box = mask_box(mask, np.ceil(margin_mm / np.array(g.spacing[::-1])).astype(int))
    if box is None:
        return None
    lo = [max(a, 0) for a, _ in box]
    array = volume.array[tuple(slice(a, min(b, n)) for a, (_, b), n in zip(lo, box, g.shape, strict=True))]
    return array, g.subgrid(lo, array.shape)


def _isotropic(image: np.ndarray, geometry: Geometry, spacing: float, task: TaskContext | None) -> tuple[
        np.ndarray, Geometry]:
    """``image`` resampled (linear) onto an isotropic grid with the same origin, direction and extent."""
    size = [math.floor((n - 1) * s / spacing + 1e-6) + 1
            for n, s in zip(geometry.size_xyz, geometry.spacing, strict=True)]
    resample = sitk.ResampleImageFilter()
    resample.SetOutputSpacing((spacing,) * 3)
    resample.SetSize(size)
    resample.SetOutputOrigin(geometry.origin)
    resample.SetOutputDirection(geometry.direction)
    resample.SetInterpolator(sitk.sitkLinear)
    resample.SetDefaultPixelValue(0.0)
    resample.SetOutputPixelType(sitk.sitkFloat32)
    out = execute(resample, to_sitk(image, geometry), task=task, message="Resampling to an isotropic grid",
                  span=(0.0, 0.15))
    return from_sitk(out).astype(np.float32, copy=False), geometry_of(out)


def _tiles(shape: tuple[int, ...], margin: int, n_scales: int) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """(slab with margin, core inside the slab) pairs covering ``shape`` along its first axis.

    Slabs span the other two axes whole, so the recomputed margins cost little; each slab's scale-space
    cube stays within :data:`CUBE_BUDGET` elements unless the margins alone exceed it.
    """
    n0, plane = shape[0], int(np.prod(shape[1:]))
    thickness = max(int(CUBE_BUDGET / (plane * n_scales)) - 2 * margin, margin, 8)
    if thickness >= n0:
        whole = tuple(slice(0, n) for n in shape)
        return [(whole, whole)]
    out = []
    for start in range(0, n0, thickness):
        stop = min(start + thickness, n0)
        t_lo, t_hi = max(start - margin, 0), min(stop + margin, n0)
        rest = tuple(slice(0, n) for n in shape[1:])
        out.append(((slice(t_lo, t_hi), *rest), (slice(start - t_lo, stop - t_lo), *rest)))
    return out


def _overlap_fraction(r1: float, r2: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Volume shared by spheres of radii ``r1`` and ``r2`` at distance ``d``, over the smaller sphere's."""
    small = np.minimum(r1, r2)
    inter = np.zeros_like(d)
    partial = (d < r1 + r2) & (d > np.abs(r1 - r2))
    inside = d <= np.abs(r1 - r2)
    dp, rp = d[partial], r2[partial]
    inter[partial] = (np.pi * (r1 + rp - dp) ** 2 * (dp * dp + 2 * dp * (r1 + rp) - 3 * (r1 - rp) ** 2)) / (12 * dp)
    inter[inside] = 4.0 / 3.0 * np.pi * small[inside] ** 3
    return inter / (4.0 / 3.0 * np.pi * small**3)


def _suppress(centres: np.ndarray, radii: np.ndarray, scores: np.ndarray, overlap: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, strongest first."""
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        if kept:
            k = np.array(kept)
            d = np.linalg.norm(centres[k] - centres[i], axis=1)
            if np.any(_overlap_fraction(float(radii[i]), radii[k], d) > overlap):
                continue
        kept.append(int(i))
    return kept


# -- the LoG scale space, computed once for the whole grid ------------------------------------------------
#: ``layers(image, sigmas, task)`` yields the scale-space layers (``log_layer``) of ``image`` in order: in this
#: process (:func:`serial_layers`) or, from the app layer, in worker processes, several at once.
LayerSource = Callable[[np.ndarray, np.ndarray, "TaskContext | None"], Iterator[np.ndarray]]


def blob_log_sigmas(min_sigma: float, max_sigma: float, num_sigma: int) -> np.ndarray:
    """``(num_sigma, 3)`` float32: the scales scikit-image's ``blob_log(..., log_scale=True)`` uses, computed
    as it computes them (one per axis of a 3D image)."""
    low = np.full(3, min_sigma, dtype=np.float32)
    high = np.full(3, max_sigma, dtype=np.float32)
    return np.logspace(np.log10(low), np.log10(high), num_sigma)


def log_layer(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """One layer of ``blob_log``'s scale space, ``-gaussian_laplace(image, sigma) * mean(sigma)**2``, equal
    bit for bit to scipy's ``gaussian_laplace`` (the same 1D passes in the same order, float32 between them)
    with 8 passes instead of 9: the z smoothing that the y and x second derivatives both start with is done
    once."""
    image = np.asarray(image, dtype=np.float32)
    s = list(sigma)  # what scipy's _normalize_sequence makes of it

    def g(x: np.ndarray, axis: int, order: int) -> np.ndarray:
        return ndi.gaussian_filter1d(x, s[axis], axis, order, mode="reflect", cval=0.0, truncate=TRUNCATE)

    out = g(g(g(image, 0, 2), 1, 0), 2, 0)
    smooth_z = g(image, 0, 0)
    out += g(g(smooth_z, 1, 2), 2, 0)
    out += g(g(smooth_z, 1, 0), 2, 2)
    del smooth_z
    return -out * np.mean(sigma) ** 2


def serial_layers(image: np.ndarray, sigmas: np.ndarray, task: TaskContext | None = None) -> Iterator[np.ndarray]:
    """The scale-space layers one after the other, in this process."""
    for sigma in sigmas:
        check_cancel(task)
        yield log_layer(image, sigma)


_OFFSETS = tuple(itertools.product((-1, 0, 1), repeat=3))


def _layer_peaks(prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """``(z, y, x, value)`` of the voxels of ``cur`` above ``threshold`` that are the largest of their
    3 x 3 x 3 x 3 neighbourhood in the scale space (``prev``, ``cur``, ``nxt``; clamped at the borders, as
    ``maximum_filter(mode='nearest')`` in ``peak_local_max``): max is exact, so this is its mask, evaluated only
    where the threshold lets a peak be."""
    z, y, x = np.nonzero(cur > threshold)
    shape = np.array(cur.shape)
    layers = [cur] + [a for a in (prev, nxt) if a is not cur]
    for layer in layers:
        if not len(z):
            break
        flat, value = layer.ravel(), cur[z, y, x]
        clamped = [[np.clip(c + d, 0, n - 1) for d in (-1, 0, 1)] for c, n in zip((z, y, x), shape, strict=True)]
        keep = np.ones(len(z), dtype=bool)
        for dz, dy, dx in _OFFSETS:
            index = (clamped[0][dz + 1] * shape[1] + clamped[1][dy + 1]) * shape[2] + clamped[2][dx + 1]
            keep &= flat[index] <= value
        z, y, x = z[keep], y[keep], x[keep]
    return z, y, x, cur[z, y, x]


def _pruned_by_blob_log(peaks: np.ndarray, sigma_of: np.ndarray) -> np.ndarray:
    """Which rows of ``peaks`` (z, y, x, scale index) ``blob_log(overlap=1.0)`` would keep.

    Its pruning removes a blob only where scikit-image's sphere overlap exceeds 1, which happens only by
    rounding when one sphere just contains the other; such pairs are found here with a margin and checked
    with scikit-image's own function (and, if one is found, its pruning run on all of them)."""
    keep = np.ones(len(peaks), dtype=bool)
    if len(peaks) < 2:
        return keep
    from scipy.spatial import cKDTree

    lm = np.hstack([peaks[:, :3].astype(np.float32), sigma_of[peaks[:, 3], :1]])
    pairs = cKDTree(lm[:, :3]).query_pairs(2 * float(lm[:, 3].max()) * SQRT3, output_type="ndarray")
    if not len(pairs):
        return keep
    r = lm[:, 3].astype(float) * SQRT3
    d = np.linalg.norm(lm[pairs[:, 0], :3].astype(float) - lm[pairs[:, 1], :3], axis=1)
    r1, r2 = r[pairs[:, 0]], r[pairs[:, 1]]
    near = (d > np.abs(r1 - r2)) & (d < np.abs(r1 - r2) + 1e-3 * (r1 + r2))
    if not near.any():
        return keep
    try:
        from skimage.feature.blob import _blob_overlap, _prune_blobs
    except ImportError:  # pragma: no cover - another scikit-image: keep them all
        return keep
    if not any(_blob_overlap(lm[i], lm[j], sigma_dim=1) > 1.0 for i, j in pairs[near]):
        return keep
    survivors = _prune_blobs(lm.copy(), 1.0, sigma_dim=1)
    kept = {tuple(row) for row in survivors}
    return np.array([tuple(row) in kept for row in lm])


def log_candidates(iso: np.ndarray, sigmas: np.ndarray, threshold: float, layers: LayerSource | None = None,
                   task: TaskContext | None = None, span: tuple[float, float] = (0.15, 0.85)
                   ) -> list[tuple[int, int, int, int]]:
    """``(z, y, x, scale index)`` of the scale-space maxima ``blob_log(iso, sigmas[0], sigmas[-1], len(sigmas),
    threshold, overlap=1.0, log_scale=True, exclude_border=False)`` finds, in its order (strongest first, ties
    in index order), without the end scales.

    The same computation on the whole grid at once instead of slabs with margins (which recomputed about 3
    times the grid for a chest CT), the layers computed one at a time (by ``layers``, possibly in parallel)
    and only three held, and the 4D maximum evaluated only above the threshold, never as a full 4D filter.
    """
    sigma_list = blob_log_sigmas(float(sigmas[0]), float(sigmas[-1]), len(sigmas))
    n = len(sigma_list)
    source = (layers or serial_layers)(iso, sigma_list, task)
    found: list[tuple[np.ndarray, ...]] = []

    def peaks_of(k: int, prev: np.ndarray, cur: np.ndarray, nxt: np.ndarray) -> None:
        z, y, x, value = _layer_peaks(prev, cur, nxt, threshold)
        found.append((z, y, x, np.full(len(z), k), value))

    window: list[np.ndarray] = []  # the last three layers at most
    lo, hi = span
    for i in range(n):
        window = [*window[-2:], next(source)]
        report(task, lo + (hi - lo) * (i + 1) / n, f"Scale space: {i + 1} of {n} scales")
        if i >= 1:  # layer i - 1 has both its neighbours now (the first is its own lower neighbour)
            peaks_of(i - 1, window[-3] if i >= 2 else window[-2], window[-2], window[-1])
    peaks_of(n - 1, window[-2] if n > 1 else window[-1], window[-1], window[-1])
    del window
    check_cancel(task)
    z, y, x, k, values = (np.concatenate(c) for c in zip(*found, strict=True))
    if not len(z):
        return []
    order = np.lexsort((k, x, y, z, -values))  # peak_local_max: highest first, stable in (z, y, x, scale) order
    peaks = np.stack([z, y, x, k], axis=1)[order]
    peaks = peaks[_pruned_by_blob_log(peaks, sigma_list)]
    inner = (peaks[:, 3] > 0) & (peaks[:, 3] < n - 1)
    return [tuple(int(v) for v in row) for row in peaks[inner]]


def tiled_candidates(iso: np.ndarray, sigmas: np.ndarray, ratio: float, threshold: float, method: str,
                     task: TaskContext | None = None) -> list[tuple[int, int, int, int]]:
    """``(z, y, x, scale index)`` of scikit-image's ``blob_log`` / ``blob_dog`` maxima, slab by slab
    (:func:`_tiles`), without the end scales.  ``"dog"`` searches this way; ``"log"`` searches with
    :func:`log_candidates` (the same maxima, several times faster), and this is its reference."""
    margin = int(TRUNCATE * sigmas[-1] + 0.5) + 2
    tiles = _tiles(iso.shape, margin, len(sigmas))
    candidates: list[tuple[int, int, int, int]] = []
    for t, (tile, core) in enumerate(tiles):
        report(task, 0.15 + 0.7 * t / len(tiles), f"Searching for blobs ({t + 1}/{len(tiles)})")
        block = iso[tile]
        if method == "log":
            found = blob_log(block, min_sigma=sigmas[0], max_sigma=sigmas[-1], num_sigma=len(sigmas),
                             threshold=threshold, overlap=1.0, log_scale=True, exclude_border=False)
            scale_index = np.rint(np.log(found[:, 3] / sigmas[0]) / math.log(ratio)).astype(int) if len(found) else []
        else:
            found = blob_dog(block, min_sigma=sigmas[0], max_sigma=sigmas[-1] * ratio, sigma_ratio=ratio,
                             threshold=threshold, overlap=1.0, exclude_border=False)
            # a DoG layer between sigma and ratio*sigma approximates the LoG at about sigma*sqrt(ratio)
            scale_index = np.rint(np.log(found[:, 3] / sigmas[0]) / math.log(ratio) + 0.5).astype(int) \
                if len(found) else []
        for row, i in zip(found, scale_index, strict=True):
            z, y, x = (int(v) for v in row[:3])
            inside = all(c.start <= v < c.stop for v, c in zip((z, y, x), core, strict=True))
            if inside and 0 < i < len(sigmas) - 1:  # a peak at an end scale: the blob's size is out of range
                candidates.append((z + tile[0].start, y + tile[1].start, x + tile[2].start, int(i)))
    check_cancel(task)
    return candidates


# -- the detector --------------------------------------------------------------------------------------
def detect_blobs(volume: Volume, *, method: str = "log", min_diameter: float = 4.0, max_diameter: float = 30.0,
                 window_low: float | None = NODULE_WINDOW_HU[0], window_high: float | None = NODULE_WINDOW_HU[1],
                 threshold: float = 0.25, min_roundness: float = 0.25, overlap: float = 0.3,
                 iso_spacing: float = 0.0, max_detections: int = 0,
                 mask: np.ndarray | LabelMap | None = None, label: str = "nodule candidate",
                 task: TaskContext | None = None, layers: LayerSource | None = None) -> DetectionSet:
    """Bright blobs (spheres) with diameters in ``[min_diameter, max_diameter]`` mm; see the module notes.

    Parameters
    ----------
    volume
        A grey-scale volume (HU for CT), any spacing and direction.
    method
        ``"log"`` (Laplacian of Gaussian, scikit-image ``blob_log``) or ``"dog"`` (difference of Gaussians,
        ``blob_dog``: about three times fewer filter passes, then refined on the LoG like ``"log"``).
    min_diameter, max_diameter
        Diameter range in mm; blobs whose best scale lies outside it are not reported.
    window_low, window_high
        Intensity window (HU for CT) mapped to 0..1; a blob's contrast is measured in it.  ``None`` for
        either: the volume's 1st / 99th percentile.
    threshold
        Smallest scale-normalised LoG response (0..0.93 for a ball of full window contrast) kept.
    min_roundness
        Smallest ratio (0..1) of the Hessian's weakest to strongest curvature at the blob's centre (see
        :func:`hessian_roundness`): rejects the bright side of a larger object's surface and vessels,
        which the LoG alone reports as small blobs.  0 keeps every LoG maximum.
    overlap
        Largest fraction (0..1) of a weaker blob's volume that may lie inside a stronger kept one.
    iso_spacing
        Isotropic grid spacing in mm; 0 picks ``max(finest voxel spacing, min_diameter / 4)``.
    max_detections
        Keep only the strongest ones (0: all).
    mask
        Boolean array or label map on the volume's grid: only blobs centred in it (non-zero) are reported,
        and only its bounding box (plus a margin) is searched.
    label
        The label given to every detection.
    task
        Progress and cancellation.
    layers
        Computes the LoG scale-space layers for ``"log"`` (:data:`LayerSource`); default
        :func:`serial_layers`, here; the app layer passes one that uses the worker processes.

    Returns
    -------
    DetectionSet
        Centres in LPS mm, diameters in mm, score = LoG response, strongest first.
    """
    if volume.is_color:
        raise MedviewError("Blob detection works on grey-scale images; this one is colour")
    if method not in ("log", "dog"):
        raise MedviewError(f"The blob method must be 'log' or 'dog', got {method!r}")
    d_min = _finite(min_diameter, "The smallest diameter", "mm")
    d_max = _finite(max_diameter, "The largest diameter", "mm")
    if d_min <= 0 or d_max <= 0:
        raise MedviewError(f"Blob diameters must be positive, got {d_min:g} to {d_max:g} mm")
    if d_min > d_max:
        raise MedviewError(f"The smallest diameter ({d_min:g} mm) is larger than the largest ({d_max:g} mm)")
    threshold = _finite(threshold, "The detection threshold")
    if threshold <= 0:
        raise MedviewError(f"The detection threshold must be positive, got {threshold:g}")
    min_roundness = _finite(min_roundness, "The minimum roundness")
    if not 0.0 <= min_roundness <= 1.0:
        raise MedviewError(f"The minimum roundness is a ratio between 0 and 1, got {min_roundness:g}")
    overlap = _finite(overlap, "The allowed overlap")
    if not 0.0 <= overlap <= 1.0:
        raise MedviewError(f"The allowed overlap is a fraction between 0 and 1, got {overlap:g}")
    iso_spacing = _finite(iso_spacing, "The isotropic spacing", "mm")
    if iso_spacing < 0:
        raise MedviewError(f"The isotropic spacing must be positive (or 0 for automatic), got {iso_spacing:g} mm")
    if int(max_detections) < 0:
        raise MedviewError(f"The number of detections to keep must be 0 (all) or more, got {max_detections}")
    g = volume.geometry
    mask_array = _mask_array(mask, g)
    if window_low is None or window_high is None:
        p_lo, p_hi = (float(v) for v in np.percentile(volume.array[::2, ::2, ::2], [1.0, 99.0]))
        window_low = p_lo if window_low is None else window_low
        window_high = p_hi if window_high is None else window_high
    lo = _finite(window_low, "The window's lower end")
    hi = _finite(window_high, "The window's upper end")
    if hi <= lo:
        raise MedviewError(f"The intensity window's upper end ({hi:g}) must be above its lower end ({lo:g})")
    spacing = iso_spacing or max(min(g.spacing), d_min / 4.0)
    params = {"method": method, "min_diameter": d_min, "max_diameter": d_max, "window_low": lo, "window_high": hi,
              "threshold": threshold, "min_roundness": min_roundness, "overlap": overlap, "iso_spacing": spacing,
              "max_detections": int(max_detections),
              "masked": mask_array is not None}
    result = DetectionSet([], source=volume.metadata.source or volume.metadata.series_description,
                          method=f"blob-{method}", params=params)

    # scales (in isotropic voxels), one extra step beyond each end of the range
    s_min, s_max = d_min / 2.0 / SQRT3 / spacing, d_max / 2.0 / SQRT3 / spacing
    n = max(2, math.ceil(math.log(s_max / s_min) / math.log(MAX_SCALE_STEP) - 1e-9) + 1) if s_max > s_min else 1
    ratio = (s_max / s_min) ** (1.0 / (n - 1)) if n > 1 else MAX_SCALE_STEP
    sigmas = np.logspace(math.log10(s_min / ratio), math.log10(s_max * ratio), n + 2)

    cropped = _crop(volume, mask_array, d_max + TRUNCATE * sigmas[-1] * spacing)
    if cropped is None:  # an empty mask: nothing to search
        report(task, 1.0, "The mask is empty: no blobs", force=True)
        return result
    array, crop_geometry = cropped
    windowed = np.clip((array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    iso, iso_geometry = _isotropic(windowed, crop_geometry, spacing, task)
    del windowed

    if method == "log":
        candidates = log_candidates(iso, sigmas, threshold, layers, task)
    else:
        candidates = tiled_candidates(iso, sigmas, ratio, threshold, method, task)
    centres, radii, scores = [], [], []
    for k, (z, y, x, i) in enumerate(candidates):
        if k % 64 == 0:
            report(task, 0.85 + 0.15 * k / max(len(candidates), 1), f"Measuring {len(candidates)} candidates")
        around = [log_neighbourhood(iso, (z, y, x), float(s)) for s in sigmas[i - 1:i + 2]]
        here = around[1]
        score = float(here[1, 1, 1])
        if score < threshold:  # a DoG peak that the exact LoG does not confirm
            continue
        if min_roundness and hessian_roundness(iso, (z, y, x), float(sigmas[i])) < min_roundness:
            continue  # an edge of something larger, or a vessel: not a ball
        dz = parabola_peak_offset(here[0, 1, 1], score, here[2, 1, 1])
        dy = parabola_peak_offset(here[1, 0, 1], score, here[1, 2, 1])
        dx = parabola_peak_offset(here[1, 1, 0], score, here[1, 1, 2])
        ds = parabola_peak_offset(around[0][1, 1, 1], score, around[2][1, 1, 1])
        sigma = float(sigmas[i]) * ratio**ds
        diameter = 2.0 * SQRT3 * sigma * spacing
        if not d_min <= diameter <= d_max:
            continue
        centre = iso_geometry.index_to_world([x + dx, y + dy, z + dz])
        if mask_array is not None:
            vx, vy, vz = (int(v) for v in np.rint(g.world_to_index(centre)))
            if not g.contains_index((vx, vy, vz)) or not mask_array[vz, vy, vx]:
                continue
        centres.append(centre)
        radii.append(diameter / 2.0)
        scores.append(score)
    if not centres:
        report(task, 1.0, "No blobs found", force=True)
        return result
    centres_a, radii_a, scores_a = np.array(centres), np.array(radii), np.array(scores)
    kept = _suppress(centres_a, radii_a, scores_a, overlap)
    if max_detections:
        kept = kept[:int(max_detections)]
    for i in kept:
        c, r = centres_a[i], float(radii_a[i])
        result.detections.append(Detection(tuple(c), 2.0 * r, float(scores_a[i]), label,
                                           tuple(np.concatenate([c - r, c + r]))))
    report(task, 1.0, f"{len(result)} blobs found", force=True)
    return result


# -- a catalogue of detectors with validated parameters, for the CLI and the GUI ------------------------
@dataclass(frozen=True)
class Detector:
    """A named detection method: ``function(volume, task=..., **params)`` returns a DetectionSet.

    Not an :class:`~medview.algorithms.operations.Operation` (those return images or label maps), but its
    parameters are the same :class:`~medview.algorithms.operations.Param` descriptions.
    """

    name: str
    function: Callable[..., DetectionSet]
    params: tuple[Param, ...] = ()
    help: str = ""
    library: str = ""

    def parse(self, raw: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``raw`` (strings or values), each converted and range-checked."""
        raw = dict(raw or {})
        names = {p.name for p in self.params}
        unknown = [k for k in raw if k not in names]
        if unknown:
            raise MedviewError(f"{self.name} has no parameter {unknown[0]!r}; parameters: {', '.join(sorted(names))}")
        out = {p.name: p.parse(raw.get(p.name, p.default))
               for p in self.params if p.name in raw or p.default is not None}
        if out.get("min_diameter", 0) > out.get("max_diameter", math.inf):
            raise MedviewError(f"min_diameter ({out['min_diameter']:g} mm) is larger than max_diameter "
                               f"({out['max_diameter']:g} mm)")
        return out

    def __call__(self, volume: Volume, task: TaskContext | None = None, mask: Any = None, **raw: Any) -> DetectionSet:
        return self.function(volume, task=task, mask=mask, **self.parse(raw))


DETECTORS: dict[str, Detector] = {
    "blob": Detector(
        "blob", detect_blobs,
        (
            Param("method", "choice", "log", choices=("log", "dog"),
                  help="log: Laplacian of Gaussian; dog: difference of Gaussians (faster, approximate)"),
            Param("min_diameter", "float", 4.0, minimum=0.0, exclusive_minimum=True, unit="mm",
                  help="smallest blob diameter reported"),
            Param("max_diameter", "float", 30.0, minimum=0.0, exclusive_minimum=True, unit="mm",
                  help="largest blob diameter reported"),
            Param("window_low", "float", NODULE_WINDOW_HU[0], unit="HU", help="intensity mapped to 0"),
            Param("window_high", "float", NODULE_WINDOW_HU[1], unit="HU", help="intensity mapped to 1"),
            Param("threshold", "float", 0.25, minimum=0.0, exclusive_minimum=True,
                  help="smallest LoG response kept (0.93 for a ball of full window contrast)"),
            Param("min_roundness", "float", 0.25, minimum=0.0, maximum=1.0,
                  help="smallest ratio of weakest to strongest curvature (rejects edges and vessels)"),
            Param("overlap", "float", 0.3, minimum=0.0, maximum=1.0,
                  help="largest fraction of a weaker blob inside a stronger one"),
            Param("iso_spacing", "float", 0.0, minimum=0.0, unit="mm", help="isotropic grid spacing (0: automatic)"),
            Param("max_detections", "int", 0, minimum=0, help="keep the strongest N (0: all)"),
        ),
        help="Bright blobs (nodule candidates) by scale-space LoG/DoG on an isotropic grid",
        library="scikit-image, SimpleITK",
    ),
}


def get_detector(name: str) -> Detector:
    """The detector called ``name``, with a message listing the choices otherwise."""
    if name not in DETECTORS:
        raise MedviewError(f"Unknown detector {name!r}; choose one of {', '.join(sorted(DETECTORS))}")
    return DETECTORS[name]
