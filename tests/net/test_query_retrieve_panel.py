"""The PACS panel against the real Orthanc: Verify (C-ECHO), a search by name and by ID, Retrieve of the
selected study into the database (the Studies list shows it, voxels equal to pydicom's), a clear line for a
node that is down; a study's series listed when its row is opened and one series retrieved alone; the same
through Orthanc's DICOMweb server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
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
        qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1 and "1 study" in panel.status.text(),
                        timeout=20_000)
        assert panel.rows[0]["PatientID"] == "TEST0401"
        panel.search.setText("TEST0402")  # an ID in the same box
        panel.find()
        qtbot.waitUntil(lambda: panel.rows and panel.rows[0]["PatientID"] == "TEST0402", timeout=20_000)
        panel.search.setText("DOE*")
        panel.find()
        qtbot.waitUntil(lambda: panel.rows and panel.rows[0]["PatientID"] == "TEST0401", timeout=20_000)
        panel.tree.topLevelItem(0).setSelected(True)
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


def _two_series_study(folder: Path, name: str, patient_id: str, seed: int) -> tuple[list[Path], list[Path]]:
    first = make_ct_series(folder / "s1", patient_name=name, patient_id=patient_id, study_date="20240301",
                           slices=4, seed=seed, description="FIRST")
    study = str(pydicom.dcmread(first[0]).StudyInstanceUID)
    second = make_ct_series(folder / "s2", patient_name=name, patient_id=patient_id, study_date="20240301",
                            slices=3, seed=seed + 1, description="SECOND", study_uid=study)
    for path in second:  # series number 2 (make_ct_series numbers every series 1)
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 2
        ds.save_as(path)
    return first, second


def _series_in_database(study: str) -> dict[str, int]:
    from medview.io.studydb import StudyDatabase

    with StudyDatabase() as db:
        return {row["SeriesInstanceUID"]: row["NumberOfSeriesRelatedInstances"] for row in db.list_series(study)}


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_one_series_of_a_study_is_retrieved_alone(qtbot, orthanc, tmp_path: Path, kind: str) -> None:
    from medview.io.net.nodes import add_web
    from medview.qt.panels.query_retrieve import WEB_PREFIX, QueryRetrievePanel
    from medview.qt.workers import wait_for_all

    name = f"SERIES^ONLY{kind.upper()}"  # the Orthanc is the module's: each run finds its own study only
    first, second = _two_series_study(tmp_path, name, f"TEST05{kind[:2].upper()}", seed=40)
    orthanc.upload(first + second)
    study = str(pydicom.dcmread(first[0]).StudyInstanceUID)
    wanted = str(pydicom.dcmread(second[0]).SeriesInstanceUID)
    if kind == "dimse":
        add_node("orthanc", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
        choice = "orthanc"
    else:
        add_web("orthanc-web", f"{orthanc.url}/dicom-web")
        choice = WEB_PREFIX + "orthanc-web"
    panel = QueryRetrievePanel()
    qtbot.addWidget(panel)
    panel.show()
    try:
        panel.nodes.setCurrentIndex(panel.nodes.findData(choice))
        assert panel.nodes.currentData() == choice
        panel.search.setText(name)
        panel.find()
        # done is set in the worker's thread before its signal reaches the panel: wait for the panel's answer
        qtbot.waitUntil(lambda: panel.worker.done and not panel.status.text().startswith("Searching"),
                        timeout=20_000)
        assert panel.tree.topLevelItemCount() == 1, panel.status.text()
        row = panel.tree.topLevelItem(0)
        panel.tree.expandItem(row)
        qtbot.waitUntil(lambda: row.childCount() == 2, timeout=20_000)
        assert [row.child(i).text(5) for i in range(2)] == ["FIRST series", "SECOND series"]
        assert [row.child(i).text(4) for i in range(2)] == ["4", "3"]
        # the first column (all a narrow dock shows) says which series it is
        assert row.child(1).text(0) == "Series 2 · CT · 3 images · SECOND series", row.child(1).text(0)
        row.child(1).setSelected(True)
        assert panel.selected_targets() == [(study, wanted)]
        with qtbot.waitSignal(panel.retrieved, timeout=60_000) as done:
            assert panel.retrieve_selected()
        assert done.args[0] == study
        assert _series_in_database(study) == {wanted: 3}  # the other series stayed on the node
        row.setSelected(True)  # the study and one of its series selected: the study, once
        assert panel.selected_targets() == [(study, None)]
    finally:
        panel.shutdown()
        wait_for_all()
