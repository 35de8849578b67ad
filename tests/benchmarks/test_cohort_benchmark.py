"""Cohort benchmark (issue 7): throughput of ``medview batch`` with 1 and with 2 local Dask workers.

Cohort: the five real cases of ``../shared/data/radiomics-cases`` (lung1, lung2: 512 x 512 CTs; brain1,
brain2, breast1: small MR) and sphere phantoms (128^3 voxels, 1 mm, made here with numpy) up to
``MEDVIEW_BENCH_COHORT_CASES`` cases (default 16; phantoms only when ../shared is absent).  Pipeline, per case:
load image and label map, ``median`` filter (radius 1 mm), PyRadiomics features (firstorder, shape, GLCM)
of label 1 on the filtered image: a few seconds of single-threaded work.

Each worker count gets its own warm :func:`medview.analysis.cohort.local_cluster` (worker processes, one thread
each, numeric libraries limited to one thread): cluster start-up and the first imports in each worker are
excluded (a warm-up batch runs one small case per worker first).  The timed part is one ``run_batch`` call on the
running cluster: submitting, every case, gathering, and writing the Parquet/CSV tables.  Throughput is cases per
minute; the ratio is 2-worker throughput over 1-worker throughput (goal >= 1.8 on a machine with >= 2 free
cores; a shared machine gives less).  ``MEDVIEW_BENCH_COHORT_REPEATS`` (default 1) alternates 1- and 2-worker
runs that many times and reports the best of each.  Asserted: every case succeeds and both runs produce the same
features table; the speed is reported, not enforced.  Results: printed, and written to ``.bench/cohort_results.md``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.analysis.cohort_data import SHARED_CASES, sphere_case, write_csv
from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".bench"
N_CASES = max(int(os.environ.get("MEDVIEW_BENCH_COHORT_CASES", "16") or 16), 2)
REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_COHORT_REPEATS", "1") or 1), 1)
GOAL = 1.8
PIPELINE = {"medview_pipeline": 1, "description": "cohort benchmark", "steps": [
    {"filter": {"name": "median", "params": {"radius": 1.0}}},
    {"features": {"label": 1, "params": {"featureClass": {"firstorder": None, "shape": None, "glcm": None},
                                         "setting": {"additionalInfo": False}}}},
]}


def build_cohort(folder: Path) -> tuple[Path, Path, str]:
    """cohort.csv (shared cases, then phantoms), warmup.csv (small phantoms), pipeline.yaml; and a description."""
    rows = []
    if SHARED_DATA.exists():
        rows = [{"case_id": n, "image": str(SHARED_DATA / f"{n}_image.nrrd"),
                 "label": str(SHARED_DATA / f"{n}_label.nrrd")} for n in SHARED_CASES]
    n_real = len(rows)
    for i in range(N_CASES - n_real):
        image, label = sphere_case(folder, f"phantom{i}", size=128, radius=28.0 + i, seed=i)
        rows.append({"case_id": f"phantom{i}", "image": image.name, "label": label.name})
    write_csv(folder / "cohort.csv", rows)
    warm = []
    for i in range(4):
        image, label = sphere_case(folder, f"warm{i}", size=24, radius=6.0, seed=100 + i)
        warm.append({"case_id": f"warm{i}", "image": image.name, "label": label.name})
    write_csv(folder / "warmup.csv", warm)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    what = (f"{n_real} real cases ({', '.join(SHARED_CASES)}) + " if n_real else "") + \
        f"{N_CASES - n_real} phantoms of 128^3 voxels"
    return folder / "cohort.csv", folder / "pipeline.yaml", what


def timed_run(workers: int, folder: Path, run: int) -> dict:
    """One warm LocalCluster of ``workers`` processes; the cohort timed on it."""
    import importlib

    from distributed import Client

    from medview.analysis.cohort import local_cluster
    from medview.app.batch import run_batch

    with local_cluster(workers) as cluster, Client(cluster, set_as_default=False) as client:
        client.wait_for_workers(workers)
        for module in ("medview.app.batch", "medview.app.features", "radiomics.featureextractor"):
            client.run(importlib.import_module, module)
        run_batch(folder / "pipeline.yaml", folder / "warmup.csv", folder / f"warm-{workers}-{run}",
                  scheduler=cluster.scheduler_address, progress=False)
        out = folder / f"out-{workers}-{run}"
        started = time.perf_counter()
        summary = run_batch(folder / "pipeline.yaml", folder / "cohort.csv", out, scheduler=cluster.scheduler_address,
                            progress=False)
        seconds = time.perf_counter() - started
    assert summary["ok"] == summary["cases"] == N_CASES, (out / "errors.csv").read_text()
    cases = [json.loads(p.read_text()) for p in out.glob("cases/*/case.json")]
    return {"workers": workers, "seconds": seconds, "cases": N_CASES, "per_min": N_CASES / seconds * 60,
            "case_seconds": sum(c["seconds"] for c in cases), "pids": len({c["pid"] for c in cases}), "out": out}


def test_cohort_throughput_1_vs_2_workers(tmp_path) -> None:
    import dask
    import distributed

    if (os.cpu_count() or 1) < 2:
        pytest.skip("two workers need two CPUs")
    folder = tmp_path
    _, _, what = build_cohort(folder)
    print(f"\n[bench] cohort: {what}; pipeline: median 1 mm + PyRadiomics firstorder/shape/GLCM", flush=True)
    best: dict[int, dict] = {}
    for run in range(REPEATS):
        for workers in (1, 2):
            result = timed_run(workers, folder, run)
            print(f"[bench] {workers} worker(s), run {run + 1}: {result['seconds']:.1f} s, "
                  f"{result['per_min']:.1f} cases/min (sum of case times {result['case_seconds']:.1f} s, "
                  f"cases done by {result['pids']} process(es))", flush=True)
            if workers not in best or result["seconds"] < best[workers]["seconds"]:
                best[workers] = result
    one, two = best[1], best[2]
    ratio = two["per_min"] / one["per_min"]
    print(f"[bench] throughput ratio 2 workers / 1 worker: {ratio:.2f}x (goal >= {GOAL}x)", flush=True)

    env = {"python": platform.python_version(), "dask": dask.__version__, "distributed": distributed.__version__,
           "platform": platform.platform(), "cpus": os.cpu_count(), "repeats": REPEATS,
           "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    table = "\n".join([
        f"## Cohort benchmark: {N_CASES} cases, {what}", "",
        "| workers | time [s] | throughput [cases/min] | sum of case times [s] |", "|---:|---:|---:|---:|",
        *(f"| {r['workers']} | {r['seconds']:.1f} | {r['per_min']:.1f} | {r['case_seconds']:.1f} |"
          for r in (one, two)),
        "", f"* 2 workers / 1 worker: **{ratio:.2f}x** the throughput (goal >= {GOAL}x).",
        "* Warm LocalCluster per worker count (start-up and first imports excluded); timed: one `run_batch` "
        "(every case, and the Parquet/CSV tables).  Each worker is one process with one thread.",
        f"* {env['cpus']} CPUs, load average before the summary {env['load_average'][0]:.1f}; Python {env['python']}, "
        f"dask {env['dask']}, distributed {env['distributed']}; {env['platform']}; {env['date']}", ""])
    print()
    print(table)
    BENCH.mkdir(exist_ok=True)
    (BENCH / "cohort_results.md").write_text(table)
    (BENCH / "cohort_results.json").write_text(json.dumps(
        {"environment": env, "ratio": ratio, "runs": [{k: v for k, v in r.items() if k != "out"} for r in (one, two)]},
        indent=1))

    # correctness: the same table whatever the number of workers
    a = pd.read_parquet(one["out"] / "features.parquet")
    b = pd.read_parquet(two["out"] / "features.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert two["pids"] == 2
