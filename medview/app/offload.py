"""Run a job in the worker-process pool when it would hold the GIL for long in a thread.

Some libraries compute in C/Cython without releasing the GIL (scikit-image's marching cubes, pydicom's
codecs): in a GUI worker thread they freeze the event loop for as long as they run (measured: label
statistics of a body mask stalled the crosshair drag for 0.4-0.6 s).  In a process they cannot.  The
job must be a module-level function (it is pickled) and its arguments picklable.  Without a usable pool
the job runs here, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from medview.core.tasks import TaskContext, check_cancel
from medview.io.dicom import parallel


def run_in_process(fn: Callable[..., Any], *args: Any, task: TaskContext | None = None) -> Any:
    """``fn(*args)`` in a pool process (lower priority); cancel is checked every 50 ms while it runs.

    A cancelled job's result is dropped (a running process job cannot be interrupted; it finishes in the
    background).  Errors raised by ``fn`` are raised here.
    """
    check_cancel(task)
    if not parallel.pool_available():
        return fn(*args)
    try:
        future: Future = parallel.process_pool().submit(fn, *args)
    except parallel.PoolFailure as exc:
        parallel.disable_pool(exc)
        return fn(*args)
    while True:
        try:
            return future.result(timeout=0.05)
        except TimeoutError:
            try:
                check_cancel(task)
            except BaseException:
                future.cancel()
                raise
        except parallel.PoolFailure as exc:  # a worker died: do it here
            parallel.disable_pool(exc)
            return fn(*args)
