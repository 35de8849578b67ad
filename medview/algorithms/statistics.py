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
    """Histogram of the values in ``sample`` (any shape) over their full range, ``bins`` equal bins."""
    sample = np.asarray(sample).ravel()
    lo, hi = float(sample.min()), float(sample.max())
    span = (lo, hi if hi > lo else lo + 1.0)
    if sample.dtype.kind in "iu" and sample.dtype.itemsize <= 2:
        # integer images (CT, most MR): count each value once (one C pass), then bin the distinct values
        # weighted by their counts: the same bins as np.histogram of the sample at a fraction of the time it
        # holds the interpreter, which the GUI thread shares while this runs in a worker thread
        per_value = np.bincount((sample.astype(np.int32) - int(lo)).astype(np.intp))
        present = np.flatnonzero(per_value)
        weighted, edges = np.histogram(present + lo, bins=bins, range=span, weights=per_value[present])
        counts = np.rint(weighted).astype(np.int64)
    else:
        counts, edges = np.histogram(sample, bins=bins, range=span)
    return Histogram(edges, counts, lo, hi)
