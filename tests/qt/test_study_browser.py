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
    title = window.windowTitle()  # opened from the index: the series, not the database file; no patient
    assert title == f"medview - {volume.metadata.series_description}" and "DOE" not in title, title

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


def _second_series(study_folder: Path, out: Path, n: int = 4) -> str:
    """The first ``n`` slices of a study written again as its series 2; returns the series UID."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for i, src in enumerate(sorted(study_folder.glob("*.dcm"))[:n]):
        ds = pydicom.dcmread(src)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = series, 2, "SECOND"
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(out / f"s2_{i:03d}.dcm", enforce_file_format=True)
    return series


def test_series_with_thumbnails_several_studies_and_a_copied_zip(qtbot, window: MainWindow, tmp_path: Path,
                                                                 monkeypatch, medview_data_dir: Path) -> None:
    import zipfile

    jane = _write_study(tmp_path / "jane", "DOE^JANE", "TEST0011", "20240105", "CT", n=6)
    second = _second_series(tmp_path / "jane", tmp_path / "jane2", n=4)
    john = _write_study(tmp_path / "john", "DOE^JOHN", "TEST0012", "20240106", "CT", n=5)
    archive = tmp_path / "john.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((tmp_path / "john").glob("*.dcm")):
            z.write(f, f"CD/{f.name}")
    panel = _studies_panel(window)
    with qtbot.waitSignal(panel.imported, timeout=60_000):
        panel.import_paths([str(tmp_path / "jane"), str(tmp_path / "jane2")])
    panel.copy_action.setChecked(True)  # the menu's "Copy the files into medview's store"
    with qtbot.waitSignal(panel.imported, timeout=60_000) as done:
        panel.import_paths([str(archive)])
    assert done.args[0]["added"] == 5
    archive.unlink()  # the medium is gone: the copied study still opens
    stored = list((medview_data_dir / "store").rglob("*.dcm"))
    assert len(stored) == 5
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=5_000)
    row_of = {r["StudyInstanceUID"]: i for i, r in enumerate(panel.model.rows)}
    assert sorted(row_of) == sorted([jane, john])

    # one study selected: its two series below the list, each with a thumbnail
    panel.table.selectRow(row_of[jane])
    qtbot.waitUntil(lambda: panel.preview.tree.topLevelItemCount() == 2, timeout=10_000)
    qtbot.waitUntil(lambda: panel.preview.thumbnails_ready() == 2, timeout=30_000)
    items = [panel.preview.tree.topLevelItem(i) for i in range(2)]
    assert all(not it.icon(0).isNull() for it in items)
    assert panel.preview.status.text() == "DOE JANE · 2024-01-05 · CT: 2 series"  # the study, not its UID
    target = next(it for it in items if "SECOND" in it.text(0))
    assert target.data(0, Qt.ItemDataRole.UserRole + 1) == second
    with qtbot.waitSignal(window.load_finished, timeout=20_000) as loaded:
        panel.preview.tree.itemActivated.emit(target, 0)  # double-click / Enter on the series
    assert loaded.args[0].array.shape[0] == 4 and window.current_path == jane
    window.state.set_hide_phi(True)
    panel.table.clearSelection()
    panel.table.selectRow(row_of[jane])
    qtbot.waitUntil(lambda: panel.preview.status.text() == "2024-01-05 · CT: 2 series", timeout=10_000)
    window.state.set_hide_phi(False)

    # both studies selected: Open lists the series of both in the Series tab and shows the first study's
    panel.table.selectAll()
    qtbot.waitUntil(lambda: "2 studies selected" in panel.preview.status.text(), timeout=5_000)
    with qtbot.waitSignal(window.load_finished, timeout=20_000) as loaded:
        panel.open_button.click()
    assert window.browser.tree.topLevelItemCount() == 3
    first = panel.model.rows[0]["StudyInstanceUID"]
    assert window.current_path == first
    other = next(s for s in window.browser.series if s.study_uid != first)
    with qtbot.waitSignal(window.load_finished, timeout=20_000) as loaded:
        window.browser.series_activated.emit(window.browser.path, other.uid)
    assert window.current_path == other.study_uid and window.current_uid == other.uid
    assert window.browser.tree.topLevelItemCount() == 3  # the list of both studies stays
    assert window.state.volume.array.shape[0] == other.n_slices

    # Remove with both selected asks once, for both
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.Yes)
    panel.table.selectAll()
    assert panel.remove_selected() == 15
    assert len(asked) == 1 and asked[0].startswith("Remove 2 studies (15 images)")
    assert panel.model.rowCount() == 0
    assert not list((medview_data_dir / "store").rglob("*.dcm"))  # the copies medview owned are deleted
    assert len(list((tmp_path / "jane").glob("*.dcm"))) == 6  # files indexed where they are stay


def test_the_title_of_a_series_from_the_index_without_a_description() -> None:
    """It named the database file ('medview - studies.sqlite') for every series without a description."""
    import numpy as np

    from medview.core.geometry import Geometry
    from medview.core.volume import Volume, VolumeMetadata
    from medview.qt.main_window import _title

    def volume(**meta) -> Volume:
        return Volume(np.zeros((2, 2, 2), np.int16), Geometry((2, 2, 2)),
                      VolumeMetadata(patient_name="DOE^JANE", patient_id="TEST0009", **meta))

    assert _title(volume(source="/data/studies.sqlite", modality="CT", series_number=3,
                         study_date="20200320")) == "CT series 3 of 2020-03-20"
    assert _title(volume(source="/data/studies.sqlite", modality="MR")) == "MR series"
    assert _title(volume(source="/data/studies.sqlite", series_description="T1 axial")) == "T1 axial"
    assert _title(volume(source="/cases/lung1/", modality="CT")) == "lung1"
