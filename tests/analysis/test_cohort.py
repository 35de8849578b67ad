"""Cohorts on a real Dask cluster: a LocalCluster of 2 worker processes, and a `dask scheduler` with two
`dask worker` processes on loopback started here; a worker killed mid-run; resume after an interruption;
and the features table checked against PyRadiomics (compute_features) and numpy called directly.

The cohort is phantoms made here (always) plus the five real cases of ../shared/data when present, and
one truncated file that must be recorded as an error while the others complete."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from medview.core.errors import CancelledError
from medview.core.tasks import TaskContext
from tests.analysis.cohort_data import SHARED_CASES, broken_case, phantom_rows, write_csv
from tests.conftest import REPO, SHARED_DATA, shared_case

VENV_BIN = Path(sys.executable).parent
# firstorder + shape, without PyRadiomics' diagnostics (hashing a 512 x 512 CT costs about a second)
SMALL_RADIOMICS = {"featureClass": {"firstorder": None, "shape": None}, "setting": {"additionalInfo": False}}


def shared_rows() -> list[dict]:
    """The real cases, or none in a clone without ../shared (the phantom cases still run)."""
    if not SHARED_DATA.exists():
        return []
    return [{"case_id": n, "image": str(shared_case(f"{n}_image.nrrd")), "label": str(shared_case(f"{n}_label.nrrd")),
             "target": i % 2} for i, n in enumerate(SHARED_CASES)]


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    """cohort.csv: 5 phantoms, the broken case and the shared cases; small.csv: without the two lung CTs (the
    slowest); phantoms.csv: without the shared cases.  radiomics.yaml, pipeline.yaml."""
    folder = tmp_path_factory.mktemp("cohort")
    rows = phantom_rows(folder, 5, size=40, base_radius=7.0)
    image, label = broken_case(folder)
    rows.append({"case_id": "broken", "image": image.name, "label": label.name, "target": 0})
    shared = shared_rows()
    write_csv(folder / "cohort.csv", rows + shared)
    write_csv(folder / "small.csv", rows + [r for r in shared if not r["case_id"].startswith("lung")])
    write_csv(folder / "phantoms.csv", rows)
    (folder / "radiomics.yaml").write_text(yaml.safe_dump(SMALL_RADIOMICS))
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"features": {"label": 1, "params": "radiomics.yaml"}},
        {"export": {"image": False, "labels": True, "format": "nrrd"}},
    ]}))
    return folder


def expected_ids(folder: Path, cohort: str = "cohort.csv") -> list[str]:
    return list(pd.read_csv(folder / cohort)["case_id"])


def check_outputs(out: Path, folder: Path, cohort: str = "cohort.csv") -> pd.DataFrame:
    """Every case has its case.json; the table has one row per case; only the broken case failed."""
    ids = expected_ids(folder, cohort)
    table = pd.read_parquet(out / "features.parquet")
    assert list(table["case_id"]) == ids
    assert table.columns[:3].tolist() == ["case_id", "target", "status"]
    assert dict(zip(table["case_id"], table["status"], strict=True)) == {
        i: "error" if i == "broken" else "ok" for i in ids}
    csv_table = pd.read_csv(out / "features.csv")
    pd.testing.assert_frame_equal(csv_table, table, check_dtype=False, rtol=1e-12)
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["case_id"]) == ["broken"] and "Cannot read" in errors["error"][0]
    for case_id in ids:
        record = json.loads((out / "cases" / case_id / "case.json").read_text())
        assert record["status"] == ("error" if case_id == "broken" else "ok")
        if case_id != "broken":
            assert (out / "cases" / case_id / "labels.nrrd").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == len(ids) - 1 and summary["failed"] == 1 and summary["cases"] == len(ids)
    return table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """End a process started here and its children: it leads its own process group (start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # whatever is left of the group (a worker whose nanny is gone)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


class LoopbackCluster:
    """``dask scheduler`` and ``dask worker`` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.logs = tmp
        env = {**os.environ, "PYTHONPATH": str(REPO)}  # the workers import this test module's functions too
        self.scheduler = self._start(["scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1],
                                      "--no-dashboard"], "scheduler", env)
        self.env = env
        self.workers = [self.add_worker(f"worker{i}", wait=False) for i in range(n_workers)]
        try:
            self.wait_for(n_workers)
        except Exception:
            self.close()
            raise

    def add_worker(self, name: str, wait: bool = True) -> subprocess.Popen:
        proc = self._start(["worker", self.address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                            "--memory-limit", "2GB"], name, self.env)
        if wait:
            self.wait_for(len(self.workers))
        return proc

    def wait_for(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(n, timeout=90)

    def _start(self, args: list[str], name: str, env: dict) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([str(VENV_BIN / "dask"), *args], stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(REPO), start_new_session=True)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            stop(proc)


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    cluster = LoopbackCluster(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.close()


# -- the generic engine ----------------------------------------------------------------------------------
def square_or_fail(case: str, out_dir: str) -> dict:
    """A case function: 'bad' raises (the engine must record it, not stop); others write a marker."""
    if case == "bad":
        raise ValueError("this case is broken")
    Path(out_dir, f"{case}.done").write_text(str(os.getpid()))
    return {"status": "ok", "value": len(case) ** 2}


def test_engine_records_failures_and_skips_done_cases(loopback, tmp_path):
    from medview.analysis.cohort import run_cohort

    cases = ["a", "bb", "bad", "dddd", "done-before"]
    summary = run_cohort(cases, square_or_fail, tmp_path, scheduler=loopback.address, progress=False,
                         is_done=lambda c: c == "done-before")
    assert summary["cases"] == 5 and summary["skipped"] == 1 and summary["ran"] == 4
    assert summary["ok"] == 3 and summary["failed"] == 1 and summary["workers"] == 2
    records = summary["records"]
    assert records["bad"]["status"] == "error" and records["bad"]["error"] == "ValueError: this case is broken"
    assert records["dddd"]["value"] == 16 and records["a"]["case_id"] == "a"
    assert sorted(p.name for p in tmp_path.glob("*.done")) == ["a.done", "bb.done", "dddd.done"]
    assert os.getpid() not in {r["worker_pid"] for r in records.values()}  # ran in the worker processes


def test_engine_rejects_bad_options_before_starting(tmp_path):
    from medview.analysis.cohort import run_cohort
    from medview.core.errors import MedviewError

    with pytest.raises(MedviewError, match="unique"):
        run_cohort(["a", "a"], square_or_fail, tmp_path)
    with pytest.raises(MedviewError, match="memory limit"):
        run_cohort(["a"], square_or_fail, tmp_path, memory_limit="lots")
    with pytest.raises(MedviewError, match="tcp://host:8786"):
        run_cohort(["a"], square_or_fail, tmp_path, scheduler="http://nowhere")
    with pytest.raises(MedviewError, match="workers"):
        run_cohort(["a"], square_or_fail, tmp_path, workers=0)
    assert run_cohort(["a"], square_or_fail, tmp_path, is_done=lambda c: True)["skipped"] == 1  # no cluster


def test_costlier_cases_start_first():
    from medview.analysis.cohort import _priorities

    assert _priorities(["a", "ccc", "bb", "dd"], cost=len) == [1, 4, 3, 2]  # ccc, bb, dd (cohort order), a
    assert _priorities(["a", "b", "c"], cost=None) == [3, 2, 1]  # cohort order
    assert _priorities(["a", "b"], cost=lambda c: 1 / 0 if c == "a" else 5) == [1, 2]  # no estimate: last


# -- medview batch -----------------------------------------------------------------------------------------
def test_local_cluster_two_workers_and_features_match_pyradiomics(cohort_dir, tmp_path):
    """(a) LocalCluster with 2 worker processes; (e) the table's values are compute_features' on each case."""
    from medview.app.batch import run_batch
    from medview.app.features import compute_features
    from medview.app.label_maps import open_label_map
    from medview.io.readers import open_image

    out = tmp_path / "out"
    summary = run_batch(cohort_dir / "pipeline.yaml", cohort_dir / "cohort.csv", out, workers=2, progress=False)
    assert summary["workers"] == 2 and summary["ran"] == len(expected_ids(cohort_dir))
    table = check_outputs(out, cohort_dir).set_index("case_id")
    pids = {json.loads((out / "cases" / i / "case.json").read_text())["pid"] for i in expected_ids(cohort_dir)}
    assert len(pids) == 2 and os.getpid() not in pids  # both worker processes did cases
    checked = ["phantom3", *(["lung1", "breast1"] if SHARED_DATA.exists() else [])]
    cohort = pd.read_csv(cohort_dir / "cohort.csv").set_index("case_id")
    for case_id in checked:
        image = open_image(cohort_dir / cohort.loc[case_id, "image"])
        labels = open_label_map(cohort_dir / cohort.loc[case_id, "label"], reference=image)
        direct = compute_features(image, labels, label=1, params=SMALL_RADIOMICS)
        assert [c for c in table.columns if c not in ("target", "status")] == list(direct)
        for name, value in direct.items():
            assert table.loc[case_id, name] == pytest.approx(value, rel=1e-9), (case_id, name)
        inside = image.array[labels.array == 1].astype(np.float64)  # numpy, independently of PyRadiomics
        assert table.loc[case_id, "original_firstorder_Mean"] == pytest.approx(inside.mean(), rel=1e-6)
        assert table.loc[case_id, "original_firstorder_Maximum"] == pytest.approx(inside.max(), rel=1e-6)
    assert table.loc["phantom3", "target"] == 1 and np.isnan(table.loc["broken", "original_firstorder_Mean"])


def test_cli_on_a_dask_scheduler_with_two_worker_processes(cohort_dir, loopback, tmp_path):
    """(b) `medview batch ... --scheduler tcp://...` on a real scheduler with two `dask worker` processes."""
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "gaussian", "params": {"sigma": 1.0}}},
        {"features": {"label": 1, "params": str(cohort_dir / "radiomics.yaml")}},
        {"export": {"image": False, "labels": True, "format": "nrrd"}},
    ]}))
    out = tmp_path / "out"
    cmd = [str(VENV_BIN / "medview"), "batch", str(tmp_path / "pipeline.yaml"), str(cohort_dir / "small.csv"),
           "--out", str(out), "--scheduler", loopback.address]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    n = len(expected_ids(cohort_dir, "small.csv"))
    assert done.returncode == 1, done.stderr  # 1: the run finished but a case failed
    assert f"{n} case(s): {n - 1} ok, 1 failed" in done.stdout and "errors.csv" in done.stdout
    assert "Traceback" not in done.stderr
    check_outputs(out, cohort_dir, "small.csv")
    pids = {json.loads((out / "cases" / i / "case.json").read_text())["pid"]
            for i in expected_ids(cohort_dir, "small.csv")}
    assert len(pids) == 2  # the two `dask worker` processes shared the cohort
    # bad input is refused before anything runs: exit 3, one line
    bad = subprocess.run([*cmd[:2], str(cohort_dir / "cohort.csv"), str(cohort_dir / "cohort.csv"), "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3 and bad.stderr.startswith("medview: error:") and len(bad.stderr.splitlines()) == 1


def test_killing_a_worker_mid_run_still_completes(loopback, tmp_path):
    """(c) One of the two `dask worker` processes (nanny and worker) is killed after the first case finishes:
    the scheduler reschedules its cases on the other worker and the whole cohort completes."""
    from medview.app.batch import run_batch

    folder = tmp_path / "cases"
    folder.mkdir()
    write_csv(folder / "cohort.csv", phantom_rows(folder, 6, size=64, base_radius=10.0))
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "median", "params": {"radius": 3.0}}},  # about a second per case
        {"segment": {"method": "threshold", "params": {"lower": 100}}},
        {"export": {"image": False, "labels": True}},
    ]}))
    out = tmp_path / "out"
    victim = loopback.workers[0]
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(run_batch, folder / "pipeline.yaml", folder / "cohort.csv", out,
                                  scheduler=loopback.address, progress=False)
            deadline = time.monotonic() + 120
            while not list(out.glob("cases/*/case.json")) and time.monotonic() < deadline and not running.done():
                time.sleep(0.05)
            os.killpg(victim.pid, signal.SIGKILL)
            killed_at = time.time()
            summary = running.result(timeout=240)
        assert victim.wait(timeout=10) is not None
        assert summary["ok"] == 6 and summary["failed"] == 0 and summary["ran"] == 6, (out / "errors.csv").read_text()
        records = [json.loads(p.read_text()) for p in out.glob("cases/*/case.json")]
        assert len(records) == 6 and all(r["status"] == "ok" for r in records)
        late = [p for p in out.glob("cases/*/case.json") if p.stat().st_mtime > killed_at]
        assert late, "no case finished after the kill: the test did not kill mid-run"
        assert len({json.loads(p.read_text())["pid"] for p in late}) == 1  # the survivor did the rest
    finally:
        stop(victim)
        loopback.workers[0] = loopback.add_worker("worker-replacement")  # later tests get two workers again


def test_resume_after_an_interruption(cohort_dir, tmp_path):
    """(d) A run cancelled after 2 cases keeps them; the re-run skips them (their case.json untouched),
    runs the rest and writes the complete table."""
    from medview.app.batch import run_batch

    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "median", "params": {"radius": 3.0}}},  # slow enough to be interrupted
        {"features": {"label": 1, "params": SMALL_RADIOMICS}},
        {"export": {"image": False, "labels": True, "format": "nrrd"}},
    ]}))
    out = tmp_path / "out"
    task = TaskContext(min_interval_s=0.0)
    ids = expected_ids(cohort_dir, "phantoms.csv")

    def on_progress(fraction: float, message: str) -> None:
        if fraction * len(ids) >= 2 - 1e-9:
            task.token.cancel()

    task.on_progress = on_progress
    with pytest.raises(CancelledError):
        run_batch(tmp_path / "pipeline.yaml", cohort_dir / "phantoms.csv", out, workers=2, task=task, progress=False)
    assert not (out / "features.parquet").exists()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cases/*/case.json")
                if json.loads(p.read_text())["status"] == "ok"}
    # cancelled after 2 cases: the cases the other worker slots had in flight may still finish while the
    # cancel takes effect (kept, as finished work should be), so anywhere from 1 to all but one are done
    assert 1 <= len(finished) < len(ids), (len(finished), len(ids))
    summary = run_batch(tmp_path / "pipeline.yaml", cohort_dir / "phantoms.csv", out, workers=2, progress=False)
    assert summary["skipped"] == len(finished) and summary["ran"] == len(ids) - len(finished)
    for case_id, mtime in finished.items():
        assert (out / "cases" / case_id / "case.json").stat().st_mtime_ns == mtime, case_id
    check_outputs(out, cohort_dir, "phantoms.csv")
