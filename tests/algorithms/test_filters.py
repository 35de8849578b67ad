"""Each noise filter equals the direct library call it wraps; grid operations keep every voxel's world position.

The reference calls are made here, on images built here from the same numpy array and spacing (not
through medview's bridge), so a mistake in the bridge or in the mm -> voxel conversion shows.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage, signal

from medview.algorithms import filters
from medview.algorithms.operations import get_operation
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from medview.core.volume import Volume, VolumeMetadata, WindowPreset

SPACING = (0.5, 0.5, 2.0)  # x, y, z mm: thick slices, so mm -> voxel conversion differs per axis
SHAPE = (16, 48, 40)  # z, y, x
_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)  # rotated 17 degrees about z


def phantom(shape=SHAPE, spacing=SPACING, dtype=np.int16, seed=0, direction=OBLIQUE) -> Volume:
    """A CT-like volume: air, a soft-tissue ellipsoid with a bright insert, Gaussian noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=float)
    centre = (np.array(shape) - 1) / 2
    r = (((z - centre[0]) / (shape[0] * 0.4)) ** 2 + ((y - centre[1]) / (shape[1] * 0.35)) ** 2
         + ((x - centre[2]) / (shape[2] * 0.3)) ** 2)
    values = np.where(r < 1, 40.0, -1000.0) + np.where(r < 0.2, 300.0, 0.0) + rng.normal(0, 20, shape)
    geometry = Geometry(shape, spacing, (-12.5, 30.0, -80.0), direction)
    meta = VolumeMetadata(modality="CT", units="HU", window_presets=[WindowPreset(40, 400, "Soft tissue")],
                          extra={"history": ["loaded"]})
    return Volume(np.round(values).astype(dtype), geometry, meta)


def reference_image(volume: Volume, dtype=None) -> sitk.Image:
    """The image a SimpleITK user would build: the array with spacing, origin and direction set."""
    array = volume.array if dtype is None else volume.array.astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.geometry.spacing)
    image.SetOrigin(volume.geometry.origin)
    image.SetDirection(volume.geometry.direction)
    return image


def same_grid(result: Volume, volume: Volume) -> None:
    assert result.geometry == volume.geometry
    assert result.array.shape == volume.array.shape


def assert_world_positions_kept(result: Volume, volume: Volume) -> None:
    """Every voxel of ``result`` lies exactly on a voxel of ``volume`` holding the same value."""
    new_index = np.stack(np.meshgrid(*[np.arange(n) for n in result.geometry.size_xyz], indexing="ij"), -1)
    new_index = new_index.reshape(-1, 3).astype(float)
    world = result.geometry.index_to_world(new_index)
    old_index = volume.geometry.world_to_index(world)
    assert np.allclose(old_index, np.rint(old_index), atol=1e-6)
    oi = np.rint(old_index).astype(int)
    ni = new_index.astype(int)
    np.testing.assert_array_equal(result.array[ni[:, 2], ni[:, 1], ni[:, 0]],
                                  volume.array[oi[:, 2], oi[:, 1], oi[:, 0]])


# -- smoothing -------------------------------------------------------------------------------------------
def test_mean_is_scipy_uniform_filter_and_matches_itk_mean() -> None:
    volume = phantom()
    result = filters.mean(volume, radius=1.0)  # 1 mm on 0.5 x 0.5 x 2 mm voxels: 2, 2, 0 voxels
    same_grid(result, volume)
    assert result.array.dtype == np.float32
    expected = ndimage.uniform_filter(volume.array.astype(np.float32), size=(1, 5, 5), mode="nearest")
    np.testing.assert_array_equal(result.array, expected)
    itk = sitk.GetArrayFromImage(sitk.Mean(reference_image(volume, np.float32), [2, 2, 0]))
    np.testing.assert_allclose(result.array, itk, rtol=0, atol=1e-6 * 1400)  # float32 rounding of ~1e3 values


def test_mean_in_slabs_equals_one_call(monkeypatch) -> None:
    volume = phantom(shape=(24, 40, 32), spacing=(1.0, 1.0, 1.0))
    monkeypatch.setattr(filters, "SLAB_VOXELS", 2000)  # many slabs along every axis
    result = filters.mean(volume, radius=2.0)
    expected = ndimage.uniform_filter(volume.array.astype(np.float32), size=5, mode="nearest")
    np.testing.assert_array_equal(result.array, expected)


def test_median_radius_in_mm_is_converted_per_axis() -> None:
    volume = phantom()
    result = filters.median(volume, radius=1.0)
    same_grid(result, volume)
    assert result.array.dtype == np.int16  # an order statistic: the input type is kept
    direct = sitk.GetArrayFromImage(sitk.Median(reference_image(volume), [2, 2, 0]))
    np.testing.assert_array_equal(result.array, direct)
    # scipy agrees (both replicate the edges), which is what the benchmark compares on speed
    np.testing.assert_array_equal(result.array, ndimage.median_filter(volume.array, size=(1, 5, 5), mode="nearest"))
    isotropic = filters.median(volume, radius=2.0)  # 2 mm: 4, 4, 1 voxels
    np.testing.assert_array_equal(isotropic.array,
                                  sitk.GetArrayFromImage(sitk.Median(reference_image(volume), [4, 4, 1])))


def test_gaussian_sigma_is_in_mm() -> None:
    volume = phantom()
    result = filters.gaussian(volume, sigma=1.5)
    same_grid(result, volume)
    assert result.array.dtype == np.float32
    direct = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(reference_image(volume, np.float32), 1.5))
    np.testing.assert_array_equal(result.array, direct)
    # the same filter on a 1 mm grid with sigma given in voxels per axis: 1.5 mm = 3, 3, 0.75 voxels
    unit = sitk.GetImageFromArray(volume.array.astype(np.float32))
    in_voxels = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(unit, [3.0, 3.0, 0.75]))
    np.testing.assert_allclose(result.array, in_voxels, rtol=0, atol=1e-3)


def test_gaussian_on_a_single_slice_runs_in_2d() -> None:
    volume = phantom(shape=(1, 48, 40))
    result = filters.gaussian(volume, sigma=1.0)
    image = sitk.GetImageFromArray(volume.array[0].astype(np.float32))
    image.SetSpacing(SPACING[:2])
    np.testing.assert_array_equal(result.array[0], sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 1.0)))


def test_adaptive_equals_scipy_wiener_inside_and_has_no_false_border() -> None:
    volume = phantom()
    result = filters.adaptive(volume, radius=1.0, noise=20.0)  # window 5 x 5 x 1 voxels
    same_grid(result, volume)
    assert result.array.dtype == np.float32
    direct = signal.wiener(volume.array.astype(np.float64), (1, 5, 5), noise=400.0)
    inner = (slice(None), slice(2, -2), slice(2, -2))  # scipy pads with zeros: compare where that is unseen
    np.testing.assert_allclose(result.array[inner], direct[inner], rtol=0, atol=1e-6 * 1400)
    # uniform air: scipy's zero padding invents an edge along the border (-1024 HU becomes about -700)
    flat = Volume(np.full((4, 12, 12), -1024, np.int16), Geometry((4, 12, 12), SPACING))
    with np.errstate(divide="ignore", invalid="ignore"):  # scipy divides 0 by 0 in the flat interior
        assert signal.wiener(flat.array.astype(float), (1, 5, 5))[0, 0, 0] > -800
    np.testing.assert_array_equal(filters.adaptive(flat, radius=1.0).array, -1024)


def test_adaptive_estimates_the_noise_as_the_mean_local_variance() -> None:
    volume = phantom()
    x = volume.array.astype(np.float64)
    local_mean = ndimage.uniform_filter(x, (1, 5, 5), mode="nearest")
    local_var = ndimage.uniform_filter(x * x, (1, 5, 5), mode="nearest") - local_mean**2
    noise = float(np.sqrt(np.mean(local_var)))
    np.testing.assert_allclose(filters.adaptive(volume, radius=1.0).array,
                               filters.adaptive(volume, radius=1.0, noise=noise).array, rtol=0, atol=1e-2)


@pytest.mark.parametrize("name, sitk_filter", [
    ("curvature_diffusion", sitk.CurvatureAnisotropicDiffusion),
    ("gradient_diffusion", sitk.GradientAnisotropicDiffusion),
])
def test_diffusion_equals_simpleitk_with_the_stable_time_step(name, sitk_filter) -> None:
    volume = phantom()
    result = getattr(filters, name)(volume, iterations=3, conductance=2.0)
    same_grid(result, volume)
    assert result.array.dtype == np.float32
    limit = 0.5 / 2**4  # smallest spacing / 2^(3+1)
    assert filters.diffusion_time_step_limit(volume.geometry) == limit
    direct = sitk_filter(reference_image(volume, np.float32), timeStep=limit, conductanceParameter=2.0,
                         numberOfIterations=3)
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct))
    assert result.metadata.extra["history"][-1] == f"{name}(iterations=3, time_step=0.03125, conductance=2)"
    with pytest.raises(MedviewError, match=r"time step 0\.1 is above the stability limit 0\.03125"):
        getattr(filters, name)(volume, time_step=0.1)


def test_bilateral_equals_simpleitk() -> None:
    volume = phantom(shape=(8, 24, 20))
    result = filters.bilateral(volume, domain_sigma=0.6, range_sigma=40.0)
    same_grid(result, volume)
    direct = sitk.Bilateral(reference_image(volume, np.float32), domainSigma=0.6, rangeSigma=40.0)
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct))


def test_n4_equals_the_simpleitk_recipe_and_flattens_the_bias() -> None:
    shape = (12, 48, 40)
    _, y, x = np.indices(shape, dtype=float)
    inside = ((y - 23.5) / 18) ** 2 + ((x - 19.5) / 15) ** 2 < 1
    bias = np.exp(0.4 * (x - 19.5) / 20 + 0.2 * (y - 23.5) / 24)  # smooth multiplicative field
    rng = np.random.default_rng(1)
    truth = np.where(inside, 400.0, 5.0) + rng.normal(0, 4, shape)
    volume = Volume((truth * bias).astype(np.float32), Geometry(shape, (1.0, 1.0, 3.0)), VolumeMetadata(modality="MR"))
    result = filters.n4_bias_correction(volume, shrink_factor=2, iterations=20, levels=3)
    same_grid(result, volume)
    assert result.array.dtype == np.float32

    image = reference_image(volume)
    mask = sitk.OtsuThreshold(image, 0, 1, 200)
    factors = [2, 2, 1]  # shrink 2 x the smallest spacing: the 3 mm axis is not shrunk
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([20] * 3)
    n4.Execute(sitk.Shrink(image, factors), sitk.Shrink(mask, factors))
    expected = sitk.GetArrayFromImage(image / sitk.Exp(n4.GetLogBiasFieldAsImage(image)))
    np.testing.assert_allclose(result.array, expected, rtol=1e-5)

    def spread(a: np.ndarray) -> float:
        return float(np.std(a[inside]) / np.mean(a[inside]))

    assert spread(result.array) < 0.5 * spread(volume.array)


# -- grid operations -------------------------------------------------------------------------------------
def test_resample_nearest_keeps_world_positions_and_values() -> None:
    volume = phantom()
    result = filters.resample(volume, spacing=(0.25, 0.25, 1.0), interpolator="nearest")
    assert result.geometry.shape == (32, 96, 80)
    assert result.array.dtype == np.int16
    assert result.geometry.direction == volume.geometry.direction
    np.testing.assert_allclose(result.geometry.extent_mm, volume.geometry.extent_mm)
    # every new voxel centre lies a quarter of an old voxel from one old centre: its value is that voxel's
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in result.geometry.size_xyz], indexing="ij"), -1).reshape(-1, 3)
    old = np.rint(volume.geometry.world_to_index(result.geometry.index_to_world(idx))).astype(int)
    np.testing.assert_array_equal(result.array[idx[:, 2], idx[:, 1], idx[:, 0]],
                                  volume.array[old[:, 2], old[:, 1], old[:, 0]])
    # the first new voxel sits a quarter of an old voxel inside the old grid's first corner
    corner = volume.geometry.index_to_world([-0.5, -0.5, -0.5])
    np.testing.assert_allclose(result.geometry.index_to_world([-0.5, -0.5, -0.5]), corner, atol=1e-9)


@pytest.mark.parametrize("interpolator, itk", [("linear", sitk.sitkLinear), ("bspline", sitk.sitkBSpline)])
def test_resample_equals_simpleitk_resample(interpolator, itk) -> None:
    volume = phantom()
    result = filters.resample(volume, spacing=(0.8, 0.7, 1.5), interpolator=interpolator)
    g = result.geometry
    assert g.shape == (21, 34, 25)  # round(16 * 2 / 1.5), round(48 * 0.5 / 0.7), round(40 * 0.5 / 0.8)
    centre_old = volume.geometry.index_to_world((np.array(volume.geometry.size_xyz) - 1) / 2)
    np.testing.assert_allclose(g.index_to_world((np.array(g.size_xyz) - 1) / 2), centre_old, atol=1e-9)
    direct = sitk.Resample(reference_image(volume), g.size_xyz, sitk.Transform(), itk, g.origin, g.spacing,
                           g.direction, float(volume.array.min()), sitk.sitkFloat32)
    expected = np.clip(np.rint(sitk.GetArrayFromImage(direct)), -32768, 32767).astype(np.int16)
    assert result.array.dtype == np.int16  # a CT stays int16 HU
    np.testing.assert_array_equal(result.array, expected)
    floats = filters.resample(Volume(volume.array.astype(np.float64), volume.geometry), spacing=1.0)
    assert floats.array.dtype == np.float32


def test_crop_by_index_and_by_mm() -> None:
    volume = phantom()
    result = filters.crop(volume, start=(5, 10, 2), stop=(30, 40, 9))
    np.testing.assert_array_equal(result.array, volume.array[2:9, 10:40, 5:30])
    assert not np.shares_memory(result.array, volume.array)
    assert_world_positions_kept(result, volume)
    # on an aligned grid, a box in mm keeps the voxels whose centres lie in it (corners in either order)
    aligned = Volume(volume.array, Geometry(SHAPE, SPACING, (-12.5, 30.0, -80.0)))
    a = aligned.geometry.index_to_world([5, 10, 2])
    b = aligned.geometry.index_to_world([29, 39, 8])
    mm = filters.crop(aligned, start=tuple(b), stop=tuple(a), units="mm")
    np.testing.assert_array_equal(mm.array, volume.array[2:9, 10:40, 5:30])
    assert_world_positions_kept(mm, aligned)
    inner = filters.crop(aligned, start=tuple(a + 0.01), stop=tuple(b - 0.01), units="mm")
    np.testing.assert_array_equal(inner.array, volume.array[3:8, 11:39, 6:29])
    clipped = filters.crop(aligned, start=(-1000, -1000, -1000), stop=tuple(b), units="mm")  # clipped to the grid
    np.testing.assert_array_equal(clipped.array, volume.array[:9, :40, :30])


@pytest.mark.parametrize("start, stop, units, message", [
    ((0, 0, 0), (41, 10, 10), "index", r"reaches outside the volume \(x 0\.\.41\)"),
    ((-1, 0, 0), (4, 10, 10), "index", r"reaches outside the volume \(x -1\.\.4\)"),
    ((5, 0, 0), (5, 10, 10), "index", "Crop box is empty"),
    ((0.5, 0, 0), (5, 10, 10), "index", "needs whole numbers"),
    ((500, 500, 500), (600, 600, 600), "mm", "holds no voxel of the volume"),
])
def test_crop_refuses_boxes_outside_the_volume(start, stop, units, message) -> None:
    with pytest.raises(MedviewError, match=message):
        filters.crop(phantom(), start=start, stop=stop, units=units)


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_flip_reorders_storage_but_keeps_world_positions(axis) -> None:
    volume = phantom()
    result = filters.flip(volume, axis=axis)
    np.testing.assert_array_equal(result.array, np.flip(volume.array, axis=2 - "xyz".index(axis)))
    assert_world_positions_kept(result, volume)
    assert result.geometry.spacing == volume.geometry.spacing


@pytest.mark.parametrize("axis, axes", [("z", (2, 1)), ("x", (1, 0)), ("y", (0, 2))])
@pytest.mark.parametrize("turns", [1, 2, 3, -1])
def test_rotate_is_numpy_rot90_and_keeps_world_positions(axis, axes, turns) -> None:
    volume = phantom()
    result = filters.rotate(volume, axis=axis, quarter_turns=turns)
    np.testing.assert_array_equal(result.array, np.rot90(volume.array, turns, axes=axes))
    assert_world_positions_kept(result, volume)
    assert sorted(result.geometry.spacing) == sorted(volume.geometry.spacing)
    assert abs(np.linalg.det(result.geometry.direction_matrix) - 1) < 1e-9  # still a proper rotation


def test_rotate_about_z_from_x_towards_y() -> None:
    volume = phantom(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    result = filters.rotate(volume, axis="z", quarter_turns=1)
    # the new x axis runs along old -y and the new y axis along old +x: world directions L->P, P->R
    np.testing.assert_allclose(result.geometry.direction_matrix[:, 0], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(result.geometry.direction_matrix[:, 1], [1, 0, 0], atol=1e-12)
    assert result.geometry.spacing == (0.5, 0.5, 2.0)


def test_grid_operations_on_the_bundled_ct() -> None:
    from medview.app.samples import sample_path
    from medview.io.readers import open_image

    ct = open_image(str(sample_path("chest_ct")))
    part = filters.crop(ct, start=(160, 160, 10), stop=(352, 352, 30))
    assert_world_positions_kept(part, ct)
    turned = filters.rotate(part, axis="x", quarter_turns=1)
    assert_world_positions_kept(turned, part)
    assert turned.geometry.spacing == (ct.geometry.spacing[0], 5.0, ct.geometry.spacing[1])
    smooth = filters.median(part, radius=1.2)  # 0.57 mm pixels, 5 mm slices: 2, 2, 0 voxels
    np.testing.assert_array_equal(smooth.array,
                                  sitk.GetArrayFromImage(sitk.Median(reference_image(part), [2, 2, 0])))
    assert smooth.metadata.series_uid == ct.metadata.series_uid


# -- metadata, parameters, catalogue -------------------------------------------------------------------
def test_metadata_is_copied_with_a_history_line() -> None:
    volume = phantom()
    result = filters.gaussian(volume, sigma=1.5)
    assert result.metadata.extra["history"] == ["loaded", "gaussian(sigma=1.5 mm)"]
    assert volume.metadata.extra["history"] == ["loaded"]  # the input is untouched
    assert result.metadata.extra is not volume.metadata.extra
    assert result.metadata.modality == "CT" and result.metadata.units == "HU"
    assert result.metadata.window_presets == volume.metadata.window_presets


@pytest.mark.parametrize("name, params", [
    ("mean", {}), ("median", {}), ("gaussian", {}), ("adaptive", {}), ("curvature_diffusion", {"iterations": 1}),
    ("gradient_diffusion", {"iterations": 1}), ("bilateral", {"domain_sigma": 0.5}), ("resample", {"spacing": 1.0}),
    ("flip", {}), ("rotate", {}), ("crop", {"start": (0, 0, 0), "stop": (4, 4, 4)}),
    ("n4_bias_correction", {"levels": 1, "iterations": 2}),
])
def test_float64_input_never_gives_float64(name, params) -> None:
    volume = phantom(shape=(6, 20, 16))
    volume = Volume(volume.array.astype(np.float64) + 1100, volume.geometry)
    out = getattr(filters, name)(volume, **params)
    if name in ("flip", "rotate", "crop"):
        assert out.array.dtype == np.float64  # voxels moved, not computed: the caller's type is kept
    else:
        assert out.array.dtype == np.float32


@pytest.mark.parametrize("call, message", [
    (lambda v: filters.median(v, radius=-1), r"Median radius must be greater than 0, got -1"),
    (lambda v: filters.median(v, radius=0.2), r"Median radius 0\.2 mm is smaller than the voxel spacing"),
    (lambda v: filters.mean(v, radius=float("nan")), "Mean radius must be a finite number"),
    (lambda v: filters.gaussian(v, sigma=0), r"Gaussian sigma \(mm\) must be greater than 0"),
    (lambda v: filters.adaptive(v, noise=-3), "noise"),
    (lambda v: filters.curvature_diffusion(v, iterations=0), "iterations must be a whole number >= 1"),
    (lambda v: filters.gradient_diffusion(v, conductance=0), "conductance must be greater than 0"),
    (lambda v: filters.bilateral(v, range_sigma=-5), "range sigma must be greater than 0"),
    (lambda v: filters.n4_bias_correction(v, shrink_factor=0), "shrink factor must be a whole number >= 1"),
    (lambda v: filters.resample(v, spacing=(1, 0, 1)), r"Resample spacing \(mm\) must be greater than 0"),
    (lambda v: filters.resample(v, spacing=(1, 1)), "one value or three"),
    (lambda v: filters.resample(v, spacing=1, interpolator="cubic"), "must be one of linear, nearest, bspline"),
    (lambda v: filters.resample(v, spacing=0.001), "choose a coarser spacing"),
    (lambda v: filters.flip(v, axis="left"), "Flip axis must be x, y or z"),
    (lambda v: filters.rotate(v, quarter_turns=1.5), "whole number of quarter turns"),
    (lambda v: filters.crop(v, start=(0, 0, 0), stop=(1, 1, 1), units="cm"), "Crop units must be index or mm"),
])
def test_bad_parameters_are_refused_with_a_useful_message(call, message) -> None:
    with pytest.raises(MedviewError, match=message):
        call(phantom())


def test_n4_needs_positive_intensities_and_filters_need_grey_images() -> None:
    with pytest.raises(MedviewError, match="needs positive intensities"):
        filters.n4_bias_correction(Volume(np.full(SHAPE, -5.0, np.float32), Geometry(SHAPE)))
    colour = Volume(np.zeros((1, 8, 8, 3), np.uint8), Geometry((1, 8, 8)))
    with pytest.raises(MedviewError, match="grey-level volumes; this image has 3 colour channels"):
        filters.gaussian(colour)
    assert filters.flip(colour, axis="y").array.shape == (1, 8, 8, 3)  # moving voxels works on colour too


def test_recursive_gaussian_on_too_few_slices_is_a_clear_error() -> None:
    with pytest.raises(MedviewError, match=r"^Gaussian failed: The number of pixels along dimension 2 is less than 4"):
        filters.gaussian(phantom(shape=(2, 20, 20)))


def test_catalogue_runs_the_functions_with_parsed_parameters() -> None:
    volume = phantom()
    op = get_operation("filter", "median")
    assert op.library == "SimpleITK" and op.function is filters.median
    np.testing.assert_array_equal(op(volume, radius="1").array, filters.median(volume, radius=1.0).array)
    assert get_operation("filter", "wiener") is get_operation("filter", "adaptive")
    resample = get_operation("filter", "resample")
    assert resample(volume, spacing="1,1,2").geometry.shape == (16, 24, 20)
    with pytest.raises(MedviewError, match="resample needs the parameter spacing"):
        resample(volume)
    with pytest.raises(MedviewError, match=r"radius \(mm\) must be > 0"):
        op(volume, radius="-1")


# -- progress and cancellation -----------------------------------------------------------------------
def test_progress_is_reported_and_reaches_one() -> None:
    seen: list[float] = []
    filters.gaussian(phantom(), sigma=1.0, task=TaskContext(on_progress=lambda f, m: seen.append(f), min_interval_s=0))
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    seen.clear()
    filters.mean(phantom(), radius=1.0, task=TaskContext(on_progress=lambda f, m: seen.append(f), min_interval_s=0))
    assert seen[-1] == 1.0


def _cancel_after(task: TaskContext, seconds: float) -> dict[str, float]:
    when: dict[str, float] = {}

    def cancel() -> None:
        when["t"] = time.perf_counter()
        task.token.cancel()

    threading.Timer(seconds, cancel).start()
    return when


@pytest.mark.parametrize("run, thread_name", [
    (lambda v, t: filters.median(v, radius=4.0, task=t), "medview-sitk-MedianImageFilter"),
    (lambda v, t: filters.gradient_diffusion(v, iterations=500, task=t),
     "medview-sitk-GradientAnisotropicDiffusionImageFilter"),
])
def test_cancel_stops_a_long_simpleitk_filter_quickly(run, thread_name) -> None:
    volume = phantom(shape=(40, 128, 128), spacing=(1.0, 1.0, 1.0))  # 4 s (median) to minutes uncancelled
    task = TaskContext()
    when = _cancel_after(task, 0.3)
    started = time.perf_counter()
    with pytest.raises(CancelledError):
        run(volume, task)
    released = time.perf_counter()
    assert released - started < 1.5, "the filter ran to the end instead of stopping"
    assert released - when["t"] < 0.2
    # ITK honoured the abort: its worker thread is gone, not left running in the background
    deadline = time.perf_counter() + 0.5
    while any(t.name == thread_name for t in threading.enumerate()) and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not any(t.name == thread_name for t in threading.enumerate())


def test_a_cancelled_task_does_not_start() -> None:
    task = TaskContext()
    task.token.cancel()
    with pytest.raises(CancelledError):
        filters.gaussian(phantom(), task=task)
    with pytest.raises(CancelledError):
        filters.mean(phantom(), task=task)
