"""Measure how long the Qt event loop stalls while a job runs in the real window.

A precise 5 ms QTimer ticks on the main thread; the largest gap between two ticks, less the period, is
the longest time the event loop could not answer the reader (a click, a repaint).  Used by the stall
regression tests (tests/qt/test_stalls.py) and the benchmark (tests/benchmarks/test_stall_benchmark.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QCoreApplication, QElapsedTimer, Qt, QTimer

PERIOD_MS = 5


class StallProbe:
    """``with StallProbe() as probe: ...``; ``probe.longest_ms`` is the longest stall, ``probe.where_s`` when."""

    def __init__(self, period_ms: int = PERIOD_MS) -> None:
        self.period_ms = period_ms
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self.last_ms = 0
        self.longest_ms = 0.0
        self.where_s = 0.0
        self.ticks = 0
        self.stalls: list[tuple[float, float]] = []  # (when in s, how long in ms) of each gap over 50 ms

    def _tick(self) -> None:
        now = self.clock.elapsed()
        gap = now - self.last_ms - self.period_ms
        if gap > 50:
            self.stalls.append((self.last_ms / 1000.0, float(gap)))
        if gap > self.longest_ms:
            self.longest_ms, self.where_s = float(gap), now / 1000.0
        self.last_ms = now
        self.ticks += 1

    def start(self) -> StallProbe:
        self.clock.start()
        self.last_ms = 0
        self.longest_ms, self.ticks = 0.0, 0
        self.stalls = []
        self.timer.start()
        return self

    def stop(self) -> float:
        self._tick()  # a stall that lasts until the end counts too
        self.timer.stop()
        return self.longest_ms

    def __enter__(self) -> StallProbe:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_and_measure(start: Callable[[], object], done: Callable[[], bool], timeout_s: float = 300.0,
                    settle_s: float = 0.3) -> tuple[float, float]:
    """Call ``start()`` with the probe running, spin the event loop until ``done()`` (and ``settle_s`` more,
    for what the result's arrival triggers): (longest stall in ms, wall time in s until done)."""
    app = QCoreApplication.instance()
    probe = StallProbe()
    t0 = time.perf_counter()
    with probe:
        start()
        while not done():
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"job not done after {timeout_s:.0f} s")
        wall = time.perf_counter() - t0
        end = time.perf_counter() + settle_s
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)
    return probe.longest_ms, wall
