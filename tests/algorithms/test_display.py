from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.display import (
    composite_table,
    composite_words,
    label_keys,
    lut_index,
    palette_argb32,
    premultiplied_argb32,
    rgb_to_argb32,
    unsigned_bits,
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


def _channels(words: np.ndarray) -> np.ndarray:
    return np.stack([(words >> 16) & 0xFF, (words >> 8) & 0xFF, words & 0xFF], axis=-1).astype(float)


def test_composited_labels_are_each_label_drawn_over_the_windowed_slice() -> None:
    """Per pixel: colour * alpha + under * (1 - alpha), from the straight-alpha label colour and the
    palette colour of the pixel's grey level; label 0, hidden labels and values past the table are bare."""
    rng = np.random.default_rng(4)
    palette = palette_argb32(rng.integers(0, 256, (256, 3)).astype(np.uint8))
    rgba = np.zeros((5, 4), np.uint8)
    rgba[1] = (255, 0, 0, 128)
    rgba[2] = (60, 180, 75, 77)
    rgba[3] = (10, 20, 30, 255)
    rgba[4] = (200, 200, 0, 0)  # hidden
    grey = rng.integers(0, 256, (40, 30)).astype(np.uint8)
    index = rng.integers(0, 7, (40, 30)).astype(np.uint8)  # 5 and 6 have no entry
    table = composite_table(palette, rgba)
    out = composite_words(grey, index, table)
    assert out.dtype == np.uint32 and out.shape == grey.shape
    assert np.array_equal(composite_words(grey, label_keys(index), table), out)  # the precomputed label half
    assert np.all(out >> 24 == 0xFF)
    under = _channels(palette[grey])
    colour = rgba[np.minimum(index, 4)].astype(float)
    alpha = np.where(index <= 4, colour[..., 3] / 255.0, 0.0)[..., None]
    expected = colour[..., :3] * alpha + under * (1.0 - alpha)
    assert np.abs(_channels(out) - expected).max() <= 0.5
    bare = (index == 0) | (index >= 4)
    assert np.array_equal(out[bare], palette[grey][bare])


def test_composite_refuses_what_it_cannot_index() -> None:
    palette = palette_argb32(np.zeros((256, 3), np.uint8))
    with pytest.raises(ValueError):
        composite_table(palette, np.zeros((300, 4), np.uint8))
    table = composite_table(palette, np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError):
        composite_words(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8), table)
    with pytest.raises(ValueError):
        composite_words(np.zeros((2, 2), np.int16), np.zeros((2, 2), np.uint8), table)


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.uint8])
def test_a_kept_lut_index_gives_the_same_pixels(dtype) -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 200, size=(33, 17)).astype(dtype)[::-1, ::2]  # a strided view, as slices are
    palette = palette_argb32(rng.integers(0, 256, (256, 3)).astype(np.uint8))
    index = lut_index(image)
    assert index is not None and index.dtype == np.intp
    assert np.array_equal(window_to_uint8(image, 20, 150, index), window_to_uint8(image, 20, 150))
    assert np.array_equal(window_to_argb32(image, 20, 150, palette, index), window_to_argb32(image, 20, 150, palette))
    assert lut_index(image.astype(np.float32)) is None
    # written into a kept buffer (one per slice shape in a view), or the image's own bits (no index array)
    buffer = np.full(image.shape, -1, dtype=np.intp)
    assert lut_index(image, out=buffer) is buffer and np.array_equal(buffer, index)
    bits = unsigned_bits(image)
    assert np.shares_memory(bits, image)
    assert np.array_equal(window_to_uint8(image, 20, 150, bits), window_to_uint8(image, 20, 150))
    assert np.array_equal(window_to_argb32(image, 20, 150, palette, bits), window_to_argb32(image, 20, 150, palette))
    if dtype == np.int16:  # negative values index the table by their bit pattern
        signed = np.array([[-1024, -1, 0, 3071]], dtype=np.int16)
        expected = np.clip((signed.astype(float) + 1000) * 255 / 2000, 0, 255).astype(np.uint8)
        assert np.array_equal(window_to_uint8(signed, -1000, 1000, unsigned_bits(signed)), expected)
