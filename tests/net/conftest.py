"""Fixtures of the network tests: one real Orthanc for the whole session, emptied at the start of each module.

The server is session-scoped because stopping Orthanc 1.10.1 takes about 3.5 s (its HTTP and DICOM servers
wind down one after the other) while starting takes about 0.1 s: one instance for every network test module
costs that once.  Each module still starts from an empty archive (``orthanc`` deletes every patient first),
so a module's queries see only what that module uploaded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.net.orthanc import Orthanc, orthanc_available, start_orthanc


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory) -> Iterator[Orthanc]:
    reason = orthanc_available()
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def orthanc(orthanc_server: Orthanc) -> Orthanc:
    """The session's Orthanc with an empty archive at the start of the module."""
    orthanc_server.clear()
    return orthanc_server
