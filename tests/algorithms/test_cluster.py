"""Voxel clustering against scikit-learn run directly on the same sample, and against the MNI152 tissue maps."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import SimpleITK as sitk

from medview.algorithms import cluster
from medview.algorithms.operations import _REGISTRY
from medview.core import CancelToken, Geometry, LabelMap, TaskContext, Volume, VolumeMetadata
from medview.core.errors import CancelledError, MedviewError

GEOMETRY = Geometry((16, 30, 36), spacing=(0.9, 0.8, 2.5), origin=(-10.0, 20.0, -40.0),
                    direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))


def three_tissues(dtype=np.float32, noise: float = 25.0, seed: int = 0) -> Volume:
    """Air (-900), soft tissue (40) and bone (700) regions with Gaussian noise."""
    rng = np.random.default_rng(seed)
    _, y, x = np.mgrid[:16, :30, :36]
    array = np.full(GEOMETRY.shape, -900.0)
    array[(y - 15) ** 2 + (x - 18) ** 2 < 12**2] = 40.0
    array[(y - 15) ** 2 + (x - 18) ** 2 < 4**2] = 700.0
    array += rng.normal(0.0, noise, array.shape)
    return Volume(array.astype(dtype), GEOMETRY, VolumeMetadata(modality="CT"))


def ranked(raw: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Relabel ``raw`` cluster ids (-1 = noise) 1..k by increasing mean of ``values``; noise -> 0."""
    ids = [c for c in np.unique(raw) if c >= 0]
    order = sorted(ids, key=lambda c: values[raw == c].mean())
    out = np.zeros(raw.shape, dtype=np.int64)
    for rank, c in enumerate(order, 1):
        out[raw == c] = rank
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# -- sampling ------------------------------------------------------------------------------------------------
def test_the_sample_is_reproducible_distinct_and_inside_window_and_mask() -> None:
    volume = three_tissues()
    mask = np.zeros(GEOMETRY.shape, bool)
    mask[:, :, :20] = True
    a = cluster.sample_voxels(volume, sample_size=500, seed=5, mask=mask, lower=-500)
    b = cluster.sample_voxels(volume, sample_size=500, seed=5, mask=mask, lower=-500)
    assert np.array_equal(a, b) and len(a) == 500 and np.all(np.diff(a) > 0)
    assert np.all(mask.ravel()[a]) and np.all(volume.array.ravel()[a] >= -500)
    assert not np.array_equal(a, cluster.sample_voxels(volume, sample_size=500, seed=6, mask=mask, lower=-500))
    everything = cluster.sample_voxels(volume, sample_size=10**9, mask=mask, lower=-500)
    assert np.array_equal(everything, np.flatnonzero(mask & (volume.array >= -500)))


def test_the_sample_is_uniform_over_slabs(monkeypatch) -> None:
    monkeypatch.setattr(cluster, "_SLAB_VOXELS", 2 * 30 * 36)  # several slabs
    volume = three_tissues()
    flat = cluster.sample_voxels(volume, sample_size=8000, seed=1)
    per_slice = np.bincount(np.unravel_index(flat, GEOMETRY.shape)[0], minlength=16)
    assert per_slice.min() > 0.8 * 8000 / 16 and per_slice.max() < 1.2 * 8000 / 16


# -- each method equals scikit-learn on the same sample ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_kmeans_equals_sklearn_on_the_same_sample(dtype) -> None:
    from sklearn.cluster import KMeans

    volume = three_tissues(dtype)
    result = cluster.kmeans(volume, clusters=3, sample_size=3000, seed=11)
    flat = cluster.sample_voxels(volume, sample_size=3000, seed=11)
    values = volume.array.reshape(-1, 1).astype(np.float32)
    model = KMeans(n_clusters=3, n_init=10, random_state=11).fit(values[flat])
    expected = ranked(model.predict(values), values[:, 0]).reshape(GEOMETRY.shape)
    assert np.array_equal(result.array, expected)
    means = [volume.array[result.array == k].mean() for k in (1, 2, 3)]
    assert means == sorted(means)
    assert [label.name for label in result.labels] == [f"Cluster {k} (mean {m:.0f} HU)" for k, m in
                                                       zip((1, 2, 3), means, strict=True)]


def test_kmeans_with_position_equals_sklearn_on_the_same_features() -> None:
    from sklearn.cluster import KMeans

    volume = three_tissues()
    result = cluster.kmeans(volume, clusters=4, sample_size=4000, seed=2, position_weight=20.0)
    flat = cluster.sample_voxels(volume, sample_size=4000, seed=2)
    # features built here from Geometry.index_to_world, independently of the module's own arithmetic
    z, y, x = np.mgrid[:16, :30, :36]
    index = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1).astype(float)
    centre = (np.array(GEOMETRY.size_xyz) - 1) / 2.0
    mm = GEOMETRY.index_to_world(index) - GEOMETRY.index_to_world(centre)
    features = np.concatenate([volume.array.reshape(-1, 1), 20.0 * mm], axis=1).astype(np.float32)
    model = KMeans(n_clusters=4, n_init=10, random_state=2).fit(features[flat])
    expected = ranked(model.predict(features), features[:, 0]).reshape(GEOMETRY.shape)
    agreement = np.mean(result.array == expected)
    assert agreement > 0.999  # float32 rounding of the features may move a voxel on a boundary
    assert result.source.startswith("kmeans(clusters=4, position_weight=20")


def test_dbscan_equals_sklearn_on_the_same_sample() -> None:
    from sklearn.cluster import DBSCAN

    volume = three_tissues(np.int16, noise=15.0)
    result = cluster.dbscan(volume, eps=20.0, min_fraction=0.01, sample_size=2000, seed=4)
    flat = cluster.sample_voxels(volume, sample_size=2000, seed=4)
    values = volume.array.reshape(-1, 1).astype(np.float32)
    model = DBSCAN(eps=20.0, min_samples=20).fit(values[flat])
    assert len(result.labels) == len(set(model.labels_) - {-1}) == 3
    # the sampled voxels keep scikit-learn's partition (its noise: beyond eps of every core sample here)
    sample_labels = ranked(model.labels_, values[flat, 0])
    assert np.array_equal(result.array.ravel()[flat], sample_labels)
    # and every voxel takes the cluster of its nearest core sample within eps
    core_values = values[flat][model.core_sample_indices_, 0]
    core_labels = sample_labels[model.core_sample_indices_]
    distance = np.abs(values[:, 0, None] - core_values[None, :])
    nearest = np.argmin(distance, axis=1)
    expected = np.where(distance[np.arange(len(values)), nearest] <= 20.0, core_labels[nearest], 0)
    assert np.array_equal(result.array.ravel(), expected)


def test_dbscan_with_position_uses_a_kd_tree_and_equals_a_brute_force_search() -> None:
    volume = three_tissues(noise=10.0)
    result = cluster.dbscan(volume, eps=60.0, min_fraction=0.002, sample_size=3000, seed=1, position_weight=20.0)
    assert len(result.labels) >= 3 and result.voxel_count(1) > 0
    # the 1-D and n-D assignment rules agree (sorted search against the KD-tree) on random data
    rng = np.random.default_rng(0)
    core = rng.normal(size=(200, 1)).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    query = rng.normal(size=(1000, 1)).astype(np.float32) * 1.5
    one_d = cluster._nearest_core(core, labels, 0.05)(query)
    padded = cluster._nearest_core(np.pad(core, ((0, 0), (0, 1))), labels, 0.05)(np.pad(query, ((0, 0), (0, 1))))
    assert np.array_equal(one_d, padded) and (one_d == -1).any() and (one_d >= 0).any()


def test_birch_equals_sklearn_tree_with_a_count_weighted_global_step() -> None:
    from sklearn.cluster import Birch, KMeans

    volume = three_tissues()
    result = cluster.birch(volume, clusters=3, threshold=15.0, sample_size=3000, seed=9)
    flat = cluster.sample_voxels(volume, sample_size=3000, seed=9)
    values = volume.array.reshape(-1, 1).astype(np.float32)
    shuffled = values[flat][np.random.default_rng(9).permutation(len(flat))]
    tree = Birch(threshold=15.0, n_clusters=None).fit(shuffled)
    weights = np.bincount(tree.predict(shuffled), minlength=len(tree.subcluster_centers_))
    groups = KMeans(n_clusters=3, n_init=10, random_state=9).fit(tree.subcluster_centers_, sample_weight=weights)
    expected = ranked(groups.labels_[tree.predict(values)], values[:, 0]).reshape(GEOMETRY.shape)
    assert np.array_equal(result.array, expected)


# -- the MNI152 atlas: clusters against the tissue probability maps ----------------------------------------------
def _mni(name: str) -> tuple[np.ndarray, sitk.Image]:
    nilearn = pytest.importorskip("nilearn")
    folder = pathlib.Path(nilearn.__file__).parent / "datasets" / "data"
    path = folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"
    if not path.exists():
        pytest.skip(f"{path} is not installed")
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def test_kmeans_finds_grey_and_white_matter_of_the_mni152_t1() -> None:
    """Brain mask: grey + white matter probability > 0.5 (the package has no CSF map; the maps are stored as
    0..255).  Two clusters inside it (grey darker than white on T1) against each map thresholded at 0.5."""
    t1, image = _mni("t1")
    gm = _mni("gm")[0].astype(np.float32) / 255.0
    wm = _mni("wm")[0].astype(np.float32) / 255.0
    geometry = Geometry(t1.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    volume = Volume(t1, geometry, VolumeMetadata(modality="MR"))
    brain = (gm + wm) > 0.5
    scores = {}
    for method in (cluster.kmeans, cluster.birch):
        result = method(volume, clusters=2, mask=brain)
        scores[method.__name__] = (dice(result.array == 1, gm > 0.5), dice(result.array == 2, wm > 0.5))
        assert np.all(result.array[~brain] == 0)
    print("MNI152 T1, Dice grey / white matter: " +
          "; ".join(f"{name} {g:.3f} / {w:.3f}" for name, (g, w) in scores.items()))
    gm_dice, wm_dice = scores["kmeans"]
    assert gm_dice >= 0.7 and wm_dice >= 0.7
    assert min(scores["birch"]) >= 0.7


# -- bad input, cancellation, catalogue ---------------------------------------------------------------------------
def test_bad_input_is_refused_with_a_helpful_message() -> None:
    volume = three_tissues()
    with pytest.raises(MedviewError, match="found no voxels to cluster at or above 5000 HU; nothing was changed"):
        cluster.kmeans(volume, lower=5000)
    with pytest.raises(MedviewError, match="lower <= upper"):
        cluster.kmeans(volume, lower=10, upper=0)
    with pytest.raises(MedviewError, match="between 2 and 255"):
        cluster.kmeans(volume, clusters=1)
    with pytest.raises(MedviewError, match="mask's shape \\(2, 2, 2\\) does not match"):
        cluster.kmeans(volume, mask=np.ones((2, 2, 2), bool))
    binary = Volume(np.zeros(GEOMETRY.shape, np.int16) + (np.arange(36) > 18), GEOMETRY)
    with pytest.raises(MedviewError, match="only 2 distinct feature values; ask for fewer clusters"):
        cluster.kmeans(binary, clusters=3)
    with pytest.raises(MedviewError, match=r"DBSCAN found no clusters: no sampled voxel has .* increase eps"):
        cluster.dbscan(volume, eps=0.001, min_fraction=0.1)
    with pytest.raises(MedviewError, match="position weight must be 0"):
        cluster.kmeans(volume, position_weight=-1)


def test_cancel_is_honoured() -> None:
    task = TaskContext(token=CancelToken())
    task.token.cancel()
    with pytest.raises(CancelledError):
        cluster.kmeans(three_tissues(), task=task)


def test_clustering_operations_are_registered_for_segmentation() -> None:
    volume = three_tissues(np.int16)
    for name in ("kmeans", "k-means", "dbscan", "birch"):
        op = _REGISTRY[("segment", name)]
        assert op.library == "scikit-learn"
    result = _REGISTRY[("segment", "kmeans")](volume, clusters="3", sample_size="2000", lower="-500")
    assert isinstance(result, LabelMap) and len(result.labels) == 3
    assert np.all(result.array[volume.array < -500] == 0)
