"""Segmentation methods against independent references: the direct library calls (scikit-image, SimpleITK),
an analytic sphere written by plastimatch, and the real lung1 tumour's expert label."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import SimpleITK as sitk

from medview.algorithms import segment
from medview.algorithms.operations import _REGISTRY
from medview.core import CancelToken, Geometry, LabelMap, TaskContext, Volume, VolumeMetadata
from medview.core.errors import CancelledError, MedviewError
from tests.conftest import shared_case

# an oblique-free but flipped, anisotropic grid: seeds must go through the full LPS -> index mapping
GEOMETRY = Geometry((20, 30, 40), spacing=(0.8, 0.6, 2.0), origin=(12.0, -30.0, 50.0),
                    direction=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0))


def to_sitk(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.geometry.spacing)
    image.SetOrigin(volume.geometry.origin)
    image.SetDirection(volume.geometry.direction)
    return image


def read_case(name: str, modality: str = "CT") -> Volume:
    image = sitk.ReadImage(str(shared_case(name)))
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(array.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return Volume(array, geometry, VolumeMetadata(modality=modality))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def blobs(dtype=np.int16, noise: float = 20.0) -> Volume:
    """Two bright balls (100 and 300) on a dark background (-800) plus noise, on GEOMETRY."""
    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[:20, :30, :40].astype(float)
    array = np.full(GEOMETRY.shape, -800.0)
    array[((z - 9) * 2.0) ** 2 + ((y - 14) * 0.6) ** 2 + ((x - 11) * 0.8) ** 2 <= 6.0**2] = 100.0
    array[((z - 10) * 2.0) ** 2 + ((y - 15) * 0.6) ** 2 + ((x - 30) * 0.8) ** 2 <= 5.0**2] = 300.0
    array += rng.normal(0.0, noise, array.shape)
    return Volume(array.astype(dtype), GEOMETRY, VolumeMetadata(modality="CT"))


def lps_of(image: sitk.Image, index_xyz) -> tuple[float, float, float]:
    return image.TransformIndexToPhysicalPoint(tuple(int(i) for i in index_xyz))


# -- thresholds -------------------------------------------------------------------------------------------
def test_threshold_of_the_plastimatch_sphere_has_the_analytic_volume(sphere_phantom) -> None:
    from medview.io.readers import open_image

    volume = open_image(sphere_phantom)
    result = segment.threshold(volume, lower=-450)
    analytic_mm3 = 4.0 / 3.0 * math.pi * 20.0**3  # 33,510 mm^3
    measured_mm3 = result.volume_ml(1) * 1000.0
    print(f"sphere: {measured_mm3:.1f} mm^3 vs analytic {analytic_mm3:.1f} mm^3 "
          f"({100 * (measured_mm3 / analytic_mm3 - 1):+.2f}%)")
    assert abs(measured_mm3 / analytic_mm3 - 1.0) < 0.01
    # and it sits where plastimatch put it (the LPS origin): the geometry went through correctly
    z, y, x = np.nonzero(result.array)
    centre = volume.geometry.index_to_world(np.array([x.mean(), y.mean(), z.mean()]))
    assert np.allclose(centre, 0.0, atol=0.5)
    assert result.labels[0].name == "Threshold >= -450 HU"


def test_threshold_bounds_are_inclusive() -> None:
    volume = blobs()
    a = volume.array
    result = segment.threshold(volume, lower=50, upper=150)
    assert result.array.dtype == np.uint8
    assert np.array_equal(result.array == 1, (a >= 50) & (a <= 150))
    only_upper = segment.threshold(volume, upper=-800)
    assert np.array_equal(only_upper.array == 1, a <= -800)
    assert result.geometry == volume.geometry


def test_otsu_equals_scikit_image() -> None:
    from skimage.filters import threshold_otsu

    volume = blobs(np.float32)
    expected = threshold_otsu(volume.array, nbins=256)
    assert segment.otsu_threshold(volume) == pytest.approx(expected, rel=1e-6)
    result = segment.otsu(volume)
    assert np.array_equal(result.array == 1, volume.array > expected)
    assert segment.otsu_threshold(volume, bins=64) == pytest.approx(threshold_otsu(volume.array, nbins=64), rel=1e-6)


def test_otsu_agrees_with_simpleitk_within_a_bin() -> None:
    volume = blobs(np.float32)
    f = sitk.OtsuThresholdImageFilter()
    f.SetNumberOfHistogramBins(256)
    f.Execute(to_sitk(volume))
    bin_width = float(volume.array.max() - volume.array.min()) / 256
    assert abs(segment.otsu_threshold(volume) - f.GetThreshold()) <= bin_width


def test_multi_otsu_equals_scikit_image() -> None:
    from skimage.filters import threshold_multiotsu

    volume = blobs(np.float32)
    expected = threshold_multiotsu(volume.array, classes=3, nbins=256)
    got = segment.multi_otsu_thresholds(volume, classes=3)
    assert np.allclose(got, expected, rtol=1e-6)
    result = segment.multi_otsu(volume, classes=3)
    assert np.array_equal(result.array, np.digitize(volume.array, expected))
    assert [label.value for label in result.labels] == [1, 2]
    assert result.labels[0].name.startswith("Otsu class 2 (")


# -- region growing ------------------------------------------------------------------------------------------
def test_connected_threshold_equals_simpleitk_with_the_seed_in_mm() -> None:
    volume = blobs()
    image = to_sitk(volume)
    seed_lps = (11.0 * -0.8 + 12.0 + 0.3, 14 * 0.6 - 30.0 - 0.2, 50.0 - 9 * 2.0 + 0.7)  # inside voxel (11, 14, 9)
    index = image.TransformPhysicalPointToIndex(seed_lps)  # SimpleITK's own mapping, not ours
    assert index == (11, 14, 9)
    expected = sitk.GetArrayFromImage(sitk.ConnectedThreshold(image, seedList=[index], lower=0, upper=400))
    result = segment.connected_threshold(volume, seeds=[seed_lps], lower=0, upper=400)
    assert np.array_equal(result.array, expected)
    assert 0 < result.voxel_count(1) < np.count_nonzero(volume.array > 0)  # one ball, not both
    # two seeds, one in each ball
    second = lps_of(image, (30, 15, 10))
    both = segment.connected_threshold(volume, seeds=[seed_lps, second], lower=0, upper=400)
    expected2 = sitk.GetArrayFromImage(sitk.ConnectedThreshold(image, seedList=[index, (30, 15, 10)], lower=0,
                                                               upper=400))
    assert np.array_equal(both.array, expected2)


def test_connected_threshold_with_fractional_bounds_on_integers_is_inclusive() -> None:
    volume = blobs()
    seed = lps_of(to_sitk(volume), (11, 14, 9))
    result = segment.connected_threshold(volume, seeds=[seed], lower=-0.5, upper=400.5)
    reference = sitk.GetArrayFromImage(sitk.ConnectedThreshold(to_sitk(volume), seedList=[(11, 14, 9)],
                                                               lower=0, upper=400))
    assert np.array_equal(result.array, reference)


def test_confidence_connected_equals_simpleitk() -> None:
    volume = blobs(np.float32)
    image = to_sitk(volume)
    expected = sitk.GetArrayFromImage(sitk.ConfidenceConnected(image, seedList=[(30, 15, 10)], numberOfIterations=2,
                                                               multiplier=2.5, initialNeighborhoodRadius=1))
    result = segment.confidence_connected(volume, seeds=[lps_of(image, (30, 15, 10))], multiplier=2.5,
                                          iterations=2, initial_radius=1)
    assert np.array_equal(result.array, expected)
    assert result.voxel_count(1) > 0


def test_region_growing_reproduces_the_lung1_tumour_label() -> None:
    """Seed: the label voxel nearest the label's centroid, in LPS mm.  Settings a user would pick for a
    solid lung nodule: grow through -400 .. 400 HU (-400 HU is the usual boundary between aerated lung and
    soft tissue), then open by 1.5 mm to cut vessels (< 3 mm) through which the region may leak."""
    volume = read_case("lung1_image.nrrd")
    truth = read_case("lung1_label.nrrd").array > 0
    z, y, x = np.nonzero(truth)
    spacing_zyx = np.array(volume.geometry.spacing[::-1])
    centroid = np.array([z.mean(), y.mean(), x.mean()])
    nearest = np.argmin((((np.stack([z, y, x], axis=1) - centroid) * spacing_zyx) ** 2).sum(axis=1))
    seed = volume.geometry.index_to_world([x[nearest], y[nearest], z[nearest]])

    plain = segment.connected_threshold(volume, seeds=[seed], lower=-400, upper=400)
    opened = segment.connected_threshold(volume, seeds=[seed], lower=-400, upper=400, opening_mm=1.5)
    d_plain, d_opened = dice(plain.array > 0, truth), dice(opened.array > 0, truth)
    print(f"lung1 tumour Dice: connected threshold -400..400 HU {d_plain:.3f}; with 1.5 mm opening {d_opened:.3f} "
          f"({opened.voxel_count(1)} voxels vs {truth.sum()} in the label)")
    assert d_plain >= 0.8
    assert d_opened >= 0.8


# -- watershed and fast marching -----------------------------------------------------------------------------
def test_marker_watershed_separates_the_two_balls() -> None:
    volume = blobs(np.float32, noise=5.0)
    image = to_sitk(volume)
    result = segment.watershed(volume, seeds=[lps_of(image, (11, 14, 9)), lps_of(image, (30, 15, 10))],
                               background_seeds=[lps_of(image, (2, 2, 2))], sigma_mm=1.0)
    a = volume.array
    first = (a > -350) & (np.arange(40)[None, None, :] < 20)
    second = (a > -350) & (np.arange(40)[None, None, :] >= 20)
    assert [label.name for label in result.labels] == ["Watershed 1", "Watershed 2"]
    assert dice(result.array == 1, first) > 0.9
    assert dice(result.array == 2, second) > 0.9


def test_fast_marching_travels_the_given_distance_in_mm() -> None:
    # a flat image: the front moves at full speed, so it reaches distance_mm along the axes (in mm, on an
    # anisotropic grid) and never beyond; ITK's first-order scheme overestimates oblique paths (by < 30%)
    volume = Volume(np.zeros((40, 60, 60), np.float32), Geometry((40, 60, 60), spacing=(0.5, 0.5, 1.0)))
    centre = volume.geometry.index_to_world([30, 30, 20])
    result = segment.fast_marching(volume, seeds=[centre], distance_mm=8.0, edge=1.0)
    z, y, x = np.mgrid[:40, :60, :60]
    distance = np.sqrt(((z - 20) * 1.0) ** 2 + ((y - 30) * 0.5) ** 2 + ((x - 30) * 0.5) ** 2)
    inside = result.array == 1
    assert np.all(distance[inside] <= 8.0 + 1e-6)
    assert np.all(inside[distance <= 8.0 / 1.3])
    assert inside[20, 30, 30 + 16] and not inside[20, 30, 30 + 17]  # 16 voxels of 0.5 mm along x
    assert inside[20 + 8, 30, 30] and not inside[20 + 9, 30, 30]  # 8 slices of 1 mm along z


def test_fast_marching_stops_at_the_edge_of_a_ball() -> None:
    volume = blobs(np.float32, noise=5.0)
    image = to_sitk(volume)
    result = segment.fast_marching(volume, seeds=[lps_of(image, (11, 14, 9))], distance_mm=12.0)
    ball = (volume.array > -350) & (np.arange(40)[None, None, :] < 20)
    assert dice(result.array == 1, ball) > 0.8


# -- bad input, cancellation, progress, catalogue ---------------------------------------------------------------
def test_a_seed_outside_the_volume_says_which_and_where_the_volume_is() -> None:
    volume = blobs()
    inside = lps_of(to_sitk(volume), (11, 14, 9))
    with pytest.raises(MedviewError, match=r"Seed 2 at \(0\.0, 0\.0, 500\.0\) mm lies outside the volume, which "
                                           r"spans x -19\.6\.\.12\.4, y -30\.3\.\.-12\.3, z 11\.0\.\.51\.0 mm"):
        segment.connected_threshold(volume, seeds=[inside, (0.0, 0.0, 500.0)], lower=0, upper=400)
    with pytest.raises(MedviewError, match="at least one seed"):
        segment.connected_threshold(volume, seeds=[], lower=0, upper=400)
    with pytest.raises(MedviewError, match="Seeds must be points x,y,z in LPS mm"):
        segment.connected_threshold(volume, seeds=[(1.0, 2.0)], lower=0, upper=400)
    # a single point, or an (n, 3) array, is accepted as well as a list of points
    one = segment.connected_threshold(volume, seeds=inside, lower=0, upper=400)
    assert np.array_equal(one.array, segment.connected_threshold(volume, seeds=np.array([inside]), lower=0,
                                                                 upper=400).array)


def test_empty_results_change_nothing_and_say_why() -> None:
    volume = blobs()
    with pytest.raises(MedviewError, match=r"Threshold >= 5000 HU found no voxels \(the image ranges from .* HU\); "
                                           "nothing was changed"):
        segment.threshold(volume, lower=5000)
    seed = lps_of(to_sitk(volume), (11, 14, 9))
    with pytest.raises(MedviewError, match=r"seed value \(.*HU\) lie outside the window 500 \.\. 600 HU.*"
                                           "nothing was changed"):
        segment.connected_threshold(volume, seeds=[seed], lower=500, upper=600)
    with pytest.raises(MedviewError, match="found no voxels left at the seeds after opening by 20 mm"):
        segment.connected_threshold(volume, seeds=[seed], lower=0, upper=400, opening_mm=20.0)


def test_bad_parameters_are_refused() -> None:
    volume = blobs()
    seed = lps_of(to_sitk(volume), (11, 14, 9))
    with pytest.raises(MedviewError, match="lower bound \\(10\\) is above the upper bound \\(5\\)"):
        segment.threshold(volume, lower=10, upper=5)
    with pytest.raises(MedviewError, match="needs a lower and/or an upper bound"):
        segment.threshold(volume)
    with pytest.raises(MedviewError, match="opening radius must be 0 \\(none\\) or a positive distance"):
        segment.connected_threshold(volume, seeds=[seed], lower=0, upper=400, opening_mm=-1.0)
    with pytest.raises(MedviewError, match="at least two markers"):
        segment.watershed(volume, seeds=[seed])
    with pytest.raises(MedviewError, match="smoothing sigma must be a positive distance"):
        segment.watershed(volume, seeds=[seed], background_seeds=[seed], sigma_mm=-1)
    with pytest.raises(MedviewError, match="between 2 and 6 classes"):
        segment.multi_otsu(volume, classes=9)
    colour = Volume(np.zeros((1, 4, 4, 3), np.uint8), Geometry((1, 4, 4)))
    with pytest.raises(MedviewError, match="needs a greyscale volume"):
        segment.otsu(colour)
    flat = Volume(np.zeros((2, 4, 4), np.int16), Geometry((2, 4, 4)))
    with pytest.raises(MedviewError, match="single value"):
        segment.otsu(flat)


def test_cancel_stops_numpy_and_itk_steps() -> None:
    volume = blobs()
    seed = lps_of(to_sitk(volume), (11, 14, 9))
    task = TaskContext(token=CancelToken())
    task.token.cancel()
    with pytest.raises(CancelledError):
        segment.threshold(volume, lower=0, task=task)
    with pytest.raises(CancelledError):
        segment.connected_threshold(volume, seeds=[seed], lower=0, upper=400, task=task)
    with pytest.raises(CancelledError):
        segment.watershed(volume, seeds=[seed], background_seeds=[lps_of(to_sitk(volume), (2, 2, 2))], task=task)


def test_progress_is_reported_up_to_done() -> None:
    seen: list[float] = []
    task = TaskContext(on_progress=lambda f, m: seen.append(f), min_interval_s=0.0)
    volume = blobs(np.float32)
    segment.watershed(volume, seeds=[lps_of(to_sitk(volume), (11, 14, 9))],
                      background_seeds=[lps_of(to_sitk(volume), (2, 2, 2))], task=task)
    assert seen and seen[-1] == 1.0 and all(b >= a for a, b in itertools.pairwise(seen))


def test_segment_catalogue_offers_every_method_with_parsed_parameters() -> None:
    # looked up in the registry filled when this module was imported (the catalogue's other modules, the
    # filters, are not needed for that)
    names = {"threshold", "otsu", "multi-otsu", "connected-threshold", "confidence-connected", "watershed",
             "fast-marching", "kmeans", "dbscan", "birch"}
    ops = {name: _REGISTRY[("segment", name)] for name in names}
    assert all(op.kind == "segment" and op.library and op.help for op in ops.values())
    volume = blobs()
    seed = ",".join(str(c) for c in lps_of(to_sitk(volume), (11, 14, 9)))
    grown = _REGISTRY[("segment", "region-grow")](volume, seeds=seed, lower="0", upper="400", fill_holes="3d")
    assert isinstance(grown, LabelMap) and grown.voxel_count(1) > 0
    with pytest.raises(MedviewError, match="connected-threshold needs the parameter seeds"):
        ops["connected-threshold"](volume, lower="0", upper="1")
    assert ops["threshold"](volume, lower="-450").labels[0].name == "Threshold >= -450 HU"
