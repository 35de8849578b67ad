"""Features panel: radiomics features (PyRadiomics) of one label of the current study.

Choose a label and a parameter file (default: medview's bundled ``radiomics_default.yaml``), Compute, read
the table (class, feature, value), Export CSV… (one row per case: ``case_id,label,<features>``, the layout
``medview features`` writes, so GUI and CLI results concatenate).  The computation is
:func:`medview.app.features.compute_features` run in a worker process (PyRadiomics holds the GIL for seconds,
which would freeze the window in a thread): progress is shown as busy, Cancel drops the result at once
(the process finishes its case in the background).  ``computed`` carries what was computed so the main
window can record the step.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.qt.workers import JobSlot, Worker

COLUMNS = ("Class", "Feature", "Value")


def _compute(volume, labels, label: int, params: str | None, task=None) -> dict[str, float]:
    """The worker's job: validate the parameters here (a clear error without starting a process), then
    compute in the process pool."""
    from medview.analysis.features import load_params
    from medview.app.features import compute_features
    from medview.app.offload import run_in_process
    from medview.core.tasks import check_cancel

    load_params(params)
    features = run_in_process(compute_features, volume, labels, label, params, task=task)
    check_cancel(task)  # without a pool the job ran here, uninterruptible: a cancelled result is not shown
    return features


class FeaturesPanel(JobSlot, QWidget):
    """Radiomics of the current label map; ``computed(dict)``: ``{"label", "params", "features"}``."""

    # a dict {"label", "params", "features"}; declared ``object`` because ``Signal(dict)`` converts to a QVariantMap,
    # which sorts the keys and would lose PyRadiomics' feature order
    computed = Signal(object)

    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.params_path: str | None = None  # None: the bundled default
        self.features: dict[str, float] = {}
        self.computed_label: int | None = None
        self._computed_key: tuple | None = None  # ViewerState.data_key() of the voxels the features describe
        self._running_key: tuple | None = None
        self.label_box = QComboBox()
        self.label_box.setToolTip("The label whose region is measured")
        self.params_edit = QLineEdit()
        self.params_edit.setReadOnly(True)
        self.params_edit.setToolTip("PyRadiomics parameter file (imageType / featureClass / setting)")
        choose = QPushButton("Choose…")
        choose.clicked.connect(lambda: self.choose_params())
        default = QPushButton("Default")
        default.setToolTip("medview's bundled parameters: binWidth 25, no resampling, no normalisation")
        default.clicked.connect(lambda: self.set_params(None))
        self.compute_button = QPushButton("Compute")
        self.compute_button.clicked.connect(lambda: self.compute())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.progress.setRange(0, 1)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        label_row = QHBoxLayout()
        label_row.addWidget(QLabel("Label"))
        label_row.addWidget(self.label_box, 1)
        params_row = QHBoxLayout()
        params_row.addWidget(QLabel("Parameters"))
        params_row.addWidget(self.params_edit, 1)
        params_row.addWidget(choose)
        params_row.addWidget(default)
        buttons = QHBoxLayout()
        for b in (self.compute_button, self.cancel_button, self.export_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(label_row)
        layout.addLayout(params_row)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        self.worker: Worker | None = None
        self.set_params(None)
        self.refresh_labels()
        state.subscribe("labels", self.refresh_labels)
        state.subscribe("volume", self.refresh_labels)

    # -- choices ------------------------------------------------------------------------------------------------
    def refresh_labels(self) -> None:
        """Fill the chooser with the label map's values present on the image (name and value); features of
        voxels that have changed since (an edit, undo, redo, another map) are cleared, never exported."""
        if self.features and self._computed_key != self.state.data_key():
            self._clear_features("The labels or the image changed since: compute the features again.")
        labels = self.state.labels
        current = self.label_box.currentData()
        self.label_box.blockSignals(True)
        self.label_box.clear()
        if labels is not None:
            names = {e.value: e.name for e in labels.labels}
            for value in labels.present_values():
                self.label_box.addItem(f"{value}: {names.get(value, f'Label {value}')}", value)
            index = self.label_box.findData(current if current is not None else self.state.active_label)
            self.label_box.setCurrentIndex(max(index, 0))
        self.label_box.blockSignals(False)
        self.compute_button.setEnabled(self.label_box.count() > 0)

    def set_params(self, path: str | None) -> None:
        self.params_path = path
        self.params_edit.setText(path if path else "Default (radiomics_default.yaml)")

    def choose_params(self, path: str | None = None) -> str | None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "PyRadiomics parameter file", "",
                                                  "Parameter files (*.yaml *.yml *.json)")
            if not path:
                return None
        from medview.analysis.features import load_params

        try:
            load_params(path)  # say what is wrong now, not after the computation starts
        except MedviewError as exc:
            QMessageBox.warning(self, "Features", str(exc))
            return None
        self.set_params(path)
        return path

    # -- computing ------------------------------------------------------------------------------------------------
    def compute(self) -> Worker | None:
        volume, labels = self.state.volume, self.state.labels
        if volume is None or labels is None or self.state.loading:
            self.status.setText("Open a study and a label map first.")
            return None
        label = self.label_box.currentData()
        if label is None:
            self.status.setText("The label map holds no label.")
            return None
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy: the process cannot report fractions
        self.status.setText(f"Computing features of label {label}…")
        self._running_key = self.state.data_key()
        return self.run_job(Worker(_compute, volume, labels, int(label), self.params_path),
                            lambda features, n=int(label), p=self.params_path: self._show(features, n, p))

    def _cancelled(self) -> None:
        self._end("Cancelled.")

    def _end(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel_button.setEnabled(False)
        self.compute_button.setEnabled(self.label_box.count() > 0)
        self.status.setText(message)

    def _failed(self, message: str) -> None:
        self._end(message)  # shown under the table: a modal box would interrupt the work in the viewer

    def _show(self, features: dict[str, float], label: int, params: str | None) -> None:
        from medview.analysis.features import split_feature_name

        if self._running_key != self.state.data_key():  # the voxels changed while it ran: not theirs
            self._clear_features("The labels or the image changed during the computation: compute again.")
            self._end(self.status.text())
            return
        self.features = dict(features)
        self.computed_label = label
        self._computed_key = self._running_key
        self.table.setRowCount(len(features))
        for row, (key, value) in enumerate(features.items()):
            image_type, feature_class, name = split_feature_name(key)
            group = feature_class if image_type == "original" else f"{image_type} {feature_class}"
            cells = (group, name, f"{value:.6g}")
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{key} = {value!r}")
                self.table.setItem(row, col, item)
        self.export_button.setEnabled(bool(features))
        self._end(f"{len(features)} features of label {label}")
        self.computed.emit({"label": label, "params": params, "features": dict(features)})

    def _clear_features(self, message: str) -> None:
        self.features = {}
        self.computed_label = None
        self._computed_key = None
        self.table.setRowCount(0)
        self.export_button.setEnabled(False)
        self.status.setText(message)

    # -- export ---------------------------------------------------------------------------------------------------
    def case_id(self) -> str:
        from medview.app.features import case_id_for

        volume = self.state.volume
        if volume is not None and volume.metadata.source:
            return case_id_for(volume.metadata.source)
        if volume is not None and volume.metadata.series_uid:
            return volume.metadata.series_uid
        return "case"

    def export_csv(self, path: str | None = None) -> str | None:
        if self.features and self._computed_key != self.state.data_key():
            self._clear_features("The labels or the image changed since: compute the features again.")
        if not self.features or self.computed_label is None:
            QMessageBox.information(self, "Features", "Compute the features first.")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export features", f"{self.case_id()}_features.csv",
                                                  "CSV (*.csv)")
            if not path:
                return None
        from medview.app.features import write_features_csv

        try:
            written = write_features_csv(path, [{"case_id": self.case_id(), "label": self.computed_label,
                                                 **self.features}])
        except MedviewError as exc:
            QMessageBox.warning(self, "Features", str(exc))
            return None
        self.status.setText(f"Wrote {Path(written).name}")
        return os.fspath(written)

    def shutdown(self) -> None:
        self.state.unsubscribe("labels", self.refresh_labels)
        self.state.unsubscribe("volume", self.refresh_labels)
        super().shutdown()
