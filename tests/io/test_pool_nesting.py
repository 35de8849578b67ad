"""medview's worker processes never start a pool of their own.

A ProcessPoolExecutor's workers are not daemonic, so a job run in the shared pool that loaded a series
started a second pool inside the worker; when the owner shut its pool down at exit, that worker waited for
its own pool's workers and they for it: the process never ended (CI's test session hung for 80 minutes
after its last test passed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _in_worker() -> tuple[bool, bool]:
    from medview.io.dicom import parallel

    return parallel.pool_available(), parallel.in_daemon_process()


def test_a_pool_worker_spreads_no_work_of_its_own() -> None:
    from medview.io.dicom import parallel

    available, inside = parallel.process_pool().submit(_in_worker).result(timeout=120)
    assert (available, inside) == (False, True)
    assert parallel.in_daemon_process() is False  # the owner itself still may


def test_a_process_whose_pool_job_used_the_pool_ends(tmp_path: Path) -> None:
    """The hang itself: a job in a pool worker asks for the pool (as a DICOM load there did), then the
    interpreter exits. Run with two workers whatever this machine has."""
    script = textwrap.dedent("""
        import os
        os.environ["MEDVIEW_WORKERS"] = "2"
        from medview.io.dicom import parallel

        def job():
            if parallel.pool_available():
                return parallel.process_pool().submit(os.getpid).result()
            return os.getpid()

        if __name__ == "__main__":
            pool = parallel.process_pool()
            print(pool.submit(job).result(timeout=60))
    """)
    path = tmp_path / "pool_probe.py"
    path.write_text(script)
    try:
        run = subprocess.run([sys.executable, str(path)], cwd=REPO, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the process did not end within 90 s after its pool job") from exc
    assert run.returncode == 0, run.stderr
