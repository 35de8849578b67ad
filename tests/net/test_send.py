"""C-STORE from medview (medview.io.net.dimse.send, ``medview pacs send``) to a real Orthanc 1.10.1, checked
through Orthanc's REST API (/instances/<id>/file: the pixel data stored equals the pixel data sent).
A module of its own so that its archive (emptied at the module's start) holds only what these tests send."""

from __future__ import annotations

import contextlib
import io

import pytest

from medview.io.net import dimse
from medview.io.net.nodes import NetworkError, Node
from tests.net.orthanc import Orthanc, make_ct_series, run_pacs


@pytest.fixture(scope="module")
def node(orthanc: Orthanc) -> Node:
    return Node(name="orthanc-test", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port)


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_send_a_series_over_one_association_arrives_intact(orthanc, node, tmp_path, monkeypatch):
    import numpy as np
    import pydicom

    files = make_ct_series(tmp_path / "send", patient_name="SENDER^SAM", patient_id="TEST0100", study_date="20230707",
                           slices=20, size=32, seed=42)
    opened = []
    original = dimse.associate

    @contextlib.contextmanager
    def counting(*args, **kwargs):
        opened.append(args[0])
        with original(*args, **kwargs) as assoc:
            yield assoc

    monkeypatch.setattr(dimse, "associate", counting)
    result = dimse.send(node, [tmp_path / "send"])
    assert (result["sent"], result["failed"], result["skipped"]) == (20, 0, 0)
    assert len(opened) == 1  # one association for the 20 files
    print(f"C-STORE of 20 slices (32x32) over one association: {result['seconds'] * 1000:.0f} ms")
    sent = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f) for f in files}
    series = dimse.find(node, "SERIES", patient_id="TEST0100")
    assert [r["NumberOfSeriesRelatedInstances"] for r in series] == [20]
    arrived = 0
    for instance in orthanc.instances():
        stored = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
        uid = str(stored.SOPInstanceUID)
        if uid not in sent:
            continue
        original_ds = sent[uid]
        assert stored.PatientID == "TEST0100"
        assert stored.InstanceNumber == original_ds.InstanceNumber
        assert stored.PixelData == original_ds.PixelData
        np.testing.assert_array_equal(stored.pixel_array, original_ds.pixel_array)
        arrived += 1
    assert arrived == 20


def test_send_of_objects_the_peer_does_not_store_says_so(node, tmp_path):
    import pydicom

    files = make_ct_series(tmp_path / "odd", patient_name="ODD^OSCAR", patient_id="TEST0200", study_date="20230808",
                           slices=1)
    ds = pydicom.dcmread(files[0])
    private_class = "1.2.826.0.1.3680043.8.498.999999.1"  # a SOP class nobody knows (Orthanc: not promiscuous)
    ds.SOPClassUID = private_class
    ds.file_meta.MediaStorageSOPClassUID = private_class
    ds.save_as(files[0], enforce_file_format=True)
    with pytest.raises(NetworkError) as caught:
        dimse.send(node, files)
    assert _one_line(caught.value).startswith(f"{node.label}: the peer accepted none of the 2 presentation "
                                                  "context(s) proposed for C-STORE of 1 SOP class")


def test_send_nothing_dicom(node, tmp_path):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with pytest.raises(NetworkError, match="nothing to send: no DICOM file among 1 file"):
        dimse.send(node, [tmp_path])


def test_cli_send(orthanc, node, tmp_path, capsys):
    make_ct_series(tmp_path / "cli-send", patient_name="CLI^CARL", patient_id="TEST0300", study_date="20240101",
                   slices=4)
    assert run_pacs(["send", node.address, str(tmp_path / "cli-send")]) == 0
    assert capsys.readouterr().out.startswith(f"sent 4 file(s) to {node.address} in ")
    assert [r["NumberOfStudyRelatedInstances"] for r in dimse.find(node, "STUDY", patient_id="TEST0300")] == [4]


@pytest.mark.parametrize("only_implicit", [False, True])
def test_send_to_dcmtk_as_stored_or_converted_when_the_peer_wants_another_syntax(tmp_path, only_implicit):
    """A file whose own transfer syntax the peer accepts goes out byte for byte (pynetdicom streams it from the
    disk); one it does not (DCMTK's storescp +xi takes Implicit VR Little Endian only) is read and converted.
    DCMTK's storescp is the independent receiver; +B writes what arrived without re-encoding it."""
    import subprocess
    import time

    import numpy as np
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from tests.conftest import require_tool
    from tests.net.orthanc import free_port

    storescp = require_tool("storescp")
    files = make_ct_series(tmp_path / "src", patient_name="SEND^DCMTK", patient_id="TEST0701", study_date="20240102",
                           slices=3, size=16, seed=7)
    received = tmp_path / "rx"
    received.mkdir()
    port = free_port()
    args = [storescp, "--output-directory", str(received), "-aet", "DCMTKRX", "+B"]
    args += ["+xi"] if only_implicit else []
    server = subprocess.Popen([*args, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        peer = Node(name="dcmtk", ae_title="DCMTKRX", host="127.0.0.1", port=port)
        for _ in range(50):  # until storescp listens
            try:
                dimse.echo(peer, timeout=2.0)
                break
            except NetworkError:
                time.sleep(0.1)
        result = dimse.send(peer, files)
        assert result["sent"] == 3, result
        deadline = time.time() + 10
        while len(list(received.iterdir())) < 3 and time.time() < deadline:
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)
    by_uid = {str(pydicom.dcmread(f).SOPInstanceUID): f for f in files}
    arrived = [pydicom.dcmread(f) for f in received.iterdir()]
    assert sorted(str(ds.SOPInstanceUID) for ds in arrived) == sorted(by_uid)
    for ds in arrived:
        source = pydicom.dcmread(by_uid[str(ds.SOPInstanceUID)])
        assert ds.file_meta.TransferSyntaxUID == (ImplicitVRLittleEndian if only_implicit else ExplicitVRLittleEndian)
        assert np.array_equal(ds.pixel_array, source.pixel_array)
        assert ds.PatientID == "TEST0701" and ds.ImagePositionPatient == source.ImagePositionPatient
        if not only_implicit:  # sent as stored: the data set's bytes are the file's, after its meta
            raw = by_uid[str(ds.SOPInstanceUID)].read_bytes()
            got = next(f for f in received.iterdir() if pydicom.dcmread(f).SOPInstanceUID == ds.SOPInstanceUID)
            assert got.read_bytes().endswith(raw[-(len(raw) - _meta_end(raw)):])


def _meta_end(data: bytes) -> int:
    """Where the data set starts in a Part 10 file: after the preamble, 'DICM' and the group 2 elements."""
    import struct

    offset = 132
    while data[offset:offset + 2] == b"\x02\x00":
        vr = data[offset + 4:offset + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL", b"OV"):
            length = struct.unpack("<I", data[offset + 8:offset + 12])[0]
            offset += 12 + length
        else:
            length = struct.unpack("<H", data[offset + 6:offset + 8])[0]
            offset += 8 + length
    return offset
