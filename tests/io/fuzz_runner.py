"""Run ``medview info`` / ``medview convert`` on fuzz cases and judge each run.

Each run is ``medview.cli.main.main([...])`` in a process forked from this one (medview, pydicom and the
codecs imported once, here), with its own process group, working folder, stdout and stderr files: a codec
that aborts kills that run only and is counted as a death, a hang is killed at the time limit, and
``wait4`` gives the run's peak memory (its decode workers included once they are waited for).

A run passes when it exits 0 or 3 (bad input), within the time limit, its peak memory above an idle run's
stays within the budget plus a fixed allowance, stderr holds only medview's own lines ("medview: error:
..." once, "warning: ..."), and nothing appears outside the output folder.

Long run (not in ``make test``)::

    .venv/bin/python -m tests.io.fuzz_runner --cases 3000 --seed 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

TIME_LIMIT_S = 10.0
BUDGET_MB = 96  # MEDVIEW_MEMORY_BUDGET_MB for the runs
# what a run may use above an idle forked run besides the budget: codec buffers, pydicom's copy of the file
ALLOWANCE_MB = 32
OWN_LINE = re.compile(r"^(medview: error: .+|warning: .+)$")


@dataclass
class Outcome:
    case: str
    verb: str
    exit_code: int | None  # None: killed by a signal or at the time limit
    signal: int | None
    seconds: float
    peak_mb: float  # above an idle run
    stderr: str
    stray_files: list[str] = field(default_factory=list)
    problem: str = ""


def _preload() -> None:
    """Import what the runs need once, here, so that forked runs neither pay nor count it."""
    import medview.app.commands
    import medview.cli.main
    import medview.io.dicom.decode
    import medview.io.writers  # noqa: F401

    for name in ("gdcm", "libjpeg", "openjpeg", "jpeg_ls", "rle", "pylibjpeg", "SimpleITK", "nibabel"):
        with contextlib.suppress(ImportError):
            __import__(name)


def _child(argv: list[str], cwd: str, out_path: str, err_path: str) -> None:
    os.setpgid(0, 0)
    os.chdir(cwd)
    for fd, path in ((1, out_path), (2, err_path)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    warnings.resetwarnings()  # as the `medview` command starts: Python's default filters, not pytest's
    warnings.simplefilter("default")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=ImportWarning)
    warnings.filterwarnings("ignore", category=ResourceWarning)
    code = 1
    try:
        from medview.cli.main import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            from medview.io.dicom import parallel

            parallel.shutdown()
        except BaseException:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_one(argv: list[str], cwd: str,
            time_limit: float = TIME_LIMIT_S) -> tuple[int | None, int | None, float, int, str]:
    """(exit code, signal, seconds, peak RSS in KB, stderr) of ``medview ARGV`` in a forked process."""
    out_path, err_path = os.path.join(cwd, ".stdout"), os.path.join(cwd, ".stderr")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(argv, cwd, out_path, err_path)
    code = sig = None
    rusage = None
    while True:
        got, status, rusage = os.wait4(pid, os.WNOHANG)
        if got:
            break
        if time.monotonic() - start > time_limit:
            _kill_group(pid)
            _, status, rusage = os.wait4(pid, 0)
            sig = signal.SIGKILL
            break
        time.sleep(0.005)
    seconds = time.monotonic() - start
    _kill_group(pid)  # decode workers left behind by a run that died
    if sig is None:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
        else:
            code = os.WEXITSTATUS(status)
    try:
        err = Path(err_path).read_text(errors="replace")
    except OSError:
        err = ""
    for p in (out_path, err_path):
        if os.path.exists(p):
            os.unlink(p)
    return code, sig, seconds, rusage.ru_maxrss, err


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def judge(case: str, verb: str, code: int | None, sig: int | None, seconds: float, peak_mb: float, err: str,
          stray: list[str], time_limit: float = TIME_LIMIT_S, budget_mb: float = BUDGET_MB) -> Outcome:
    problem = ""
    lines = [line for line in err.splitlines() if line.strip()]
    if sig is not None and seconds > time_limit:
        problem = f"hang: killed after {seconds:.1f} s"
    elif sig is not None:
        problem = f"process died ({signal.Signals(sig).name})"
    elif "Traceback" in err:
        problem = "traceback"
    elif code not in (0, 3):
        problem = f"exit code {code}"
    elif seconds > time_limit:
        problem = f"slow: {seconds:.1f} s"
    elif peak_mb > budget_mb + ALLOWANCE_MB:
        problem = f"memory: {peak_mb:.0f} MB above an idle run"
    elif any(not OWN_LINE.match(line) for line in lines):
        problem = "foreign stderr"
    elif sum(line.startswith("medview: error:") for line in lines) != (1 if code == 3 else 0):
        problem = "not one error line"
    elif stray:
        problem = "wrote outside the output folder"
    return Outcome(case, verb, code, sig, seconds, peak_mb, err[-2000:], stray, problem)


def run_cases(paths: list[Path], work: Path, verbs: tuple[str, ...] = ("info", "convert"),
              time_limit: float = TIME_LIMIT_S, budget_mb: float = BUDGET_MB, log=None) -> list[Outcome]:
    """Every verb on every case; returns one :class:`Outcome` per run."""
    os.environ["MEDVIEW_MEMORY_BUDGET_MB"] = str(budget_mb)
    os.environ.setdefault("MEDVIEW_DATA_DIR", str(work / "data"))
    _preload()
    scratch = work / "cwd"
    out_dir = work / "out"
    scratch.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline_kb = min(run_one(["--version"], str(scratch))[3] for _ in range(3))
    outcomes = []
    for path in paths:
        before = set(os.listdir(path.parent))
        for verb in verbs:
            target = out_dir / "out.nii.gz"
            argv = ["info", str(path)] if verb == "info" else ["convert", str(path), str(target)]
            code, sig, seconds, peak_kb, err = run_one(argv, str(scratch), time_limit)
            stray = [n for n in os.listdir(scratch)] + sorted(set(os.listdir(path.parent)) - before)
            outcome = judge(path.name, verb, code, sig, seconds, max(peak_kb - baseline_kb, 0) / 1024, err, stray,
                            time_limit, budget_mb)
            outcomes.append(outcome)
            if log and outcome.problem:
                log(f"{outcome.problem}: {verb} {path.name}: {err.strip()[-300:]}")
            for name in os.listdir(out_dir):
                os.unlink(out_dir / name)
            for name in os.listdir(scratch):
                p = scratch / name
                p.unlink() if p.is_file() else None
    return outcomes


def summarise(outcomes: list[Outcome]) -> dict:
    problems: dict[str, int] = {}
    for o in outcomes:
        if o.problem:
            key = o.problem.split(":")[0]
            problems[key] = problems.get(key, 0) + 1
    return {
        "runs": len(outcomes), "failed": sum(bool(o.problem) for o in outcomes), "problems": problems,
        "deaths": sum(o.signal is not None and o.seconds <= TIME_LIMIT_S for o in outcomes),
        "tracebacks": sum(o.problem == "traceback" for o in outcomes),
        "over_time_limit": sum(o.seconds > TIME_LIMIT_S for o in outcomes),
        "max_seconds": round(max((o.seconds for o in outcomes), default=0), 2),
        "max_peak_mb": round(max((o.peak_mb for o in outcomes), default=0), 1),
        "exit_0": sum(o.exit_code == 0 for o in outcomes), "exit_3": sum(o.exit_code == 3 for o in outcomes),
    }


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - the long run
    from tests.io.fuzz_mutations import generate, seed_files, write_cases

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--json", help="write every failed run here")
    parser.add_argument("--summary", help="write the summary here too")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medview-fuzz-") as tmp:
        work = Path(tmp)
        seeds = seed_files(work / "seeds")
        started = time.monotonic()
        failed = []
        outcomes = []
        step = 100
        for first in range(args.start, args.start + args.cases, step):
            n = min(step, args.start + args.cases - first)
            paths = write_cases(generate(seeds, n, seed=args.seed, start=first), work / "cases")
            got = run_cases(paths, work, log=None if args.quiet else (lambda m: print(m, flush=True)))
            outcomes.extend(got)
            failed.extend(asdict(o) for o in got if o.problem)
            for p in paths:
                p.unlink()
            if not args.quiet:
                print(f"{first + n} cases, {len(outcomes)} runs, {len(failed)} failed, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        summary = summarise(outcomes)
        summary.update(seeds=len(seeds), cases=args.cases, seed=args.seed, seconds=round(time.monotonic() - started))
        print(json.dumps(summary, indent=1))
        if args.json:
            Path(args.json).write_text(json.dumps(failed, indent=1))
        if args.summary:
            Path(args.summary).write_text(json.dumps(summary, indent=1))
    return 0 if not summary["failed"] else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

