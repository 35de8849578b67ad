"""A lazily started process pool shared by header scanning and compressed-pixel decoding.

pydicom's parsing and its codec plugins (gdcm, pyjpegls, pylibjpeg) hold the GIL -- measured: two
threads decode JPEG-LS no faster than one -- so parallel work needs processes.  Start method:

* ``fork`` when this process runs a single thread (CLI, scripts, batch workers): workers start in
  milliseconds and inherit the imported codecs;
* ``forkserver`` otherwise (the GUI runs Qt threads, and forking a threaded process can deadlock).
  Like any spawn-style pool this imports the ``__main__`` module in each worker, so scripts need the
  usual ``if __name__ == "__main__":`` guard.

If the pool cannot start or a worker dies, callers fall back to working in this process.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from medview.core.processes import is_running, process_started

_POOL: ProcessPoolExecutor | None = None
_DISABLED = False
_FORKSERVER_ONLY = False
_IS_WORKER = False  # this process is one of medview's workers (a pool's or a job's): it starts no pool of its own
_WARMING: threading.Thread | None = None
_LOCK = threading.Lock()

PoolFailure = (BrokenProcessPool, OSError, RuntimeError)
PARENT_CHECK_S = 1.0  # how often a worker checks that the process owning the pool is still there
# what the fork server imports once for all its workers, in this order (worker_imports first: it keeps
# pydicom's download helpers out of them)
FORKSERVER_PRELOAD = ["medview.io.dicom.worker_imports", "medview.io.dicom.headers", "medview.io.dicom.decode"]


def worker_count() -> int:
    """Processes to use: ``MEDVIEW_WORKERS`` or the number of CPUs available to this process."""
    configured = os.environ.get("MEDVIEW_WORKERS")
    if configured and configured.isdigit():
        return max(int(configured), 1)
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def in_daemon_process() -> bool:
    """True inside a daemonic process (a Dask worker), which may not start children ("daemonic processes are
    not allowed to have children"), or inside one of medview's own workers: work is then done in this process.

    A ProcessPoolExecutor's workers are not daemonic, so a job run in the pool that loaded a series started a
    pool of its own there; at the end that worker waited for its pool's workers, and they for it, forever
    (the test session hung after its last test)."""
    return _IS_WORKER or bool(mp.current_process().daemon)


def pool_available() -> bool:
    """Whether work may be spread over worker processes (more than one CPU, processes allowed here)."""
    return not _DISABLED and worker_count() > 1 and not in_daemon_process()


def isolation_available() -> bool:
    """Whether untrusted compressed data can be decoded in a worker process, even with one CPU, so that a codec
    that aborts (an uncaught C++ exception, a Rust panic set to abort) ends that worker, not medview.  Not in a
    daemonic process: there the process itself is the isolated worker (Dask reports its death as a failed case)."""
    return not in_daemon_process()  # even after disable_pool(): safety is worth a new start


def _init_worker(owner: int) -> None:
    """Each worker at its start: yield the CPU to the process that owns the pool (the GUI stays fluid while
    workers decode), and end when that process ends, however it ends."""
    global _IS_WORKER
    _IS_WORKER = True
    with contextlib.suppress(OSError):  # not permitted: run at normal priority
        os.nice(10)
    _quiet_output()
    _end_with(owner)


def _quiet_output() -> None:
    """Send a worker's stdout and stderr to /dev/null: codecs print there (GDCM's warnings, a C++ runtime's
    'terminate called ...' before an abort), and medview reports what went wrong in its own one line."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)


def _end_with(owner: int) -> None:
    """End this worker once the process ``owner`` (medview, which owns the pool) is gone.

    A worker holds both ends of the pool's pipes, and a fork server's worker keeps the fork server alive
    (and the fork server it), so after a crash or ``os._exit`` of medview the workers would wait for work
    forever (found as orphaned workers after a crash test).  The owner's start time is checked too, so a
    reused process id is not taken for it."""
    started = process_started(owner)
    if started is None:
        os._exit(0)  # the owner died before this worker started

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if not is_running(owner, started):
                os._exit(0)

    threading.Thread(target=watch, name="medview-owner-watch", daemon=True).start()


def prefer_forkserver() -> None:
    """Always start workers from the fork server (the GUI calls this: Qt's own threads are invisible
    to :func:`threading.active_count`, and forking a process that runs them can deadlock)."""
    global _FORKSERVER_ONLY
    _FORKSERVER_ONLY = True


def process_pool() -> ProcessPoolExecutor:
    """The shared pool, started on first use."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            single_threaded = threading.active_count() == 1 and threading.current_thread() is threading.main_thread()
            if single_threaded and not _FORKSERVER_ONLY:
                ctx = mp.get_context("fork")
            else:
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
            _POOL = ProcessPoolExecutor(max_workers=worker_count(), mp_context=ctx, initializer=_init_worker,
                                        initargs=(os.getpid(),))
        return _POOL


def start_method() -> str | None:
    """How the running pool started its workers ('fork' or 'forkserver'), None without a pool."""
    with _LOCK:
        return None if _POOL is None else _POOL._mp_context.get_start_method()


def disable_pool(reason: BaseException | None = None) -> None:
    """Stop using processes for the rest of this session (after a worker failed to start or died)."""
    global _DISABLED
    _DISABLED = True
    shutdown()


def warm_up() -> None:
    """Start the workers now (e.g. while the GUI draws its window) so that the first load is fast."""
    if not pool_available():
        return
    try:
        pool = process_pool()
        for fut in [pool.submit(os.getpid) for _ in range(worker_count())]:
            fut.result()
    except PoolFailure as exc:
        disable_pool(exc)


def start_in_background() -> None:
    """For the GUI: workers from the fork server (:func:`prefer_forkserver`), started in a background thread
    now, once.  Called before the GUI's own imports (1.3 s), so that the fork server's (0.3 s) run beside
    them on another core instead of beside the window's construction; the first scan of a study needs the
    workers."""
    global _WARMING
    prefer_forkserver()
    with _LOCK:
        if _WARMING is not None:
            return
        _WARMING = threading.Thread(target=warm_up, name="medview-warm-up", daemon=True)
    _WARMING.start()


def reset_pool() -> None:
    """Drop a pool whose worker died (e.g. a codec aborted on a damaged file): the next use starts a new one."""
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, cancel_futures=True)  # its workers have ended: releases its locks now


def shutdown() -> None:
    global _POOL
    with _LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)
