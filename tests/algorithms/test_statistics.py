"""The window panel's histogram: np.histogram's bins (integers counted from the sorted sample)."""

from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.statistics import intensity_histogram, sample_histogram


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.float32])
def test_histogram_bins_equal_numpys(dtype) -> None:
    """Integers are counted by binary search in the sorted sample: the bins and counts must be np.histogram's."""
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
    # values exactly on edges (integers on a grid of edges; floats at the edges themselves)
    on_edges = np.repeat(h.edges.astype(dtype), 3)
    h2 = sample_histogram(on_edges, bins=256)
    counts2, _ = np.histogram(on_edges, bins=256, range=(float(on_edges.min()), float(on_edges.max())))
    assert np.array_equal(h2.counts, counts2)
    flat = sample_histogram(np.full(10, 7, dtype=dtype))  # one value: numpy's range [7, 8], first bin
    counts3, edges3 = np.histogram(np.full(10, 7, dtype=dtype), bins=256, range=(7.0, 8.0))
    assert np.array_equal(flat.counts, counts3) and np.allclose(flat.edges, edges3)
    assert flat.minimum == flat.maximum == 7


def test_histogram_ignores_values_that_are_not_finite() -> None:
    """NaN and infinities (float images from NIfTI) are left out, as np.histogram of the finite ones."""
    values = np.array([np.nan, -np.inf, 1.0, 2.0, 2.5, 4.0, np.inf, np.nan], dtype=np.float32)
    h = sample_histogram(values, bins=4)
    finite = values[np.isfinite(values)]
    counts, edges = np.histogram(finite, bins=4, range=(1.0, 4.0))
    assert np.array_equal(h.counts, counts) and np.allclose(h.edges, edges)
    assert (h.minimum, h.maximum) == (1.0, 4.0)
    empty = sample_histogram(np.full(5, np.nan, dtype=np.float32))
    assert empty.counts.sum() == 0


def test_volume_histogram_covers_the_subsample() -> None:
    volume = np.arange(64 * 64 * 64, dtype=np.int32).reshape(64, 64, 64).astype(np.int16)
    h = intensity_histogram(volume)
    assert h.counts.sum() == volume.size  # small enough to be counted whole
    assert h.minimum == float(volume.min()) and h.maximum == float(volume.max())
