"""Each enhancement equals the direct scikit-image / SimpleITK call it wraps, with sizes converted from mm."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from skimage import exposure

from medview.algorithms import enhance
from medview.algorithms.operations import get_operation
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from medview.core.volume import Volume, VolumeMetadata, WindowPreset

from .test_filters import SPACING, phantom, reference_image


def unit(array: np.ndarray) -> np.ndarray:
    """The 0..1 float32 input scikit-image's CLAHE takes, from the volume's own min and max."""
    lo, hi = float(array.min()), float(array.max())
    return ((array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)).clip(0, 1)


def test_contrast_stretch_maps_the_percentiles_onto_0_1() -> None:
    volume = phantom()
    result = enhance.contrast_stretch(volume, low_percentile=5, high_percentile=95)
    assert result.geometry == volume.geometry
    assert result.array.dtype == np.float32
    lo, hi = np.percentile(volume.array, [5, 95])
    expected = exposure.rescale_intensity(volume.array.astype(np.float32), in_range=(lo, hi), out_range=(0.0, 1.0))
    np.testing.assert_array_equal(result.array, expected)
    assert result.array.min() == 0.0 and result.array.max() == 1.0
    assert np.mean(result.array == 1.0) == pytest.approx(0.05, abs=0.01)  # the top 5 % are clipped
    # the values are no longer HU: units cleared, one 0-1 window instead of the CT presets
    assert result.metadata.units == "" and result.metadata.window_presets == [WindowPreset(0.5, 1.0, "0-1")]
    assert volume.metadata.units == "HU"
    assert result.metadata.extra["history"][-1].startswith("contrast_stretch(low_percentile=5, high_percentile=95")


def test_histogram_equalization_is_skimage_equalize_hist() -> None:
    volume = phantom()
    result = enhance.equalize_histogram(volume)
    assert result.array.dtype == np.float32
    np.testing.assert_array_equal(result.array, exposure.equalize_hist(volume.array).astype(np.float32))
    floats = Volume(volume.array.astype(np.float32) / 7, volume.geometry)
    np.testing.assert_array_equal(enhance.equalize_histogram(floats, bins=64).array,
                                  exposure.equalize_hist(floats.array, nbins=64))


def test_clahe_is_skimage_equalize_adapthist_per_slice_with_the_kernel_in_mm() -> None:
    volume = phantom()
    result = enhance.clahe(volume, kernel_size=4.0, clip_limit=0.02)  # 4 mm on 0.5 mm pixels: 8 x 8 tiles
    assert result.geometry == volume.geometry and result.array.dtype == np.float32
    scaled = unit(volume.array)
    for k in range(volume.array.shape[0]):
        expected = exposure.equalize_adapthist(scaled[k], kernel_size=(8, 8), clip_limit=0.02)
        np.testing.assert_array_equal(result.array[k], expected)
    default = enhance.clahe(volume)
    np.testing.assert_array_equal(default.array[3], exposure.equalize_adapthist(scaled[3]))


def test_clahe_3d_is_one_skimage_call_with_anisotropic_tiles() -> None:
    volume = phantom()
    result = enhance.clahe_3d(volume, kernel_size=8.0)  # 8 mm: 16 x 16 pixels, 4 slices of 2 mm
    expected = exposure.equalize_adapthist(unit(volume.array), kernel_size=(4, 16, 16))
    np.testing.assert_array_equal(result.array, expected.astype(np.float32))
    assert result.array.dtype == np.float32


def test_unsharp_mask_is_simpleitk_with_sigma_in_mm() -> None:
    volume = phantom()
    result = enhance.unsharp_mask(volume, sigma=1.5, amount=0.8, threshold=2.0)
    assert result.geometry == volume.geometry and result.array.dtype == np.float32
    direct = sitk.UnsharpMask(reference_image(volume, np.float32), [1.5, 1.5, 1.5], 0.8, 2.0)
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct))
    # sharpening raises the contrast across the insert's edge, and the units stay HU
    assert result.array.std() > volume.array.std()
    assert result.metadata.units == "HU" and result.metadata.window_presets == volume.metadata.window_presets


def test_enhance_of_a_single_slice() -> None:
    volume = phantom(shape=(1, 48, 40))
    image = sitk.GetImageFromArray(volume.array[0].astype(np.float32))
    image.SetSpacing(SPACING[:2])
    np.testing.assert_array_equal(enhance.unsharp_mask(volume, sigma=1.0).array[0],
                                  sitk.GetArrayFromImage(sitk.UnsharpMask(image, [1.0, 1.0], 0.5, 0.0)))
    assert enhance.clahe(volume).array.shape == (1, 48, 40)


@pytest.mark.parametrize("call, message", [
    (lambda v: enhance.contrast_stretch(v, low_percentile=-1), "low percentile must be between 0 and 100"),
    (lambda v: enhance.contrast_stretch(v, low_percentile=60, high_percentile=40), r"low percentile \(60\) must be "
                                                                                    r"below the high one \(40\)"),
    (lambda v: enhance.contrast_stretch(v, high_percentile=float("nan")), "high percentile must be a finite number"),
    (lambda v: enhance.equalize_histogram(v, bins=1), "at least 2 bins"),
    (lambda v: enhance.clahe(v, kernel_size=-2), r"CLAHE kernel size \(mm\) must be greater than 0"),
    (lambda v: enhance.clahe(v, clip_limit=0), "CLAHE clip limit must be above 0 and at most 1"),
    (lambda v: enhance.clahe_3d(v, clip_limit=2), "3D CLAHE clip limit must be above 0 and at most 1"),
    (lambda v: enhance.unsharp_mask(v, sigma=0), r"Unsharp mask sigma \(mm\) must be greater than 0"),
    (lambda v: enhance.unsharp_mask(v, amount=-1), "amount must be 0 or more"),
])
def test_bad_parameters_are_refused_with_a_useful_message(call, message) -> None:
    with pytest.raises(MedviewError, match=message):
        call(phantom())


def test_flat_volumes_are_refused_rather_than_divided_by_zero() -> None:
    flat = Volume(np.full((4, 10, 10), 7, np.int16), Geometry((4, 10, 10)), VolumeMetadata())
    with pytest.raises(MedviewError, match="Nothing to stretch: the 2th and 98th percentiles are both 7"):
        enhance.contrast_stretch(flat)
    with pytest.raises(MedviewError, match="CLAHE: the volume is flat"):
        enhance.clahe(flat)


def test_clahe_is_cancelled_between_slices() -> None:
    volume = phantom()
    task = TaskContext(on_progress=lambda fraction, message: task.token.cancel() if fraction > 0.2 else None,
                       min_interval_s=0)
    with pytest.raises(CancelledError):
        enhance.clahe(volume, task=task)


def test_catalogue_entries() -> None:
    volume = phantom()
    op = get_operation("filter", "unsharp")
    assert op.function is enhance.unsharp_mask and op.library == "SimpleITK"
    np.testing.assert_array_equal(op(volume, sigma="1.5", amount="0.8").array,
                                  enhance.unsharp_mask(volume, sigma=1.5, amount=0.8).array)
    assert get_operation("filter", "clahe").library == "scikit-image"
    with pytest.raises(MedviewError, match="clip_limit must be <= 1"):
        get_operation("filter", "clahe")(volume, clip_limit="3")
