"""Label-map morphology in mm against scipy.ndimage with the same structuring element, plus the label rules
(other labels and locked labels are left alone) and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medview.algorithms import morphology
from medview.algorithms.morphology import LABEL_OPERATIONS, structuring_element
from medview.core import Geometry, Label, LabelMap
from medview.core.errors import MedviewError

SPACING = (0.7, 0.9, 1.6)  # x, y, z mm


def random_blobs(shape=(24, 40, 44), seed=1, touch_border=True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    mask = noise > 0.05
    if not touch_border:
        mask[:3], mask[-3:], mask[:, :6], mask[:, -6:], mask[:, :, :6], mask[:, :, -6:] = (False,) * 6
    return mask


def one_label(mask: np.ndarray, spacing=SPACING, value: int = 1) -> LabelMap:
    return LabelMap(mask.astype(np.uint8) * value, Geometry(mask.shape, spacing=spacing),
                    [Label(value, "Organ", (255, 0, 0))])


def test_anisotropic_dilation_grows_4_voxels_in_plane_and_1_along_z() -> None:
    array = np.zeros((11, 21, 21), np.uint8)
    array[5, 10, 10] = 1
    grown = morphology.dilate(LabelMap(array, Geometry(array.shape, spacing=(0.5, 0.5, 2.0))), radius_mm=2.0)
    z, y, x = np.nonzero(grown.array)
    assert (x.min(), x.max(), y.min(), y.max(), z.min(), z.max()) == (6, 14, 6, 14, 4, 6)
    assert structuring_element((0.5, 0.5, 2.0), 2.0).shape == (3, 9, 9)


@pytest.mark.parametrize("radius", [0.95, 2.1, 3.2])
def test_dilate_erode_open_close_equal_scipy_with_the_same_element(radius: float) -> None:
    mask = random_blobs()
    se = structuring_element(SPACING, radius)
    labels = one_label(mask)
    assert np.array_equal(morphology.dilate(labels, radius_mm=radius).array == 1,
                          ndimage.binary_dilation(mask, se))
    # outside the image counts as foreground for erosion (ITK's convention): scipy's border_value=1
    eroded = ndimage.binary_erosion(mask, se, border_value=1)
    assert np.array_equal(morphology.erode(labels, radius_mm=radius).array == 1, eroded)
    assert np.array_equal(morphology.opening(labels, radius_mm=radius).array == 1,
                          ndimage.binary_dilation(eroded, se))
    assert np.array_equal(morphology.closing(labels, radius_mm=radius).array == 1,
                          ndimage.binary_erosion(ndimage.binary_dilation(mask, se), se, border_value=1))


def test_open_and_close_equal_scipy_away_from_the_border() -> None:
    mask = random_blobs(seed=4, touch_border=False)
    se = structuring_element(SPACING, 2.0)
    labels = one_label(mask)
    assert np.array_equal(morphology.opening(labels, radius_mm=2.0).array == 1, ndimage.binary_opening(mask, se))
    assert np.array_equal(morphology.closing(labels, radius_mm=2.0).array == 1, ndimage.binary_closing(mask, se))


def test_mask_helpers_work_in_slabs_like_in_one_piece(monkeypatch) -> None:
    mask = random_blobs(seed=2)
    whole = morphology.dilate_mask(mask, SPACING, 2.5), morphology.erode_mask(mask, SPACING, 2.5)
    monkeypatch.setattr(morphology, "_SLAB_VOXELS", 3 * 40 * 44)  # 3 slices per slab
    sliced = morphology.dilate_mask(mask, SPACING, 2.5), morphology.erode_mask(mask, SPACING, 2.5)
    assert np.array_equal(whole[0], sliced[0]) and np.array_equal(whole[1], sliced[1])


def test_fill_holes_equals_scipy_in_3d_and_slice_wise() -> None:
    mask = random_blobs(seed=3)
    mask[6:18, 12:28, 12:32] = True  # a solid block with enclosed cavities and one open to the slice above
    rng = np.random.default_rng(3)
    for z, y, x in zip(rng.integers(8, 16, 12), rng.integers(14, 26, 12), rng.integers(14, 30, 12), strict=True):
        mask[z, y:y + 2, x:x + 2] = False
    mask[2:9, 20, 20] = False
    labels = one_label(mask)
    assert np.array_equal(morphology.fill_holes(labels).array == 1, ndimage.binary_fill_holes(mask))
    per_slice = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    assert np.array_equal(morphology.fill_holes(labels, slice_wise=True).array == 1, per_slice)
    assert per_slice.sum() > ndimage.binary_fill_holes(mask).sum() > mask.sum()  # the test has holes to fill


def test_fill_holes_of_a_hollow_ball() -> None:
    z, y, x = np.mgrid[:20, :20, :20]
    r = np.sqrt((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2)
    shell = (r <= 7) & (r >= 5)
    filled = morphology.fill_holes(one_label(shell, (1.0, 1.0, 1.0)))
    assert np.array_equal(filled.array == 1, r <= 7)


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_components_match_scipy_label(connectivity: int) -> None:
    mask = random_blobs(seed=5) & ~random_blobs(seed=6)  # many pieces of many sizes
    structure = ndimage.generate_binary_structure(3, connectivity)
    pieces, n = ndimage.label(mask, structure)
    sizes = np.bincount(pieces.ravel())
    assert n > 5
    labels = one_label(mask)
    largest = morphology.keep_largest_component(labels, connectivity=connectivity)
    assert np.array_equal(largest.array == 1, pieces == np.argmax(sizes[1:]) + 1)
    voxel = np.prod(SPACING)
    min_mm3 = float(np.median(sizes[1:])) * voxel
    kept = morphology.remove_islands(labels, min_size_mm3=min_mm3, connectivity=connectivity)
    big = np.flatnonzero(sizes * voxel >= min_mm3)
    assert np.array_equal(kept.array == 1, np.isin(pieces, big[big > 0]))


def test_smoothing_one_label_keeps_where_its_blurred_mask_exceeds_half() -> None:
    mask = random_blobs(seed=8)
    sigma = 1.5
    result = morphology.smooth_labels(one_label(mask), sigma_mm=sigma)
    blurred = ndimage.gaussian_filter(mask.astype(np.float64), [sigma / s for s in SPACING[::-1]], mode="nearest")
    expected = blurred > 0.5
    ambiguous = np.abs(blurred - 0.5) < 1e-5  # float32 vs float64 rounding at exactly one half
    assert np.array_equal((result.array == 1)[~ambiguous], expected[~ambiguous])
    assert ambiguous.sum() <= 3


def test_smoothing_two_labels_removes_specks_and_keeps_both() -> None:
    array = np.zeros((20, 30, 30), np.uint8)
    array[4:16, 5:15, 5:25] = 1
    array[4:16, 15:25, 5:25] = 2
    array[10, 20, 20] = 1  # a speck of 1 inside 2
    array[2, 2, 2] = 2  # a speck of 2 in the background
    result = morphology.smooth_labels(LabelMap(array, Geometry(array.shape)), sigma_mm=1.0)
    assert result.array[10, 20, 20] == 2 and result.array[2, 2, 2] == 0
    assert result.voxel_count(1) > 0.9 * 12 * 10 * 20 and result.voxel_count(2) > 0.9 * 12 * 10 * 20


def test_labels_grow_only_into_background_and_locked_labels_stay() -> None:
    array = np.zeros((10, 20, 20), np.uint8)
    array[3:7, 3:9, 3:9] = 1
    array[3:7, 9:15, 3:9] = 2
    labels = [Label(1, "Liver", (255, 0, 0)), Label(2, "Kidney", (0, 255, 0), locked=True)]
    label_map = LabelMap(array, Geometry(array.shape), labels)
    grown = morphology.dilate(label_map, radius_mm=2.0)  # every unlocked label: only 1
    assert np.array_equal(grown.array == 2, array == 2)  # the locked label is untouched
    assert grown.voxel_count(1) > np.count_nonzero(array == 1)
    assert label_map.array is array and np.count_nonzero(array == 1) == 4 * 6 * 6  # the input is not modified
    with pytest.raises(MedviewError, match="Cannot dilate label 2 \\('Kidney'\\): it is locked"):
        morphology.dilate(label_map, radius_mm=2.0, label=2)
    label_map.labels[1].locked = False
    both = morphology.dilate(label_map, radius_mm=2.0)
    assert np.all(both.array[array == 1] == 1) and np.all(both.array[array == 2] == 2)  # nobody overwrites


def test_bad_input_is_refused_with_a_helpful_message() -> None:
    labels = one_label(random_blobs(seed=9))
    with pytest.raises(MedviewError, match="radius must be a positive distance in mm, got -1"):
        morphology.dilate(labels, radius_mm=-1)
    with pytest.raises(MedviewError, match=r"smaller than the smallest voxel spacing \(0\.7 mm\).*nothing was changed"):
        morphology.erode(labels, radius_mm=0.3)
    with pytest.raises(MedviewError, match=r"Erode found no voxels left of label 1 \('Organ'\) after eroding by "
                                           r"20 mm.*; nothing was changed"):
        morphology.erode(labels, radius_mm=20.0)
    with pytest.raises(MedviewError, match=r"found no voxels left of label 1.*largest piece is .* mm\^3\); "
                                           "nothing was changed"):
        morphology.remove_islands(labels, min_size_mm3=1e9)
    with pytest.raises(MedviewError, match="minimum island size must be a positive volume"):
        morphology.remove_islands(labels, min_size_mm3=-5)
    with pytest.raises(MedviewError, match="has no voxels with that value \\(present: 1\\)"):
        morphology.dilate(labels, radius_mm=1.0, label=7)
    with pytest.raises(MedviewError, match="connectivity must be 1"):
        morphology.keep_largest_component(labels, connectivity=4)
    empty = LabelMap(np.zeros((3, 4, 4), np.uint8), Geometry((3, 4, 4)))
    with pytest.raises(MedviewError, match="The label map is empty: there is nothing to fill holes in"):
        morphology.fill_holes(empty)


def test_label_operations_are_offered_with_parameters() -> None:
    labels = one_label(random_blobs(seed=10))
    for name, (function, params) in LABEL_OPERATIONS.items():
        values = {p.name: p.parse(p.default) for p in params if p.default is not None}
        result = function(labels, task=None, **values)
        assert isinstance(result, LabelMap) and result.voxel_count(1) > 0, name
        assert any(p.name == "label" for p in params)
