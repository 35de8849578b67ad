"""The one worker mechanism of the GUI: a QRunnable on the global QThreadPool.

The job is a plain function from the GUI-free core that takes a ``task: TaskContext``.  Its progress,
result and error arrive on the main thread through queued signals; Cancel sets the task's token.
The job never touches a widget.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from medview.core.errors import CancelledError, MedviewError
from medview.core.tasks import TaskContext

log = logging.getLogger(__name__)


# 10 progress reports a second at most: each one repaints the progress bar (and with it the window)
PROGRESS_INTERVAL_S = 0.1

class WorkerSignals(QObject):
    progress = Signal(float, str)
    partial = Signal(object, int)  # e.g. (volume still filling, index of the slice ready)
    finished = Signal(object)
    failed = Signal(str)
    cancelled = Signal()


class Worker(QRunnable):
    """Run ``fn(*args, task=..., **kwargs)`` in the thread pool.

    ``in_process=True``: the thread hands ``fn`` (a module-level function; its arguments and result are
    pickled, large arrays shared) to a process of its own and waits for it (``offload.run_in_process``).
    For work that holds the GIL (scikit-image, scikit-learn, SciPy, numpy loops): in a thread it stalls
    the event loop for as long as it runs.  Progress still arrives; Cancel kills the process at once.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, in_process: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.in_process = in_process
        self.setAutoDelete(False)  # the GUI holds it until finished, so signals stay valid
        self.signals = WorkerSignals()
        self.task = TaskContext(on_progress=self.signals.progress.emit, min_interval_s=PROGRESS_INTERVAL_S)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.done = False

    def cancel(self) -> None:
        self.task.token.cancel()

    def run(self) -> None:
        # ``done`` is set before the signal goes out, so a slot can rely on it
        try:
            if self.in_process:
                from medview.app.offload import run_in_process

                result = run_in_process(self.fn, *self.args, task=self.task, own_process=True, **self.kwargs)
            else:
                result = self.fn(*self.args, task=self.task, **self.kwargs)
        except CancelledError:
            self.done = True
            _emit(self.signals.cancelled)
        except MedviewError as exc:
            log.warning("job failed: %s", exc)
            self.done = True
            _emit(self.signals.failed, str(exc))
        except Exception as exc:  # a bug: keep the GUI alive and say what happened
            log.error("unexpected error in worker:\n%s", traceback.format_exc())
            self.done = True
            _emit(self.signals.failed, f"Unexpected error ({type(exc).__name__}): {exc}")
        else:
            self.done = True
            _emit(self.signals.finished, result)


def _emit(signal, *args) -> None:
    """Emit from the worker's thread; once the application has been torn down (a job that outlived a script's
    QApplication) the signals' object is gone and nobody listens: nothing to say then."""
    try:
        signal.emit(*args)
    except RuntimeError as exc:
        if "deleted" not in str(exc):
            raise

def start(worker: Worker) -> Worker:
    QThreadPool.globalInstance().start(worker)
    return worker


def wait_for_all(timeout_ms: int = 10_000) -> bool:
    """Block until running workers end (used when the application quits)."""
    return QThreadPool.globalInstance().waitForDone(timeout_ms)


_orphans: list[Worker] = []


def release_when_done(worker: Worker) -> None:
    """Forget the GUI's interest in ``worker`` (its panel is closing) without freeing it while it runs.

    Its result slots are disconnected, so closures over the closing panel are dropped; the worker object
    itself is kept here until it has finished, because the thread pool still holds its C++ side.
    """
    signals = worker.signals
    with warnings.catch_warnings():  # PySide warns when a signal had no slot: nothing to drop then
        warnings.simplefilter("ignore", RuntimeWarning)
        for signal in (signals.finished, signals.failed, signals.cancelled, signals.progress, signals.partial):
            with contextlib.suppress(RuntimeError, TypeError):
                signal.disconnect()
    if not worker.done:
        worker.cancel()
        _orphans.append(worker)
    _orphans[:] = [w for w in _orphans if not w.done]


class JobSlot:
    """What a panel needs to run one background job at a time: start it wired to the panel's handlers,
    cancel it, let it go when the panel closes.

    Mixed into a panel (``class Panel(JobSlot, QWidget)``).  The panel provides ``_failed(message)`` and,
    when it has them, ``_cancelled()`` and ``_progress(fraction, message)``; its widgets' busy state stays
    its own.
    """

    worker: Worker | None = None

    @property
    def busy(self) -> bool:
        return self.worker is not None and not self.worker.done

    def run_job(self, worker: Worker, on_result: Callable[..., Any], replace: bool = True) -> Worker | None:
        """Start ``worker`` with ``on_result`` for its result.  A job still running is let go
        (``replace``, e.g. a newer computation of the same thing) or kept, and then None is returned."""
        if self.busy:
            if not replace:
                return None
            release_when_done(self.worker)
        self.worker = worker
        signals = worker.signals
        signals.finished.connect(on_result)
        signals.failed.connect(self._failed)
        if hasattr(self, "_cancelled"):
            signals.cancelled.connect(self._cancelled)
        if hasattr(self, "_progress"):
            signals.progress.connect(self._progress)
        return start(worker)

    def cancel(self) -> None:
        if self.busy:
            self.worker.cancel()

    def shutdown(self) -> None:
        if self.worker is not None:
            release_when_done(self.worker)
            self.worker = None
