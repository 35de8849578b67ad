from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.display import (
    palette_argb32,
    premultiplied_argb32,
    rgb_to_argb32,
    window_to_argb32,
    window_to_uint8,
)


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


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.float32])
def test_argb_window_equals_palette_of_uint8_window(dtype) -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0 if dtype == np.uint8 else -1200, 255 if dtype == np.uint8 else 2500,
                         size=(40, 30)).astype(dtype)
    colours = rng.integers(0, 256, size=(256, 3)).astype(np.uint8)
    palette = palette_argb32(colours)
    out = window_to_argb32(image, 20, 180, palette)
    idx = window_to_uint8(image, 20, 180)
    np.testing.assert_array_equal(out, palette[idx])
    # the words are what Qt's RGB32 expects: 0xFF, then R, G, B
    np.testing.assert_array_equal((out >> 16) & 0xFF, colours[idx][..., 0])
    np.testing.assert_array_equal(out & 0xFF, colours[idx][..., 2])
    assert np.all(out >> 24 == 0xFF)


def test_rgb_and_premultiplied_words() -> None:
    rgb16 = np.array([[[65535, 256, 0]]], dtype=np.uint16)
    assert int(rgb_to_argb32(rgb16)[0, 0]) == 0xFFFF0100
    words = premultiplied_argb32(np.array([[255, 0, 0, 128], [10, 20, 30, 0], [40, 80, 120, 255]], np.uint8))
    assert [int(w) for w in words] == [0x80800000, 0, 0xFF285078]
