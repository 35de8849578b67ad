"""The controls every tool panel shares for its long job: Run buttons, Cancel, a progress bar.

``JobControls`` starts one :class:`~medview.qt.workers.Worker` at a time in the app's one worker
mechanism, disables the run buttons and enables Cancel while it runs, shows progress with the job's
message, and on the way out (result, error or cancel) restores the buttons before calling the panel
back.  ``shutdown()`` cancels a running job and hands it to ``release_when_done`` so the window can
close while the job finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import QProgressBar, QPushButton

from medview.qt.workers import Worker, release_when_done, start


class JobControls:
    """Run/Cancel/progress for one panel (the widgets stay the panel's: it lays them out)."""

    def __init__(self, run_buttons: Sequence[QPushButton], cancel_button: QPushButton,
                 progress: QProgressBar | None = None) -> None:
        self.run_buttons = list(run_buttons)
        self.cancel_button = cancel_button
        self.progress = progress
        self.worker: Worker | None = None
        cancel_button.setEnabled(False)
        cancel_button.clicked.connect(self.cancel)
        if progress is not None:
            progress.setVisible(False)

    @property
    def busy(self) -> bool:
        return self.worker is not None and not self.worker.done

    def start(self, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None],
              on_failed: Callable[[str], None], on_cancelled: Callable[[], None]) -> Worker | None:
        """Run ``fn(*args, task=...)`` in a worker; None when a job is already running."""
        if self.busy:
            return None
        worker = self.worker = Worker(fn, *args)
        worker.signals.progress.connect(self._progress)
        worker.signals.finished.connect(lambda result: (self._end(), on_done(result)))
        worker.signals.failed.connect(lambda message: (self._end(), on_failed(message)))
        worker.signals.cancelled.connect(lambda: (self._end(), on_cancelled()))
        for button in self.run_buttons:
            button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        if self.progress is not None:
            self.progress.setValue(0)
            self.progress.setVisible(True)
        start(worker)
        return worker

    def cancel(self) -> None:
        if self.busy:
            self.worker.cancel()  # type: ignore[union-attr]

    def _progress(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress.setValue(int(fraction * 100))
            self.progress.setFormat(message[:40] or "%p%")

    def _end(self) -> None:
        for button in self.run_buttons:
            button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self.progress is not None:
            self.progress.setVisible(False)

    def shutdown(self) -> None:
        """Cancel a running job and let it finish after the panel is gone."""
        if self.worker is not None:
            release_when_done(self.worker)
            self.worker = None
