"""Clustering benchmark: k-means and DBSCAN on a full CT with sampling, against larger samples and against
scikit-learn fitted on every voxel, in one run.

Data: ``../shared/data/radiomics-cases/lung2_image.nrrd`` (512 x 512 x 61, 0.7 x 0.7 x 5 mm, HU), read with
SimpleITK.  Each row is one call of :mod:`medview.algorithms.cluster` (fit on a random sample, then assign
every voxel), timed in this process after a warm-up (imports excluded), ``MEDVIEW_BENCH_CLUSTER_REPEATS``
(default 1) times, median reported.  Agreement with the run on the largest sample is the fraction of voxels
with the same label (labels are numbered by mean intensity, so this is meaningful when both runs found the
same number of clusters) and the adjusted Rand index on a fixed random million voxels (meaningful
always).  The k-means cost is the k-means objective of each partition over every voxel (mean squared
distance to its cluster's mean, HU^2): lower is better, whatever the sample.

Peer: ``sklearn.cluster.KMeans`` with the same settings fitted on all 16 million voxels (what sampling
saves); DBSCAN cannot run on every voxel (its neighbourhoods grow with the square of a histogram peak), so
its reference is the largest sample.  Only correctness is asserted; times are reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import numpy as np
import pytest

from .dataset import BENCH, SOURCE

REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_CLUSTER_REPEATS", "1") or 1), 1)
KMEANS_SAMPLES = (20_000, 200_000, 2_000_000)
DBSCAN_SAMPLES = (5_000, 20_000, 100_000)
POSITION_WEIGHT = 5.0  # HU per mm
ARI_VOXELS = 1_000_000


def load_ct():
    import SimpleITK as sitk

    from medview.core import Geometry, Volume, VolumeMetadata

    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} is not available")
    image = sitk.ReadImage(str(SOURCE))
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(array.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    return Volume(array, geometry, VolumeMetadata(modality="CT"))


def timed(fn, *args, **kwargs):
    times, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - started)
    return result, statistics.median(times)


def kmeans_cost(values: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance of every voxel to its cluster's mean (the k-means objective), HU^2."""
    v = values.ravel().astype(np.float64)
    lab = labels.ravel().astype(np.int64)
    n = np.bincount(lab)
    s = np.bincount(lab, weights=v)
    s2 = np.bincount(lab, weights=v * v)
    used = n > 0
    return float((s2[used] - s[used] ** 2 / n[used]).sum() / v.size)


def agreement(a: np.ndarray, b: np.ndarray, subset: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import adjusted_rand_score

    same = float(np.mean(a == b))
    return same, float(adjusted_rand_score(a.ravel()[subset], b.ravel()[subset]))


def environment() -> dict:
    import numpy
    import sklearn

    return {"python": platform.python_version(), "numpy": numpy.__version__, "sklearn": sklearn.__version__,
            "platform": platform.platform(), "cpus": os.cpu_count(), "repeats": REPEATS,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def means(label_map) -> str:
    return ", ".join(label.name.split("(mean ")[1].rstrip(")") for label in label_map.labels)


def test_cluster_benchmark() -> None:
    from sklearn.cluster import KMeans

    from medview.algorithms import cluster

    started = time.perf_counter()
    volume = load_ct()
    g = volume.geometry
    subset = np.random.default_rng(0).choice(volume.array.size, ARI_VOXELS, replace=False)
    cluster.kmeans(volume, sample_size=1000)  # warm-up: imports, thread pools
    cluster.dbscan(volume, sample_size=1000)
    print()
    rows: list[dict] = []

    def record(method: str, n: int, result, seconds: float, reference, is_reference: bool, cost: bool = True) -> dict:
        sample = f"{n:,}"
        row = {"method": method, "sample": sample, "seconds": seconds, "clusters": len(result.labels),
               "means": means(result), "cost": kmeans_cost(volume.array, result.array) if cost else None,
               "reference": is_reference}
        row["same_label"], row["ari"] = agreement(result.array, reference, subset)
        rows.append(row)
        print(f"[bench] {method:24s} sample {sample:>10s}: {seconds:7.2f} s, {row['clusters']} clusters "
              f"({row['means']}), same label {row['same_label']:.4f}, ARI {row['ari']:.4f}", flush=True)
        return row

    # k-means, intensity: samples against the largest sample, and against scikit-learn on every voxel
    kmeans_runs = {n: timed(cluster.kmeans, volume, clusters=3, sample_size=n) for n in KMEANS_SAMPLES}
    reference = kmeans_runs[KMEANS_SAMPLES[-1]][0].array
    values = volume.array.reshape(-1, 1).astype(np.float32)
    peer_started = time.perf_counter()
    peer_model = KMeans(n_clusters=3, n_init=10, random_state=0).fit(values)
    peer_seconds = time.perf_counter() - peer_started
    order = np.argsort(np.argsort(peer_model.cluster_centers_.ravel()))
    peer = (order[peer_model.labels_] + 1).astype(np.uint8).reshape(volume.array.shape)
    del values
    for n, (result, seconds) in kmeans_runs.items():
        row = record("k-means (intensity)", n, result, seconds, reference, n == KMEANS_SAMPLES[-1])
        row["same_label_full"], row["ari_full"] = agreement(result.array, peer, subset)
    peer_means = ", ".join(f"{volume.array[peer == k].mean():.0f} HU" for k in (1, 2, 3))
    rows.append({"method": "peer: sklearn KMeans", "sample": f"all {volume.array.size:,}", "seconds": peer_seconds,
                 "clusters": 3, "means": peer_means, "cost": kmeans_cost(volume.array, peer), "reference": False,
                 "same_label": agreement(peer, reference, subset)[0], "ari": agreement(peer, reference, subset)[1]})
    print(f"[bench] peer sklearn KMeans on every voxel: {peer_seconds:.2f} s ({peer_means})", flush=True)

    # k-means with position
    position_runs = {n: timed(cluster.kmeans, volume, clusters=3, sample_size=n, position_weight=POSITION_WEIGHT)
                     for n in (200_000, 2_000_000)}
    position_reference = position_runs[2_000_000][0].array
    for n, (result, seconds) in position_runs.items():
        record(f"k-means (+ {POSITION_WEIGHT:g} HU/mm position)", n, result, seconds, position_reference,
               n == 2_000_000, cost=False)

    # DBSCAN, intensity (default eps: 1% of the 1-99% range; min_fraction 0.002 of the sample)
    dbscan_runs = {n: timed(cluster.dbscan, volume, sample_size=n) for n in DBSCAN_SAMPLES}
    dbscan_reference = dbscan_runs[DBSCAN_SAMPLES[-1]][0].array
    for n, (result, seconds) in dbscan_runs.items():
        record("DBSCAN (intensity)", n, result, seconds, dbscan_reference, n == DBSCAN_SAMPLES[-1], cost=False)

    env = environment()
    default_row = next(r for r in rows if r["method"] == "k-means (intensity)" and r["sample"] == "200,000")
    out = [f"## Clustering benchmark: lung2 CT {g.size_xyz[0]} x {g.size_xyz[1]} x {g.size_xyz[2]} "
           f"({volume.array.size:,} voxels), {env['cpus']} CPUs, scikit-learn {env['sklearn']}", "",
           "| method | sample (voxels) | time [s] | clusters | cluster means (HU) | k-means cost [HU^2] "
           "| same label as largest sample | ARI vs largest sample |",
           "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        cost = f"{r['cost']:.0f}" if r["cost"] is not None else "-"
        same = "(reference)" if r["reference"] else f"{r['same_label']:.4f}"
        ari = "(reference)" if r["reference"] else f"{r['ari']:.4f}"
        out.append(f"| {r['method']} | {r['sample']} | {r['seconds']:.2f} | {r['clusters']} | {r['means']} | {cost} "
                   f"| {same} | {ari} |")
    out += ["",
            f"* medview k-means at its default sample (200,000 voxels) against scikit-learn fitted on every voxel: "
            f"**{peer_seconds / default_row['seconds']:.1f}x faster** ({default_row['seconds']:.2f} s vs "
            f"{peer_seconds:.2f} s), same label for {default_row['same_label_full']:.4f} of the voxels "
            f"(ARI {default_row['ari_full']:.4f}).",
            "* k-means: 3 clusters, k-means++ with 10 starts (best kept), seed 0; every voxel clustered (air "
            "included).  The cost column is the k-means objective over all voxels, lower is better.",
            f"* DBSCAN: eps = 1% of the sample's 1-99% intensity range, a core sample needs 0.2% of the sample "
            f"within eps (so larger samples find the same densities); every voxel takes its nearest core "
            f"sample's cluster within eps, else noise (0).  ARI over {ARI_VOXELS:,} fixed random voxels.",
            f"* Times: medians of {env['repeats']} run(s) in one process after a warm-up, including sampling and "
            "the assignment of every voxel.",
            "", f"Software: Python {env['python']}, numpy {env['numpy']}, scikit-learn {env['sklearn']}; "
            f"{env['platform']}; {env['date']}", ""]
    table = "\n".join(out)
    print()
    print(table)
    BENCH.mkdir(exist_ok=True)
    (BENCH / "cluster_results.md").write_text(table)
    (BENCH / "cluster_results.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
    print(f"[bench] total {time.perf_counter() - started:.0f} s; written to {BENCH / 'cluster_results.md'}")

    # correctness only
    for n, (result, _) in kmeans_runs.items():
        assert len(result.labels) == 3 and result.voxel_count(1) + result.voxel_count(2) + result.voxel_count(3) \
            == volume.array.size, n
    for n, (result, _) in dbscan_runs.items():
        assert len(result.labels) >= 1 and result.present_values() == [lab.value for lab in result.labels], n
