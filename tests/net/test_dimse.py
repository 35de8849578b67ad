"""medview's DIMSE client (medview.io.net.dimse) and ``medview pacs`` against a real Orthanc 1.10.1.

The archive is filled through Orthanc's REST API (POST /instances) with small pydicom CT/MR series of invented
patients; what medview finds is checked against what was uploaded, and what medview sends is read back through
REST (/instances/<id>/file).
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from medview.io.net import dimse
from medview.io.net.nodes import NetworkError, Node, add_node
from tests.net.orthanc import Orthanc, free_port, make_ct_series, run_pacs

PATIENTS = [  # (name, id, birth date, study date, modality)
    ("DOE^JANE", "TEST0001", "19610203", "20200115", "CT"),
    ("DOE^JOHN", "TEST0002", "19720304", "20210310", "CT"),
    ("ROE^RICHARD", "TEST0003", "19830405", "20220601", "MR"),
]


@pytest.fixture(scope="module")
def archive(orthanc: Orthanc, tmp_path_factory) -> dict:
    """Orthanc holding one 3-slice study per patient of PATIENTS; the study UIDs by patient ID."""
    folder = tmp_path_factory.mktemp("archive")
    studies = {}
    for index, (name, pid, born, date, modality) in enumerate(PATIENTS):
        files = make_ct_series(folder / pid, patient_name=name, patient_id=pid, birth_date=born, study_date=date,
                               modality=modality, description=f"{modality} study {index}", accession=f"ACC{index}",
                               seed=index)
        orthanc.upload(files)
        import pydicom

        studies[pid] = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert len(orthanc.studies()) == len(PATIENTS)
    return studies


@pytest.fixture(scope="module")
def node(orthanc: Orthanc) -> Node:
    return Node(name="orthanc-test", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port)


# --- C-ECHO and failures ------------------------------------------------------------------------------------

def test_echo_returns_the_round_trip(node):
    times = [dimse.echo(node, timeout=5) for _ in range(5)]
    assert all(0 < t < 5 for t in times)
    print(f"C-ECHO round trip (association + echo + release): min {min(times) * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")


def _one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text
    return text


def test_echo_to_a_closed_port_is_refused_naming_the_node(orthanc):
    port = free_port()
    closed = Node(name="nowhere", ae_title=orthanc.aet, host="127.0.0.1", port=port)
    with pytest.raises(NetworkError) as caught:
        dimse.echo(closed, timeout=2)
    text = _one_line(caught.value)
    assert text.startswith(f"nowhere (ORTHANCTEST@127.0.0.1:{port}): connection refused")


def test_echo_with_a_wrong_called_ae_title_is_rejected(orthanc):
    wrong = Node(name="wrong-ae", ae_title="NOTORTHANC", host="127.0.0.1", port=orthanc.dicom_port)
    with pytest.raises(NetworkError) as caught:
        dimse.echo(wrong, timeout=5)
    text = _one_line(caught.value)
    assert text.startswith(f"wrong-ae (NOTORTHANC@127.0.0.1:{orthanc.dicom_port}): association rejected")
    assert "Called AE title not recognised" in text  # pynetdicom's reason for Orthanc's A-ASSOCIATE-RJ


def test_a_port_that_accepts_but_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nobody ever reads or answers
        port = silent.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(NetworkError) as caught:
            dimse.echo(Node(name="silent", ae_title="ANY", host="127.0.0.1", port=port), timeout=1)
        elapsed = time.monotonic() - start
    assert "no answer to the association request within 1 s" in _one_line(caught.value)
    assert elapsed < 4


def test_a_dimse_response_that_comes_too_late_times_out():
    """A pynetdicom Verification SCP that takes 2 s to answer a C-ECHO, asked with a 0.5 s timeout."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    release = threading.Event()

    def slow_echo(event):
        release.wait(2)
        return 0x0000

    scp = AE(ae_title="SLOWSCP")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_ECHO, slow_echo)])
    try:
        port = server.server_address[1]
        with pytest.raises(NetworkError) as caught:
            dimse.echo(Node(name="slow", ae_title="SLOWSCP", host="127.0.0.1", port=port), timeout=0.5)
        assert _one_line(caught.value) == f"slow (SLOWSCP@127.0.0.1:{port}): no C-ECHO response within 0.5 s (timeout)"
    finally:
        release.set()
        server.shutdown()


def test_an_unknown_host_is_named():
    with pytest.raises(NetworkError) as caught:
        dimse.echo(Node(name="typo", ae_title="X", host="no-such-host.invalid", port=104), timeout=2)
    assert _one_line(caught.value).startswith("typo (X@no-such-host.invalid:104): unknown host 'no-such-host.invalid'")


# --- C-FIND -------------------------------------------------------------------------------------------------

def test_find_study_by_patient_id_returns_the_usual_keys(node, archive):
    rows = dimse.find(node, "study", patient_id="TEST0001")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == set(dimse.STUDY_KEYS)
    assert row == {
        "PatientName": "DOE^JANE", "PatientID": "TEST0001", "PatientBirthDate": "19610203",
        "StudyInstanceUID": archive["TEST0001"], "StudyDate": "20200115", "StudyTime": "101500",
        "AccessionNumber": "ACC0", "StudyDescription": "CT study 0", "ModalitiesInStudy": ["CT"],
        "NumberOfStudyRelatedInstances": 3,
    }


def test_find_by_patient_name_wildcards(node, archive):
    assert sorted(r["PatientID"] for r in dimse.find(node, "STUDY", patient_name="DOE^*")) == ["TEST0001", "TEST0002"]
    assert [r["PatientID"] for r in dimse.find(node, "STUDY", patient_name="?OE^RICH*")] == ["TEST0003"]
    assert [r["PatientName"] for r in dimse.find(node, "STUDY", patient_name="DOE^JAN?")] == ["DOE^JANE"]
    assert dimse.find(node, "STUDY", patient_name="NOBODY*") == []


def test_find_by_study_date_range(node, archive):
    def ids(date):
        return sorted(r["PatientID"] for r in dimse.find(node, "STUDY", study_date=date))

    assert ids("20210101-20211231") == ["TEST0002"]
    assert ids("20200115-20210310") == ["TEST0001", "TEST0002"]  # both ends included
    assert ids("20220101-") == ["TEST0003"]
    assert ids("-20201231") == ["TEST0001"]
    assert ids("20200115") == ["TEST0001"]
    assert ids("19990101-19991231") == []


def test_find_by_modality_and_study_uid(node, archive):
    assert [r["PatientID"] for r in dimse.find(node, "STUDY", modality="MR")] == ["TEST0003"]
    assert [r["PatientID"] for r in dimse.find(node, "STUDY", study_uid=archive["TEST0002"])] == ["TEST0002"]


def test_find_series_level(node, archive):
    rows = dimse.find(node, "series", patient_id="TEST0003")
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == set(dimse.SERIES_KEYS)
    assert row["StudyInstanceUID"] == archive["TEST0003"]
    assert (row["Modality"], row["SeriesNumber"], row["NumberOfSeriesRelatedInstances"]) == ("MR", 1, 3)
    assert row["SeriesDescription"] == "MR study 2 series"
    assert row["SeriesInstanceUID"].startswith("1.2.")
    ct = dimse.find(node, "SERIES", modality="CT")
    assert sorted(r["PatientID"] for r in ct) == ["TEST0001", "TEST0002"]
    within = dimse.find(node, "SERIES", study_uid=archive["TEST0001"])
    assert [r["PatientID"] for r in within] == ["TEST0001"]


def test_find_patient_level(node, archive):
    rows = dimse.find(node, "PATIENT", patient_name="DOE*")
    assert sorted((r["PatientID"], r["PatientBirthDate"]) for r in rows) == [("TEST0001", "19610203"),
                                                                         ("TEST0002", "19720304")]


def test_find_limit(node, archive):
    assert len(dimse.find(node, "STUDY", limit=2)) == 2


@pytest.mark.parametrize("date", ["2020-01-01", "20201301", "20210101-20200101", "-", "20200101-2021"])
def test_bad_date_ranges_are_refused_before_connecting(date):
    unreachable = Node(name="unused", ae_title="X", host="127.0.0.1", port=1)
    with pytest.raises(dimse.QueryError) as caught:
        dimse.find(unreachable, "STUDY", study_date=date)
    assert date in str(caught.value)


def test_find_times(node, archive):
    """Timing of C-FIND on the 3 studies (printed with -s)."""
    start = time.perf_counter()
    for _ in range(5):
        dimse.find(node, "STUDY")
    per_find = (time.perf_counter() - start) / 5
    print(f"C-FIND at study level on {len(PATIENTS)} studies: {per_find * 1000:.1f} ms each")
    assert per_find < 5


def test_no_patient_identifiers_in_log_lines(node, archive, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, pynetdicom's included, at DEBUG
    rows = dimse.find(node, "STUDY", patient_name="DOE^J*", patient_id="TEST0001")
    rows += dimse.find(node, "SERIES", patient_id="TEST0001")
    rows += dimse.find(node, "PATIENT", patient_name="DOE^JANE")
    assert len(rows) == 3
    medview_lines = [r.getMessage() for r in caplog.records if r.name.startswith("medview")]
    assert any("C-FIND" in line for line in medview_lines)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("DOE", "JANE", "TEST0001", "19610203"):
        assert secret not in everything, f"{secret!r} appears in a log line"


# --- the CLI ------------------------------------------------------------------------------------------------

_DRIVER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from tests.net.orthanc import run_pacs
    sys.exit(run_pacs(sys.argv[1:]))
""")


def _pacs_process(argv: list[str], env=None) -> subprocess.CompletedProcess:
    from tests.conftest import REPO

    return subprocess.run([sys.executable, "-c", _DRIVER.format(root=str(REPO)), *argv], capture_output=True,
                          text=True, timeout=60, env=env, cwd=REPO)


def test_cli_unreachable_node_is_one_line_on_stderr(medview_data_dir):
    import os

    port = free_port()
    env = dict(os.environ, MEDVIEW_DATA_DIR=str(medview_data_dir))
    add_node("gone", f"GONE@127.0.0.1:{port}")
    done = _pacs_process(["echo", "gone", "--timeout", "2"], env=env)
    assert done.returncode != 0
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines == [f"medview: error: gone (GONE@127.0.0.1:{port}): connection refused (nothing listens on port "
                     f"{port} of 127.0.0.1)"], done.stderr
    assert "Traceback" not in done.stderr
    done = _pacs_process(["find", "nosuchnode"], env=env)
    assert done.returncode != 0
    assert done.stderr.splitlines() == ["medview: error: unknown node 'nosuchnode' (configured nodes: gone; or give "
                                        "AE@HOST:PORT)"]


def test_cli_echo_find_and_nodes(orthanc, archive, capsys):
    address = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    assert run_pacs(["nodes", "add", "test-pacs", address]) == 0
    assert run_pacs(["nodes", "list"]) == 0
    out = capsys.readouterr().out
    assert "test-pacs" in out and address in out
    assert run_pacs(["echo", "test-pacs"]) == 0
    assert capsys.readouterr().out.startswith(f"test-pacs ({address}): C-ECHO ok in ")
    assert run_pacs(["find", "test-pacs", "--patient-name", "DOE^*"]) == 0
    captured = capsys.readouterr()
    table = captured.out.splitlines()
    assert table[0].split()[:3] == ["Date", "Patient", "ID"]
    assert len(table) == 3 and "TEST0001" in captured.out and "TEST0002" in captured.out
    assert "2 study match(es)" in captured.err
    assert run_pacs(["find", address, "--level", "series", "--modality", "MR", "--json"]) == 0
    import json

    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["PatientID"], r["Modality"]) for r in rows] == [("TEST0003", "MR")]
    assert run_pacs(["find", "test-pacs", "--date", "2020-01-01"]) == 3
    assert "study date '2020-01-01' is not YYYYMMDD" in capsys.readouterr().err
    assert run_pacs(["nodes", "remove", "test-pacs"]) == 0
    assert run_pacs(["nodes", "remove", "test-pacs"]) == 3
    assert "unknown node 'test-pacs'" in capsys.readouterr().err


def test_find_non_ascii_names(orthanc, node, tmp_path):
    files = make_ct_series(tmp_path / "umlaut", patient_name="MÜLLER^JÖRG", patient_id="TEST0009",
                           study_date="19950505")  # written as ISO_IR 100 (Latin-1); the query is UTF-8
    orthanc.upload(files)
    rows = dimse.find(node, "STUDY", patient_name="MÜLLER*")
    assert [(r["PatientName"], r["PatientID"]) for r in rows] == [("MÜLLER^JÖRG", "TEST0009")]


def test_tls_to_a_plain_port_says_tls_failed(orthanc):
    plain = Node(name="not-tls", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port, tls=True)
    with pytest.raises(NetworkError) as caught:
        dimse.echo(plain, timeout=2)
    assert _one_line(caught.value).startswith(f"not-tls (ORTHANCTEST@127.0.0.1:{orthanc.dicom_port}): TLS connection "
                                              "failed (")
