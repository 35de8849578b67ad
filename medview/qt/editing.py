"""The window's editing side: undo/redo, the processing and segmentation panels, label statistics,
saving label maps (with their history), autosave and the recovery offer after a crash.

Kept out of ``main_window.py`` so each stays one job; everything here drives the GUI-free
``ViewerState`` (whose one ``History`` records every change) and ``medview.app`` commands.
"""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.core.labels import LabelMap
from medview.qt.workers import Worker, start

log = logging.getLogger(__name__)
AUTOSAVE_MS = 60_000


def _write_labels(labels: LabelMap, path: str, history_snapshot, task=None) -> str:
    """Worker job: the label map (NIfTI/NRRD/MHA) and its undo history beside it, both atomically."""
    from medview.app.history import history_path_for
    from medview.app.label_maps import write_label_table
    from medview.io.atomic import atomic_path
    from medview.io.writers import write_image

    with atomic_path(path) as tmp:
        write_image(labels, tmp)
    write_label_table(labels, path)  # the names and colours that go with these voxels
    if history_snapshot is not None:
        history_snapshot.write(history_path_for(path), labels.array, labels.geometry, labels.table_snapshot())
    return path


class EditingController(QObject):
    """Owns the editing docks and actions of a main window."""

    def __init__(self, window: QMainWindow, state: ViewerState, edit_menu: QMenu) -> None:
        super().__init__(window)
        from medview.qt.panels.label_stats import LabelStatsPanel
        from medview.qt.panels.processing import ProcessingPanel

        self.window, self.state = window, state
        self.filters = ProcessingPanel(state, "filter")
        self.segmentation = ProcessingPanel(state, "segment")
        self.refine = ProcessingPanel(state, "labels")
        from medview.qt.panels.ai import AIPanel
        from medview.qt.panels.detections import DetectionsPanel

        self.detections = DetectionsPanel(state)
        self.ai = AIPanel(state)
        self.ai.finished.connect(self._model_result)
        self.ai.failed.connect(lambda message: QMessageBox.warning(self.window, "AI", message))
        self.stats = LabelStatsPanel(state)
        self.filters.finished.connect(self._filtered)
        self.segmentation.finished.connect(lambda result, d: self._segmented(result, d, self.segmentation))
        self.refine.finished.connect(lambda result, d: self._segmented(result, d, self.refine))
        for panel in (self.filters, self.segmentation, self.refine):
            panel.failed.connect(lambda message: QMessageBox.warning(self.window, "Processing", message))
        self.docks = {
            "Filters": window._dock("Filters", self.filters, Qt.DockWidgetArea.RightDockWidgetArea),
            "Segmentation": window._dock("Segmentation", self.segmentation, Qt.DockWidgetArea.RightDockWidgetArea),
            "Refine labels": window._dock("Refine labels", self.refine, Qt.DockWidgetArea.RightDockWidgetArea),
            "AI": window._dock("AI", self.ai, Qt.DockWidgetArea.RightDockWidgetArea),
            "Detections": window._dock("Detections", self.detections, Qt.DockWidgetArea.RightDockWidgetArea),
            "Label statistics": window._dock("Label statistics", self.stats, Qt.DockWidgetArea.RightDockWidgetArea),
        }
        self.docks["Label statistics"].visibilityChanged.connect(self.stats.set_active)
        # the threshold preview shows only while the Segmentation tab is in front
        self.docks["Segmentation"].visibilityChanged.connect(self.segmentation.set_shown)
        first = window.findChild(type(self.docks["Filters"]), "dock_Labels")
        for dock in self.docks.values():
            if first is not None:
                window.tabifyDockWidget(first, dock)
        if first is not None:
            first.raise_()

        self.undo_action = window._action("&Undo", self.undo, QKeySequence.StandardKey.Undo, menu=edit_menu)
        self.redo_action = window._action("&Redo", self.redo, "Ctrl+Shift+Z", menu=edit_menu)
        edit_menu.addSeparator()
        window._action("&New label map", self.new_label_map, menu=edit_menu)
        window._action("&Save label map...", lambda: self.save_labels(), "Ctrl+Shift+L", menu=edit_menu)
        self._save_worker: Worker | None = None
        self._autosave_worker: Worker | None = None
        self.autosave = None  # AutosaveSession, made on first autosave
        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave_now)
        self.autosave_timer.start(AUTOSAVE_MS)
        for event in ("labels", "volume"):
            state.subscribe(event, self._update_actions)
        self._update_actions()

    # -- undo -------------------------------------------------------------------------------------------
    def _update_actions(self) -> None:
        h = self.state.history
        self.undo_action.setEnabled(h.can_undo)
        self.redo_action.setEnabled(h.can_redo)
        self.undo_action.setText(f"&Undo {h.undo_description}" if h.can_undo else "&Undo")
        self.redo_action.setText(f"&Redo {h.redo_description}" if h.can_redo else "&Redo")

    def undo(self) -> None:
        self._history_step(self.state.undo)

    def redo(self) -> None:
        self._history_step(self.state.redo)

    def _history_step(self, step) -> None:
        try:
            change = step()
        except MedviewError as exc:
            self.window.statusBar().showMessage(str(exc), 8000)
            return
        self.window.statusBar().showMessage(f"{change.kind.capitalize()}: {change.description}", 5000)
        self._update_actions()

    # -- results of the panels -------------------------------------------------------------------------
    def _filtered(self, volume, description: str) -> None:
        change = self.state.replace_volume(volume, description, prepared=self.filters.take_step())
        problem = self.state.last_replace_problem if change is None else None
        note = f" -- {problem}; reopen the study to get the image back" if problem else ""
        self.window.statusBar().showMessage(f"{description}{note}", 20000 if problem else 10000)
        if problem:
            QMessageBox.warning(self.window, "Filters", f"{description}: {problem}. Reopen the study to get the "
                                "image back.")
        self._update_actions()

    def _segmented(self, labels: LabelMap, description: str, panel=None) -> None:
        prepared = panel.take_step() if panel is not None else None  # made in the job's process
        self.state.apply_label_result(labels, description, prepared=prepared)  # voxels and names: one undo step
        self.window.statusBar().showMessage(f"{description}: {len(labels.present_values())} label(s)", 10000)
        self._update_actions()

    def _model_result(self, result, description: str) -> None:
        if isinstance(result, dict):  # a classification: nothing in the study changes
            probs = ", ".join(f"{k} {v:.2f}" for k, v in result.get("probabilities", {}).items())
            self.window.statusBar().showMessage(f"{description}: {result.get('label')} ({probs})", 20000)
            return
        from medview.core.detections import DetectionSet

        if isinstance(result, DetectionSet):  # a detection model: points or boxes over the slices, listed
            self.state.set_detections(result)
            self.window.modes.show_panel("Detections")  # switches to the AI mode if needed
            self.window.statusBar().showMessage(f"{description}: {len(result.detections)} detection(s)", 20000)
            return
        if isinstance(result, LabelMap):
            self._segmented(result, description)
            return
        from medview.app.replay import step_of  # an image-to-image model: a new layer beside the study

        name = self.state.add_layer(description.removeprefix("Model ") + " output", result, step=step_of(result))
        self.window.statusBar().showMessage(f"{description}: shown as the image layer '{name}' (switch layers in "
                                            "the toolbar)", 20000)

    def new_label_map(self) -> None:
        try:
            self.state.new_label_map()
        except MedviewError as exc:
            QMessageBox.warning(self.window, "Labels", str(exc))

    # -- saving ---------------------------------------------------------------------------------------
    def save_labels(self, path: str | None = None) -> Worker | None:
        labels = self.state.labels
        if labels is None:
            QMessageBox.information(self.window, "Save label map", "There is no label map to save.")
            return None
        if path is None:
            known = labels.source.lower().endswith((".nii.gz", ".nrrd", ".nii", ".mha"))
            start_name = labels.source if known else "labels.nii.gz"
            path, _ = QFileDialog.getSaveFileName(self.window, "Save label map", start_name,
                                                  "Label maps (*.nii.gz *.nii *.nrrd *.mha)")
            if not path:
                return None
        from medview.io.writers import check_output_path

        try:
            check_output_path(path)
        except MedviewError as exc:
            QMessageBox.warning(self.window, "Save label map", str(exc))
            return None
        copy = LabelMap(labels.array.copy(), labels.geometry, labels=list(labels.table_snapshot()), source=path)
        snapshot = self.state.history.snapshot("labels")
        worker = Worker(_write_labels, copy, path, snapshot)
        worker.signals.finished.connect(lambda p: self._saved(p))
        worker.signals.failed.connect(lambda m: QMessageBox.warning(self.window, "Save label map", m))
        self._save_worker = worker
        start(worker)
        return worker

    def _saved(self, path: str) -> None:
        if self.state.labels is not None:
            self.state.labels.source = path
        if self.autosave is not None:
            self.autosave.remove("labels")  # saved by the user: nothing left to recover
        self.window.statusBar().showMessage(f"Saved {path} (with its undo history)", 8000)

    # -- autosave and recovery ----------------------------------------------------------------------------
    def autosave_now(self) -> Worker | None:
        """Snapshot the edited label map (GUI thread) and write it to the recovery folder (worker)."""
        labels = self.state.labels
        history = self.state.history
        if labels is None or not history.can_undo:
            return None
        if self._autosave_worker is not None and not self._autosave_worker.done:
            return None
        from medview.app.autosave import AutosaveSession

        if self.autosave is None:
            self.autosave = AutosaveSession()
        if not self.autosave.needs_save("labels", history.version):
            return None
        study = getattr(self.window, "current_path", "") or ""
        job = self.autosave.snapshot(labels, "labels", study=study, labels_source=labels.source, history=history)
        session = self.autosave
        worker = Worker(lambda job, task=None: session.write(job), job)
        worker.signals.failed.connect(lambda m: log.warning("autosave failed: %s", m))
        self._autosave_worker = worker
        start(worker)
        return worker

    def offer_recovery(self) -> bool:
        """After a crash: offer the autosaved label maps of sessions that did not exit cleanly."""
        from medview.app.autosave import discard, pending_recoveries

        try:
            found = pending_recoveries()
        except MedviewError as exc:
            log.warning("recovery folder unreadable: %s", exc)
            return False
        if not found:
            return False
        recovery = found[0]
        box = QMessageBox(self.window)
        box.setWindowTitle("Recover unsaved labels")
        box.setText(f"medview did not close normally last time. Recover {recovery.describe()}?")
        recover = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        drop = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is drop:
            discard(recovery)
            return False
        if box.clickedButton() is not recover:
            return False
        self.recover(recovery)
        return True

    def recover(self, recovery) -> None:
        """Open the recovery's study (if it is not the one shown) and put the recovered labels on it."""
        def apply(_volume=None) -> None:
            from medview.app.autosave import discard, open_recovery

            try:
                labels, history, message = open_recovery(recovery, reference=self.state.volume)
            except MedviewError as exc:
                QMessageBox.warning(self.window, "Recover", str(exc))
                return
            self.state.set_labels(labels, history)
            discard(recovery)
            self._update_actions()
            self.window.statusBar().showMessage(message or f"Recovered {recovery.describe()}", 10000)

        current = getattr(self.window, "current_path", "")
        if recovery.study and os.path.abspath(recovery.study) != os.path.abspath(current or "."):
            self.window.load_finished.connect(apply, Qt.ConnectionType.SingleShotConnection)
            self.window.open_path(recovery.study)
        else:
            apply()

    def shutdown(self, clean: bool = True) -> None:
        self.autosave_timer.stop()
        for panel in (self.filters, self.segmentation, self.refine, self.ai, self.detections):
            panel.shutdown()
        self.stats.shutdown()  # a save or autosave under way finishes (atomically): the app waits for workers
        if clean and self.autosave is not None:
            self.autosave.close()
