"""Filters and segmentation panels: pick an operation from the catalogue, set its parameters, Run/Cancel.

The panel contains no algorithm: it hands the parameters to ``medview.app.processing`` in the one worker
mechanism and gives the result to the window (new volume, or new label map), which records it in the
undo history.  For thresholds, the slice views preview the mask live while the values are edited.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from medview.algorithms.operations import Operation, OperationKind, operations
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.qt.panels.operation_form import OperationForm
from medview.qt.workers import JobSlot, Worker

PREVIEW_METHODS = ("threshold",)  # methods whose result the slice views can show live


class ProcessingPanel(JobSlot, QWidget):
    """One panel per kind: ``'filter'`` (result: a volume), ``'segment'`` (result: a label map) or
    ``'labels'`` (refines the current label map; result: a label map)."""

    finished = Signal(object, str)  # result, description
    failed = Signal(str)

    def __init__(self, state: ViewerState, kind: OperationKind | str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.kind = kind
        self._shown = True  # the dock is in front (set_shown)
        if kind == "labels":  # operations on the current label map (morphology, components, ...)
            from medview.app.processing import label_operations

            self.ops: dict[str, Operation] = label_operations()
        else:
            self.ops = {op.name: op for op in operations(kind)}
        self.combo = QComboBox()
        for name, op in self.ops.items():
            self.combo.addItem(name, name)
            self.combo.setItemData(self.combo.count() - 1, f"{op.help} [{op.library}]" if op.library else op.help,
                                   Qt.ItemDataRole.ToolTipRole)
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.help.setStyleSheet("color: #666;")
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form: OperationForm | None = None
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.combo)
        layout.addWidget(self.help)
        layout.addWidget(self.form_area, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.worker: Worker | None = None
        self.result_step = None  # a medview.app.history.PreparedStep, while a result is delivered
        self._started_on: tuple | None = None
        self.on_result: Callable[[object, str], None] | None = None
        self.combo.currentIndexChanged.connect(self._choose)
        self._choose()

    # -- form -------------------------------------------------------------------------------------------
    def select(self, name: str) -> OperationForm:
        index = self.combo.findData(name)
        if index < 0:
            raise MedviewError(f"No {self.kind} called {name}")
        self.combo.setCurrentIndex(index)
        self._choose()
        assert self.form is not None
        return self.form

    def _choose(self, *_args) -> None:
        op = self.ops.get(self.combo.currentData())
        if op is None:
            return
        if self.form is not None and self.form.operation is op:
            return
        self.form = OperationForm(op, crosshair=lambda: self.state.cursor.copy())
        self.form.changed.connect(self._update_preview)
        self.form_area.setWidget(self.form)
        self.help.setText(op.help + (f"  ({op.library})" if op.library else ""))
        self._update_preview()

    def set_shown(self, shown: bool) -> None:
        """Whether the panel's dock is in front (a tabbed dock behind another one still reports isVisible())."""
        self._shown = bool(shown)
        self._update_preview()

    def _update_preview(self) -> None:
        """Threshold methods: show the mask of the current values in the slice views as they are edited, while
        the panel is in front."""
        shown = self.isVisible() and self._shown
        if self.kind != "segment" or self.form is None or not shown:
            self.state.set_threshold_preview(None)
            return
        op = self.form.operation
        if op.name not in PREVIEW_METHODS:
            self.state.set_threshold_preview(None)
            return
        try:
            params = op.parse(self.form.values())
        except MedviewError:
            self.state.set_threshold_preview(None)
            return
        self.state.set_threshold_preview((params.get("lower"), params.get("upper")))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._update_preview()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().hideEvent(event)
        if self.kind == "segment":
            self.state.set_threshold_preview(None)

    # -- running ----------------------------------------------------------------------------------------
    def run(self) -> Worker | None:
        volume = self.state.volume
        if volume is None or self.state.loading:
            self.status.setText("Open an image first.")
            return None
        if self.form is None:
            return None
        op = self.form.operation
        missing = self.form.missing()
        if missing:  # a required value left "not set" never runs with the spin box's lowest value (issue 17)
            p = op.param(missing[0])
            message = (f"{op.name} needs a value for {p.name.replace('_', ' ')}"
                       f"{f' ({p.unit})' if p.unit else ''}: {p.help}. Enter it, then Run.")
            self.status.setText(message)
            QMessageBox.warning(self, op.name, message)
            return None
        try:
            params = op.parse(self.form.values())
        except MedviewError as exc:
            self.status.setText(str(exc))
            QMessageBox.warning(self, op.name, str(exc))
            return None
        if self.kind == "filter" and op.replaces_image and not self._confirm_replace(op):
            self.status.setText(f"{op.name} was not run; nothing was changed.")
            return None
        if self.kind == "filter" and not self._confirm_not_undoable(op):
            self.status.setText(f"{op.name} was not run; nothing was changed.")
            return None
        from medview.app.processing import (
            describe,
            filter_panel_job,
            label_panel_job,
            run_panel_job,
            segment_panel_job,
        )

        description = describe(op, params)
        # in a process of its own: SciPy / scikit-image / scikit-learn hold the GIL and froze the window, and the
        # result's undo step is compressed there too (over a second on the GUI thread for a CT: issue 17)
        if self.kind == "labels":
            if self.state.labels is None:
                self.status.setText("There is no label map to refine.")
                return None
            worker = Worker(run_panel_job, label_panel_job, self.state.labels, op.name, params)
        elif self.kind == "filter":
            worker = Worker(run_panel_job, filter_panel_job, volume, op.name, params)
        else:
            worker = Worker(run_panel_job, segment_panel_job, volume, op.name, params, self.state.labels)
        self._started_on = self.state.data_key()  # the step applies only to the data it was made from
        self.result_step = None
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText(f"Running {description}…")
        return self.run_job(worker, lambda result, d=description: self._done(result, d))

    def _confirm_replace(self, op: Operation) -> bool:
        """A result that is no longer the same kind of image (an edge map, gradients) replaces the study shown:
        say so and ask first."""
        answer = QMessageBox.question(
            self, op.name,
            f"{op.name} replaces the image shown with {op.replaces_image}: its original values (e.g. HU) are "
            "no longer shown or measured until you undo it (Edit > Undo).\n\nRun it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _confirm_not_undoable(self, op: Operation) -> bool:
        """A result of another data type or grid is undone by keeping the image it replaces: say before running
        when neither the undo memory nor a file could keep it."""
        problem = self.state.replace_problem()
        if problem is None:
            return True
        answer = QMessageBox.question(
            self, op.name,
            f"If {op.name} gives an image of another data type or grid, it cannot be undone: {problem}.\n\n"
            "Run it anyway?", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(message[:40] or "%p%")

    def _end(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)

    def _done(self, out, description: str) -> None:
        self._end()
        self.status.setText(f"Done: {description}")
        self.result_step = out.step  # taken by the window with take_step() while it applies the result
        try:
            self.finished.emit(out.result, description)
        finally:
            self.result_step = None

    def take_step(self):
        """The undo step the job prepared for the result being delivered, or None when the data it was made
        from has changed since Run (an edit, an undo, another study): then the result is diffed here."""
        step, self.result_step = self.result_step, None
        return step if step is not None and self._started_on == self.state.data_key() else None

    def _failed(self, message: str) -> None:
        self._end()
        self.status.setText(message)
        self.failed.emit(message)

    def _cancelled(self) -> None:
        self._end()
        self.status.setText("Cancelled; nothing was changed.")
