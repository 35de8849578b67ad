"""Progress of a cohort run on stderr: a tqdm bar on a terminal, plain lines otherwise (a log file, a pipe, a job
scheduler's output), where tqdm shows nothing at all.

Plain lines are one per finished case plus, while cases run, at most one every ``interval_s`` seconds::

    medview batch: 3/40 cases done, 1 failed, 2m10s elapsed, ~25m left (lung3 ok in 41s)
    medview batch: 3/40 cases done, 1 failed, 2 running, 2m20s elapsed, ~25m left

Notes (a warning, a worker that ran out of memory) go to the same stream, above the bar on a terminal.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

PROGRESS_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """``42s``, ``2m10s``, ``1h05m``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class CohortProgress:
    """What the engine reports while cases run; ``enabled=False`` shows nothing but notes."""

    def __init__(self, total: int, enabled: bool = True, prefix: str = "medview", stream: TextIO | None = None,
                 interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.total, self.prefix, self.interval_s = total, prefix, interval_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = self.failed = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar = None
        if enabled and self._isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="case", file=self.stream, dynamic_ncols=True, smoothing=0.1,
                             desc="cases")

    def _isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):
            return False

    def _write(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last_line = time.monotonic()

    def note(self, text: str) -> None:
        """A line shown whether or not progress is enabled (warnings, memory kills)."""
        self._write(f"{self.prefix}: {text}")

    def _status(self, running: int | None = None) -> str:
        elapsed = time.monotonic() - self.started
        parts = [f"{self.done}/{self.total} cases done", f"{self.failed} failed"]
        if running:
            parts.append(f"{running} running")
        parts.append(f"{format_duration(elapsed)} elapsed")
        if self.done and self.done < self.total:
            parts.append(f"~{format_duration(elapsed / self.done * (self.total - self.done))} left")
        elif not self.done:
            parts.append("time left not known yet")
        return ", ".join(parts)

    def case_finished(self, case_id: str, ok: bool, seconds: float | None = None, error: str | None = None) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if self._bar is not None:
            self._bar.update(1)
            if not ok:
                self._bar.set_postfix_str(f"{self.failed} failed", refresh=False)
                self._write(f"{self.prefix}: {case_id} failed: {error}")
            return
        if not self.enabled:
            return
        took = f" in {format_duration(seconds)}" if seconds is not None else ""
        what = f"{case_id} ok{took}" if ok else f"{case_id} failed{took}: {error}"
        self._write(f"{self.prefix}: {self._status()} ({what})")

    def tick(self, running: int | None = None) -> None:
        """Called often while cases run: a line when none was written for ``interval_s`` (no terminal only)."""
        if self.enabled and self._bar is None and time.monotonic() - self._last_line >= self.interval_s:
            self._write(f"{self.prefix}: {self._status(running)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
