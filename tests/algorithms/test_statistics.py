"""The window panel's histogram: np.histogram's bins, computed cheaply for integer images."""

from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.statistics import intensity_histogram, sample_histogram


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.float32])
def test_histogram_bins_equal_numpys(dtype) -> None:
    """Integers are counted per value and then binned: the bins and counts must be np.histogram's."""
    rng = np.random.default_rng(3)
    values = rng.normal(100 if dtype != np.int16 else -200, 300, 200_000)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    sample = values.astype(dtype)
    h = sample_histogram(sample, bins=256)
    counts, edges = np.histogram(sample, bins=256, range=(float(sample.min()), float(sample.max())))
    assert np.array_equal(h.counts, counts) and np.allclose(h.edges, edges)
    assert h.counts.sum() == sample.size
    flat = sample_histogram(np.full(10, 7, dtype=dtype))  # one value: one bin holds everything
    assert flat.counts.sum() == 10 and flat.minimum == flat.maximum == 7


def test_volume_histogram_covers_the_subsample() -> None:
    volume = np.arange(64 * 64 * 64, dtype=np.int32).reshape(64, 64, 64).astype(np.int16)
    h = intensity_histogram(volume)
    assert h.counts.sum() == volume.size  # small enough to be counted whole
    assert h.minimum == float(volume.min()) and h.maximum == float(volume.max())
