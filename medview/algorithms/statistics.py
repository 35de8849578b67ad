"""Intensity statistics of a volume, computed on a regular subsample so they stay fast on any size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medview.core.tasks import TaskContext, check_cancel
from medview.core.volume import subsample


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray  # bins + 1 edges in image units
    counts: np.ndarray
    minimum: float
    maximum: float


def intensity_histogram(array: np.ndarray, bins: int = 256, task: TaskContext | None = None) -> Histogram:
    """Histogram of a volume over its full range (for the window/level panel)."""
    sample = subsample(array).ravel()
    check_cancel(task)
    return sample_histogram(sample, bins)


def sample_histogram(sample: np.ndarray, bins: int = 256) -> Histogram:
    """Histogram of the finite values in ``sample`` (any shape) over their range, ``bins`` equal bins:
    np.histogram's edges and counts (bin ``i`` holds ``edges[i] <= x < edges[i + 1]``, the last bin also its
    upper edge).

    8/16-bit integers (CT, most MR) are counted from the sorted sample by binary search: about half
    np.histogram's time, in C loops that let the GUI thread run while a worker thread counts.
    """
    values = np.asarray(sample).ravel()
    if values.dtype.kind == "b":
        values = values.view(np.uint8)
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]  # NaN and infinities (float NIfTI) have no bin
    if values.size == 0:
        return Histogram(np.linspace(0.0, 1.0, bins + 1), np.zeros(bins, dtype=np.int64), 0.0, 0.0)
    small_integers = values.dtype.kind in "iu" and values.dtype.itemsize <= 2
    ordered = np.sort(values, kind="stable") if small_integers else values  # radix sort for these types
    lo, hi = (float(ordered[0]), float(ordered[-1])) if small_integers else (float(values.min()), float(values.max()))
    top = hi if hi > lo else lo + 1.0  # one value: np.histogram's range [lo, lo + 1]
    if not small_integers or hi == lo:
        counts, edges = np.histogram(values, bins=bins, range=(lo, top))
        return Histogram(edges, counts.astype(np.int64), lo, hi)
    edges = np.linspace(lo, top, bins + 1)  # np.histogram's edges for integer data
    # x < e  <=>  x < ceil(e) for integers; the lower edges lie in [lo, hi), so the needles fit the type
    below = np.searchsorted(ordered, np.ceil(edges[:-1]).astype(ordered.dtype), side="left")
    counts = np.diff(np.append(below, ordered.size)).astype(np.int64)
    return Histogram(edges, counts, lo, hi)
