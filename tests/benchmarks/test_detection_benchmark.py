"""Detection benchmark: the blob detector (defaults, 4-30 mm) on the bundled chest CT, CLI and GUI paths.

CLI: ``medview detect`` in a fresh process (imports, reading the JPEG-LS series and writing the JSON included).
GUI: the Detections panel's job in a Qt worker thread while the event loop runs (offscreen), timed from start
to result, with the longest event-loop stall.  Goal (reported, not enforced): <= 30 s on a 2-CPU machine.
Before the whole-grid search (commit bb7e14f) this took 154 s on the CLI and 465 s in the GUI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .dataset import REPO

SAMPLE = REPO / "resources" / "samples" / "chest_ct" / "dicom"
GOAL_S = 30.0
GUI_JOB = """
import sys, time, json
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from medview.io.dicom import parallel
from medview.io.readers import open_image
from medview.qt import workers
from medview.qt.panels.detections import _detect


def main():
    app = QApplication(sys.argv)
    parallel.prefer_forkserver()  # as the GUI does
    volume = open_image(sys.argv[1])
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    out = {}
    worker = workers.Worker(_detect, volume, 4.0, 30.0)
    worker.signals.finished.connect(lambda r: (out.setdefault("n", len(r.detections)), app.quit()))
    worker.signals.failed.connect(lambda m: (out.setdefault("error", m), app.quit()))
    start = time.perf_counter()
    workers.start(worker)
    app.exec()
    out.update(seconds=time.perf_counter() - start, stall_ms=max(gaps) * 1000)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
"""


def test_detection_benchmark(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = tmp_path / "detections.json"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medview.cli.main", "detect", str(SAMPLE), str(out)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    cli = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(out.read_text())["detections"]
    script = tmp_path / "gui_job.py"
    script.write_text(GUI_JOB)
    proc = subprocess.run([sys.executable, str(script), str(SAMPLE)], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    gui = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in gui and gui["n"] == len(found)
    print(f"\n[bench] detect CLI {cli:.1f} s (process), GUI job {gui['seconds']:.1f} s, longest stall "
          f"{gui['stall_ms']:.0f} ms, {len(found)} candidates; goal <= {GOAL_S:.0f} s: "
          f"{'met' if max(cli, gui['seconds']) <= GOAL_S else 'NOT met'}")
