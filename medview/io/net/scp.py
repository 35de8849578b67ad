"""medview's Storage SCP: receives C-STORE from the nodes allowed to send, into the study database.

Each association's instances are written as received (the encoded bytes with a meta header, named by a
counter, never by a UID) into a private folder under the data directory; when the association is released
they are imported into the store, and when it is aborted (the peer stopped mid-transfer) they are imported
and their studies marked incomplete.  Only calling AE titles in the allow-list may store (an empty list allows
none; ``None`` allows any, for a closed test network); others are rejected at association.  Optional TLS with
an ``ssl.SSLContext``.  Logs hold counts and AE titles, never patient names or IDs.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medview.io.net.dimse import RECEIVE_PDU_BYTES
from medview.io.net.nodes import NetworkError, check_ae_title
from medview.io.net.retrieve import _TRANSFER_SYNTAXES, RETRIEVE_STORAGE_CLASSES, _no_delay, _sop_classes

log = logging.getLogger("medview.net.scp")

__all__ = ["StorageSCP"]


class _Association:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0


class StorageSCP:
    """``scp = StorageSCP(port=11112, allow=["ORTHANC"]); scp.start(); ...; scp.stop()``."""

    def __init__(self, port: int, ae_title: str = "MEDVIEW", allow: Sequence[str] | None = (),
                 host: str = "", database: str | None = None, ssl_context: ssl.SSLContext | None = None,
                 on_imported: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.port, self.host = int(port), host
        self.ae_title = check_ae_title(ae_title)
        self.allow = None if allow is None else [check_ae_title(a, "allowed AE title") for a in allow]
        self.database = database
        self.ssl_context = ssl_context
        self.on_imported = on_imported
        self.received = 0
        self.imports: list[dict[str, Any]] = []
        self._server = None
        self._lock = threading.Lock()
        self._associations: dict[int, _Association] = {}

    # -- handlers (pynetdicom's threads) ------------------------------------------------------------------
    def _assoc(self, event) -> _Association:
        with self._lock:
            state = self._associations.get(id(event.assoc))
            if state is None:
                from medview.io.studydb import incoming_folder

                state = self._associations[id(event.assoc)] = _Association(incoming_folder("scp-"))
            return state

    def _on_store(self, event) -> int:
        state = self._assoc(event)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # a data set pynetdicom cannot encode with a meta header
            return 0xC210
        with self._lock:
            state.count += 1
            n = state.count
            self.received += 1
        try:
            (state.folder / f"{n:07d}.dcm").write_bytes(data)
        except OSError:
            return 0xA700
        return 0x0000

    def _finish(self, event, aborted: bool) -> None:
        with self._lock:
            state = self._associations.pop(id(event.assoc), None)
        if state is None:
            return
        calling = str(event.assoc.requestor.ae_title).strip()
        summary: dict[str, Any] = {"from": calling, "received": state.count, "aborted": aborted, "studies": []}
        from medview.io.studydb import import_received

        try:
            summary["studies"] = import_received(state.folder, None, not aborted, self.database).studies
            log.info("stored %d instance(s) from %s%s", state.count, calling, " (aborted)" if aborted else "")
        except Exception as exc:  # the import failed
            summary["error"] = str(exc)
            log.error("could not import %d instance(s) received from %s: %s", state.count, calling, exc)
        self.imports.append(summary)
        if self.on_imported is not None:
            self.on_imported(summary)

    # -- lifetime -----------------------------------------------------------------------------------------
    def start(self) -> StorageSCP:
        from pynetdicom import AE, evt

        ae = AE(ae_title=self.ae_title)
        ae.maximum_pdu_size = RECEIVE_PDU_BYTES
        for uid in _sop_classes(RETRIEVE_STORAGE_CLASSES):
            ae.add_supported_context(uid, list(_TRANSFER_SYNTAXES))
        ae.add_supported_context("1.2.840.10008.1.1")  # Verification: a C-ECHO answers
        ae.require_called_aet = True
        if self.allow is not None:
            ae.require_calling_aet = list(self.allow) or ["-NOBODY-"]
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, _no_delay),
                    (evt.EVT_RELEASED, lambda e: self._finish(e, aborted=False)),
                    (evt.EVT_ABORTED, lambda e: self._finish(e, aborted=True)),
                    (evt.EVT_CONN_CLOSE, lambda e: self._finish(e, aborted=True))]
        try:
            self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers,
                                           ssl_context=self.ssl_context)
        except OSError as exc:
            raise NetworkError(f"medview's Storage SCP cannot listen on port {self.port} "
                               f"({exc.strerror or exc})") from None
        log.info("Storage SCP %s listening on port %d", self.ae_title, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
