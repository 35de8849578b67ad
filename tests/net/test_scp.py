"""medview's Storage SCP (issue 18 part 3): a C-STORE from an allowed node lands in the study database (pixel
data byte for byte); a calling AE title not on the allow-list is refused; a peer that aborts mid-transfer
leaves the instances it sent, in a study marked incomplete; a SOPInstanceUID with path characters never
becomes a path; C-MOVE from Orthanc to the SCP works with the node in the allow-list."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest

from medview.io.net.dimse import send
from medview.io.net.nodes import NetworkError, Node
from medview.io.net.scp import StorageSCP
from medview.io.studydb import StudyDatabase
from tests.net.orthanc import free_port, make_ct_series


def _wait(until, timeout_s: float = 10.0) -> None:
    t0 = time.time()
    while not until():
        assert time.time() - t0 < timeout_s, "timed out"
        time.sleep(0.02)


def _scp_node(port: int, local_ae: str) -> Node:
    return Node(name="medview", ae_title="MEDVIEW", host="127.0.0.1", port=port, local_ae=local_ae)


def test_an_allowed_node_stores_into_the_database(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "s", patient_name="DOE^JANE", patient_id="TEST0201", study_date="20240105",
                           slices=5, seed=4)
    evil = pydicom.dcmread(files[0])
    with pytest.warns(UserWarning):  # pydicom says the UID is invalid: on purpose
        evil.SOPInstanceUID = "../../../../tmp/medview-evil"
        evil.file_meta.MediaStorageSOPInstanceUID = evil.SOPInstanceUID
        evil.save_as(files[0])
    port = free_port()
    with StorageSCP(port, allow=["SENDER"]) as scp:
        result = send(_scp_node(port, "SENDER"), files)
        assert result["sent"] == 5
        _wait(lambda: scp.imports)
    assert scp.imports[0]["received"] == 5 and not scp.imports[0]["aborted"]
    study = str(pydicom.dcmread(files[1]).StudyInstanceUID)
    with StudyDatabase() as db:
        row = db.list_studies(study_uid=study)[0]
        assert row["Complete"] and row["NumberOfStudyRelatedInstances"] == 5
        stored = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in db.files_of(study)}
    for f in files:
        ds = pydicom.dcmread(f)
        assert stored[ds.SOPInstanceUID] == ds.PixelData
    assert not Path("/tmp/medview-evil").exists()


def test_a_calling_ae_not_allowed_is_refused(tmp_path: Path) -> None:
    files = make_ct_series(tmp_path / "s", patient_name="DOE^JOHN", patient_id="TEST0202", study_date="20240105",
                           slices=2, seed=5)
    port = free_port()
    with StorageSCP(port, allow=["SENDER"]) as scp:
        with pytest.raises(NetworkError, match="rejected"):
            send(_scp_node(port, "INTRUDER"), files)
        assert scp.received == 0
    with StudyDatabase() as db:
        assert db.list_studies() == []


def test_a_peer_aborting_mid_transfer_leaves_an_incomplete_study(tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    files = make_ct_series(tmp_path / "s", patient_name="ROE^RICHARD", patient_id="TEST0203", study_date="20240105",
                           slices=6, seed=6)
    port = free_port()
    with StorageSCP(port, allow=["SENDER"]) as scp:
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="MEDVIEW")
        assert assoc.is_established
        for f in files[:3]:
            assert assoc.send_c_store(pydicom.dcmread(f)).Status == 0x0000
        assoc.abort()  # three of six sent, then the peer goes away
        _wait(lambda: scp.imports)
    assert scp.imports[0]["aborted"] and scp.imports[0]["received"] == 3
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    with StudyDatabase() as db:
        row = db.list_studies(study_uid=study)[0]
        assert not row["Complete"] and row["NumberOfStudyRelatedInstances"] == 3


def test_c_move_from_orthanc_into_medviews_scp(orthanc, tmp_path: Path) -> None:
    """Orthanc's C-MOVE destination 'medview' is this SCP's AE title at the port its config names."""
    from medview.io.net.dimse import _pynetdicom

    files = make_ct_series(tmp_path / "m", patient_name="POE^EDGAR", patient_id="TEST0204", study_date="20240105",
                           slices=4, seed=7)
    orthanc.upload(files)
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    pynetdicom = _pynetdicom()
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

    with StorageSCP(orthanc.medview_scp_port, allow=[orthanc.aet]) as scp:
        ae = pynetdicom.AE(ae_title="MEDVIEW")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        responses = assoc.send_c_move(query, "MEDVIEW", StudyRootQueryRetrieveInformationModelMove)
        statuses = [int(s.Status) for s, _ in responses]
        assoc.release()
        assert statuses[-1] == 0x0000
        _wait(lambda: scp.imports)
    with StudyDatabase() as db:
        assert db.list_studies(study_uid=study)[0]["NumberOfStudyRelatedInstances"] == 4


def test_pacs_listen_stores_what_a_node_sends(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    files = make_ct_series(tmp_path / "l", patient_name="DOE^JANE", patient_id="TEST0205", study_date="20240105",
                           slices=3, seed=8)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "medview.cli.main", "pacs", "listen", "--port", str(port),
                             "--allow", "SENDER"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "Storage SCP MEDVIEW on port" in line, line
        send(_scp_node(port, "SENDER"), files)
        printed = proc.stdout.readline()
        assert "received 3 instance(s) from SENDER" in printed and "DOE" not in printed
    finally:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    with StudyDatabase() as db:
        assert db.list_studies(study_uid=study)[0]["NumberOfStudyRelatedInstances"] == 3
