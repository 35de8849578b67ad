"""Issue 17: long jobs run in a process of their own (Worker(in_process=True)), so the event loop stays free."""

from __future__ import annotations

import os
import time

import numpy as np
from PySide6.QtCore import QCoreApplication

from medview.qt.workers import Worker, start
from tests.qt.stall_probe import StallProbe


def busy_sum(array: np.ndarray, seconds: float, task=None) -> tuple[int, float]:
    """Holds the GIL in a pure-Python loop (as scikit-image / scikit-learn do in C) for ``seconds``."""
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
        if n % 20000 == 0 and task is not None:
            task.progress(min(n / 1e6, 0.9), "busy")
    return os.getpid(), float(array.sum())


def _spin(until, timeout_s: float = 60.0) -> None:
    t0 = time.perf_counter()
    while not until() and time.perf_counter() - t0 < timeout_s:
        QCoreApplication.processEvents()
        time.sleep(0.001)


def test_in_process_worker_keeps_the_event_loop_free_and_shares_large_arrays(qtbot) -> None:
    array = np.ones((40, 256, 256), dtype=np.float32)  # 10 MB: travels in shared memory
    worker = Worker(busy_sum, array, 1.5, in_process=True)
    results, progress = [], []
    worker.signals.finished.connect(results.append)
    worker.signals.progress.connect(lambda f, m: progress.append(f))
    with StallProbe() as probe:
        start(worker)
        _spin(lambda: bool(results))
    pid, total = results[0]
    assert pid != os.getpid() and total == array.size
    assert progress, "progress from the job's process reaches the GUI"
    assert probe.longest_ms < 250, probe.stalls


def test_cancel_kills_the_job_process_within_100_ms(qtbot) -> None:
    worker = Worker(busy_sum, np.zeros(10), 60.0, in_process=True)
    cancelled = []
    worker.signals.cancelled.connect(lambda: cancelled.append(time.perf_counter()))
    start(worker)
    time.sleep(1.0)  # the process is running
    t0 = time.perf_counter()
    worker.cancel()
    _spin(lambda: bool(cancelled), 10.0)
    assert cancelled and cancelled[0] - t0 < 0.1
