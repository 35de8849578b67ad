"""The DICOM nodes dialog (issue 18 part 3) and the Storage SCP that runs while the window is open.

The dialog writes ``nodes.toml`` only on OK (tomllib reads back what was typed), refuses what is not valid
with a line in the dialog (nothing written), Verify runs a C-ECHO against a real SCP (medview's own, started
here) and says 'connection refused' for a port nobody listens on.  With ``listen`` set, a window started on
that configuration receives a C-STORE from an allowed AE title and Orthanc's C-MOVE into its Studies list, and
refuses an AE title not allowed."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import QSettings

from medview.io.net.dimse import send
from medview.io.net.nodes import NetworkError, Node, add_node, load_nodes, nodes_path, set_listener
from medview.io.net.scp import StorageSCP
from medview.io.studydb import StudyDatabase
from tests.net.orthanc import MEDVIEW_AET, free_port, make_ct_series


def _dialog(qtbot):
    from medview.qt.dialogs.nodes import NodesDialog

    dialog = NodesDialog()
    qtbot.addWidget(dialog)
    return dialog


def _fill(dialog, name: str, ae: str, host: str, port: int) -> None:
    dialog.new_entry()
    dialog.name.setText(name)
    dialog.kind.setCurrentText("DICOM (DIMSE)")
    dialog.ae_title.setText(ae)
    dialog.host.setText(host)
    dialog.port.setValue(port)


def test_the_dialog_writes_nodes_toml_on_ok_only(qtbot) -> None:
    from medview.qt.dialogs.nodes import WEB

    dialog = _dialog(qtbot)
    _fill(dialog, "pacs", "ORTHANC", "pacs.example.org", 4242)
    assert dialog.apply_entry()
    dialog.new_entry()
    dialog.name.setText("archive")
    dialog.kind.setCurrentText(WEB)
    assert not dialog.ae_title.isVisibleTo(dialog) and dialog.url.isVisibleTo(dialog)
    dialog.url.setText("https://archive.example.org/dicom-web/")
    dialog.user.setText("reader")
    dialog.password.setText("secret-not-saved")
    assert dialog.apply_entry()
    assert dialog.table.rowCount() == 2
    assert not nodes_path().exists()  # nothing written before OK
    dialog.local_ae.setText("READING1")
    dialog.listen.setChecked(True)
    dialog.listen_port.setValue(11113)
    dialog.allow.setText("ORTHANC, MODALITY1")
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    text = nodes_path().read_text(encoding="utf-8")
    assert "secret-not-saved" not in text
    data = tomllib.loads(text)
    assert data["local"] == {"ae_title": "READING1", "port": 11113, "listen": True, "allow": ["ORTHANC", "MODALITY1"]}
    assert data["nodes"]["pacs"] == {"ae_title": "ORTHANC", "host": "pacs.example.org", "port": 4242, "tls": False}
    assert data["web"]["archive"] == {"url": "https://archive.example.org/dicom-web", "user": "reader"}
    book = load_nodes()
    assert book.nodes["pacs"].local_ae == "READING1" and book.allowed() == ["ORTHANC", "MODALITY1"]

    # editing: select the node, change its port, remove the web server, Cancel: the file stays as it was
    again = _dialog(qtbot)
    again.table.selectRow(0)
    assert again.name.text() == "pacs" and again.port.value() == 4242
    again.port.setValue(104)
    assert again.apply_entry()
    again.table.selectRow(1)
    assert again.name.text() == "archive" and again.password.text() == "secret-not-saved"  # this session only
    assert again.remove_entry()
    again.reject()
    assert nodes_path().read_text(encoding="utf-8") == text


@pytest.mark.parametrize(("field", "value", "message"), [
    ("name", "my pacs", "node name 'my pacs' is not valid"),
    ("ae_title", "A" * 17, "is not valid: 1 to 16 characters"),
    ("host", "", "the node needs a host"),
])
def test_what_is_not_valid_is_said_and_not_applied(qtbot, field: str, value: str, message: str) -> None:
    dialog = _dialog(qtbot)
    _fill(dialog, "pacs", "ORTHANC", "127.0.0.1", 4242)
    getattr(dialog, field).setText(value)
    assert not dialog.apply_entry()
    assert message in dialog.status.text()
    assert dialog.table.rowCount() == 0


def test_a_bad_local_setting_keeps_the_dialog_open(qtbot) -> None:
    dialog = _dialog(qtbot)
    dialog.allow.setText("GOOD, BAD\\AE")
    dialog.accept()
    assert dialog.status.text().startswith("Not saved: allowed AE title") and "BAD" in dialog.status.text()
    assert dialog.result() != dialog.DialogCode.Accepted and not nodes_path().exists()


def _wait_verified(qtbot, dialog, worker) -> None:
    """Until the dialog says the outcome: ``worker.done`` is set in the worker's thread before its signal is
    delivered, so the status label changes a moment later, in the GUI thread."""
    qtbot.waitUntil(lambda: worker.done and not dialog.status.text().startswith("Verifying"), timeout=20_000)


def test_verify_echoes_the_node_in_the_form(qtbot) -> None:
    from medview.qt.workers import wait_for_all

    port = free_port()
    with StorageSCP(port, ae_title="PEER", allow=None):
        dialog = _dialog(qtbot)
        _fill(dialog, "peer", "PEER", "127.0.0.1", port)
        worker = dialog.verify()  # not applied, not saved: Verify uses the form
        _wait_verified(qtbot, dialog, worker)
        assert "C-ECHO ok" in dialog.status.text(), dialog.status.text()
    _fill(dialog, "down", "NOBODY", "127.0.0.1", free_port())
    worker = dialog.verify()
    _wait_verified(qtbot, dialog, worker)
    assert "Verify failed" in dialog.status.text() and "connection refused" in dialog.status.text()
    wait_for_all()


def _window(qtbot, tmp_path: Path):
    from medview.qt.app import configure
    from medview.qt.main_window import MainWindow

    configure()
    window = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    return window


def test_the_window_receives_while_it_is_open(qtbot, orthanc, tmp_path: Path) -> None:
    """Orthanc's DicomModalities names MEDVIEW at ``orthanc.medview_scp_port``: the window listens there."""
    from medview.qt.workers import wait_for_all

    add_node("orthanc", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}")
    set_listener(listen=True, port=orthanc.medview_scp_port, allow=["SENDER", orthanc.aet])
    window = _window(qtbot, tmp_path)
    try:
        panel = window.pacs
        qtbot.waitUntil(lambda: panel.listener is not None, timeout=5_000)
        assert f"port {orthanc.medview_scp_port}" in panel.listener_status.text()
        me = Node(name="me", ae_title=MEDVIEW_AET, host="127.0.0.1", port=orthanc.medview_scp_port,
                  local_ae="SENDER")
        pushed = make_ct_series(tmp_path / "push", patient_name="PUSH^PATIENT", patient_id="TEST0601",
                                study_date="20240601", slices=4, seed=60)
        with qtbot.waitSignal(panel.retrieved, timeout=20_000) as got:
            assert send(me, pushed)["sent"] == 4
        study = str(pydicom.dcmread(pushed[0]).StudyInstanceUID)
        assert got.args[0] == study
        qtbot.waitUntil(lambda: any(r["StudyInstanceUID"] == study for r in window.studies.model.rows),
                        timeout=5_000)
        assert "Received 4 instance(s) from SENDER" in panel.listener_status.text()
        assert "PUSH" not in panel.listener_status.text()

        # Orthanc sends a study to the workstation (C-MOVE to MEDVIEW, as a PACS user would ask for)
        moved = make_ct_series(tmp_path / "move", patient_name="MOVE^PATIENT", patient_id="TEST0602",
                               study_date="20240602", slices=5, seed=61)
        orthanc.upload(moved)
        moved_study = str(pydicom.dcmread(moved[0]).StudyInstanceUID)
        orthanc_id = next(s for s in orthanc.studies()
                          if orthanc.get_json(f"/studies/{s}")["MainDicomTags"]["StudyInstanceUID"] == moved_study)
        with qtbot.waitSignal(panel.retrieved, timeout=30_000) as got:
            orthanc.request("POST", "/modalities/medview/store", data=orthanc_id.encode(), content_type="text/plain")
        assert got.args[0] == moved_study
        with StudyDatabase() as db:
            row = db.list_studies(study_uid=moved_study)[0]
            assert row["Complete"] and row["NumberOfStudyRelatedInstances"] == 5
            stored = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in db.files_of(moved_study)}
        assert stored == {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in moved}

        intruder = Node(name="me", ae_title=MEDVIEW_AET, host="127.0.0.1", port=orthanc.medview_scp_port,
                        local_ae="INTRUDER")
        with pytest.raises(NetworkError, match="rejected"):
            send(intruder, pushed)
    finally:
        window.close()
        wait_for_all()
    t0 = time.time()
    while time.time() - t0 < 5:  # the window's SCP is stopped: its port is free again
        try:
            StorageSCP(orthanc.medview_scp_port, allow=None).start().stop()
            break
        except NetworkError:
            time.sleep(0.1)
    else:
        pytest.fail("the window's Storage SCP still listens after the window closed")


def test_a_port_in_use_is_said_in_the_panel(qtbot, tmp_path: Path) -> None:
    from medview.qt.workers import wait_for_all

    port = free_port()
    with StorageSCP(port, allow=None):  # someone else has the port
        set_listener(listen=True, port=port, allow=["SENDER"])
        window = _window(qtbot, tmp_path)
        try:
            qtbot.waitUntil(lambda: "not running" in window.pacs.listener_status.text(), timeout=5_000)
            assert f"port {port}" in window.pacs.listener_status.text() and window.pacs.listener is None
        finally:
            window.close()
            wait_for_all()
