"""DICOM network client (DIMSE, through pynetdicom): C-ECHO, C-FIND and C-STORE to a :class:`~.nodes.Node`.

Every failure raises :class:`~.nodes.NetworkError` with one line naming the node (``name (AE@host:port)``) and
what failed: connection refused, connection timed out, no answer to the association request, association
rejected (pynetdicom's result, source and reason), association aborted, no response in time, or a failure
status (hex).  Timeouts are short (``timeout`` seconds for the TCP connection, the association negotiation and
each DIMSE response) and set per call.

Privacy: pynetdicom's logging of request and response identifiers is switched off when this module first
talks to the network, and medview's own log lines name the node, the level and the number of matches, never a
query value or an answer (patient names, IDs and birth dates stay out of logs).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from medview.core.errors import MedviewError
from medview.io.net.nodes import NetworkError, Node

LOG = logging.getLogger(__name__)


class QueryError(MedviewError):
    """A C-FIND filter is not valid (a malformed date range, a filter the level does not have)."""


DEFAULT_TIMEOUT_S = 10.0
LEVELS = ("PATIENT", "STUDY", "SERIES")
MAX_CONTEXTS = 128
# the largest PDU medview accepts when it receives (a retrieve, its Storage SCP): pynetdicom's default, 16 KB,
# makes a peer cut a 512 x 512 slice into 32 PDUs, each handled in Python; DCMTK's own limit is 128 KB
RECEIVE_PDU_BYTES = 131072

PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies")
STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
              "AccessionNumber", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "SeriesInstanceUID", "SeriesNumber",
               "Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances")
RETURN_KEYS = {"PATIENT": PATIENT_KEYS, "STUDY": STUDY_KEYS, "SERIES": SERIES_KEYS}
_INTEGER_KEYS = {"NumberOfPatientRelatedStudies", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances",
                 "SeriesNumber"}
_LIST_KEYS = {"ModalitiesInStudy"}
_DATE_RANGE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_STATUS_MEANING = {0xA700: "out of resources", 0xA900: "identifier does not match SOP class",
                   0xC000: "unable to process", 0xFE00: "cancelled", 0x0122: "SOP class not supported",
                   0xA701: "out of resources: unable to calculate number of matches",
                   0xA702: "out of resources: unable to perform sub-operations", 0xA801: "move destination unknown",
                   0x0211: "unrecognised operation", 0x0117: "invalid SOP instance", 0xB000: "warning",
                   0xB007: "warning: data set does not match SOP class", 0xB006: "warning: elements discarded"}


def _pynetdicom():
    import pynetdicom
    from pynetdicom import _config

    _config.LOG_REQUEST_IDENTIFIERS = False  # pynetdicom would log every query and answer at DEBUG level
    _config.LOG_RESPONSE_IDENTIFIERS = False
    return pynetdicom


class _Capture(logging.Handler):
    """pynetdicom's own error lines (the reason a connection failed, a timeout) while one call runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.records.append((record.thread, record.getMessage()))

    def messages(self, threads: set[int | None]) -> list[str]:
        return [message for thread, message in self.records if thread in threads]


@contextlib.contextmanager
def _capture() -> Iterator[_Capture]:
    handler = _Capture()
    logger = logging.getLogger("pynetdicom")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _threads(assoc) -> set[int | None]:
    return {threading.get_ident(), getattr(assoc, "ident", None), getattr(getattr(assoc, "dul", None), "ident", None)}


def _tls_args(node: Node):
    if not node.tls:
        return None
    import ssl

    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=node.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise NetworkError(f"{node.label}: cannot load the TLS CA file ({exc})") from None
    return context, node.host


def _connect_failure(node: Node, messages: list[str], timeout: float) -> str:
    text = next((m.split(":", 1)[1].strip() for m in messages if m.startswith("TCP Initialisation Error")), "")
    lowered = text.lower()
    if "refused" in lowered:
        return f"{node.label}: connection refused (nothing listens on port {node.port} of {node.host})"
    if "timed out" in lowered:
        return f"{node.label}: connection timed out after {timeout:g} s"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered:
        return f"{node.label}: unknown host '{node.host}'"
    detail = re.sub(r"^\[Errno \d+\]\s*", "", text) or "the TCP connection failed"
    if node.tls or "ssl" in lowered or "certificate" in lowered:
        return f"{node.label}: TLS connection failed ({detail}; does the node speak DICOM over TLS on this port?)"
    return f"{node.label}: cannot connect ({detail})"


@contextlib.contextmanager
def associate(node: Node, contexts: Iterable[tuple[str, list[str] | None]], timeout: float = DEFAULT_TIMEOUT_S,
              service: str = "association"):
    """An established association with ``node`` proposing ``contexts`` ((abstract syntax, transfer syntaxes or
    None for the defaults), ...); released on exit (aborted when the body raised)."""
    pynetdicom = _pynetdicom()
    from pynetdicom import evt

    ae = pynetdicom.AE(ae_title=node.local_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = max(timeout, 30.0)
    contexts = list(contexts)
    for abstract, syntaxes in contexts:
        if syntaxes:
            ae.add_requested_context(abstract, syntaxes)
        else:
            ae.add_requested_context(abstract)
    connected = threading.Event()

    def on_open(event) -> None:
        connected.set()
        # pynetdicom writes a DIMSE command and its data set as separate PDUs: with Nagle's algorithm on, the
        # second write waits for the peer's delayed ACK (about 40 ms per C-STORE on Linux; measured against
        # Orthanc: 95 -> 52 ms per file)
        with contextlib.suppress(AttributeError, OSError):
            import socket

            event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    tls_args = _tls_args(node)
    with _capture() as capture:
        try:
            assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls_args,
                                 evt_handlers=[(evt.EVT_CONN_OPEN, on_open)])
        except OSError as exc:  # the host name does not resolve (socket.gaierror), no route, ...
            import socket

            if isinstance(exc, socket.gaierror):
                raise NetworkError(f"{node.label}: unknown host '{node.host}' ({exc.strerror})") from None
            raise NetworkError(f"{node.label}: cannot connect ({exc.strerror or exc})") from None
        except (ValueError, RuntimeError) as exc:
            raise NetworkError(f"{node.label}: cannot start the {service} ({exc})") from None
        messages = capture.messages(_threads(assoc))
    if not assoc.is_established:
        if not connected.is_set():
            raise NetworkError(_connect_failure(node, messages, timeout))
        if assoc.is_rejected:
            primitive = assoc.acceptor.primitive
            why = ", ".join(s for s in (getattr(primitive, "result_str", ""), getattr(primitive, "source_str", ""),
                                        getattr(primitive, "reason_str", "")) if s)
            hint = (f"; is '{node.ae_title}' the peer's AE title, and does it know '{node.local_ae}'?"
                    if "AE title" in why or "ae title" in why.lower() else "")
            raise NetworkError(f"{node.label}: association rejected ({why or 'no reason given'}){hint}")
        if any("No accepted presentation contexts" in m for m in messages):
            raise NetworkError(f"{node.label}: the peer accepted none of the {len(contexts)} presentation "
                               f"context(s) proposed for {service}")
        if any("ACSE timeout" in m for m in messages):
            raise NetworkError(f"{node.label}: no answer to the association request within {timeout:g} s "
                               "(is this a DICOM port?)")
        raise NetworkError(f"{node.label}: association aborted by the peer during negotiation")
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()


def _no_response(node: Node, assoc, capture: _Capture, operation: str, timeout: float) -> NetworkError:
    messages = capture.messages(_threads(assoc))
    if any("DIMSE timeout" in m for m in messages):
        return NetworkError(f"{node.label}: no {operation} response within {timeout:g} s (timeout)")
    if any("Connection closed" in m for m in messages):
        return NetworkError(f"{node.label}: connection closed by the peer during {operation}")
    return NetworkError(f"{node.label}: association aborted during {operation}")


def _status_text(status) -> str:
    """``0xA700 (out of resources, <the peer's error comment>)``."""
    code = int(status.Status)
    details = [_STATUS_MEANING.get(code, ""), str(status.get("ErrorComment", "") or "").strip()]
    details = [d for d in details if d]
    return f"0x{code:04X}" + (f" ({', '.join(details)})" if details else "")


def _check_context(node: Node, assoc, abstract: str, operation: str) -> None:
    if not any(cx.abstract_syntax == abstract for cx in assoc.accepted_contexts):
        raise NetworkError(f"{node.label}: the peer accepted the association but not {operation}")


def echo(node: Node, timeout: float = 5.0) -> float:
    """C-ECHO ``node``; returns the round trip in seconds (association, echo and release)."""
    from pynetdicom.sop_class import Verification

    start = time.perf_counter()
    with associate(node, [(Verification, None)], timeout, "echo") as assoc, _capture() as capture:
        _check_context(node, assoc, Verification, "C-ECHO (Verification)")
        status = assoc.send_c_echo()
        if not status:
            raise _no_response(node, assoc, capture, "C-ECHO", timeout)
        if int(status.Status) != 0x0000:
            raise NetworkError(f"{node.label}: C-ECHO failed with status {_status_text(status)}")
    seconds = time.perf_counter() - start
    LOG.info("C-ECHO %s: %.3f s", node.label, seconds)
    return seconds


def _check_date_range(text: str) -> str:
    value = text.strip()
    match = _DATE_RANGE.match(value)
    if not value or not match or (match[2] is None and match[3] is not None) or (not match[1] and not match[3]):
        raise QueryError(f"study date '{text}' is not YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    for part in (match[1], match[3]):
        if part:
            try:
                datetime.datetime.strptime(part, "%Y%m%d")
            except ValueError:
                raise QueryError(f"study date '{text}': {part} is not a calendar date") from None
    if match[1] and match[3] and match[1] > match[3]:
        raise QueryError(f"study date range '{text}' ends before it starts")
    return value


def build_query(level: str, patient_id: str | None = None, patient_name: str | None = None,
                study_date: str | None = None, modality: str | None = None, study_uid: str | None = None):
    """The C-FIND identifier: the level's return keys (empty) with the given filters as matching keys."""
    from pydicom.dataset import Dataset

    level = level.upper()
    if level not in LEVELS:
        raise QueryError(f"query level '{level.lower()}' is not one of: patient, study, series")
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8 query values (and asks for UTF-8 answers)
    for key in RETURN_KEYS[level]:
        setattr(ds, key, "")
    if patient_id:
        ds.PatientID = patient_id
    if patient_name:
        ds.PatientName = patient_name
    if study_date:
        if level == "PATIENT":
            raise QueryError("a study date filter needs --level study or series")
        ds.StudyDate = _check_date_range(study_date)
    if modality:
        if level == "PATIENT":
            raise QueryError("a modality filter needs --level study or series")
        if level == "STUDY":
            ds.ModalitiesInStudy = modality.upper()
        else:
            ds.Modality = modality.upper()
    if study_uid:
        if level == "PATIENT":
            raise QueryError("a study UID filter needs --level study or series")
        ds.StudyInstanceUID = study_uid
    return ds


def _plain(identifier, keys: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        value = identifier.get(key, None) if identifier is not None else None
        if key in _LIST_KEYS:
            if value is None or value == "":
                out[key] = []
            elif isinstance(value, str):
                out[key] = [v for v in value.split("\\") if v]
            else:
                out[key] = [str(v) for v in value if str(v)]
        elif key in _INTEGER_KEYS:
            try:
                out[key] = int(value) if value not in (None, "") else None
            except (TypeError, ValueError):
                out[key] = None
        else:
            out[key] = "" if value is None else str(value)
    return out


def find(node: Node, level: str = "STUDY", *, timeout: float = DEFAULT_TIMEOUT_S, limit: int | None = None,
         **filters: str | None) -> list[dict[str, Any]]:
    """C-FIND at PATIENT (Patient Root), STUDY or SERIES level (Study Root).

    Filters: ``patient_id``, ``patient_name`` (wildcards ``*`` and ``?``), ``study_date`` (``YYYYMMDD``,
    ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD-``, ``-YYYYMMDD``), ``modality`` (ModalitiesInStudy at study level,
    Modality at series level), ``study_uid``.  Returns one plain dict per match (strings, ints, a list for
    ModalitiesInStudy).  ``limit`` stops after that many matches (a C-CANCEL is sent).
    """
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    unknown = set(filters) - {"patient_id", "patient_name", "study_date", "modality", "study_uid"}
    if unknown:
        raise TypeError(f"unknown C-FIND filter(s): {', '.join(sorted(unknown))}")
    query = build_query(level, **filters)
    level = query.QueryRetrieveLevel
    model = (PatientRootQueryRetrieveInformationModelFind if level == "PATIENT"
             else StudyRootQueryRetrieveInformationModelFind)
    keys = RETURN_KEYS[level]
    results: list[dict[str, Any]] = []
    start = time.perf_counter()
    with associate(node, [(model, None)], timeout, "C-FIND") as assoc, _capture() as capture:
        _check_context(node, assoc, model, f"C-FIND at {level.lower()} level")
        responses = assoc.send_c_find(query, model)
        for status, identifier in responses:
            if not status:
                raise _no_response(node, assoc, capture, "C-FIND", timeout)
            code = int(status.Status)
            if code in (0xFF00, 0xFF01):
                results.append(_plain(identifier, keys))
                if limit is not None and len(results) >= limit:
                    with contextlib.suppress(Exception):
                        assoc.send_c_cancel(1, query_model=model)
                    break
            elif code == 0x0000:
                break
            else:
                raise NetworkError(f"{node.label}: C-FIND failed with status {_status_text(status)}")
    LOG.info("C-FIND %s at %s level: %d match(es) in %.3f s", node.label, level, len(results),
             time.perf_counter() - start)
    return results


# --- C-STORE ------------------------------------------------------------------------------------------------

def _dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            from medview.core.errors import InputNotFoundError

            raise InputNotFoundError(f"No such file or folder: {path}")
    return files


def send(node: Node, paths: Iterable[str | Path], *, timeout: float = DEFAULT_TIMEOUT_S,
         progress=None) -> dict[str, Any]:
    """C-STORE every DICOM file in ``paths`` (files or folders) over one association.

    The presentation contexts proposed are the files' own (SOP class, transfer syntax) pairs, with Explicit and
    Implicit VR Little Endian added for uncompressed files, at most 128.  Files that are not DICOM are skipped
    (counted).  Returns counts and seconds; raises :class:`NetworkError` when the peer accepts none of the
    contexts, or when any store fails (after trying every file: the message gives the first failure's status).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    files = _dicom_files(paths)
    pairs: dict[str, set[str]] = {}
    entries: list[tuple[Path, str, str]] = []
    skipped = 0
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
            sop_class = str(header.file_meta.MediaStorageSOPClassUID or header.SOPClassUID)
            syntax = str(header.file_meta.TransferSyntaxUID)
        except (InvalidDicomError, AttributeError, KeyError, OSError, ValueError, TypeError):
            skipped += 1
            continue
        entries.append((path, sop_class, syntax))
        offered = pairs.setdefault(sop_class, set())
        offered.add(syntax)
        if syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            offered.update((ExplicitVRLittleEndian, ImplicitVRLittleEndian))
    if not entries:
        raise NetworkError(f"{node.label}: nothing to send: no DICOM file among {len(files)} file(s)")
    # one context per (SOP class, transfer syntax): a peer accepts one transfer syntax per context, so a single
    # context listing several would leave the others unusable
    contexts = [(sop, [ts]) for sop, syntaxes in pairs.items() for ts in sorted(syntaxes)]
    if len(contexts) > MAX_CONTEXTS:
        raise NetworkError(f"{node.label}: the files need {len(contexts)} presentation contexts (SOP class x "
                           f"transfer syntax); one association allows at most {MAX_CONTEXTS}: send fewer kinds "
                           "of file at once")
    sent = failed = 0
    first_failure = ""
    start = time.perf_counter()
    service = f"C-STORE of {len(pairs)} SOP class(es) (it does not store these kinds of object)"
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True  # a path given to send_c_store is streamed from the file
    with associate(node, contexts, timeout, service) as assoc, _capture() as capture:
        accepted = {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        for index, (path, sop_class, syntax) in enumerate(entries):
            if not any(a[0] == sop_class for a in accepted):
                failed += 1
                first_failure = first_failure or f"SOP class {sop_class} not accepted by the peer"
                continue
            try:
                with warnings.catch_warnings():  # pydicom's validation of odd values: not the user's business
                    warnings.simplefilter("ignore")
                    # the file's own encoding accepted: its bytes go out as they are on disk (pynetdicom streams
                    # them, no parse and re-encode: a third of the send's CPU); else pydicom reads it and
                    # pynetdicom converts it to the accepted little-endian syntax
                    status = assoc.send_c_store(path if (sop_class, syntax) in accepted else pydicom.dcmread(path))
            except ValueError as exc:  # no accepted context for this file's transfer syntax
                failed += 1
                first_failure = first_failure or str(exc)
                continue
            if not status:
                raise _no_response(node, assoc, capture, "C-STORE", timeout)
            code = int(status.Status)
            if code == 0x0000 or code & 0xF000 == 0xB000:
                sent += 1
            else:
                failed += 1
                first_failure = first_failure or f"status {_status_text(status)}"
            if progress is not None:
                progress(index + 1, len(entries))
    seconds = time.perf_counter() - start
    LOG.info("C-STORE %s: %d sent, %d failed, %d skipped in %.3f s", node.label, sent, failed, skipped, seconds)
    result = {"sent": sent, "failed": failed, "skipped": skipped, "seconds": seconds}
    if failed:
        raise NetworkError(f"{node.label}: {failed} of {len(entries)} file(s) were not stored ({sent} stored); "
                           f"first failure: {first_failure}")
    return result
