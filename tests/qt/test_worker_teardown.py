"""A job that outlives its QApplication's objects (a script that closes the window and returns while a job
still runs) ends quietly: the thread printed 'RuntimeError: Signal source has been deleted' with a traceback."""

from __future__ import annotations

import shiboken6

from medview.core.errors import CancelledError, MedviewError
from medview.qt.workers import Worker


def _ok(task=None):
    return 1


def _cancelled(task=None):
    raise CancelledError("Cancelled by the user")


def _fails(task=None):
    raise MedviewError("bad input")


def test_a_worker_whose_signals_are_gone_ends_without_an_error(qtbot) -> None:
    for fn in (_ok, _cancelled, _fails):
        worker = Worker(fn)
        shiboken6.delete(worker.signals)  # what the application's teardown does to it
        worker.run()  # raised RuntimeError from the emit
        assert worker.done
