"""Threshold from the Segmentation panel, then Ctrl+Z in the real window: the Labels table, the Features panel
and its export, and the label statistics name the sample's tumour again (they showed the threshold's name)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medview.qt.main_window import MainWindow

TUMOUR_VOXELS = 837


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # the sample's tumour label
    return blocker.args[0]


def _label_rows(window: MainWindow) -> list[str]:
    tree = window.labels_panel.tree
    return [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]


def _threshold(qtbot, window: MainWindow) -> None:
    panel = window.editing.segmentation
    form = panel.select("threshold")
    form.set_value("lower", 300.0)
    form.set_value("upper", 3000.0)
    with qtbot.waitSignal(panel.finished, timeout=30_000):
        qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)


def test_threshold_then_ctrl_z_restores_the_tumour_row_and_the_features_export(
        qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    assert _label_rows(window) == ["Tumour"]
    _threshold(qtbot, window)
    assert _label_rows(window) == ["Threshold 300 .. 3000 HU"]
    features = window.analysis.features
    features.refresh_labels()
    assert features.label_box.itemText(0) == "1: Threshold 300 .. 3000 HU"

    window.activateWindow()
    window.grid.views["axial"].setFocus()
    QTest.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: _label_rows(window) == ["Tumour"], timeout=5_000)
    assert window.state.labels.voxel_count(1) == TUMOUR_VOXELS
    assert [features.label_box.itemText(i) for i in range(features.label_box.count())] == ["1: Tumour"]

    with qtbot.waitSignal(features.computed, timeout=120_000):
        qtbot.mouseClick(features.compute_button, Qt.MouseButton.LeftButton)
    out = features.export_csv(str(tmp_path / "features.csv"))
    with open(out, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    g = window.state.volume.geometry
    assert row["label"] == "1"
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(TUMOUR_VOXELS * g.voxel_volume_mm3, rel=1e-6)

    window.editing.redo()  # the features above describe the tumour, not the threshold: no longer exported
    assert _label_rows(window) == ["Threshold 300 .. 3000 HU"]
    assert not features.export_button.isEnabled() and not features.features


def test_statistics_export_follows_undo(qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path,
                                        monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text, *a: told.append(text))
    _open(qtbot, window, chest_ct_sample)
    stats = window.editing.stats
    _threshold(qtbot, window)
    worker = stats.update_stats()
    qtbot.waitUntil(lambda: worker.done and bool(stats.stats), timeout=60_000)
    window.editing.undo()
    # computed for the threshold: refused after the undo rather than written under the wrong name
    assert stats.export_csv(str(tmp_path / "stale.csv")) is None and not (tmp_path / "stale.csv").exists()
    assert told == ["Compute the statistics first (Update)."] and "changed" in stats.status.text()
    worker = stats.update_stats()
    qtbot.waitUntil(lambda: worker.done and bool(stats.stats), timeout=60_000)
    path = stats.export_csv(str(tmp_path / "stats.csv"))
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["name"], r["voxels"]) for r in rows] == [("Tumour", str(TUMOUR_VOXELS))]
