"""Running one function over every case of a cohort on Dask distributed: locally or on a cluster.

The engine knows nothing about images or pipeline steps: it gets a list of cases, a picklable function
``fn(case, out_dir) -> dict`` that does one case and returns a record (``{"status": "ok" | "error", ...}``),
and a predicate ``is_done(case)`` that says which cases a previous run already finished (resume).  It
submits one Dask task per unfinished case, gathers results as they complete with a progress bar and ETA on
stderr, and returns the records and counts.

Why Dask distributed (and not a process pool): the same code runs on a laptop (a
:class:`distributed.LocalCluster` of worker *processes*, each with a memory limit enforced by its nanny)
and on a cluster (``scheduler="tcp://host:8786"``); a worker that dies (killed, out of memory, node lost)
has its task rescheduled on another worker by the scheduler; and the dashboard shows the run.

Failures: ``fn`` should catch its own exceptions and return an error record; the task wrapper here also
catches anything ``fn`` lets through, so one failing case never stops the others.  A case whose worker
keeps dying (``distributed.scheduler.allowed-failures`` times, 3 by default) is recorded as an error with
the reason.  Ctrl-C cancels the remaining tasks, closes the local cluster and re-raises; the finished
cases are kept, so running again resumes.

Threads: each local worker has one thread by default, and the numeric libraries inside it are limited
to that many threads too (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` in the
worker's environment, and SimpleITK's global thread count set in the task), so N workers really use N
cores instead of N x all cores fighting each other.

Running on a cluster (SLURM, PBS, SGE, LSF) with dask-jobqueue
---------------------------------------------------------------
Workers need the same Python environment (medview installed) and must see the cohort's files and the
output folder at the same paths (a shared file system).  Two ways:

1. From Python, let dask-jobqueue submit the worker jobs and pass its scheduler address::

       from dask_jobqueue import SLURMCluster          # or PBSCluster, SGECluster, LSFCluster
       cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00",
                              job_extra_directives=["--partition=short"],
                              job_script_prologue=["source /path/to/medview/.venv/bin/activate"])
       cluster.scale(jobs=20)                          # or cluster.adapt(minimum_jobs=1, maximum_jobs=50)
       from medview.app.batch import run_batch
       run_batch("pipeline.yaml", "cohort.csv", "/shared/out", scheduler=cluster.scheduler_address)

   (``medview batch pipeline.yaml cohort.csv --out /shared/out --scheduler tcp://HOST:PORT`` from another
   shell does the same while the cluster object is alive.)

2. Without dask-jobqueue: start a scheduler in one job and workers in others, then point medview at it::

       # job 1 (or the login node):
       dask scheduler --port 8786 --scheduler-file /shared/scheduler.json
       # job array / each worker job (one process, one thread, a memory limit below the job's):
       dask worker --scheduler-file /shared/scheduler.json --nworkers 1 --nthreads 1 --memory-limit 4GB
       # then:
       medview batch pipeline.yaml cohort.csv --out /shared/out --scheduler tcp://SCHEDULER_HOST:8786

   Each worker job should export ``OMP_NUM_THREADS=1`` (the nanny sets it for the worker process by
   default).  Memory per worker is bounded by ``--memory-limit``: a worker over it is restarted and its
   case rescheduled.  Re-running the same command after a job ends or is pre-empted resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from medview.core.errors import CancelledError, MedviewError
from medview.core.tasks import TaskContext, check_cancel, report

# Environment of the local worker processes: numeric libraries get as many threads as the worker has.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
DEFAULT_MEMORY_LIMIT = "2GB"
WORKER_WAIT_S = 60.0
POLL_S = 0.1
STOP_TIMEOUT_S = 1.0


def _case_id(case: Any) -> str:
    return str(getattr(case, "case_id", case))


def limit_threads(n: int) -> None:
    """Limit the numeric libraries of this process to ``n`` threads (called in each task on the worker)."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(n)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
    except ImportError:  # pragma: no cover - SimpleITK is a dependency of medview
        pass
    torch = sys.modules.get("torch")  # only if the case function already uses it
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)


def run_task(fn: Callable[[Any, str], dict], case: Any, out_dir: str, threads: int,
             env: dict[str, str] | None) -> dict:
    """What a worker runs for one case: thread limits, then ``fn``; never raises for a failing case."""
    started = time.perf_counter()
    if env:
        os.environ.update({k: str(v) for k, v in env.items()})
    limit_threads(threads)
    try:
        record = fn(case, out_dir)
    except Exception as exc:  # the case function should have caught it; this keeps the other cases going
        message = str(exc) if isinstance(exc, MedviewError) else f"{type(exc).__name__}: {exc}"
        record = {"status": "error", "error": message}
    if not isinstance(record, dict):
        record = {"status": "ok", "result": record}
    record.setdefault("case_id", _case_id(case))
    record.setdefault("status", "ok")
    record.setdefault("seconds", time.perf_counter() - started)
    record["worker_pid"] = os.getpid()
    return record


def parse_memory_limit(value: str | int | float | None) -> int | None:
    """``"2GB"``, ``"512MiB"``, ``2e9`` -> bytes (None stays None); a clear error for anything else or < 64 MB."""
    if value is None:
        return None
    from dask.utils import parse_bytes

    try:
        n = int(parse_bytes(value)) if isinstance(value, str) else int(value)
    except (ValueError, TypeError):
        raise MedviewError(f"The memory limit must look like 2GB or 512MB, got {value!r}") from None
    if n < 64 * 2**20:
        raise MedviewError(f"The memory limit {value!r} is below 64 MB: too small for a worker")
    return n


def check_scheduler_address(address: str) -> str:
    """``tcp://host:port`` (or ``tls://``, or ``host:port``, taken as tcp) with a clear error otherwise."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text
    host, _, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls", "ucx", "ws", "wss", "inproc") or not host or not port.isdigit():
        raise MedviewError(f"A scheduler address looks like tcp://host:8786, got {address!r}")
    return f"{scheme}://{rest}"


@contextlib.contextmanager
def _workers_ignore_sigint():
    """Start worker processes with Ctrl-C ignored: a terminal sends it to the whole process group, but only this
    process should react (cancel, then stop the workers cleanly) instead of every worker printing a traceback.
    Ignored signals are inherited by child processes; Python then leaves SIGINT ignored."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def local_cluster(workers: int, memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT, threads_per_worker: int = 1):
    """A :class:`distributed.LocalCluster` of ``workers`` processes as the engine starts them: ``threads_per_worker``
    threads each (numeric libraries limited to as many), ``memory_limit`` each, no dashboard, Ctrl-C left to the
    caller.  Close it when done (``with local_cluster(2) as cluster: ...``)."""
    from distributed import LocalCluster

    limit = parse_memory_limit(memory_limit) if isinstance(memory_limit, str) else memory_limit
    env = {name: str(threads_per_worker) for name in THREAD_ENV_VARS}
    with _workers_ignore_sigint():
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                            memory_limit=limit if limit is not None else DEFAULT_MEMORY_LIMIT,
                            dashboard_address=None, silence_logs=logging.ERROR, env=env,
                            # no dashboard (and its HTTP server on a free loopback port, not on 8787)
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})


def _start_client(workers: int, scheduler: str | None, memory_limit: int | None, threads: int):
    """A client on a new LocalCluster (returned too, to close) or on the running scheduler at ``scheduler``."""
    from distributed import Client

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise MedviewError(f"Cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            client.close()
            raise MedviewError(f"The Dask scheduler at {scheduler} has no workers (waited {WORKER_WAIT_S:.0f} s); "
                               "start some with `dask worker " + scheduler + "`") from None
        return client, None
    cluster = local_cluster(workers, memory_limit, threads)
    try:
        client = Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


async def _kill_workers(cluster, timeout: float) -> None:
    """Stop a LocalCluster's worker processes within about ``timeout`` seconds, running tasks or not."""
    import asyncio

    await asyncio.gather(*(w.kill(timeout=timeout) for w in list(cluster.workers.values()) if hasattr(w, "kill")),
                         return_exceptions=True)


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
                disable=not (enabled and sys.stderr.isatty()), desc="cases")


def _failed_future_record(case: Any, future) -> dict:
    """An error record for a task that raised outside ``fn`` (its workers kept dying, or it was lost)."""
    try:
        exc = future.exception(timeout=5)
    except Exception as other:  # pragma: no cover - the scheduler went away
        exc = other
    name = type(exc).__name__ if exc is not None else future.status
    if name == "KilledWorker":
        message = ("the worker running this case died repeatedly (out of memory or killed); "
                   f"see the worker logs: {exc}")
    else:
        message = f"{name}: {exc}"
    return {"case_id": _case_id(case), "status": "error", "error": message, "seconds": None}


def _priorities(cases: Sequence[Any], cost: Callable[[Any], float] | None) -> list[int]:
    """Dask priorities (higher runs first): by decreasing cost, ties in cohort order; cohort order without costs."""
    n = len(cases)
    if cost is None:
        return [n - i for i in range(n)]
    costs = []
    for c in cases:
        try:
            costs.append(float(cost(c)))
        except Exception:  # an estimate only: a case without one goes last, and fails (or not) when it runs
            costs.append(0.0)
    ranked = sorted(range(n), key=lambda i: (-costs[i], i))
    out = [0] * n
    for rank, i in enumerate(ranked):
        out[i] = n - rank
    return out


def run_cohort(cases: Sequence[Any], fn: Callable[[Any, str], dict], out_dir: str | os.PathLike[str], *,
               workers: int | None = None, scheduler: str | None = None,
               memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT, threads_per_worker: int = 1,
               progress: bool = True, retries: int = 1, is_done: Callable[[Any], bool] | None = None,
               case_id: Callable[[Any], str] = _case_id, env: dict[str, str] | None = None,
               cost: Callable[[Any], float] | None = None, task: TaskContext | None = None) -> dict[str, Any]:
    """Run ``fn(case, out_dir)`` for every case not yet done, one Dask task each, and gather the records.

    Parameters
    ----------
    cases
        Picklable case descriptions (e.g. dataclasses with a ``case_id``); ids must be unique.
    fn
        Picklable ``fn(case, out_dir) -> dict`` (a module-level function or a ``functools.partial`` of one):
        does one case, writes its outputs, returns a record with ``status`` ``"ok"`` or ``"error"``.
    workers
        Worker processes of the LocalCluster started here (default: the CPU count, at most the cases to
        run).  Ignored with ``scheduler``.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``) to use instead of a local cluster.
    memory_limit
        Memory per local worker (``"2GB"``); a worker above it is restarted by its nanny and its case
        rescheduled.  With ``scheduler`` the workers' own ``--memory-limit`` applies.
    retries
        Extra attempts Dask makes for a task that raised outside ``fn``.
    is_done
        ``is_done(case) -> bool``: True for cases a previous run finished; they are skipped.
    env
        Environment variables set in the worker process before each case runs.
    cost
        ``cost(case)``: an estimate of a case's work (e.g. its image's size); costlier cases start first, so
        the run does not end with one worker busy on a big case while the others wait.
    task
        Progress (fraction of cases) and cancellation: a cancel stops the run like Ctrl-C, raising
        :class:`~medview.core.errors.CancelledError`.

    Returns
    -------
    dict
        ``cases`` (all), ``skipped`` (done before), ``ran``, ``ok``, ``failed``, ``seconds`` (wall time of
        the run, cluster start included), ``workers`` (count when the run started), ``scheduler``
        (address) and ``records`` (case id -> record, for the cases run now).
    """
    started = time.perf_counter()
    ids = [case_id(c) for c in cases]
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dupes:
        raise MedviewError(f"Case ids must be unique; repeated: {', '.join(dupes[:10])}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise MedviewError(f"The number of workers must be a whole number >= 1, got {workers!r}")
    if threads_per_worker < 1:
        raise MedviewError(f"threads_per_worker must be >= 1, got {threads_per_worker!r}")
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    limit = parse_memory_limit(memory_limit) if scheduler is None else None
    out_dir = os.fspath(out_dir)
    todo = [c for c in cases if not (is_done and is_done(c))]
    summary: dict[str, Any] = {"cases": len(cases), "skipped": len(cases) - len(todo), "ran": 0, "ok": 0,
                               "failed": 0, "seconds": 0.0, "workers": 0, "scheduler": scheduler, "records": {}}
    if not todo:
        report(task, 1.0, "All cases were already done", force=True)
        summary["seconds"] = time.perf_counter() - started
        return summary
    n_workers = workers or max(1, min(os.cpu_count() or 1, len(todo)))

    from distributed import as_completed

    client, cluster = _start_client(n_workers, scheduler, limit, threads_per_worker)
    run_token = uuid.uuid4().hex[:8]
    futures: dict[Any, Any] = {}
    bar = None
    try:
        summary["workers"] = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        summary["scheduler"] = client.scheduler.address
        order = _priorities(todo, cost)
        for c, priority in zip(todo, order, strict=True):
            key = f"medview-case-{case_id(c)}-{run_token}"
            future = client.submit(run_task, fn, c, out_dir, threads_per_worker, env, key=key, pure=False,
                                   retries=retries, priority=priority)
            futures[future] = c
        bar = _progress_bar(len(todo), progress)
        done = 0
        pending = as_completed(list(futures), loop=client.loop)
        while not pending.is_empty():
            ready = pending.next_batch(block=False)
            if not ready:
                check_cancel(task)  # a cancel is seen within POLL_S even while long cases run
                time.sleep(POLL_S)
                continue
            for future in ready:
                c = futures.pop(future)
                record = future.result() if future.status == "finished" else _failed_future_record(c, future)
                # forget the result on the cluster: a worker lost later must not make the scheduler run the case
                # again (its outputs are on disk; the record is here)
                future.release()
                summary["records"][case_id(c)] = record
                summary["ok" if record.get("status") == "ok" else "failed"] += 1
                done += 1
                bar.update(1)
                if record.get("status") != "ok":
                    bar.set_postfix_str(f"{summary['failed']} failed", refresh=False)
                report(task, done / len(todo), f"{done}/{len(todo)} cases ({summary['failed']} failed)")
            check_cancel(task)
        summary["ran"] = done
    except (KeyboardInterrupt, CancelledError):
        client.cancel(list(futures), force=True)
        if cluster is not None:  # our own workers: stop their running cases now, not when they finish
            with contextlib.suppress(Exception):
                cluster.sync(_kill_workers, cluster, STOP_TIMEOUT_S)
        raise
    finally:
        if bar is not None:
            bar.close()
        futures.clear()
        client.close()
        if cluster is not None:
            cluster.close()
    summary["seconds"] = time.perf_counter() - started
    return summary
