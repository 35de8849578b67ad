"""DICOMweb (dicomweb-client): QIDO-RS search, WADO-RS retrieve into the study database, STOW-RS send.

A server is its base URL (e.g. ``http://pacs:8042/dicom-web``) with optional basic-auth user and password or
a bearer token.  Results of a search are plain dicts with the same keys as the DIMSE find (PatientName,
StudyInstanceUID, ...).  A retrieve writes each instance as it arrives into a private folder under the data
directory (named by a counter, never by a UID) and imports them into the store; one that does not finish
(an HTTP error mid-way, Cancel) imports what arrived and marks the study incomplete.  Every failure is one
:class:`~medview.io.net.nodes.NetworkError` line naming the server and what failed; messages never hold
patient names or IDs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medview.core.errors import CancelledError, MedviewError
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.net.nodes import NetworkError

__all__ = ["WebServer", "find", "retrieve", "send"]

STUDY_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")
SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
               "NumberOfSeriesRelatedInstances")
STOW_BATCH = 50  # instances per STOW-RS request


@dataclass
class WebServer:
    """A DICOMweb service root and how to authenticate to it."""

    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MedviewError(f"A DICOMweb server is an http(s) URL such as http://host:8042/dicom-web, "
                               f"not {self.url!r}")
        self.url = self.url.rstrip("/")

    @property
    def label(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"

    def client(self):
        from dicomweb_client.api import DICOMwebClient

        session = _QuerySession()
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.user is not None:
            session.auth = (self.user, self.password or "")
        client = DICOMwebClient(url=self.url, session=session, headers=headers or None, timeout=self.timeout)
        # its retrying decorator also retries any exception, five times with exponential waits: a refused
        # connection took 30 s to report
        client.set_http_retry_params(retry=False)
        return client


def _query_session_class():
    import requests

    class QuerySession(requests.Session):
        """Keeps QIDO's wildcards (``*``, ``?``) as they are in query strings: Orthanc 1.10.1 does not
        percent-decode query values, so ``PatientName=DOE%2A`` (what requests sends for ``DOE*``) matched
        nothing; RFC 3986 allows them unencoded.  (``^`` it does not allow: urllib3 encodes it whatever we do;
        :func:`find` sends it as ``?`` and filters the answers.)"""

        def send(self, request, **kwargs):
            # on the prepared request: requests re-quotes a URL while preparing it (``^`` became %5E again)
            base, sep, query = str(request.url).partition("?")
            if sep:
                for encoded, plain in (("%2A", "*"), ("%2a", "*"), ("%3F", "?"), ("%3f", "?")):
                    query = query.replace(encoded, plain)
                request.url = f"{base}?{query}"
            return super().send(request, **kwargs)

    return QuerySession


def _QuerySession():  # noqa: N802 - a class made on first use (requests is imported lazily)
    return _query_session_class()()


def _failure(server: WebServer, what: str, exc: BaseException) -> NetworkError:
    import requests

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        hint = {401: " (wrong user, password or token?)", 403: " (not allowed)", 404: " (not on this server, or "
                "not a DICOMweb root?)"}.get(code, "")
        return NetworkError(f"{server.label}: {what} failed: HTTP {code} {exc.response.reason}{hint}")
    if isinstance(exc, requests.ConnectionError):
        return NetworkError(f"{server.label}: {what} failed: cannot connect (is the server running, is the URL "
                            "right?)")
    if isinstance(exc, requests.Timeout):
        return NetworkError(f"{server.label}: {what} failed: no answer within {server.timeout:g} s")
    return NetworkError(f"{server.label}: {what} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")


def _plain(item: dict, keys: tuple[str, ...]) -> dict[str, Any]:
    from pydicom import Dataset
    from pydicom.multival import MultiValue

    ds = Dataset.from_json(item)
    out: dict[str, Any] = {}
    for key in keys:
        value = ds.get(key)
        if value is None or value == "":
            out[key] = [] if key == "ModalitiesInStudy" else ""
        elif key == "ModalitiesInStudy":
            out[key] = [str(v) for v in (value if isinstance(value, list | tuple | MultiValue) else [value])]
        elif key.startswith("NumberOf") or key == "SeriesNumber":
            out[key] = int(value)
        else:
            out[key] = str(value)
    return out


def find(server: WebServer, level: str = "study", *, patient_id: str | None = None,
         patient_name: str | None = None, date: str | None = None, modality: str | None = None,
         study_uid: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """QIDO-RS search for studies (or the series of ``study_uid`` with ``level='series'``)."""
    filters: dict[str, Any] = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if patient_name:
        # the component separator goes as the one-character wildcard (a server that does not decode %5E, as
        # Orthanc 1.10.1, matched nothing); the answers are then held to the name as typed
        filters["PatientName"] = patient_name.replace("^", "?")
    if date:
        from medview.io.studydb import parse_date_range

        first, last = parse_date_range(date)
        filters["StudyDate"] = f"{first or ''}-{last or ''}" if first != last else first
    if study_uid and level != "series":
        filters["StudyInstanceUID"] = study_uid
    client = server.client()
    try:
        if level == "series":
            if modality:
                filters["Modality"] = modality
            items = client.search_for_series(study_instance_uid=study_uid, search_filters=filters, limit=limit,
                                             fields=list(SERIES_KEYS))
            return [_plain(i, SERIES_KEYS) for i in items]
        if modality:
            filters["ModalitiesInStudy"] = modality
        items = client.search_for_studies(search_filters=filters, limit=limit, fields=list(STUDY_KEYS))
    except Exception as exc:
        raise _failure(server, "the search", exc) from None
    rows = [_plain(i, STUDY_KEYS) for i in items]
    if patient_name and "^" in patient_name:
        rows = [r for r in rows if _name_matches(patient_name, r["PatientName"])]
    return rows


def _name_matches(pattern: str, name: str) -> bool:
    """DICOM wildcard matching of a person name (``*``, ``?``; case-insensitive, as PN matching may be)."""
    import re

    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.IGNORECASE | re.DOTALL) is not None


def retrieve(server: WebServer, study_uid: str, series_uid: str | None = None, *, task: TaskContext | None = None,
             database: str | None = None) -> dict[str, Any]:
    """WADO-RS retrieve of a study (or one series) into the study database; see the module notes."""
    from medview.io.studydb import import_received, incoming_folder

    folder = incoming_folder("wado-")
    t0 = time.perf_counter()
    received, size = 0, 0
    error: BaseException | None = None
    report(task, 0.0, f"Retrieving from {server.label}", force=True)
    try:
        client = server.client()
        stream = (client.iter_series(study_uid, series_uid) if series_uid else client.iter_study(study_uid))
        for ds in stream:
            check_cancel(task)
            received += 1
            path = folder / f"{received:07d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            size += path.stat().st_size
            report(task, 0.0, f"Received {received} instances")
    except CancelledError as exc:
        error = exc
    except Exception as exc:
        error = _failure(server, "the retrieve", exc)
    import_received(folder, study_uid, error is None, database)
    if error is not None:
        raise error
    if not received:
        raise NetworkError(f"{server.label}: the retrieve returned no instance (is the study on this server?)")
    return {"study": study_uid, "received": received, "bytes": size, "complete": True,
            "seconds": round(time.perf_counter() - t0, 3)}


def send(server: WebServer, paths: Iterable[str | Path], *, task: TaskContext | None = None) -> dict[str, Any]:
    """STOW-RS of DICOM files (or folders of them), ``STOW_BATCH`` instances per request."""
    import pydicom

    from medview.io.dicom.scan import list_sources

    files: list[str] = []
    for p in paths:
        files.extend(f for f, member in list_sources(str(p)) if member is None)
    t0 = time.perf_counter()
    sent, skipped = 0, 0
    client = server.client()
    batch: list = []

    def flush() -> None:
        nonlocal sent, batch
        if not batch:
            return
        try:
            client.store_instances(datasets=batch)
        except Exception as exc:
            raise _failure(server, f"storing {len(batch)} instance(s)", exc) from None
        sent += len(batch)
        batch = []
        report(task, sent / max(len(files), 1), f"Sent {sent} of {len(files)} files")

    for f in files:
        check_cancel(task)
        try:
            ds = pydicom.dcmread(f)
        except Exception:  # not DICOM: skipped, counted
            skipped += 1
            continue
        batch.append(ds)
        if len(batch) >= STOW_BATCH:
            flush()
    flush()
    if not sent:
        raise MedviewError(f"No DICOM file to send among {len(files)} file(s)")
    return {"sent": sent, "skipped": skipped, "seconds": round(time.perf_counter() - t0, 3)}
