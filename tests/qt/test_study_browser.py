"""The Studies panel (issue 18 part 2, first slice): import a folder in a process of its own with a live count and
Cancel, search by name / ID / date preset / modality, double-click opens the study, Remove asks first; the window
stays responsive while it imports.  Invented patients; pydicom counts the files as the reference."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from medview.qt.main_window import MainWindow
from medview.qt.panels.study_browser import date_range
from tests.io.test_studydb import _reference_counts, _write_study
from tests.qt.stall_probe import StallProbe


def _cohort(root: Path) -> dict[str, str]:
    today = dt.date.today()
    return {
        "TEST0001": _write_study(root / "a", "DOE^JANE", "TEST0001", f"{today:%Y%m%d}", "CT", n=8),
        "TEST0002": _write_study(root / "b", "DOE^JOHN", "TEST0002", "20200320", "CT", n=8),
        "TEST0003": _write_study(root / "c", "ROE^RICHARD", "TEST0003", "20230711", "MR", n=8),
    }


def _studies_panel(window: MainWindow):
    from PySide6.QtWidgets import QDockWidget

    window.findChild(QDockWidget, "dock_Studies").raise_()
    panel = window.studies
    QCoreApplication.processEvents()
    return panel


def test_import_search_open_and_remove(qtbot, window: MainWindow, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "cohort"
    uids = _cohort(root)
    panel = _studies_panel(window)
    assert panel.isVisible()
    with StallProbe() as probe, qtbot.waitSignal(panel.imported, timeout=60_000) as done:
        worker = panel.import_paths([str(root)])
        assert worker is not None and panel.cancel_button.isVisible()
    summary = done.args[0]
    assert summary["added"] == 24 and sorted(summary["studies"]) == sorted(uids.values())
    assert probe.longest_ms < 250, probe.stalls
    counts = {row["StudyInstanceUID"]: row["NumberOfStudyRelatedInstances"] for row in panel.model.rows}
    assert counts == _reference_counts(root)
    assert panel.model.rowCount() == 3 and "3 studies" in panel.status.text()

    panel.search.setText("doe")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=3_000)
    panel.search.setText("TEST0003")  # an ID works in the same box
    qtbot.waitUntil(lambda: [r["PatientID"] for r in panel.model.rows] == ["TEST0003"], timeout=3_000)
    panel.search.setText("")
    panel.dates.setCurrentText("Today")
    qtbot.waitUntil(lambda: [r["PatientID"] for r in panel.model.rows] == ["TEST0001"], timeout=3_000)
    panel.dates.setCurrentText("Any date")
    panel.modality.setCurrentText("MR")
    qtbot.waitUntil(lambda: [r["PatientID"] for r in panel.model.rows] == ["TEST0003"], timeout=3_000)
    panel.modality.setCurrentText("Any")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=3_000)

    # a double-click on John's row opens his study
    row = next(i for i, r in enumerate(panel.model.rows) if r["PatientID"] == "TEST0002")
    rect = panel.table.visualRect(panel.model.index(row, 0))
    failures = []
    window.load_failed.connect(failures.append)
    requested = []
    panel.open_requested.connect(requested.append)
    with qtbot.waitSignal(window.load_finished, timeout=20_000, raising=False) as loaded:
        # a double-click is a click, then the second press (QTest.mouseDClick alone lacks the first click)
        QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         rect.center())
        QTest.mouseDClick(panel.table.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                          rect.center())
    assert loaded.signal_triggered, (failures, requested, window.statusBar().currentMessage())
    volume = loaded.args[0]
    assert volume.metadata.patient_id == "TEST0002" and volume.array.shape[0] == 8

    # remove asks first; No keeps the study
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    panel.table.selectRow(row)
    assert panel.remove_selected() == 0 and panel.model.rowCount() == 3 and "DOE JOHN" in asked[0]
    window.state.set_hide_phi(True)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    panel.table.selectRow(row)
    assert panel.remove_selected() == 8
    assert "DOE" not in asked[-1]  # no name in the dialog with Hide PHI on
    assert panel.model.rowCount() == 2 and len(list((root / "b").glob("*.dcm"))) == 8  # files stay


def test_cancel_keeps_what_was_indexed(qtbot, window: MainWindow, tmp_path: Path) -> None:
    root = tmp_path / "many"
    for k in range(10):
        _write_study(root / f"p{k}", f"TEST^P{k}", f"TEST{k:04d}", "20240101", "CT", n=48)
    panel = _studies_panel(window)
    worker = panel.import_paths([str(root)], chunk=20)  # a transaction per 20 files
    cancelled = []
    worker.signals.cancelled.connect(lambda: cancelled.append(1))
    t0 = time.perf_counter()
    while not cancelled and time.perf_counter() - t0 < 30:  # (done is set before the signal arrives)
        QCoreApplication.processEvents()
        if "Indexed" in panel.status.text():
            panel.cancel_import()
        time.sleep(0.005)
    assert cancelled, panel.status.text()
    assert "cancelled" in panel.status.text() and panel.import_button.isEnabled()
    partial = sum(r["NumberOfStudyRelatedInstances"] for r in panel.model.rows)
    assert 0 < partial < 480
    with qtbot.waitSignal(panel.imported, timeout=60_000) as done:
        panel.import_paths([str(root)])
    assert done.args[0]["added"] == 480 - partial
    assert sum(r["NumberOfStudyRelatedInstances"] for r in panel.model.rows) == 480


def test_date_presets() -> None:
    today = dt.date(2026, 12, 7)
    assert date_range("Any date", today) is None
    assert date_range("Today", today) == "20261207-20261207"
    assert date_range("Last 7 days", today) == "20261201-20261207"
    assert date_range("This year", today) == "20260101-20261207"
