"""AI panel: the models medview can see, their cards, a device choice, an estimated time, Run/Cancel.

Every step is a job of ``medview.app.inference`` in the one worker mechanism: torch is imported in the
worker, never at start-up.  A segmentation result becomes the label map (one undo step when it replaces
labels on the same grid); an image-to-image result becomes a new image layer beside the study (switched in
the toolbar), and a detection model's points are listed in the Detections panel.

Before a run the panel asks (Yes/No, No by default) when the study is of another modality than the card's, or
of one its file does not state (NRRD, NIfTI), when its values lie far outside the card's intensity range, and
when a segmentation would replace a label map that holds labels, naming them: nothing is run on No.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.qt.workers import JobSlot, Worker


def _card_html(card: dict) -> str:
    prov = card.get("provenance") or {}
    metrics = prov.get("metrics") or {}
    labels = ", ".join(f"{e['value']} {e['name']}" for e in card.get("labels", []))
    rows = [("Version", card.get("version")), ("Task", card.get("task")), ("Modality", card.get("modality")),
            ("Spacing (mm)", " x ".join(f"{s:g}" for s in card.get("spacing_mm", []))),
            ("Patch (z, y, x)", " x ".join(str(s) for s in card.get("patch_size", []))),
            ("Labels", labels), ("License", card.get("license")),
            ("Training data", prov.get("training_data")),
            ("Measured", ", ".join(f"{k} {v}" for k, v in metrics.items()) if metrics else "-"),
            ("Weights", f"{card.get('weights', {}).get('format')} (sha256 checked)")]
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows if v)
    warn = f"<p style='color:#b00'>{card['disclaimer']}</p>" if card.get("disclaimer") else ""
    return f"<h3>{card.get('name')}</h3><table>{body}</table>{warn}"


class AIPanel(JobSlot, QWidget):
    finished = Signal(object, str)  # result, description
    failed = Signal(str)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.models = QListWidget()
        self.models.currentTextChanged.connect(self._show_card)
        self.details = QTextBrowser()
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.device.setToolTip("auto: CUDA when torch sees a GPU, else the CPU")
        self.estimate_button = QPushButton("Estimate time")
        self.estimate_button.clicked.connect(self.estimate)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Device"))
        row.addWidget(self.device)
        row.addWidget(self.estimate_button)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.models, 1)
        layout.addWidget(self.details, 2)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.worker: Worker | None = None
        self.refresh()

    def refresh(self) -> None:
        """List the models (cards only: no weights are loaded and torch is not imported)."""
        from medview.app.inference import list_models

        self.models.clear()
        try:
            rows = list_models()
        except MedviewError as exc:
            self.status.setText(str(exc))
            return
        for r in rows:
            if r.get("status") == "ready":  # invalid cards and external tools are listed by the CLI only
                self.models.addItem(r["name"])
        if not self.models.count():
            self.status.setText("No models installed (resources/models, the user models folder).")
        else:
            self.models.setCurrentRow(0)

    def _show_card(self, name: str) -> None:
        if not name:
            self.details.clear()
            return
        from medview.app.inference import model_card

        try:
            self.details.setHtml(_card_html(model_card(name)))
        except MedviewError as exc:
            self.details.setPlainText(str(exc))

    def _start(self, fn, *args, on_done, **kwargs) -> Worker | None:
        volume = self.state.volume
        name = self.models.currentItem().text() if self.models.currentItem() else ""
        if volume is None or self.state.loading or not name:
            self.status.setText("Open a study and choose a model first.")
            return None
        if self.busy:
            return None
        self.run_button.setEnabled(False)
        self.estimate_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        return self.run_job(Worker(fn, name, volume, self.device.currentText(), *args, **kwargs),
                            lambda result, n=name: on_done(result, n))

    def estimate(self) -> Worker | None:
        from medview.app.inference import estimate_volume

        self.status.setText("Estimating…")
        return self._start(estimate_volume, on_done=self._estimated)

    def run(self) -> Worker | None:
        from medview.app.inference import infer_volume

        allow_mismatch = self._confirm_run()
        if allow_mismatch is None:
            return None
        self.status.setText("Running…")
        return self._start(infer_volume, on_done=self._done, allow_modality_mismatch=allow_mismatch)

    def _ask(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _confirm_run(self) -> bool | None:
        """Ask before a run the model's card does not fit, or one whose result replaces the label map.

        Returns None when the user said No (nothing runs), else whether a modality mismatch was accepted.
        """
        from medview.app.inference import input_problems

        volume, item = self.state.volume, self.models.currentItem()
        if volume is None or self.state.loading or item is None or self.busy:
            return False  # _start says what is missing
        name = item.text()
        try:
            problems = input_problems(name, volume)
        except MedviewError as exc:
            self.status.setText(str(exc))
            return None
        doubts = [p for p in (problems["modality"], problems["intensity"]) if p]
        if doubts and not self._ask("Model and image do not match",
                                    ".\n\n".join(doubts) + f".\n\nRun {name} on this image anyway?"):
            self.status.setText(f"{name} was not run.")
            return None
        labels = self.state.labels
        if problems["task"] == "segmentation" and labels is not None and labels.array.any():
            names = [e.name for e in labels.labels] or ["unnamed labels"]
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            if not self._ask("Replace the label map?",
                             f"The result of {name} replaces the current label map ({shown}).\n\n"
                             "Edit > Undo brings the current one back. Replace it?"):
                self.status.setText(f"{name} was not run; the label map is unchanged.")
                return None
        return problems["modality"] is not None

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(message[:64] or "%p%")

    def _end(self) -> None:
        self.run_button.setEnabled(True)
        self.estimate_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)

    def _estimated(self, estimate: dict, name: str) -> None:
        self._end()
        self.status.setText(f"{name}: about {estimate['seconds']:.1f} s here ({estimate['windows']} windows; "
                            f"{estimate.get('basis', 'one window timed')})")

    def _done(self, result, name: str) -> None:
        self._end()
        if isinstance(result, dict):  # class probabilities, most probable first
            ranked = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])
            self.status.setText(f"{name}: " + ", ".join(f"{k} {v:.1%}" for k, v in ranked))
        elif hasattr(result, "detections"):
            self.status.setText(f"{name}: {len(result.detections)} detection(s), listed in Detections")
        else:
            self.status.setText(f"Done: {name}")
        self.finished.emit(result, f"Model {name}")

    def _failed(self, message: str) -> None:
        self._end()
        self.status.setText(message)
        self.failed.emit(message)

    def _cancelled(self) -> None:
        self._end()
        self.status.setText("Cancelled; the study is unchanged.")

