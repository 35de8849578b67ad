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
    lo, hi = float(sample.min()), float(sample.max())
    counts, edges = np.histogram(sample, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
    return Histogram(edges, counts, lo, hi)
