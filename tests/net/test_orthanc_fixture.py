"""The test Orthanc itself (tests/net/orthanc.py): a start that fails reports Orthanc's log; a missing Orthanc
is a skip reason, not an error."""

from __future__ import annotations

import socket
import time

import pytest

from tests.net import orthanc as orthanc_module
from tests.net.orthanc import Orthanc, free_ports


def test_missing_orthanc_gives_a_skip_reason(monkeypatch):
    monkeypatch.setattr(orthanc_module, "ORTHANC", "/nonexistent/Orthanc")
    assert "is not installed" in orthanc_module.orthanc_available()


def test_a_failed_start_includes_the_log_tail(tmp_path):
    if orthanc_module.orthanc_available():
        pytest.skip(orthanc_module.orthanc_available())
    with socket.socket() as taken:  # the HTTP port is held (and never answers): Orthanc cannot bind it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        dicom_port, scp_port = free_ports(2)
        server = Orthanc(folder=tmp_path, dicom_port=dicom_port, http_port=taken.getsockname()[1],
                         medview_scp_port=scp_port)
        start = time.monotonic()
        with pytest.raises(RuntimeError) as caught:
            server.start(timeout_s=20)
        elapsed = time.monotonic() - start
    assert server.process is None  # stopped (and its log closed)
    assert "log tail" in str(caught.value)
    assert "already in use" in str(caught.value)  # Orthanc's own words, from orthanc.log
    assert elapsed < 15
