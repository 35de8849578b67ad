"""Detections panel: run the blob detector (nodule candidates in a diameter range, mm) or open a saved
detection file, list the candidates with their scores, and jump the crosshair to one by selecting it.
The slice views draw every candidate whose sphere cuts the shown slice."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.qt.workers import JobSlot, Worker


def _detect(volume, low: float, high: float, task=None):
    from medview.app.detection import detect_volume

    return detect_volume(volume, "blob", (low, high), task=task)


class DetectionsPanel(JobSlot, QWidget):
    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.low = QDoubleSpinBox()
        self.high = QDoubleSpinBox()
        for spin, value in ((self.low, 4.0), (self.high, 30.0)):
            spin.setRange(0.5, 500.0)
            spin.setDecimals(1)
            spin.setSuffix(" mm")
            spin.setValue(value)
        run = QPushButton("Find blobs")
        run.setToolTip("Laplacian-of-Gaussian blob detector (scikit-image) in the nodule intensity window")
        run.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        open_button = QPushButton("Open…")
        open_button.clicked.connect(lambda: self.open_file())
        save_button = QPushButton("Save…")
        save_button.clicked.connect(lambda: self.save_file())
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Score", "Diameter (mm)", "LPS (mm)", "Label"])
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.currentCellChanged.connect(lambda row, *_: self.go_to(row))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Diameter"))
        row.addWidget(self.low)
        row.addWidget(QLabel("to"))
        row.addWidget(self.high)
        buttons = QHBoxLayout()
        for b in (run, self.cancel_button, open_button, save_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.worker: Worker | None = None
        state.subscribe("detections", self.refresh)

    def run(self) -> Worker | None:
        volume = self.state.volume
        if volume is None or self.state.loading:
            self.status.setText("Open a study first.")
            return None
        if self.busy:
            return None  # one search at a time (Cancel stops the running one)
        self.cancel_button.setEnabled(True)
        self.status.setText("Searching…")
        return self.run_job(Worker(_detect, volume, self.low.value(), self.high.value()), self._found)

    def _cancelled(self) -> None:
        self._end("Cancelled.")

    def _end(self, message: str) -> None:
        self.cancel_button.setEnabled(False)
        self.status.setText(message)

    def _found(self, detections) -> None:
        self._end(f"{len(detections.detections)} candidate(s)")
        self.state.set_detections(detections)

    def _failed(self, message: str) -> None:
        self._end(message)

    def refresh(self) -> None:
        found = self.state.detections
        rows = found.detections if found is not None else []
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, d in enumerate(rows):
            cells = [f"{d.score:.3g}", f"{d.diameter_mm:.1f}" if d.diameter_mm else "-",
                     ", ".join(f"{c:.1f}" for c in d.center_lps), d.label]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.blockSignals(False)

    def go_to(self, row: int) -> None:
        found = self.state.detections
        if found is not None and 0 <= row < len(found.detections):
            self.state.set_cursor(found.detections[row].center_lps)

    def open_file(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open detections", "", "Detections (*.json)")
            if not path:
                return
        from medview.core.detections import DetectionSet

        try:
            self.state.set_detections(DetectionSet.from_json(path))
        except MedviewError as exc:
            QMessageBox.warning(self, "Detections", str(exc))

    def save_file(self, path: str | None = None) -> None:
        found = self.state.detections
        if found is None:
            return
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save detections", "detections.json", "JSON (*.json)")
            if not path:
                return
        try:
            found.to_json(path)
        except MedviewError as exc:
            QMessageBox.warning(self, "Detections", str(exc))

