"""DICOM over TLS against an independent peer (DCMTK built with OpenSSL): medview's Storage SCP with a
certificate receives from DCMTK's ``storescu +tls``, and medview's C-STORE client (a node with ``tls = true``
and the peer's certificate as CA file) sends to DCMTK's ``storescp +tls``.  A plain connection to the TLS SCP,
and a TLS client whose CA does not sign the peer's certificate, fail with one line.  Certificates are made for
the test with the ``openssl`` command (self-signed, CN and subjectAltName 127.0.0.1)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from medview.io.net.dimse import echo, send
from medview.io.net.nodes import NetworkError, Node, load_nodes, set_listener
from medview.io.net.scp import StorageSCP
from medview.io.studydb import StudyDatabase
from tests.conftest import require_tool
from tests.net.orthanc import free_port, make_ct_series


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    key, cert = folder / f"{name}-key.pem", folder / f"{name}-cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return key, cert


def _wait(until, timeout_s: float = 15.0) -> None:
    t0 = time.time()
    while not until():
        assert time.time() - t0 < timeout_s, "timed out"
        time.sleep(0.05)


def test_dcmtk_sends_to_medviews_tls_scp(tmp_path: Path) -> None:
    storescu = require_tool("storescu")
    server_key, server_cert = _certificate(tmp_path, "medview")
    client_key, client_cert = _certificate(tmp_path, "dcmtk")
    files = make_ct_series(tmp_path / "s", patient_name="TLS^PATIENT", patient_id="TEST0701", study_date="20240701",
                           slices=3, seed=70)
    port = free_port()
    book = set_listener(port=port, allow=["SENDER"], tls_cert=str(server_cert), tls_key=str(server_key))
    assert load_nodes().tls_cert == str(server_cert.resolve())
    with StorageSCP(port, allow=book.allowed(), ssl_context=book.scp_ssl_context()) as scp:
        run = subprocess.run([storescu, "+tls", str(client_key), str(client_cert), "+cf", str(server_cert),
                              "-aet", "SENDER", "-aec", "MEDVIEW", "127.0.0.1", str(port), *map(str, files)],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        _wait(lambda: scp.imports)
        assert scp.imports[0]["received"] == 3 and not scp.imports[0]["aborted"]
        plain = Node(name="scp", ae_title="MEDVIEW", host="127.0.0.1", port=port, local_ae="SENDER")
        with pytest.raises(NetworkError) as caught:  # the SCP speaks TLS only
            echo(plain, timeout=5.0)
        assert str(caught.value).startswith("scp (MEDVIEW@127.0.0.1:")
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    with StudyDatabase() as db:
        stored = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in db.files_of(study)}
    assert stored == {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files}


def test_medview_sends_to_dcmtks_tls_scp(tmp_path: Path) -> None:
    storescp = require_tool("storescp")
    key, cert = _certificate(tmp_path, "dcmtk")
    _other_key, other_cert = _certificate(tmp_path, "other")
    files = make_ct_series(tmp_path / "s", patient_name="TLS^PATIENT", patient_id="TEST0702", study_date="20240702",
                           slices=4, seed=71)
    out = tmp_path / "received"
    out.mkdir()
    port = free_port()
    peer = subprocess.Popen([storescp, "+tls", str(key), str(cert), "-ic", "-aet", "STORESCP", "--output-directory",
                             str(out), str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        node = Node(name="tls-peer", ae_title="STORESCP", host="127.0.0.1", port=port, tls=True, ca_file=str(cert))
        t0 = time.time()
        while True:  # storescp needs a moment to listen
            try:
                echo(node, timeout=5.0)
                break
            except NetworkError:
                assert time.time() - t0 < 15, peer.stdout.read() if peer.poll() is not None else "storescp not ready"
                time.sleep(0.2)
        assert send(node, files)["sent"] == 4
        _wait(lambda: len(list(out.iterdir())) == 4)
        received = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).PixelData for p in out.iterdir()}
        assert received == {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files}
        wrong_ca = Node(name="tls-peer", ae_title="STORESCP", host="127.0.0.1", port=port, tls=True,
                        ca_file=str(other_cert))
        with pytest.raises(NetworkError, match=r"^tls-peer \(STORESCP@127\.0\.0\.1:\d+\): TLS connection failed"):
            echo(wrong_ca, timeout=5.0)
    finally:
        peer.terminate()
        try:
            peer.wait(10)
        except subprocess.TimeoutExpired:
            peer.kill()
            peer.wait()
