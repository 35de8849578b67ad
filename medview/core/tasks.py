"""One mechanism for every long job: progress reports and co-operative cancellation.

A long function takes a ``task: TaskContext | None`` argument, calls ``task.progress(fraction,
message)`` as it goes and ``task.check()`` inside its loops (at least every 100 ms of work).  The Qt
worker, the CLI progress bar and the Dask batch runner all drive the same functions through this.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from medview.core.errors import CancelledError

ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """Thread-safe flag set by the user (Cancel button, Ctrl-C) and polled by the job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class TaskContext:
    """Handed to a long job: where to report progress and how to learn it was cancelled."""

    on_progress: ProgressCallback | None = None
    token: CancelToken = field(default_factory=CancelToken)
    min_interval_s: float = 0.05
    _last_report: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self) -> None:
        """Raise :class:`CancelledError` if the user asked to stop."""
        if self.token.cancelled:
            raise CancelledError("Cancelled by the user")

    def progress(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        """Report ``fraction`` (0..1) done; throttled so callbacks cannot flood a GUI."""
        self.check()
        if self.on_progress is None:
            return
        now = time.monotonic()
        with self._lock:
            if not force and fraction < 1.0 and now - self._last_report < self.min_interval_s:
                return
            self._last_report = now
        self.on_progress(min(max(float(fraction), 0.0), 1.0), message)


def report(task: TaskContext | None, fraction: float, message: str = "", *, force: bool = False) -> None:
    """Report progress if there is a task; check for cancellation either way."""
    if task is not None:
        task.progress(fraction, message, force=force)


def check_cancel(task: TaskContext | None) -> None:
    if task is not None:
        task.check()
