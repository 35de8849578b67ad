"""Jobs that hold the GIL run in the worker-process pool, with the same result and a working cancel."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from medview.app.offload import run_in_process
from medview.core.errors import CancelledError
from medview.core.tasks import TaskContext


def _pid_and_sum(array: np.ndarray) -> tuple[int, float]:
    return os.getpid(), float(array.sum())


def _slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_runs_in_another_process_with_the_same_result() -> None:
    array = np.arange(1000, dtype=np.float64)
    pid, total = run_in_process(_pid_and_sum, array)
    assert total == float(array.sum())
    from medview.io.dicom import parallel

    if parallel.pool_available():
        assert pid != os.getpid()


def test_cancel_returns_within_the_polling_interval() -> None:
    task = TaskContext()
    threading.Timer(0.2, task.token.cancel).start()
    start = time.perf_counter()
    with pytest.raises(CancelledError):
        run_in_process(_slow, 3.0, task=task)
    assert time.perf_counter() - start < 1.0


def _imports_requests(task=None) -> str:
    import requests  # dicomweb-client's transport: a DICOMweb retrieve from the PACS panel runs in a job process

    return requests.__name__


def test_a_job_process_can_import_what_the_decode_workers_may_not() -> None:
    """The fork server that starts the job processes preloads medview.io.dicom.worker_imports, which blocks
    ``requests`` for the decode workers; the PACS panel's WADO-RS retrieve then failed with 'import of requests
    halted; None in sys.modules'."""
    from medview.io.dicom import parallel

    if not parallel.isolation_available():
        pytest.skip("no job processes here")
    assert run_in_process(_imports_requests, own_process=True) == "requests"
