"""The Studies panel's Send to...: the selected studies go to a configured node (the real Orthanc), one
association each, in a process of its own, and every instance arrives with its pixel data unchanged."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDockWidget, QInputDialog

from medview.io.net.nodes import add_node
from medview.io.studydb import StudyDatabase
from tests.net.orthanc import make_ct_series


def test_send_to_a_configured_node(qtbot, orthanc, tmp_path: Path, monkeypatch) -> None:
    from medview.qt.app import configure
    from medview.qt.main_window import MainWindow
    from medview.qt.workers import wait_for_all

    files = make_ct_series(tmp_path / "s", patient_name="DOE^JANE", patient_id="TEST0301", study_date="20240105",
                           slices=6, seed=11)
    files += make_ct_series(tmp_path / "t", patient_name="ROE^RICHARD", patient_id="TEST0302",
                            study_date="20240106", slices=4, seed=12)
    with StudyDatabase() as db:
        db.import_paths([tmp_path / "s", tmp_path / "t"], parallel=False)
    add_node("orthanc", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
    configure()
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    try:
        window.findChild(QDockWidget, "dock_Studies").raise_()
        panel = window.studies
        qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=5_000)
        panel.table.selectAll()  # both studies
        asked = []
        monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: asked.append(a[3]) or ("orthanc", True))
        before = set(orthanc.instances())
        worker = panel.send_selected()
        assert worker is not None and asked == [["orthanc"]]
        qtbot.waitUntil(lambda: "Sent 10 file(s)" in panel.status.text(), timeout=60_000)
        new = set(orthanc.instances()) - before
        assert len(new) == 10
        sent = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files}
        for instance in new:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
            assert ds.PixelData == sent[ds.SOPInstanceUID]
        assert panel.send_button.isEnabled()
    finally:
        window.close()
        wait_for_all()
