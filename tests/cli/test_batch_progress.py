"""`medview batch` in a log or a pipe: plain progress lines (tqdm shows nothing when stderr is not a terminal),
each case's memory estimated before the cluster starts (a warning naming the case and --memory-limit, or a
refusal when no case fits), and a worker that its nanny restarts for memory reported as having run out of memory,
with the limit and --memory-limit, instead of a bare KilledWorker.  The runs use the real entry point on a real
LocalCluster, stderr piped."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from medview.cli.main import main
from tests.analysis.cohort_data import phantom_rows, write_csv

MEDVIEW = Path(sys.executable).with_name("medview")
PROGRESS = re.compile(r"^medview batch: (\d+)/(\d+) cases done, (\d+) failed, (?:\d+ running, )?[0-9hms]+ elapsed")
FEATURES = {"features": {"label": 1, "params": {"featureClass": {"firstorder": ["Mean"]}}}}


def run_batch_cli(*args: str, timeout: float = 150, **env: str) -> subprocess.CompletedProcess:
    if not MEDVIEW.exists():
        pytest.skip(f"the medview entry point is not installed at {MEDVIEW}")
    return subprocess.run([str(MEDVIEW), "batch", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **env})


def progress_lines(stderr: str) -> list[re.Match]:
    return [m for m in (PROGRESS.match(line) for line in stderr.splitlines()) if m]


def test_progress_lines_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    write_csv(tmp_path / "cohort.csv", phantom_rows(tmp_path, 3, size=24, base_radius=5.0))
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "threshold", "params": {"lower": 100}}}, FEATURES]}))
    r = run_batch_cli(str(tmp_path / "pipeline.yaml"), str(tmp_path / "cohort.csv"), "--out", str(tmp_path / "out"),
                      "--workers", "1")
    assert r.returncode == 0, r.stderr
    lines = progress_lines(r.stderr)
    per_case = [m for m in lines if " ok in " in m.string]
    assert [int(m.group(1)) for m in per_case] == [1, 2, 3], r.stderr  # one line per finished case, in order
    assert all(m.group(2) == "3" and m.group(3) == "0" for m in lines), r.stderr
    assert "left" in per_case[0].string and "Traceback" not in r.stderr
    assert len(lines) - len(per_case) <= 12  # between cases: at most one line every 10 s of a run under 2 minutes


def test_progress_between_cases_is_rate_limited(monkeypatch) -> None:
    from medview.analysis import cohort_progress

    now = [100.0]
    monkeypatch.setattr(cohort_progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    bar = cohort_progress.CohortProgress(40, prefix="medview batch", stream=out, interval_s=10.0)
    for _ in range(400):  # the engine polls about every 0.1 s: 50 s of polling
        now[0] += 0.125
        bar.tick(running=2)
    assert len(out.getvalue().splitlines()) == 5
    bar.case_finished("lung3", True, 41.0)
    now[0] += 5.0
    bar.tick(running=2)  # 5 s after the case's line: nothing
    now[0] += 125.0
    bar.case_finished("lung4", False, 3.0, "Cannot read lung4.nrrd")
    lines = out.getvalue().splitlines()
    assert len(lines) == 7
    assert lines[0] == "medview batch: 0/40 cases done, 0 failed, 2 running, 10s elapsed, time left not known yet"
    assert lines[5] == "medview batch: 1/40 cases done, 0 failed, 50s elapsed, ~32m30s left (lung3 ok in 41s)"
    assert lines[6] == ("medview batch: 2/40 cases done, 1 failed, 3m00s elapsed, ~57m00s left "
                        "(lung4 failed in 3s: Cannot read lung4.nrrd)")


def big_and_small_cohort(folder: Path) -> None:
    """'big': a 256^3 int16 NIfTI (written with nibabel) whose Gaussian alone needs ~320 MB more than the worker;
    'small': a 24^3 phantom."""
    array = np.zeros((256, 256, 256), np.int16)
    array[64:192, 64:192, 64:192] = 300
    nib.Nifti1Image(array, np.eye(4)).to_filename(folder / "big.nii")
    rows = phantom_rows(folder, 1, size=24, base_radius=5.0)
    rows[0]["case_id"] = "small"
    rows.append({"case_id": "big", "image": "big.nii", "label": ""})
    write_csv(folder / "cohort.csv", rows)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "gaussian", "params": {"sigma": 1.0}}},
        {"segment": {"method": "threshold", "params": {"lower": 100}}}, FEATURES]}))


def test_case_over_the_limit_is_named_first_then_reported_out_of_memory(tmp_path: Path) -> None:
    big_and_small_cohort(tmp_path)
    out = tmp_path / "out"
    # one retry instead of Dask's three, set through Dask's own configuration: the test's time, not its meaning
    r = run_batch_cli(str(tmp_path / "pipeline.yaml"), str(tmp_path / "cohort.csv"), "--out", str(out),
                      "--workers", "1", "--memory-limit", "400MB", DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1")
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    warning = next(i for i, line in enumerate(lines) if "warning: case big" in line)
    assert "--memory-limit" in lines[warning] and "400MB" in lines[warning] and "256x256x256" in lines[warning]
    assert not any("warning: case small" in line for line in lines)
    first_progress = next(i for i, line in enumerate(lines) if PROGRESS.match(line))
    assert warning < first_progress  # said before any case finished
    assert any("a worker ran out of memory running" in line for line in lines), r.stderr  # when it happened
    errors = pd.read_csv(out / "errors.csv")
    assert list(errors["case_id"]) == ["big"]
    message = errors["error"][0]
    assert "ran out of memory" in message and "400MB" in message and "--memory-limit" in message, message
    assert "KilledWorker" not in message and "Attempted to run task" not in message
    assert pd.read_csv(out / "features.csv").set_index("case_id").loc["small", "status"] == "ok"


def test_no_case_fits_is_refused_before_the_cluster_starts(tmp_path: Path, capsys) -> None:
    big_and_small_cohort(tmp_path)
    rows = pd.read_csv(tmp_path / "cohort.csv", keep_default_na=False).to_dict("records")
    write_csv(tmp_path / "big.csv", [r for r in rows if r["case_id"] == "big"])
    code = main(["batch", str(tmp_path / "pipeline.yaml"), str(tmp_path / "big.csv"), "--out", str(tmp_path / "o"),
                 "--memory-limit", "400MB"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("medview: error: No case fits"), err
    assert "big" in err and "400MB" in err and "--memory-limit" in err
    assert not list((tmp_path / "o").glob("cases/*"))  # nothing ran


def test_memory_estimate_follows_the_header_and_the_steps(tmp_path: Path) -> None:
    from medview.app.batch import WORKER_BASE_BYTES, estimate_case_memory
    from medview.app.pipeline import Case, Pipeline

    big_and_small_cohort(tmp_path)
    case = Case("big", str(tmp_path / "big.nii"))
    light = Pipeline.from_dict({"medview_pipeline": 1, "steps": [{"segment": {"method": "threshold",
                                                                              "params": {"lower": 100}}}]})
    heavy = Pipeline.from_dict(yaml.safe_load((tmp_path / "pipeline.yaml").read_text()))
    (light_bytes, _), (heavy_bytes, detail) = (estimate_case_memory(case, pipeline=p) for p in (light, heavy))
    voxels = nib.load(tmp_path / "big.nii").header.get_data_shape()
    n = int(np.prod(voxels))
    assert light_bytes == pytest.approx(WORKER_BASE_BYTES + n * 4 * 3)  # int16 works as float32: 4 bytes
    assert heavy_bytes == pytest.approx(WORKER_BASE_BYTES + n * 4 * 10)  # the features step is the costliest
    assert "256x256x256 voxels" in detail


def test_memory_estimate_of_a_dicom_series(chest_ct_sample: Path) -> None:
    import pydicom

    from medview.app.batch import WORKER_BASE_BYTES, estimate_case_memory
    from medview.app.pipeline import Case, Pipeline

    files = sorted(f for f in chest_ct_sample.iterdir() if f.is_file())  # the sample's series folder
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    pipeline = Pipeline.from_dict({"medview_pipeline": 1, "steps": [{"segment": {"method": "otsu"}}]})
    need, detail = estimate_case_memory(Case("chest", str(chest_ct_sample)), pipeline=pipeline)
    assert need == pytest.approx(WORKER_BASE_BYTES + first.Rows * first.Columns * len(files) * 4 * 3)
    assert detail.startswith(f"{first.Columns}x{first.Rows}x{len(files)} voxels")
