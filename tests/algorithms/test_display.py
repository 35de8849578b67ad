from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.display import window_to_uint8


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8, np.float32, np.int32])
def test_window_matches_the_linear_formula(dtype) -> None:
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    lo, hi = (info.min, info.max) if info and info.bits <= 16 else (-3000, 3000)
    image = rng.integers(max(lo, -3000), min(hi, 3000), size=(64, 48)).astype(dtype)
    low, high = (40 - 200, 40 + 200) if lo < 0 else (10, 200)
    expected = np.clip((image.astype(np.float64) - low) * 255.0 / (high - low), 0, 255).astype(np.uint8)
    out = window_to_uint8(image, low, high)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1  # float32 vs float64 rounding


def test_window_edges() -> None:
    image = np.array([[-1000, -160, 40, 240, 3000]], dtype=np.int16)
    out = window_to_uint8(image, -160, 240)
    assert out.tolist() == [[0, 0, 127, 255, 255]]
