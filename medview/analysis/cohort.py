"""Running one function over every case of a cohort on Dask distributed: locally or on a cluster.

The engine knows nothing about images or pipeline steps: it gets a list of cases, a picklable function
``fn(case, out_dir) -> dict`` that does one case and returns a record (``{"status": "ok" | "error", ...}``),
and a predicate ``is_done(case)`` that says which cases a previous run already finished (resume).  It
submits one Dask task per unfinished case, gathers results as they complete with a progress bar and ETA on
stderr (plain lines when stderr is not a terminal: :mod:`medview.analysis.cohort_progress`), and returns the
records and counts.

Memory: given an estimate per case (``memory=``), cases that would not fit in a worker's memory limit are named
before anything runs, and a run where no case fits is refused.  A worker that its nanny restarts for going over
the limit is reported when it happens (Dask's ``worker-restart-memory`` event), and a case whose workers all died
that way gets an error saying so, with the limit and ``--memory-limit``, instead of a bare ``KilledWorker``.

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

from .cohort_progress import CohortProgress

# Environment of the local worker processes: numeric libraries get as many threads as the worker has.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                   "NUMEXPR_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
DEFAULT_MEMORY_LIMIT = "2GB"
WORKER_WAIT_S = 60.0
POLL_S = 0.1
STOP_TIMEOUT_S = 1.0
CLUSTER_POLL_S = 1.0  # how often the scheduler is asked which worker runs what and whether one ran out of memory
KILL_EVENT_WAIT_S = 1.0
MEMORY_EVENT = "worker-restart-memory"  # what a nanny logs on the scheduler when it restarts its worker for memory


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


def _format_size(n: float) -> str:
    """Bytes as ``--memory-limit`` takes them: ``2GB``, ``1.5GB``, ``512MB``."""
    if n >= 1e9:
        return f"{n / 1e9:.1f}".rstrip("0").rstrip(".") + "GB"
    return f"{max(1, round(n / 1e6))}MB"


def terminate_fraction() -> float:
    """The fraction of its memory limit at which a worker's nanny restarts it (Dask's config, 0.95 by default)."""
    import dask

    value = dask.config.get("distributed.worker.memory.terminate", 0.95)
    return float(value) if value else 1.0


def memory_estimates(cases: Sequence[Any], memory: Callable[[Any], Any],
                     case_id: Callable[[Any], str] = _case_id) -> dict[str, tuple[float | None, str]]:
    """``memory(case)`` for each case as case id -> (bytes or None, how it was estimated)."""
    out: dict[str, tuple[float | None, str]] = {}
    for c in cases:
        try:
            estimate = memory(c)
        except Exception:  # an estimate only: the case runs, and the reader or the nanny stops it if need be
            estimate = None
        need, detail = estimate if isinstance(estimate, tuple) else (estimate, "")
        out[case_id(c)] = (None if need is None else float(need), detail or "")
    return out


def check_memory(estimates: dict[str, tuple[float | None, str]], limits: Sequence[int]) -> list[str]:
    """Warnings for the cases whose estimated memory is over what a worker may use (the smallest ``limits``, at
    the nanny's terminate fraction); a :class:`MedviewError` when no case fits in the largest worker."""
    limits = [n for n in limits if n]
    if not limits or not estimates:
        return []
    fraction = terminate_fraction()
    smallest, largest = min(limits), max(limits)
    over: list[tuple[str, float, str]] = []
    fits_somewhere = False
    for name, (need, detail) in estimates.items():
        if need is None or need <= largest * fraction:
            fits_somewhere = True
        if need is not None and need > smallest * fraction:
            over.append((name, need, detail))
    suggest = _format_size(max(n for _, n, _ in over) / fraction * 1.1) if over else ""
    if over and not fits_somewhere:
        name, need, detail = min(over, key=lambda o: o[1])
        raise MedviewError(
            f"No case fits in a worker's {_format_size(largest)} memory limit: the smallest, {name}, needs about "
            f"{_format_size(need)}{f' ({detail})' if detail else ''} and Dask restarts a worker at "
            f"{fraction:.0%} of its limit; raise --memory-limit (e.g. --memory-limit {suggest})")
    warnings = [f"warning: case {name} may need about {_format_size(need)} of memory"
                f"{f' ({detail})' if detail else ''}, more than a worker may use ({fraction:.0%} of its "
                f"{_format_size(smallest)} limit): its worker may be restarted and the case fail; raise "
                f"--memory-limit (e.g. --memory-limit {suggest})" for name, need, detail in over[:10]]
    if len(over) > 10:
        warnings.append(f"warning: {len(over) - 10} more case(s) may not fit in a worker's memory either")
    return warnings


class _KilledWorkerLogFilter(logging.Filter):
    """Drops two lines of the in-process scheduler that a worker's death causes and the run reports itself: "marked
    as failed because N workers died" (the case's error says why) and "Couldn't gather keys" (a finished case's
    result was on the dead worker: the scheduler computes it again and the gather waits for it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "workers died while trying to run it" not in text and not text.startswith("Couldn't gather keys")


def _suspicious_counts(dask_scheduler, keys: list[str]) -> dict[str, int]:
    """On the scheduler: how many workers died while running each key (Dask's own ``TaskState.suspicious``)."""
    return {k: ts.suspicious for k in keys if (ts := dask_scheduler.tasks.get(k)) is not None}


class _ClusterWatch:
    """Which workers ran each case, and the memory restarts the nannies reported (polled, Dask's own events)."""

    def __init__(self, client, limit: int | None) -> None:
        self.client, self.limit = client, limit
        self.ran_on: dict[str, set[str]] = {}
        self.seen_events = 0
        self.memory_kills: list[dict] = []  # {"worker", "rss", "keys"}
        self.last_poll = 0.0
        self.running = 0
        self.last_processing: dict[str, Any] = {}
        self.needs: dict[str, float] = {}  # task key -> estimated bytes, for the limit to suggest
        self.known_limits: dict[str, int] = {}  # worker address -> memory limit, as the run started
        self.threads: dict[str, int] = {}  # worker address -> threads
        self._unreported: list[dict] = []
        self.watched: set[str] = set()  # keys of the cases not finished yet
        self.suspicious: dict[str, int] = {}

    def take_unreported(self) -> list[dict]:
        """The memory restarts found since the last call (to show them once)."""
        out, self._unreported = self._unreported, []
        return out

    def poll(self, force: bool = False) -> list[dict]:
        """New memory restarts since the last poll (each with the keys that worker was running)."""
        now = time.monotonic()
        if not force and now - self.last_poll < CLUSTER_POLL_S:
            return []
        self.last_poll = now
        try:
            processing = self.client.processing()
            events = self.client.get_events(MEMORY_EVENT)
        except Exception:  # pragma: no cover - the scheduler went away; the futures will say so
            return []
        self.running = 0
        for worker, keys in processing.items():
            ours = [str(k) for k in keys if str(k).startswith("medview-case-")]
            for key in ours:
                self.ran_on.setdefault(key, set()).add(worker)
            # a worker is given a little more than it has threads for (Dask's worker-saturation): those wait there
            self.running += min(len(ours), self.threads.get(worker, 1))
        new = []
        fresh = list(events)[self.seen_events:]
        died_running: set[str] = set()
        if fresh and self.watched:  # which of our cases were on a worker that died since the last look
            with contextlib.suppress(Exception):
                counts = self.client.run_on_scheduler(_suspicious_counts, keys=list(self.watched))
                died_running = {k for k, n in counts.items() if n > self.suspicious.get(k, 0)}
                self.suspicious.update(counts)
        for _, event in fresh:
            worker = event.get("worker")  # gone from `processing` once dead: what it ran at the last poll counts
            keys = sorted({str(k) for k in (*self.last_processing.get(worker, ()), *processing.get(worker, ()))}
                          or died_running)
            kill = {"worker": worker, "rss": event.get("rss"), "keys": keys}
            self.memory_kills.append(kill)
            self._unreported.append(kill)
            new.append(kill)
        self.seen_events = len(events)
        self.last_processing = processing
        return new

    def kills_for(self, key: str, last_worker: str | None) -> list[dict]:
        workers = self.ran_on.get(key, set()) | ({last_worker} if last_worker else set())
        return [k for k in self.memory_kills if key in k["keys"] or k["worker"] in workers]

    def worker_limit(self, worker: str | None) -> int | None:
        """The memory limit of ``worker`` (usually dead by now: as known at the start, else as the scheduler says)."""
        if self.known_limits.get(worker or ""):
            return self.known_limits[worker or ""]
        with contextlib.suppress(Exception):
            info = self.client.scheduler_info(n_workers=-1).get("workers", {})
            if worker in info and info[worker].get("memory_limit"):
                return int(info[worker]["memory_limit"])
        return self.limit


def _failed_future_record(case: Any, future, watch: _ClusterWatch | None = None) -> dict:
    """An error record for a task that raised outside ``fn`` (its workers kept dying, or it was lost)."""
    try:
        exc = future.exception(timeout=5)
    except Exception as other:  # pragma: no cover - the scheduler went away
        exc = other
    name = type(exc).__name__ if exc is not None else future.status
    if name == "KilledWorker":
        last = getattr(getattr(exc, "last_worker", None), "address", None)
        tries = getattr(exc, "allowed_failures", None)
        tries_text = f"{tries + 1} times" if isinstance(tries, int) else "repeatedly"
        kills: list[dict] = []
        # the nanny's event may reach the scheduler just after the worker's death: look again for up to a second
        deadline = time.monotonic() + KILL_EVENT_WAIT_S
        while watch is not None:
            watch.poll(force=True)
            kills = watch.kills_for(str(future.key), last)
            if kills or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        limit = getattr(getattr(exc, "last_worker", None), "memory_limit", None) or (
            watch.limit if watch is not None else None)
        if kills:
            rss = max((k["rss"] or 0) for k in kills)
            limit_text = f"{terminate_fraction():.0%} of its {_format_size(limit) + ' ' if limit else ''}memory limit"
            need = watch.needs.get(str(future.key), 0.0) / terminate_fraction() * 1.1 if watch is not None else 0.0
            suggest = _format_size(max((limit or rss) * 2, need))
            message = (f"the worker ran out of memory: it used {_format_size(rss)}, over {limit_text}, and Dask's "
                       f"nanny restarted it; tried {tries_text}; raise --memory-limit "
                       f"(e.g. --memory-limit {suggest}) or give the case less to do")
        else:
            message = (f"the worker running this case died {tries_text} without its nanny reporting memory over "
                       f"the {_format_size(limit) + ' ' if limit else ''}limit (a crash in a library, or the system "
                       "killed it, e.g. its out-of-memory killer: then raise --memory-limit only if the machine "
                       f"has the memory, or run fewer --workers); see the worker logs ({exc})")
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
               cost: Callable[[Any], float] | None = None, task: TaskContext | None = None,
               memory: Callable[[Any], Any] | None = None, progress_prefix: str = "medview") -> dict[str, Any]:
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
    memory
        ``memory(case)``: the bytes a case is expected to need (or ``(bytes, how it was estimated)``, or None):
        the cases over a worker's limit are named on stderr before any runs, and when none fits the run is
        refused with a :class:`MedviewError` (a local cluster: before it starts).
    progress
        Progress on stderr: a bar on a terminal, plain lines otherwise (one per case, and one at most every
        few seconds between), each starting with ``progress_prefix``.

    Returns
    -------
    dict
        ``cases`` (all), ``skipped`` (done before), ``ran``, ``ok``, ``failed``, ``seconds`` (wall time of
        the run, cluster start included), ``workers`` (count when the run started), ``scheduler``
        (address), ``records`` (case id -> record, for the cases run now), ``warnings`` (memory estimates
        over the limit) and ``memory_restarts`` (workers restarted for memory during the run).
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
                               "failed": 0, "seconds": 0.0, "workers": 0, "scheduler": scheduler, "records": {},
                               "warnings": [], "memory_restarts": 0}
    if not todo:
        report(task, 1.0, "All cases were already done", force=True)
        summary["seconds"] = time.perf_counter() - started
        return summary
    n_workers = workers or max(1, min(os.cpu_count() or 1, len(todo)))
    estimates = memory_estimates(todo, memory, case_id) if memory is not None else {}
    if scheduler is None:  # before the cluster starts: a refusal costs nothing
        summary["warnings"] = check_memory(estimates, [limit or 0])

    from distributed import as_completed

    client, cluster = _start_client(n_workers, scheduler, limit, threads_per_worker)
    run_token = uuid.uuid4().hex[:8]
    futures: dict[Any, Any] = {}
    bar = CohortProgress(len(todo), enabled=progress, prefix=progress_prefix)
    watch = _ClusterWatch(client, limit)
    log_filter = _KilledWorkerLogFilter()
    logging.getLogger("distributed.scheduler").addFilter(log_filter)
    try:
        info = client.scheduler_info(n_workers=-1).get("workers", {})
        summary["workers"] = len(info)
        watch.known_limits = {addr: int(w.get("memory_limit") or 0) for addr, w in info.items()}
        watch.threads = {addr: int(w.get("nthreads") or 1) for addr, w in info.items()}
        summary["scheduler"] = client.scheduler.address
        if scheduler is not None:  # the running workers' own limits
            summary["warnings"] = check_memory(estimates, [int(w.get("memory_limit") or 0) for w in info.values()])
        for line in summary["warnings"]:
            bar.note(line)
        order = _priorities(todo, cost)
        for c, priority in zip(todo, order, strict=True):
            key = f"medview-case-{case_id(c)}-{run_token}"
            future = client.submit(run_task, fn, c, out_dir, threads_per_worker, env, key=key, pure=False,
                                   retries=retries, priority=priority)
            futures[future] = c
            watch.needs[key] = estimates.get(case_id(c), (None, ""))[0] or 0.0
            watch.watched.add(key)
        done = 0
        pending = as_completed(list(futures), loop=client.loop)
        names = {str(f.key): case_id(c) for f, c in futures.items()}

        def note_kills() -> None:
            for kill in watch.take_unreported():
                cases_hit = ", ".join(names.get(k, k) for k in kill["keys"]) or "a case"
                worker_limit = watch.worker_limit(kill["worker"])
                bar.note(f"a worker ran out of memory running {cases_hit} ({_format_size(kill['rss'] or 0)} used, "
                         f"its limit {_format_size(worker_limit) if worker_limit else 'unknown'}); Dask restarted "
                         "it and may try the case again (raise --memory-limit if this repeats)")

        while not pending.is_empty():
            watch.poll()
            note_kills()
            ready = pending.next_batch(block=False)
            if not ready:
                check_cancel(task)  # a cancel is seen within POLL_S even while long cases run
                bar.tick(running=watch.running)
                time.sleep(POLL_S)
                continue
            for future in ready:
                c = futures.pop(future)
                watch.watched.discard(str(future.key))
                record = (future.result() if future.status == "finished"
                          else _failed_future_record(c, future, watch))
                note_kills()  # the restarts found while looking into a failure come before its line
                # forget the result on the cluster: a worker lost later must not make the scheduler run the case
                # again (its outputs are on disk; the record is here)
                future.release()
                summary["records"][case_id(c)] = record
                summary["ok" if record.get("status") == "ok" else "failed"] += 1
                done += 1
                bar.case_finished(case_id(c), record.get("status") == "ok", record.get("seconds"),
                                  record.get("error"))
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
        bar.close()
        logging.getLogger("distributed.scheduler").removeFilter(log_filter)
        summary["memory_restarts"] = len(watch.memory_kills)
        futures.clear()
        client.close()
        if cluster is not None:
            cluster.close()
    summary["seconds"] = time.perf_counter() - started
    return summary
