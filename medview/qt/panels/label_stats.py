"""Per-label statistics: voxels, mL, mean/std/min/max, bounding box, surface area, the selected label's
intensity histogram, and CSV export.  Computed in a worker (``medview.algorithms.label_stats``)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
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
from medview.qt.workers import JobSlot, Worker

COLUMNS = ("Label", "Value", "Voxels", "Volume (mL)", "Mean", "Std", "Min", "Max", "Surface (mm²)",
           "Extent x (mm)", "Extent y (mm)", "Extent z (mm)")


def _compute(labels, image, task=None):
    from medview.app.offload import run_in_process
    from medview.app.processing import label_statistics_job

    return run_in_process(label_statistics_job, labels, image, task=task)


class LabelStatsPanel(JobSlot, QWidget):
    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.stats: list = []
        self._stats_key: tuple | None = None  # ViewerState.data_key() of the voxels the statistics describe
        self._running_key: tuple | None = None
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.currentCellChanged.connect(lambda row, *_: self._show_histogram(row))
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMaximumHeight(130)
        self.curve = self.plot.plot(stepMode="center", fillLevel=0, brush=(220, 120, 120, 120))
        update = QPushButton("Update")
        update.clicked.connect(self.update_stats)
        export = QPushButton("Export CSV…")
        export.clicked.connect(lambda: self.export_csv())
        self.status = QLabel("")
        row = QHBoxLayout()
        row.addWidget(update)
        row.addWidget(export)
        row.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.plot)
        layout.addLayout(row)
        self.worker: Worker | None = None
        self.active = False  # recomputed automatically only while the panel is on screen
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.timeout.connect(self.update_stats)
        state.subscribe("labels", self._labels_changed)

    def set_active(self, shown: bool) -> None:
        """The panel's tab is on screen (QDockWidget.visibilityChanged): keep the table up to date."""
        self.active = bool(shown)
        if self.active:
            self._debounce.start(0)

    def _labels_changed(self) -> None:
        if self.active:
            self._debounce.start(600)  # after a stroke, not during it

    def update_stats(self) -> Worker | None:
        labels, volume = self.state.labels, self.state.volume
        if labels is None or volume is None or self.state.loading:
            self.table.setRowCount(0)
            self.status.setText("No label map")
            return None
        self.status.setText("Computing…")
        self._running_key = (self.state.data_key(), tuple((e.value, e.name) for e in labels.labels))
        return self.run_job(Worker(_compute, labels, None if volume.is_color else volume), self._show)

    def _failed(self, message: str) -> None:
        self.status.setText(message)

    def _current_key(self) -> tuple | None:
        labels = self.state.labels
        return None if labels is None else (self.state.data_key(), tuple((e.value, e.name) for e in labels.labels))

    def _show(self, stats: list) -> None:
        self.stats = stats
        self._stats_key = self._running_key
        self.table.setRowCount(len(stats))
        for r, s in enumerate(stats):
            extent = np.array(s.bbox_max_lps) - np.array(s.bbox_min_lps)
            cells = [s.name, s.value, s.voxels, f"{s.volume_ml:.3f}", f"{s.mean:.1f}", f"{s.std:.1f}",
                     f"{s.minimum:.1f}", f"{s.maximum:.1f}", f"{s.surface_mm2:.1f}", *(f"{e:.1f}" for e in extent)]
            for c, value in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(str(value)))
        self.status.setText(f"{len(stats)} label(s)")
        self._show_histogram(max(self.table.currentRow(), 0))

    def _show_histogram(self, row: int) -> None:
        if not 0 <= row < len(self.stats):
            self.curve.setData([0, 1], [0])
            return
        s = self.stats[row]
        if len(s.histogram_edges) == len(s.histogram_counts) + 1:
            self.curve.setData(s.histogram_edges, s.histogram_counts)

    def export_csv(self, path: str | None = None) -> str | None:
        if self.stats and self._stats_key != self._current_key():
            # the voxels or the label table changed since: the rows would name or count other labels
            self.stats = []
            self.table.setRowCount(0)
            self.status.setText("The labels changed since: press Update")
        if not self.stats:
            QMessageBox.information(self, "Label statistics", "Compute the statistics first (Update).")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export label statistics", "label_statistics.csv",
                                                  "CSV (*.csv)")
            if not path:
                return None
        from medview.algorithms.label_stats import to_csv
        from medview.core.errors import MedviewError

        try:
            to_csv(self.stats, path)
        except MedviewError as exc:
            QMessageBox.warning(self, "Label statistics", str(exc))
            return None
        self.status.setText(f"Wrote {path}")
        return path

    def shutdown(self) -> None:
        self._debounce.stop()
        super().shutdown()
