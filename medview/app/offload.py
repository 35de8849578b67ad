"""Run a job in the worker-process pool when it would hold the GIL for long in a thread.

Some libraries compute in C/Cython without releasing the GIL (scikit-image's marching cubes, pydicom's
codecs): in a GUI worker thread they freeze the event loop for as long as they run (measured: label
statistics of a body mask stalled the crosshair drag for 0.4-0.6 s).  In a process they cannot.  The
job must be a module-level function (it is pickled) and its arguments picklable.  Without a usable pool
the job runs here, as before.

Long jobs (filters, clustering: seconds to minutes) get a process of their own (``own_process=True``):
they report progress through a pipe and Cancel kills the process at once (within 100 ms, as a thread
could not).  Large arrays travel in shared memory (anonymous memory files), not through the pipe:
pickling a 160 MB volume holds the GIL, and with it the event loop, for as long as it copies.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import multiprocessing as mp
import os
import pickle
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np

from medview.core.errors import CancelledError, MedviewError
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.dicom import parallel

log = logging.getLogger(__name__)

SHARED_MIN_BYTES = 1 << 20  # arrays from this size travel in shared memory
POLL_S = 0.02  # how often a running job's pipe and cancel token are looked at
_SHARED_TAG = "medview-shared-array"


def run_in_process(fn: Callable[..., Any], *args: Any, task: TaskContext | None = None,
                   own_process: bool = False, **kwargs: Any) -> Any:
    """``fn(*args)`` in a pool process (lower priority); cancel is checked every 50 ms while it runs.

    A cancelled job's result is dropped (a running process job cannot be interrupted; it finishes in the
    background).  Errors raised by ``fn`` are raised here.

    ``own_process``: ``fn(*args, task=..., **kwargs)`` in a process of its own instead, for long jobs: its
    progress reaches ``task``, Cancel kills the process within 100 ms, and large arrays (in the arguments
    and in the result) are passed in shared memory.  Where no process can be started, it runs here.
    """
    check_cancel(task)
    if own_process:
        if not parallel.isolation_available():
            return fn(*args, task=task, **kwargs)
        return _run_own_process(fn, args, kwargs, task)
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


# -- a process of its own for a long job ---------------------------------------------------------------
class _SharedPickler(pickle.Pickler):
    """Pickles large numeric arrays as references to anonymous memory files (Linux memfd) it fills."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.fds: list[int] = []

    def persistent_id(self, obj: Any) -> Any:
        if not (isinstance(obj, np.ndarray) and obj.nbytes >= SHARED_MIN_BYTES and obj.dtype.kind in "biufc"
                and hasattr(os, "memfd_create")):
            return None
        fd = os.memfd_create("medview-job")
        try:
            os.ftruncate(fd, obj.nbytes)
            with mmap.mmap(fd, obj.nbytes) as mapping:
                target = np.frombuffer(mapping, dtype=obj.dtype).reshape(obj.shape)
                np.copyto(target, obj)  # numpy drops the GIL while it copies
                del target
        except BaseException:
            os.close(fd)
            raise
        self.fds.append(fd)
        return (_SHARED_TAG, f"/proc/{os.getpid()}/fd/{fd}", obj.dtype.str, obj.shape)


class _SharedUnpickler(pickle.Unpickler):
    """Maps the arrays a :class:`_SharedPickler` put in memory files: ``private`` maps them copy-on-write
    (the job may change its inputs without touching the sender's), else shared (a result, zero-copy)."""

    def __init__(self, file: io.BytesIO, private: bool) -> None:
        super().__init__(file)
        self.access = mmap.ACCESS_COPY if private else mmap.ACCESS_WRITE

    def persistent_load(self, pid: Any) -> Any:
        tag, path, dtype, shape = pid
        if tag != _SHARED_TAG:  # pragma: no cover - only our own references are written
            raise pickle.UnpicklingError(f"unknown reference {tag!r}")
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, nbytes, access=self.access)
        finally:
            os.close(fd)  # the mapping keeps the memory; it is freed with the array
        return np.frombuffer(mapping, dtype=dt).reshape(shape)


def _dumps(obj: Any) -> tuple[bytes, list[int]]:
    buffer = io.BytesIO()
    pickler = _SharedPickler(buffer)
    try:
        pickler.dump(obj)
    except BaseException:
        _close(pickler.fds)
        raise
    return buffer.getvalue(), pickler.fds


def _loads(data: bytes, private: bool) -> Any:
    return _SharedUnpickler(io.BytesIO(data), private).load()


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _touch_pages(obj: Any) -> None:
    """Map the pages of a result's shared arrays here, in the worker thread: otherwise the first reads on the
    GUI thread page-fault (see ``medview.io.dicom.load._map_pages``)."""
    arrays = [obj] if isinstance(obj, np.ndarray) else [v for v in getattr(obj, "__dict__", {}).values()
                                                         if isinstance(v, np.ndarray)]
    for array in arrays:
        if array.nbytes >= SHARED_MIN_BYTES and array.flags.c_contiguous:
            np.bitwise_or.reduce(array.reshape(-1).view(np.uint8)[:: mmap.PAGESIZE])


def _child_main(conn: Any, owner: int) -> None:
    """The job's process: receive the job, run it reporting progress, send its result or its error, and wait
    until the owner has mapped the result's memory files (they close with this process)."""
    parallel._init_worker(owner)  # lower priority, quiet output, end with the owner
    from medview.io.dicom import worker_imports  # preloaded by the fork server: never import it in the owner

    worker_imports.allow_again()  # the fork server blocks requests for the decode workers; a job may need it
    fds: list[int] = []
    try:
        fn, args, kwargs = _loads(conn.recv_bytes(), private=True)
        task = TaskContext(on_progress=lambda f, m: conn.send(("progress", f, m)), min_interval_s=0.1)
        data, fds = _dumps(fn(*args, task=task, **kwargs))
        conn.send(("result", data))
    except BaseException as exc:
        detail = traceback.format_exc()
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(OSError):
            conn.send(("error", exc, detail))
    with contextlib.suppress(EOFError, OSError):
        conn.recv()  # the owner's acknowledgement (or its end)
    _close(fds)


def _context() -> Any:
    ctx = mp.get_context("forkserver")  # never fork the GUI: its Qt threads can deadlock a fork
    ctx.set_forkserver_preload(parallel.FORKSERVER_PRELOAD)
    return ctx


def _run_own_process(fn: Callable[..., Any], args: tuple, kwargs: dict, task: TaskContext | None) -> Any:
    payload, fds = _dumps((fn, args, kwargs))
    try:
        ctx = _context()
        ours, theirs = ctx.Pipe()
        process = ctx.Process(target=_child_main, args=(theirs, os.getpid()), name="medview-job", daemon=True)
        try:
            process.start()
        except parallel.PoolFailure as exc:  # no process here: run the job in this thread
            log.warning("cannot start a job process (%s); running in this process", exc)
            _close(fds)
            fds = []
            return fn(*args, task=task, **kwargs)
        theirs.close()
        try:
            ours.send_bytes(payload)
            return _wait(process, ours, task)
        finally:
            ours.close()
            if process.is_alive():
                process.join(1.0)
            if process.is_alive():
                process.kill()
    finally:
        _close(fds)


def _wait(process: Any, conn: Any, task: TaskContext | None) -> Any:
    while True:
        if task is not None and task.token.cancelled:
            process.kill()  # nothing of a killed job is kept: it returned nothing
            process.join(0.1)
            raise CancelledError("Cancelled by the user")
        if not conn.poll(POLL_S):
            if not process.is_alive() and not conn.poll(0):
                raise MedviewError(f"The job's worker process ended unexpectedly (exit code {process.exitcode}); "
                                   "it may have run out of memory. Nothing was changed.")
            continue
        try:
            message = conn.recv()
        except (EOFError, OSError):
            process.join(0.5)
            raise MedviewError(f"The job's worker process ended unexpectedly (exit code {process.exitcode}); "
                               "it may have run out of memory. Nothing was changed.") from None
        if message[0] == "progress":
            with contextlib.suppress(CancelledError):  # cancel is handled above, with the kill
                report(task, message[1], message[2])
        elif message[0] == "result":
            result = _loads(message[1], private=False)
            conn.send("mapped")
            _touch_pages(result)
            return result
        else:
            _, exc, detail = message
            if not isinstance(exc, MedviewError | CancelledError):
                log.error("job process failed:\n%s", detail)
            raise exc
