"""The PACS panel against the real Orthanc: Verify (C-ECHO), a search by name and by ID, Retrieve of the
selected study into the database (the Studies list shows it, voxels equal to pydicom's), and a clear line for a
node that is down."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDockWidget

from medview.io.net.nodes import add_node
from tests.net.orthanc import make_ct_series


def test_search_and_retrieve_from_the_panel(qtbot, orthanc, tmp_path: Path) -> None:
    from medview.qt.app import configure
    from medview.qt.main_window import MainWindow
    from medview.qt.workers import wait_for_all

    jane = make_ct_series(tmp_path / "a", patient_name="DOE^JANE", patient_id="TEST0401", study_date="20240105",
                          slices=5, seed=21)
    orthanc.upload(jane)
    orthanc.upload(make_ct_series(tmp_path / "b", patient_name="ROE^RICHARD", patient_id="TEST0402",
                                  study_date="20240105", slices=3, seed=22))
    add_node("orthanc", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
    add_node("down", "NOBODY@127.0.0.1:1")
    configure()
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1400, 900)
    window.show()
    try:
        window.findChild(QDockWidget, "dock_PACS").raise_()
        panel = window.pacs
        assert panel.nodes.count() == 2
        panel.nodes.setCurrentIndex(panel.nodes.findData("orthanc"))
        panel.verify()
        qtbot.waitUntil(lambda: "C-ECHO ok" in panel.status.text(), timeout=20_000)
        panel.search.setText("doe")
        panel.find()
        qtbot.waitUntil(lambda: panel.table.rowCount() == 1 and "1 study" in panel.status.text(), timeout=20_000)
        assert panel.rows[0]["PatientID"] == "TEST0401"
        panel.search.setText("TEST0402")  # an ID in the same box
        panel.find()
        qtbot.waitUntil(lambda: panel.rows and panel.rows[0]["PatientID"] == "TEST0402", timeout=20_000)
        panel.search.setText("DOE*")
        panel.find()
        qtbot.waitUntil(lambda: panel.rows and panel.rows[0]["PatientID"] == "TEST0401", timeout=20_000)
        panel.table.selectRow(0)
        with qtbot.waitSignal(panel.retrieved, timeout=60_000) as done:
            assert panel.retrieve_selected()
        study = done.args[0]
        assert study == str(pydicom.dcmread(jane[0]).StudyInstanceUID)
        qtbot.waitUntil(lambda: any(r["StudyInstanceUID"] == study for r in window.studies.model.rows),
                        timeout=5_000)
        from medview.io.readers import open_image

        reference = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float64) - 1024.0 for f in jane])
        np.testing.assert_array_equal(open_image(study).array.astype(np.float64), reference)
        panel.nodes.setCurrentIndex(panel.nodes.findData("down"))
        panel.find()
        qtbot.waitUntil(lambda: "Search failed" in panel.status.text(), timeout=20_000)
        assert "connection refused" in panel.status.text() and "DOE" not in panel.status.text()
    finally:
        window.close()
        wait_for_all()
