"""Retrieve a study (or one series) from a DIMSE node into the study database: C-GET, or C-MOVE to a Storage
SCP medview runs for the duration of the move.  pynetdicom does the networking.

Received instances are written as they arrive (``event.encoded_dataset``: the bytes as sent, with a file meta
header, never decoded) into a private folder under the data directory, named by a counter (never by a UID),
then imported into the store by the study database (named by the hash of their bytes).  A retrieve that does
not complete (the peer's failure or warning status, sub-operations that failed, a Cancel, an aborted
association) still imports what arrived, and the study is marked incomplete in the database, so it is never
listed as complete.  Messages name the node and never hold patient names or IDs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medview.core.errors import CancelledError, MedviewError
from medview.core.tasks import TaskContext, report
from medview.io.net.nodes import NetworkError, Node

__all__ = ["RETRIEVE_STORAGE_CLASSES", "retrieve"]

# the storage classes a retrieve accepts (a C-GET proposes each one with the SCP role; 127 at most beside the
# query model's own context): images, RT, SEG and structured reports
RETRIEVE_STORAGE_CLASSES = (
    "CTImageStorage", "EnhancedCTImageStorage", "MRImageStorage", "EnhancedMRImageStorage",
    "PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage", "NuclearMedicineImageStorage",
    "ComputedRadiographyImageStorage", "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing", "DigitalMammographyXRayImageStorageForPresentation",
    "XRayAngiographicImageStorage", "UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage",
    "SecondaryCaptureImageStorage", "MultiFrameGrayscaleWordSecondaryCaptureImageStorage",
    "RTImageStorage", "RTDoseStorage", "RTStructureSetStorage", "RTPlanStorage", "SegmentationStorage",
    "BasicTextSRStorage", "EnhancedSRStorage", "ComprehensiveSRStorage",
)
# stored as sent: uncompressed, and the lossless and lossy codecs medview decodes
_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
)
_PENDING = (0xFF00, 0xFF01)


class _Receiver:
    """Writes each received instance into ``folder``; counts them; refuses more once cancelled."""

    def __init__(self, folder: Path, task: TaskContext | None) -> None:
        self.folder, self.task = folder, task
        self.count = 0
        self.bytes = 0
        self.lock = threading.Lock()

    def on_store(self, event) -> int:
        if self.task is not None and self.task.token.cancelled:
            return 0xFE00  # cancelled
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception:  # a data set pynetdicom cannot encode with a meta header
            return 0xC210  # cannot understand
        with self.lock:
            self.count += 1
            n = self.count
            self.bytes += len(data)
        path = self.folder / f"{n:07d}.dcm"
        try:
            path.write_bytes(data)
        except OSError:
            return 0xA700  # out of resources
        return 0x0000


def _no_delay(event) -> None:
    """TCP_NODELAY on a new association's socket: pynetdicom writes a response's command and data as separate
    PDUs, and with Nagle's algorithm each small write waits for the peer's delayed ACK (~40 ms per instance)."""
    import contextlib
    import socket

    with contextlib.suppress(AttributeError, OSError):
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _query(study_uid: str, series_uid: str | None):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES" if series_uid else "STUDY"
    ds.StudyInstanceUID = study_uid
    if series_uid:
        ds.SeriesInstanceUID = series_uid
    return ds


def _sop_classes(names: Iterable[str]) -> list[str]:
    from pynetdicom import sop_class

    return [str(getattr(sop_class, name)) for name in names if hasattr(sop_class, name)]


def _ae(node: Node, timeout: float):
    from pynetdicom import AE

    from medview.io.net.dimse import RECEIVE_PDU_BYTES

    ae = AE(ae_title=node.local_ae)
    ae.maximum_pdu_size = RECEIVE_PDU_BYTES
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = max(timeout, 60.0)  # a retrieve's responses may be far apart
    ae.network_timeout = max(timeout, 60.0)
    return ae


def _associate(ae, node: Node, **kwargs):
    from medview.io.net.dimse import _tls_args

    try:
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=_tls_args(node), **kwargs)
    except OSError as exc:
        raise NetworkError(f"{node.label}: cannot connect ({exc.strerror or exc})") from None
    if not assoc.is_established:
        if assoc.is_rejected:
            raise NetworkError(f"{node.label}: association rejected (is '{node.ae_title}' the peer's AE title, and "
                               f"does it know '{node.local_ae}'?)")
        raise NetworkError(f"{node.label}: cannot connect or the association was aborted (is the node running?)")
    return assoc


def _follow(node: Node, responses, task: TaskContext | None, receiver: _Receiver, assoc, what: str) -> dict[str, Any]:
    """Iterate a C-GET/C-MOVE's responses: progress from the sub-operation counts; the final status."""
    final: dict[str, Any] = {"status": None, "failed": 0, "warning": 0, "completed": 0}
    for status, _identifier in responses:
        if task is not None and task.token.cancelled:
            assoc.abort()
            raise CancelledError("Cancelled by the user")
        if not status or "Status" not in status:
            raise NetworkError(f"{node.label}: no {what} response (timeout, or the association was aborted)")
        code = int(status.Status)
        remaining = int(getattr(status, "NumberOfRemainingSuboperations", 0) or 0)
        completed = int(getattr(status, "NumberOfCompletedSuboperations", 0) or 0)
        failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
        warning = int(getattr(status, "NumberOfWarningSuboperations", 0) or 0)
        final.update(completed=completed, failed=failed, warning=warning)
        if code in _PENDING:
            total = remaining + completed + failed + warning
            report(task, (completed + failed + warning) / max(total, 1),
                   f"Received {receiver.count} of {total} instances")
            continue
        final["status"] = code
    return final


def retrieve(node: Node, study_uid: str, series_uid: str | None = None, *, method: str = "get",
             move_port: int | None = None, timeout: float = 30.0, task: TaskContext | None = None,
             database: str | None = None) -> dict[str, Any]:
    """Retrieve ``study_uid`` (or its series ``series_uid``) from ``node`` into the study database.

    ``method`` ``'get'`` (C-GET: the data comes back on the same association, with SCP role negotiation) or
    ``'move'`` (C-MOVE to medview's AE title: a Storage SCP listens on ``move_port`` for the duration, and
    accepts only ``node``'s AE title as caller).  Returns ``{"study": uid, "received": n, "bytes": b,
    "complete": bool, "seconds": s, "status": hex}``; raises :class:`NetworkError` when nothing could be
    retrieved (the files that did arrive are imported first).
    """
    from medview.io.studydb import import_received, incoming_folder

    if method not in ("get", "move"):
        raise MedviewError(f"A retrieve method is 'get' or 'move', not {method!r}")
    if method == "move" and not move_port:
        raise MedviewError("A C-MOVE needs the port medview's Storage SCP listens on (move_port; the node must "
                           f"know '{node.local_ae}' at this host and port)")
    folder = incoming_folder("retrieve-")
    receiver = _Receiver(folder, task)
    t0 = time.perf_counter()
    outcome: dict[str, Any] = {"status": None, "failed": 0, "warning": 0, "completed": 0}
    error: BaseException | None = None
    report(task, 0.0, f"Retrieving from {node.label}", force=True)
    try:
        outcome = _retrieve(node, study_uid, series_uid, method, move_port, timeout, task, receiver)
    except (NetworkError, CancelledError) as exc:
        error = exc
    complete = error is None and outcome["status"] == 0x0000 and not outcome["failed"] and receiver.count > 0
    import_received(folder, study_uid, complete, database)
    if error is not None:
        raise error
    status = outcome["status"]
    if not receiver.count:
        code = f"0x{status:04X}" if status is not None else "none"
        raise NetworkError(f"{node.label}: the {method.upper()} of the study returned no instance (status {code}; "
                           "is the study on this node, and may it send to medview?)")
    return {"study": study_uid, "received": receiver.count, "bytes": receiver.bytes, "complete": complete,
            "failed": outcome["failed"], "status": None if status is None else f"0x{status:04X}",
            "seconds": round(time.perf_counter() - t0, 3)}


def _retrieve(node: Node, study_uid: str, series_uid: str | None, method: str, move_port: int | None,
              timeout: float, task: TaskContext | None, receiver: _Receiver) -> dict[str, Any]:
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    classes = _sop_classes(RETRIEVE_STORAGE_CLASSES)
    handlers = [(evt.EVT_C_STORE, receiver.on_store), (evt.EVT_CONN_OPEN, _no_delay)]
    ae = _ae(node, timeout)
    if method == "get":
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        for uid in classes:
            ae.add_requested_context(uid, list(_TRANSFER_SYNTAXES))
        roles = [build_role(uid, scp_role=True) for uid in classes]
        assoc = _associate(ae, node, ext_neg=roles, evt_handlers=handlers)
        try:
            responses = assoc.send_c_get(_query(study_uid, series_uid), StudyRootQueryRetrieveInformationModelGet)
            return _follow(node, responses, task, receiver, assoc, "C-GET")
        finally:
            if assoc.is_established:
                assoc.release()
    for uid in classes:
        ae.add_supported_context(uid, list(_TRANSFER_SYNTAXES))
    ae.require_calling_aet = [node.ae_title]  # only the node being asked may store into medview now
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    try:
        server = ae.start_server(("", int(move_port)), block=False, evt_handlers=handlers)
    except OSError as exc:
        raise NetworkError(f"medview's Storage SCP cannot listen on port {move_port} ({exc.strerror or exc})") from None
    try:
        assoc = _associate(ae, node, evt_handlers=[(evt.EVT_CONN_OPEN, _no_delay)])
        try:
            responses = assoc.send_c_move(_query(study_uid, series_uid), node.local_ae,
                                          StudyRootQueryRetrieveInformationModelMove)
            return _follow(node, responses, task, receiver, assoc, "C-MOVE")
        finally:
            if assoc.is_established:
                assoc.release()
    finally:
        server.shutdown()
