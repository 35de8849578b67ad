"""Blob detection against analytic truth: spheres of known diameter at known LPS centres."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import medview.algorithms.detect as detect
from medview.algorithms.detect import DETECTORS, detect_blobs, get_detector, log_neighbourhood
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from medview.core.volume import Volume, VolumeMetadata

SPACING = (0.7, 0.7, 2.5)  # x, y, z mm: thick slices, so the isotropic resampling matters
# (centre LPS mm, diameter mm); 40 HU solid spheres in -900 HU lung
SPHERES = [((-15.0, -35.0, 18.0), 10.0), ((22.0, 0.0, 30.0), 6.0), ((15.0, -45.0, 55.0), 20.0)]
BIG = ((-10.0, 5.0, 60.0), 40.0)  # outside the 4-30 mm range


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def _phantom(shape=(44, 160, 160)) -> Volume:
    """CT-like volume, oblique direction; each voxel averages 2 x 2 x 5 sub-samples (partial volume)."""
    d = _rotation(0.3, -0.2, 0.5)
    g0 = Geometry(shape, SPACING, (0, 0, 0), tuple(d.reshape(-1)))
    origin = np.array([10.0, -20.0, 35.0]) - g0.index_to_world((np.array(shape[::-1]) - 1) / 2)
    g = Geometry(shape, SPACING, tuple(origin), tuple(d.reshape(-1)))
    world = g.index_to_world(np.stack(np.indices(shape)[::-1], -1).astype(float))  # voxel centres, LPS mm
    step = g.direction_matrix * np.array(SPACING)[None, :]  # one voxel along x, y, z in mm
    filled = np.zeros(shape, np.float32)
    offsets = [(ox, oy, oz) for ox in (-0.25, 0.25) for oy in (-0.25, 0.25) for oz in (-0.4, -0.2, 0.0, 0.2, 0.4)]
    for centre, diameter in [*SPHERES, BIG]:
        # only voxels within half a voxel diagonal of the surface can be partly inside
        near = np.linalg.norm(world - np.array(centre), axis=-1) <= diameter / 2 + np.linalg.norm(SPACING) / 2
        points = world[near]
        for offset in offsets:
            filled[near] += np.sum((points + step @ np.array(offset) - centre) ** 2, -1) <= (diameter / 2) ** 2
    rng = np.random.default_rng(7)
    array = -900.0 + 940.0 * filled / len(offsets) + rng.normal(0.0, 20.0, shape)
    return Volume(array.astype(np.float32), g, VolumeMetadata(modality="CT", source="phantom"))


@pytest.fixture(scope="module")
def phantom() -> Volume:
    return _phantom()


@pytest.fixture(scope="module")
def found(phantom):
    return {m: detect_blobs(phantom, method=m, min_diameter=4, max_diameter=30) for m in ("log", "dog")}


@pytest.mark.parametrize("method", ["log", "dog"])
def test_every_sphere_found_at_its_lps_centre_and_size(found, method):
    result = found[method]
    assert result.method == f"blob-{method}" and result.params["iso_spacing"] == 1.0
    centres = np.array([d.center_lps for d in result])
    for centre, diameter in SPHERES:
        distance = np.linalg.norm(centres - np.array(centre), axis=1)
        best = result.detections[int(np.argmin(distance))]
        assert distance.min() <= 1.5, (centre, distance.min())  # mm (1.5 isotropic voxels of 1 mm)
        assert abs(best.diameter_mm - diameter) <= 0.25 * diameter, (diameter, best.diameter_mm)
        assert best.score > 0.5
        r = best.diameter_mm / 2
        assert best.box_lps == pytest.approx(tuple(np.r_[np.array(best.center_lps) - r, np.array(best.center_lps) + r]))
    # nothing else: not the 40 mm sphere, not its surface, not noise
    assert len(result) == len(SPHERES)
    assert all(4.0 <= d.diameter_mm <= 30.0 for d in result)
    big_centre, big_diameter = BIG
    assert all(np.linalg.norm(np.array(d.center_lps) - big_centre) > big_diameter / 2 for d in result)


def test_sphere_outside_the_range_is_found_when_the_range_includes_it(phantom):
    result = detect_blobs(phantom, min_diameter=16, max_diameter=45)
    assert result.params["iso_spacing"] == 4.0
    sizes = {}
    for centre, diameter in [SPHERES[2], BIG]:
        distance = [np.linalg.norm(np.array(d.center_lps) - centre) for d in result]
        i = int(np.argmin(distance))
        assert distance[i] <= 4.0  # one voxel of the 4 mm isotropic grid
        sizes[diameter] = result.detections[i].diameter_mm
    assert sizes[20.0] == pytest.approx(20.0, rel=0.25)
    assert sizes[40.0] == pytest.approx(40.0, rel=0.25)
    assert len(result) == 2  # the 6 and 10 mm spheres are below the range


def test_mask_limits_the_search(phantom):
    g = phantom.geometry
    mask = np.zeros(g.shape, bool)
    ix, iy, iz = np.rint(g.world_to_index(SPHERES[0][0])).astype(int)
    mask[iz - 3:iz + 4, iy - 10:iy + 11, ix - 10:ix + 11] = True
    result = detect_blobs(phantom, mask=mask)
    assert len(result) == 1
    assert np.linalg.norm(np.array(result.detections[0].center_lps) - SPHERES[0][0]) <= 1.5
    assert result.params["masked"] is True
    assert len(detect_blobs(phantom, mask=np.zeros(g.shape, bool))) == 0
    with pytest.raises(MedviewError, match="shape"):
        detect_blobs(phantom, mask=np.ones((2, 2, 2), bool))


def test_slabs_give_the_same_detections_as_one_pass(phantom, monkeypatch):
    kwargs = {"method": "dog", "min_diameter": 8, "max_diameter": 30}
    whole = detect_blobs(phantom, **kwargs)
    monkeypatch.setattr(detect, "CUBE_BUDGET", 1_500_000)
    slabs = []
    real_tiles = detect._tiles
    monkeypatch.setattr(detect, "_tiles", lambda *a: slabs.append(real_tiles(*a)) or slabs[-1])
    sliced = detect_blobs(phantom, **kwargs)
    assert len(slabs[0]) > 2
    assert len(whole) == 2  # the 10 and 20 mm spheres
    assert len(sliced) == len(whole)
    for a, b in zip(sliced, whole, strict=True):
        assert a.center_lps == pytest.approx(b.center_lps, abs=1e-6)
        assert a.score == pytest.approx(b.score, abs=1e-6)


def test_log_neighbourhood_equals_scipy_gaussian_laplace():
    rng = np.random.default_rng(1)
    image = rng.random((20, 24, 30)).astype(np.float32)
    for sigma in (0.8, 2.3, 4.0):
        full = -(sigma**2) * ndi.gaussian_laplace(image.astype(float), sigma)
        for centre in [(10, 12, 15), (1, 1, 1), (18, 0, 29), (0, 23, 5)]:
            here = log_neighbourhood(image, centre, sigma)
            idx = [np.clip(np.arange(c - 1, c + 2), 0, n - 1) for c, n in zip(centre, image.shape, strict=True)]
            inner = tuple(slice(1 - (c == 0), 2 + (c < n - 1)) for c, n in zip(centre, image.shape, strict=True))
            expected = full[np.ix_(*idx)]
            assert here[inner] == pytest.approx(expected[inner], abs=1e-9)


def test_progress_and_cancel(phantom):
    fractions = []
    detect_blobs(phantom, min_diameter=16, max_diameter=30, task=TaskContext(lambda f, m: fractions.append(f)))
    assert fractions and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    task = TaskContext()
    task.token.cancel()
    with pytest.raises(CancelledError):
        detect_blobs(phantom, task=task)
    # cancelled while running (once the blob search has started): stops with CancelledError
    running = TaskContext(min_interval_s=0.0)
    running.on_progress = lambda f, m: running.token.cancel() if f >= 0.15 else None
    with pytest.raises(CancelledError):
        detect_blobs(phantom, min_diameter=16, max_diameter=30, task=running)


@pytest.mark.parametrize("kwargs", [
    {"min_diameter": 30, "max_diameter": 4},
    {"min_diameter": -4},
    {"max_diameter": 0},
    {"min_diameter": float("nan")},
    {"max_diameter": float("inf")},
    {"window_low": 100.0, "window_high": -100.0},
    {"threshold": 0},
    {"overlap": 1.5},
    {"min_roundness": -0.1},
    {"iso_spacing": -1.0},
    {"method": "hough"},
    {"max_detections": -1},
])
def test_bad_parameters_raise_medview_errors(phantom, kwargs):
    with pytest.raises(MedviewError):
        detect_blobs(phantom, **kwargs)


def test_detector_catalogue_validates_like_operations():
    blob = get_detector("blob")
    assert DETECTORS["blob"] is blob
    parsed = blob.parse({"min_diameter": "6", "method": "dog"})
    assert parsed["min_diameter"] == 6.0 and parsed["method"] == "dog" and parsed["max_diameter"] == 30.0
    for raw in ({"min_diameter": "nan"}, {"min_diameter": "-1"}, {"min_diameter": "40"}, {"method": "hough"},
                {"radius": "3"}):
        with pytest.raises(MedviewError):
            blob.parse(raw)
    with pytest.raises(MedviewError, match="Unknown detector"):
        get_detector("yolo")


def test_colour_volume_refused():
    volume = Volume(np.zeros((4, 8, 8, 3), np.uint8), Geometry((4, 8, 8)))
    with pytest.raises(MedviewError, match="grey-scale"):
        detect_blobs(volume)
