"""``medview batch``: usage and validation errors are reported before any cluster starts (exit 2 / 3, one line,
no traceback), and a small cohort runs end to end on a LocalCluster (exit 1 when a case failed, 0 after the
broken case is fixed and only it runs again).  The runs on a real scheduler are in tests/analysis/test_cohort.py."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml

from medview.cli.main import main
from tests.analysis.cohort_data import broken_case, phantom_rows, write_csv


@pytest.fixture
def small(tmp_path):
    rows = phantom_rows(tmp_path, 2, size=32, base_radius=6.0)
    image, label = broken_case(tmp_path)
    rows.append({"case_id": "broken", "image": image.name, "label": label.name})
    write_csv(tmp_path / "cohort.csv", rows)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "threshold", "params": {"lower": 100}}},
        {"features": {"label": 1, "params": {"featureClass": {"firstorder": ["Mean", "Maximum"]}}}},
    ]}))
    return tmp_path


def test_workers_and_scheduler_are_exclusive(small, capsys):
    with pytest.raises(SystemExit) as info:
        main(["batch", str(small / "pipeline.yaml"), str(small / "cohort.csv"), "--out", str(small / "o"),
              "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert info.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "0"], "--workers must be a whole number >= 1"),
    (["--memory-limit", "plenty"], "memory limit must look like 2GB"),
    (["--scheduler", "http://x"], "A scheduler address looks like tcp://host:8786"),
])
def test_bad_options_exit_3(small, capsys, args, message):
    code = main(["batch", str(small / "pipeline.yaml"), str(small / "cohort.csv"), "--out", str(small / "o"), *args])
    err = capsys.readouterr().err
    assert code == 3 and message in err and len(err.strip().splitlines()) == 1
    assert not (small / "o").exists()  # nothing written before validation passed


def test_bad_pipeline_and_cohort_exit_3(small, capsys):
    (small / "bad.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "otsu"}}, {"filter": {"name": "median", "params": {"radius_mm": 1}}}]}))
    assert main(["batch", str(small / "bad.yaml"), str(small / "cohort.csv"), "--out", str(small / "o")]) == 3
    err = capsys.readouterr().err
    assert "step 2 of 2 (filter)" in err and "radius_mm" in err and "Traceback" not in err
    (small / "bad.csv").write_text("case_id,image\na,nothere.nii.gz\nb,alsonot.nii.gz\n")
    assert main(["batch", str(small / "pipeline.yaml"), str(small / "bad.csv"), "--out", str(small / "o")]) == 3
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "nothere.nii.gz" in err and "alsonot.nii.gz" in err


def test_batch_on_a_local_cluster_then_fix_and_resume(small, capsys):
    out = small / "out"
    args = ["batch", str(small / "pipeline.yaml"), str(small / "cohort.csv"), "--out", str(out), "--workers", "1"]
    assert main(args) == 1
    text = capsys.readouterr().out
    assert "3 case(s): 2 ok, 1 failed (3 run now, 0 already done)" in text and "errors.csv" in text
    # fix the broken case: the re-run runs only it, and exits 0 with the full table
    shutil.copy(small / "phantom0_image.nii.gz", small / "fixed_image.nii.gz")
    rows = pd.read_csv(small / "cohort.csv", keep_default_na=False).to_dict("records")
    rows[-1].update(image="fixed_image.nii.gz", label="phantom0_label.nii.gz")
    write_csv(small / "cohort.csv", rows)
    assert main(args) == 0
    assert "3 case(s): 3 ok, 0 failed (1 run now, 2 already done)" in capsys.readouterr().out
    table = pd.read_csv(out / "features.csv")
    assert list(table.columns) == ["case_id", "target", "status", "original_firstorder_Mean",
                                   "original_firstorder_Maximum"]
    assert list(table["status"]) == ["ok"] * 3
    assert table.loc[2, "original_firstorder_Mean"] == table.loc[0, "original_firstorder_Mean"]  # same files
    assert pd.read_csv(out / "errors.csv").empty
    assert json.loads((out / "summary.json").read_text())["ok"] == 3


def test_ctrl_c_stops_the_workers_and_keeps_finished_cases(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) mid-run: exit 130, one line, no
    traceback from the workers, no process left behind; finished cases are kept for the next run."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    rows = phantom_rows(tmp_path, 8, size=64, base_radius=10.0)
    write_csv(tmp_path / "cohort.csv", rows)
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "median", "params": {"radius": 3.0}}}, {"export": {"labels": False}}]}))
    out = tmp_path / "out"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "medview"), "batch", str(tmp_path / "pipeline.yaml"),
                             str(tmp_path / "cohort.csv"), "--out", str(out), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("cases/*/case.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # stderr is a pipe: the run's progress lines (one per finished case), then the one line, no worker traceback
    lines = err.strip().splitlines()
    assert proc.returncode == 130 and lines[-1] == "medview: interrupted", err
    assert all(line.startswith("medview batch: ") and " cases done, " in line for line in lines[:-1]), err
    time.sleep(0.5)
    # the worker processes were in the same group: none may be left running (zombies are already dead; a
    # container without an init process may leave them unreaped)
    ps = subprocess.run(["ps", "-o", "pid=,stat=,cmd=", "-g", str(proc.pid)], capture_output=True, text=True).stdout
    running = [line for line in ps.splitlines() if line.split()[1][0] != "Z"]
    assert not running, ps
    done = [p for p in out.glob("cases/*/case.json") if json.loads(p.read_text())["status"] == "ok"]
    assert 1 <= len(done) < 8 and not (out / "features.csv").exists()
