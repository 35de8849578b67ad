"""Classifier panel: train a scikit-learn model on a feature table (CSV/Parquet) with honest cross-validation,
see its metrics, ROC curves, confusion matrix and feature importance, and predict new cases with a saved model.

The work runs in the app worker (:mod:`medview.qt.workers`) through :mod:`medview.app.classify`; progress is
reported per fold and Cancel stops between folds.  Saved models are pickles: open only trusted ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from medview.core.errors import MedviewError
from medview.qt.workers import JobSlot, Worker

MODEL_CHOICES = (("rf", "Random forest"), ("svm", "Support vector machine"), ("logreg", "Logistic regression"),
                 ("knn", "k nearest neighbours"), ("dt", "Decision tree"), ("mlp", "Neural network (MLP)"))
METRIC_NAMES = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1",
                "roc_auc": "ROC AUC"}
TABLE_FILTER = "Feature tables (*.csv *.tsv *.parquet *.pq);;All files (*)"
TRUST_NOTE = "Models are pickle files: open only models from sources you trust."


def _train(table_path: str, target: str, model: str, out_dir: str, cv: int, case_id: str, select_k: int | None,
           seed: int, task=None) -> dict[str, Any]:
    from medview.app.classify import train_classifier

    return train_classifier(table_path, target, model, out_dir, cv=cv, case_id=case_id, select_k=select_k,
                            seed=seed, task=task)


def _predict(model_dir: str, table_path: str, task=None) -> dict[str, Any]:
    from medview.app.classify import predict_file

    return predict_file(model_dir, table_path, task=task)


def _columns(table_path: str) -> list[str]:
    from medview.app.classify import table_columns

    return table_columns(table_path)


class ClassifierPanel(JobSlot, QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_path: str | None = None
        self.result: dict[str, Any] | None = None
        self.predictions = None
        self.worker: Worker | None = None
        self.error_box: QMessageBox | None = None

        self.table_edit = QLineEdit()
        self.table_edit.setReadOnly(True)
        self.table_edit.setPlaceholderText("feature table: one row per case")
        choose_table = QPushButton("Table…")
        choose_table.clicked.connect(lambda: self.load_table())
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("the column with each case's class")
        self.case_combo = QComboBox()
        self.case_combo.setToolTip("the case identifier column (never used as a feature)")
        self.model_combo = QComboBox()
        for key, text in MODEL_CHOICES:
            self.model_combo.addItem(text, key)
        self.folds_spin = QSpinBox()
        self.folds_spin.setRange(2, 20)
        self.folds_spin.setValue(5)
        self.folds_spin.setToolTip("stratified k-fold cross-validation; scaling and selection fit inside each fold")
        self.select_spin = QSpinBox()
        self.select_spin.setRange(0, 10000)
        self.select_spin.setSpecialValueText("all")
        self.select_spin.setToolTip("keep the K best features (ANOVA F), chosen inside each fold")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder for the reports and the model")
        choose_out = QPushButton("…")
        choose_out.setMaximumWidth(32)
        choose_out.clicked.connect(self._choose_output)

        form = QFormLayout()
        table_row = QHBoxLayout()
        table_row.addWidget(self.table_edit, 1)
        table_row.addWidget(choose_table)
        form.addRow("Table", table_row)
        form.addRow("Target", self.target_combo)
        form.addRow("Case id", self.case_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("CV folds", self.folds_spin)
        form.addRow("Select K", self.select_spin)
        form.addRow("Seed", self.seed_spin)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(choose_out)
        form.addRow("Output", out_row)

        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(lambda: self.train())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        predict_button = QPushButton("Predict…")
        predict_button.setToolTip(f"apply a saved model to another table. {TRUST_NOTE}")
        predict_button.clicked.connect(lambda: self.predict())
        buttons = QHBoxLayout()
        for b in (self.train_button, self.cancel_button, predict_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.metrics_table = QTableWidget(0, 4)
        self.metrics_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.metrics_table.verticalHeader().setVisible(False)
        self.images: dict[str, QLabel] = {}
        self.tabs = QTabWidget()
        self.tabs.addTab(self.metrics_table, "Metrics")
        for key, title in (("roc", "ROC"), ("confusion", "Confusion"), ("importance", "Importance")):
            label = QLabel("Train a model to see this plot.")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            scroll = QScrollArea()
            scroll.setWidget(label)
            scroll.setWidgetResizable(True)
            self.images[key] = label
            self.tabs.addTab(scroll, title)
        self.predictions_table = QTableWidget(0, 0)
        self.predictions_table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.tabs.addTab(self.predictions_table, "Predictions")

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs, 1)

    # -- inputs ------------------------------------------------------------------------------------
    def _error(self, message: str, title: str = "Classifier") -> None:
        """A non-modal message box (the event loop keeps running; tests and jobs are not blocked)."""
        self.status.setText(message)
        self.error_box = QMessageBox(QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self)
        self.error_box.setModal(False)
        self.error_box.show()

    def load_table(self, path: str | None = None) -> bool:
        """Choose a feature table; its header fills the target and case-id choices."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Feature table", "", TABLE_FILTER)
            if not path:
                return False
        try:
            columns = _columns(path)
        except MedviewError as exc:
            self._error(str(exc))
            return False
        self.table_path = path
        self.table_edit.setText(path)
        self.target_combo.clear()
        self.target_combo.addItems(columns)
        guesses = [c for c in columns if c.lower() in ("target", "label", "class", "outcome", "diagnosis", "y")]
        self.target_combo.setCurrentIndex(columns.index(guesses[0]) if guesses else len(columns) - 1)
        self.case_combo.clear()
        self.case_combo.addItem("(row number)", "")
        for c in columns:
            self.case_combo.addItem(c, c)
        if "case_id" in columns:
            self.case_combo.setCurrentIndex(columns.index("case_id") + 1)
        stem = Path(path).name.split(".")[0]
        self.out_edit.setText(os.path.join(os.path.dirname(os.path.abspath(path)), f"{stem}_classifier"))
        self.status.setText(f"{len(columns)} column(s)")
        return True

    def _choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    # -- training ----------------------------------------------------------------------------------
    def _busy(self, busy: bool) -> None:
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.status.setText(message)

    def _start(self, worker: Worker, on_result) -> Worker:
        self._busy(True)
        self.progress.setValue(0)
        return self.run_job(worker, on_result)

    def train(self) -> Worker | None:
        if not self.table_path:
            self._error("Choose a feature table first.")
            return None
        if not self.out_edit.text().strip():
            self._error("Choose an output folder.")
            return None
        worker = Worker(_train, self.table_path, self.target_combo.currentText(), self.model_combo.currentData(),
                        self.out_edit.text().strip(), self.folds_spin.value(), self.case_combo.currentData() or None,
                        self.select_spin.value() or None, self.seed_spin.value())
        self.status.setText("Training…")
        return self._start(worker, self._trained)

    def cancel(self) -> None:
        if self.busy:
            super().cancel()
            self.status.setText("Cancelling after this fold…")

    def _failed(self, message: str) -> None:
        self._busy(False)
        self._error(message)

    def _cancelled(self) -> None:
        self._busy(False)
        self.status.setText("Cancelled.")

    def _trained(self, result: dict[str, Any]) -> None:
        self.result = result
        metrics = result["metrics"]
        folds = metrics["folds"]
        headers = ["Metric", "Mean", "Std", "Pooled", *(f"Fold {f['fold']}" for f in folds)]
        self.metrics_table.clear()
        self.metrics_table.setColumnCount(len(headers))
        self.metrics_table.setHorizontalHeaderLabels(headers)
        self.metrics_table.setRowCount(len(METRIC_NAMES))

        def text(value) -> str:
            return "n/a" if value is None or value != value else f"{value:.3f}"

        for r, (key, name) in enumerate(METRIC_NAMES.items()):
            stats = metrics["summary"][key]
            cells = [name, text(stats["mean"]), text(stats["std"]), text(metrics["pooled"][key]),
                     *(text(f[key]) for f in folds)]
            for c, value in enumerate(cells):
                self.metrics_table.setItem(r, c, QTableWidgetItem(value))
        self.metrics_table.resizeColumnsToContents()
        for key, label in self.images.items():
            pixmap = QPixmap(result["files"][key])
            label.setPixmap(pixmap)
            label.setText("" if not pixmap.isNull() else f"Could not show {result['files'][key]}")
        self._busy(False)
        self.progress.setValue(1000)
        notes = "; ".join(result["notes"][:3])
        self.status.setText(f"{result['model']}: {result['n_samples']} cases, {result['n_features']} features. "
                            f"Saved in {result['out_dir']}" + (f". Notes: {notes}" if notes else ""))
        self.tabs.setCurrentIndex(0)

    # -- prediction --------------------------------------------------------------------------------
    def predict(self, model_dir: str | None = None, table_path: str | None = None) -> Worker | None:
        """Apply a saved model (a folder with model.joblib + model.json) to a table. Trusted models only."""
        if model_dir is None:
            start_dir = os.path.join(self.out_edit.text(), "model") if self.out_edit.text() else ""
            model_dir = QFileDialog.getExistingDirectory(self, f"Model folder ({TRUST_NOTE})", start_dir)
            if not model_dir:
                return None
        if table_path is None:
            table_path, _ = QFileDialog.getOpenFileName(self, "Table to predict", "", TABLE_FILTER)
            if not table_path:
                return None
        self.status.setText("Predicting…")
        return self._start(Worker(_predict, model_dir, table_path), self._predicted)

    def _predicted(self, result: dict[str, Any]) -> None:
        frame = result["predictions"]
        self.predictions = frame
        self.predictions_table.clear()
        self.predictions_table.setColumnCount(len(frame.columns))
        self.predictions_table.setHorizontalHeaderLabels([str(c) for c in frame.columns])
        self.predictions_table.setRowCount(len(frame))
        for r, row in enumerate(frame.itertuples(index=False)):
            for c, value in enumerate(row):
                shown = f"{value:.3f}" if isinstance(value, float) else str(value)
                self.predictions_table.setItem(r, c, QTableWidgetItem(shown))
        self.predictions_table.resizeColumnsToContents()
        self._busy(False)
        self.progress.setValue(1000)
        warnings = "; ".join(result["warnings"])
        self.status.setText(f"{len(frame)} case(s) predicted" + (f". Warning: {warnings}" if warnings else ""))
        self.tabs.setCurrentWidget(self.predictions_table)

