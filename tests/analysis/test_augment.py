"""Augmentation keeps image and label aligned, moves anatomy as the parameters say, and is reproducible.

References are independent of medview's resampling: analytic positions (rotations from SciPy's
``Rotation``, reflections, edge-to-edge extents), SciPy ``map_coordinates`` sampling at coordinates computed
here, and a verbatim copy of the demo model's old MONAI composition.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from medview.analysis.augment import AugmentSpec, augment, training_transforms
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume

OBLIQUE = tuple(Rotation.from_euler("xyz", [15, -10, 25], degrees=True).as_matrix().reshape(-1))
NONE = dict(flip_prob=0.0, rotate_prob=0.0, resize_prob=0.0, elastic_prob=0.0, intensity_prob=0.0)
# Objects: (label value, kind, centre offset from the field-of-view centre in world LPS mm, size in mm).
OBJECTS = ((1, "sphere", (7.0, 0.0, -10.0), 8.0), (2, "box", (-7.0, 5.0, 11.0), (6.0, 6.0, 6.0)),
           (3, "sphere", (-7.0, -9.0, -12.0), 6.0))


def world_points(geometry: Geometry) -> np.ndarray:
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in geometry.shape], indexing="ij")
    return geometry.index_to_world(np.stack([xx, yy, zz], axis=-1).astype(float))


def fov_centre(geometry: Geometry) -> np.ndarray:
    return geometry.index_to_world((np.array(geometry.size_xyz) - 1) / 2)


def world_centroid(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    zz, yy, xx = np.nonzero(mask)
    return geometry.index_to_world(np.stack([xx, yy, zz], axis=-1).astype(float)).mean(axis=0)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def phantom(direction=OBLIQUE, objects=OBJECTS, shape=(44, 52, 56), spacing=(0.8, 0.9, 1.3),
            dtype=np.uint8) -> tuple[Volume, LabelMap]:
    """Image = 100 * label on an anisotropic grid; objects placed in world mm around the FOV centre."""
    geometry = Geometry(shape, spacing, (12.0, -30.0, 40.0), direction)
    w = world_points(geometry)
    c = fov_centre(geometry)
    labels = np.zeros(geometry.shape, dtype=dtype)
    for value, kind, offset, size in objects:
        rel = w - (c + np.array(offset))
        inside = np.linalg.norm(rel, axis=-1) < size if kind == "sphere" else np.all(np.abs(rel) < size, axis=-1)
        labels[inside] = value
    # every object well inside the field of view (so rotations keep it whole)
    local = (w[labels > 0] - c) @ geometry.direction_matrix
    half = (np.array(geometry.size_xyz) - 1) / 2 * np.array(geometry.spacing)
    assert np.all(half - np.abs(local) > 2.5)
    return Volume(labels.astype(np.float32) * 100, geometry), LabelMap(labels, geometry)


@pytest.fixture(scope="module")
def case() -> tuple[Volume, LabelMap]:
    return phantom()


def check_aligned(volume: Volume, labels: LabelMap, original: LabelMap, min_dice: float = 0.95) -> list[float]:
    """Image (bilinear) thresholded half-way to each label's intensity agrees with the label (nearest).

    Returns the Dice per object."""
    assert volume.geometry == labels.geometry
    assert labels.array.dtype == original.array.dtype
    assert set(np.unique(labels.array)) <= set(np.unique(original.array))
    scores = []
    for value in (1, 2, 3):
        mask = labels.array == value
        assert mask.sum() > 100
        near = ndimage.binary_dilation(mask, iterations=3)  # this object only: the others are farther away
        from_image = (volume.array > 50 * value) & near
        scores.append(dice(from_image, mask))
        assert scores[-1] > min_dice
        # no systematic shift between the two: centroids within 0.3 of the coarsest voxel
        offset = np.linalg.norm(world_centroid(from_image, volume.geometry) - world_centroid(mask, labels.geometry))
        assert offset < 0.3 * max(volume.geometry.spacing)
    return scores


# The bounds: sampling the same grid, a bilinear image thresholded half-way and nearest-neighbour labels differ
# only in boundary voxels whose nearest input voxel and interpolated value fall on different sides; for these
# 6-8 mm objects (5-10 voxels in radius) that is 2-5 % of an object (measured over 27 object-copies per
# transform: lowest 0.954, after a 0.7x downsampling; median 0.973-0.976; centroid offsets <= 0.2 voxel),
# while the same image shifted by one voxel against its labels scores 0.84-0.93.
@pytest.mark.parametrize("name, options", [
    ("flip", dict(flip_axes=("lr", "ap"), flip_prob=1.0)),  # oblique grid: reflected while resampling
    ("rotate", dict(rotate_prob=1.0, rotate_deg=(20.0, 20.0, 20.0))),
    ("resize", dict(resize_prob=1.0, resize_range=(0.7, 1.3))),
    ("elastic", dict(elastic_prob=1.0, elastic_magnitude_mm=(2.0, 3.0))),
    ("all", dict(flip_axes=("lr", "ap", "si"), flip_prob=1.0, rotate_prob=1.0, rotate_deg=(20.0, 20.0, 20.0),
                 resize_prob=1.0, resize_range=(0.7, 1.3), elastic_prob=1.0, elastic_magnitude_mm=(2.0, 3.0))),
])
def test_image_and_label_stay_aligned(case, name, options):
    volume, labels = case
    results = augment(volume, labels, n=3, seed=11, spec=AugmentSpec(**{**NONE, **options}))
    assert len(results) == 3
    scores = []
    for out_volume, out_labels, params in results:
        scores += check_aligned(out_volume, out_labels, labels)
        assert out_labels.array.shape != labels.array.shape or not np.array_equal(out_labels.array, labels.array)
        if name in ("resize", "all"):
            assert params["resize_shape"] != list(labels.array.shape)
        else:
            assert params["resize_shape"] is None
            assert out_volume.geometry == volume.geometry  # same-grid transforms keep the input grid
    assert np.mean(scores) > 0.97


def test_misalignment_would_be_caught(case):
    """The alignment check fails when the image is one voxel off the label (the test can fail)."""
    volume, labels = case
    shifted = Volume(np.roll(volume.array, 1, axis=2), volume.geometry)
    with pytest.raises(AssertionError):
        check_aligned(shifted, labels, labels)


DIRECTIONS = {
    "identity": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "ras-like": (-1, 0, 0, 0, -1, 0, 0, 0, 1),  # x points right, y anterior
    "sagittal": (0, 0, -1, 1, 0, 0, 0, -1, 0),  # index x points posterior, y inferior, z right
    "oblique": OBLIQUE,
}


@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_left_right_flip_moves_a_left_marker_to_the_right(direction):
    marker = ((1, "sphere", (12.0, -3.0, 5.0), 5.0),)  # LPS +x = the patient's left
    volume, labels = phantom(DIRECTIONS[direction], marker, shape=(40, 44, 48), spacing=(1.0, 1.1, 1.2))
    centre = fov_centre(labels.geometry)
    before = world_centroid(labels.array == 1, labels.geometry) - centre
    assert before[0] > 10
    spec = AugmentSpec(**{**NONE, "flip_axes": ("lr",), "flip_prob": 1.0})
    out_volume, out_labels, params = augment(volume, labels, n=1, seed=0, spec=spec)[0]
    assert params["flip"] == ["lr"]
    after = world_centroid(out_labels.array == 1, out_labels.geometry) - centre
    after_image = world_centroid(out_volume.array > 50, out_volume.geometry) - centre
    assert after[0] < -10 and after_image[0] < -10  # now on the patient's right
    expected = before * np.array([-1.0, 1.0, 1.0])  # mirrored across the sagittal plane through the centre
    assert np.linalg.norm(after - expected) < 0.5 and np.linalg.norm(after_image - expected) < 0.5
    if direction != "oblique":  # aligned grids flip by re-indexing: nothing interpolated
        assert np.array_equal(np.sort(out_labels.array, axis=None), np.sort(labels.array, axis=None))
        assert set(np.unique(out_volume.array)) == set(np.unique(volume.array))


def test_rotation_moves_an_off_centre_sphere_as_expected(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "rotate_prob": 1.0, "rotate_deg": (25.0, 25.0, 25.0)})
    centre = fov_centre(labels.geometry)
    before = {v: world_centroid(labels.array == v, labels.geometry) for v in (1, 3)}
    moved = []
    for _, out_labels, params in augment(volume, labels, n=4, seed=5, spec=spec):
        r = Rotation.from_euler("xyz", params["rotate_deg"], degrees=True).as_matrix()  # fixed axes L-R, A-P, S-I
        for value, position in before.items():
            expected = centre + r @ (position - centre)
            got = world_centroid(out_labels.array == value, out_labels.geometry)
            moved.append(np.linalg.norm(expected - position))
            assert np.linalg.norm(got - expected) < 0.5  # within about half the smallest voxel
    assert max(moved) > 4.0  # the rotations moved the spheres by much more than the tolerance


def test_rotation_and_resize_match_an_independent_resampling(case):
    """Label and image equal SciPy sampling at coordinates computed here from the recorded parameters."""
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "rotate_prob": 1.0, "rotate_deg": (20.0, 20.0, 20.0), "resize_prob": 1.0,
                          "resize_range": (0.75, 1.25)})
    src = labels.geometry
    for out_volume, out_labels, params in augment(volume, labels, n=2, seed=3, spec=spec):
        dst = out_labels.geometry
        assert dst.shape == tuple(params["resize_shape"])
        r = Rotation.from_euler("xyz", params["rotate_deg"], degrees=True).as_matrix()
        c = fov_centre(src)
        source = src.world_to_index(c + (world_points(dst) - c) @ r)  # R^T (w - c) for row vectors
        coords = np.moveaxis(source[..., ::-1], -1, 0)  # (z, y, x) array coordinates
        ref_labels = ndimage.map_coordinates(labels.array, coords, order=0, cval=0)
        ref_image = ndimage.map_coordinates(volume.array, coords, order=1, cval=0.0)
        assert np.mean(out_labels.array == ref_labels) > 0.998  # ties at exactly half a voxel may round apart
        assert np.mean(np.abs(out_volume.array - ref_image) < 0.5) > 0.999


def test_resize_keeps_field_of_view_and_anatomy(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "resize_prob": 1.0, "resize_range": (0.6, 1.4)})
    src = labels.geometry

    def corners(g: Geometry) -> np.ndarray:  # outer voxel corners in world mm
        n = np.array(g.size_xyz, dtype=float)
        grid = np.array(np.meshgrid(*[(-0.5, k - 0.5) for k in n], indexing="ij")).reshape(3, -1).T
        return g.index_to_world(grid)

    shapes = set()
    for out_volume, out_labels, _ in augment(volume, labels, n=4, seed=2, spec=spec):
        dst = out_volume.geometry
        shapes.add(dst.shape)
        assert dst == out_labels.geometry
        assert np.allclose(np.array(dst.spacing) * dst.size_xyz, np.array(src.spacing) * src.size_xyz)
        assert np.allclose(dst.direction, src.direction)
        assert np.abs(corners(dst) - corners(src)).max() < 1e-6  # same field of view, edge to edge
        for value in (1, 2, 3):
            moved = world_centroid(out_labels.array == value, dst) - world_centroid(labels.array == value, src)
            assert np.linalg.norm(moved) < min(src.spacing)  # anatomy stays put in world space
    assert len(shapes) > 1 and all(s != src.shape for s in shapes)


def test_fixed_resize_shape(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "resize_shape": (30, 32, 34)})
    out_volume, out_labels, _ = augment(volume, labels, n=1, spec=spec)[0]
    assert out_volume.array.shape == out_labels.array.shape == (30, 32, 34)
    expected = np.array(volume.geometry.spacing) * np.array(volume.geometry.size_xyz) / np.array((34, 32, 30))
    assert np.allclose(out_volume.geometry.spacing, expected)


def test_elastic_warp_is_smooth_and_of_the_requested_size(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "elastic_prob": 1.0, "elastic_magnitude_mm": (2.0, 2.0),
                          "elastic_sigma_mm": (15.0, 15.0)})
    moves = []
    for _, out_labels, params in augment(volume, labels, n=3, seed=4, spec=spec):
        assert params["elastic"]["magnitude_mm"] == 2.0 and out_labels.geometry == labels.geometry
        assert not np.array_equal(out_labels.array, labels.array)
        for value in (1, 2, 3):
            moves.append(np.linalg.norm(world_centroid(out_labels.array == value, out_labels.geometry)
                                        - world_centroid(labels.array == value, labels.geometry)))
    # RMS 2 mm per axis: objects move by millimetres, not by nothing and not by centimetres
    assert 0.3 < np.mean(moves) < 6.0


def test_same_seed_same_copies_and_copies_differ(case):
    volume, labels = case
    spec = AugmentSpec(flip_prob=0.5, rotate_prob=1.0, resize_prob=0.5, elastic_prob=0.5, intensity_prob=1.0)
    first = augment(volume, labels, n=3, seed=42, spec=spec)
    again = augment(volume, labels, n=2, seed=42, spec=spec)  # copy i does not depend on n
    other = augment(volume, labels, n=1, seed=43, spec=spec)
    for (v1, l1, p1), (v2, l2, p2) in zip(first[:2], again, strict=True):
        assert np.array_equal(v1.array, v2.array) and np.array_equal(l1.array, l2.array) and p1 == p2
    assert not np.array_equal(first[0][0].array, first[1][0].array)
    assert first[0][2]["rotate_deg"] != first[1][2]["rotate_deg"]
    assert first[0][2] != other[0][2]


def test_intensity_jitter_changes_image_only(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "intensity_prob": 1.0, "intensity_scale": 0.2, "intensity_shift": 0.1})
    lo, hi = np.percentile(volume.array, [1, 99])  # the documented reference range
    for out_volume, out_labels, params in augment(volume, labels, n=3, seed=8, spec=spec):
        assert np.array_equal(out_labels.array, labels.array)
        a, b = params["intensity"]["scale"], params["intensity"]["shift"]
        assert abs(a) <= 0.2 and abs(b) <= 0.1 and (a, b) != (0.0, 0.0)
        expected = lo + (volume.array - lo) * (1 + a) + b * (hi - lo)
        assert np.allclose(out_volume.array, expected, atol=1e-3)
        assert not np.allclose(out_volume.array, volume.array)


def test_noise_is_image_only_and_scaled_to_the_range(case):
    volume, labels = case
    spec = AugmentSpec(**{**NONE, "noise_prob": 1.0, "noise_std": 0.05})
    out_volume, out_labels, _ = augment(volume, labels, n=1, seed=1, spec=spec)[0]
    assert np.array_equal(out_labels.array, labels.array)
    lo, hi = np.percentile(volume.array, [1, 99])
    assert np.std(out_volume.array - volume.array) == pytest.approx(0.05 * (hi - lo), rel=0.05)


def test_dtypes_integer_ct_and_uint16_labels():
    objects = ((1000, "sphere", (5.0, 0.0, 0.0), 7.0), (40000, "sphere", (-8.0, 0.0, 6.0), 6.0))
    volume, labels = phantom(objects=objects, shape=(32, 36, 40), dtype=np.uint16)
    ct = Volume((labels.array > 0).astype(np.int16) * 1000 - 1000, volume.geometry)  # air -1000, tissue 0 HU
    spec = AugmentSpec(flip_prob=1.0, rotate_prob=1.0, resize_prob=1.0, elastic_prob=1.0, intensity_prob=1.0)
    for out_volume, out_labels, _ in augment(ct, labels, n=2, seed=9, spec=spec):
        assert out_volume.array.dtype == np.int16 and out_labels.array.dtype == np.uint16
        assert set(np.unique(out_labels.array)) <= {0, 1000, 40000}
        assert out_volume.array.min() >= -1200  # outside the input filled with its minimum (air), not 0 HU
    out_float = augment(Volume(ct.array.astype(np.float64), ct.geometry), None, n=1, spec=spec)[0]
    assert out_float[0].array.dtype == np.float32 and out_float[1] is None


def test_bad_input():
    volume, labels = phantom(objects=((1, "sphere", (0.0, 0.0, 0.0), 5.0),), shape=(20, 22, 24))
    with pytest.raises(MedviewError):
        augment(volume, labels, n=0)
    with pytest.raises(MedviewError):
        AugmentSpec(flip_axes=("up",))
    with pytest.raises(MedviewError):
        AugmentSpec(rotate_prob=1.5)
    with pytest.raises(MedviewError):
        AugmentSpec(resize_range=(1.2, 0.8))
    other = Geometry((20, 22, 24), (2.0, 2.0, 2.0))
    with pytest.raises(MedviewError):
        augment(volume, LabelMap(np.zeros(other.shape, np.uint8), other), n=1)
    colour = Volume(np.zeros((*volume.geometry.shape, 3), np.uint8), volume.geometry)
    with pytest.raises(MedviewError):
        augment(colour, n=1)


def old_demo_augmenter(seed: int, scale: float, patch):
    """Verbatim copy of the composition the bundled demo model was trained with (the specification)."""
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSpatialCropd,
        SpatialPadd,
    )

    keys = ["image", "label"]
    transform = Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=2),  # left-right (x)
        RandAffined(keys, prob=0.8, rotate_range=[np.radians(10)] * 3, scale_range=[scale] * 3,
                    translate_range=[4, 4, 4], mode=["bilinear", "nearest"], padding_mode="zeros"),
        SpatialPadd(keys, spatial_size=patch, mode="constant"),
        RandSpatialCropd(keys, roi_size=patch, random_size=False),
        RandScaleIntensityd("image", factors=0.1, prob=0.5),
        RandShiftIntensityd("image", offsets=0.05, prob=0.5),
    ])
    transform.set_random_state(seed=seed)
    return transform


def test_training_transforms_are_bit_identical_to_the_old_composition():
    import torch

    rng = np.random.default_rng(0)
    image = rng.random((36, 30, 40), dtype=np.float32)
    label = rng.integers(0, 3, (36, 30, 40)).astype(np.float32)
    patch = (32, 32, 32)  # larger than one axis: the padding path runs too
    for seed, scale in ((20261121, 0.15), (7, 0.1)):
        new, old = training_transforms(("image", "label"), patch, seed, scale), old_demo_augmenter(seed, scale, patch)
        for _ in range(4):
            a = new({"image": torch.from_numpy(image[None]), "label": torch.from_numpy(label[None])})
            b = old({"image": torch.from_numpy(image[None]), "label": torch.from_numpy(label[None])})
            for key in ("image", "label"):
                x, y = np.asarray(a[key]), np.asarray(b[key])
                assert x.shape == (1, *patch) and x.dtype == y.dtype and np.array_equal(x, y)


def test_training_script_uses_the_shared_transform():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "packaging" / "models" / "train_demo_model.py").read_text()
    assert "from medview.analysis.augment import training_transforms" in script
    assert "RandAffined" not in script  # the composition lives in one place


def test_progress_and_cancel(case):
    from medview.core.errors import CancelledError
    from medview.core.tasks import TaskContext

    volume, labels = case
    seen: list[float] = []
    task = TaskContext(on_progress=lambda fraction, message: seen.append(fraction), min_interval_s=0.0)
    augment(volume, labels, n=2, seed=0, spec=AugmentSpec(**{**NONE, "rotate_prob": 1.0}), task=task)
    assert seen[0] == 0.0 and seen[-1] == 1.0 and 0.5 in seen
    task.token.cancel()
    with pytest.raises(CancelledError):
        augment(volume, labels, n=2, seed=0, task=task)
