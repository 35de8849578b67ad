"""The classifier panel as a user drives it: open a table, train with 3 folds, see the metrics and the ROC
plot; predict a second table with the saved model; a bad choice shows a message instead of failing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from medview.qt.panels.classify import ClassifierPanel
from medview.qt.workers import wait_for_all


def _table(path: Path, n: int = 30, seed: int = 0, with_target: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    y = np.repeat(["benign", "malignant"], n // 2)
    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(n)],
                          "diameter_mm": rng.normal(size=n) + 4 * (y == "malignant"),
                          "texture": rng.normal(size=n)})
    if with_target:
        frame["diagnosis"] = y
    frame.to_csv(path, index=False)
    return path


def test_train_shows_metrics_and_plots_then_predicts(qtbot, tmp_path: Path) -> None:
    panel = ClassifierPanel()
    qtbot.addWidget(panel)
    panel.show()
    try:
        assert panel.load_table(str(_table(tmp_path / "features.csv")))
        assert panel.target_combo.currentText() == "diagnosis" and panel.case_combo.currentData() == "case_id"
        panel.model_combo.setCurrentIndex(panel.model_combo.findData("logreg"))
        panel.folds_spin.setValue(3)
        panel.out_edit.setText(str(tmp_path / "run"))
        worker = panel.train()
        assert worker is not None
        # the result arrives through a queued signal after ``done``: wait for what the panel shows
        qtbot.waitUntil(lambda: panel.metrics_table.rowCount() == 5 and panel.images["roc"].pixmap() is not None
                        and not panel.images["roc"].pixmap().isNull(), timeout=60_000)
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        assert panel.metrics_table.item(0, 0).text() == "Accuracy"
        assert panel.metrics_table.item(0, 1).text() == f"{metrics['summary']['accuracy']['mean']:.3f}"
        assert panel.metrics_table.columnCount() == 4 + 3  # metric, mean, std, pooled + 3 folds
        assert not panel.images["confusion"].pixmap().isNull() and not panel.images["importance"].pixmap().isNull()
        assert panel.train_button.isEnabled() and not panel.cancel_button.isEnabled()

        new = _table(tmp_path / "new.csv", n=8, seed=3, with_target=False)
        panel.predict(str(tmp_path / "run" / "model"), str(new))
        qtbot.waitUntil(lambda: panel.predictions_table.rowCount() == 8, timeout=30_000)
        assert panel.predictions_table.item(0, 0).text() == "c0"
        assert panel.predictions_table.horizontalHeaderItem(1).text() == "predicted"
        assert panel.tabs.currentWidget() is panel.predictions_table

        panel.target_combo.setCurrentText("texture")  # a continuous column is no target
        panel.train()
        qtbot.waitUntil(lambda: panel.error_box is not None and panel.error_box.isVisible(), timeout=30_000)
        assert "holds continuous values" in panel.error_box.text()
        assert panel.train_button.isEnabled()
    finally:
        panel.shutdown()
        wait_for_all()
