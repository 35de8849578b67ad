"""The local study database: SQLite (the standard library's sqlite3, WAL) indexing patients, studies, series
and instances, with no Qt.

Where it lives.  ``<data dir>/studies.sqlite`` (``MEDVIEW_DATA_DIR``, else the platform's user data folder),
and the managed store ``<data dir>/store`` for files imported with ``copy=True``.  Stored files are named by
the SHA-256 of their bytes (``store/ab/abcdef....dcm``), never by a UID or any other tag value, so a UID such
as ``../../x`` never becomes a path.

What is indexed.  Each instance keeps its path (a file, or ``archive.zip!member``), size, modification time,
transfer syntax, and the frame records the header scan made (:class:`medview.io.dicom.headers.FrameRecord`,
pickled): opening a series from the database groups those records into a series (geometry, rescale values,
pixel offsets) without reading a single header again.  Series keep the scan's warnings (missing slices,
tilt, ...); studies their modalities and counts.

Importing.  Folders (recursively), files, zip archives and DICOMDIR media (pydicom's FileSet), by reference
(the files stay where they are) or copied into the store.  Incremental: a file whose size and modification
time are unchanged is not read again; a file that has vanished from an imported folder is marked missing
(and its series and study say so), never silently dropped; one that comes back is unmarked.  Headers are read
in the shared worker processes, in chunks; each chunk is one transaction, so a cancel or a kill leaves a
consistent database and the next import continues where that one stopped (the files it had indexed are
unchanged and skipped).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.resources import data_dir
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.dicom.headers import FrameRecord
from medview.io.dicom.scan import SeriesInfo, group_series, list_sources, read_all_headers

__all__ = ["DB_NAME", "ImportResult", "StudyDatabase", "StudyDatabaseError", "database_path", "knows_uid",
           "parse_date_range"]

DB_NAME = "studies.sqlite"
SCHEMA_VERSION = 1
CHUNK = int(os.environ.get("MEDVIEW_STUDYDB_CHUNK", "") or 400)  # files per transaction during an import
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY, patient_id TEXT NOT NULL, patient_name TEXT NOT NULL, birth_date TEXT NOT NULL,
    sex TEXT NOT NULL, UNIQUE (patient_id, patient_name, birth_date));
CREATE INDEX IF NOT EXISTS patients_name ON patients (patient_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS patients_id ON patients (patient_id);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY, study_uid TEXT NOT NULL UNIQUE, patient INTEGER NOT NULL REFERENCES patients (id),
    study_date TEXT NOT NULL, study_time TEXT NOT NULL, accession TEXT NOT NULL, description TEXT NOT NULL,
    study_id TEXT NOT NULL, referring TEXT NOT NULL, modalities TEXT NOT NULL DEFAULT '',
    n_series INTEGER NOT NULL DEFAULT 0, n_instances INTEGER NOT NULL DEFAULT 0,
    n_missing INTEGER NOT NULL DEFAULT 0, incomplete INTEGER NOT NULL DEFAULT 0, added REAL NOT NULL);
CREATE INDEX IF NOT EXISTS studies_date ON studies (study_date);
CREATE INDEX IF NOT EXISTS studies_patient ON studies (patient);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY, series_uid TEXT NOT NULL UNIQUE,
    study INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    number INTEGER, description TEXT NOT NULL, modality TEXT NOT NULL, body_part TEXT NOT NULL,
    n_instances INTEGER NOT NULL DEFAULT 0, n_missing INTEGER NOT NULL DEFAULT 0, warnings TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS series_study ON series (study);
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY, series INTEGER NOT NULL REFERENCES series (id) ON DELETE CASCADE,
    sop_uid TEXT NOT NULL, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    transfer_syntax TEXT NOT NULL, instance_number INTEGER, n_frames INTEGER NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0, records BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series);
CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL);
"""
_DATE = re.compile(r"^\d{8}$")


def incoming_folder(prefix: str) -> Path:
    """A private folder under ``<data dir>/incoming`` for instances a transfer receives (removed by
    :func:`import_received`)."""
    import tempfile

    root = data_dir() / "incoming"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=root))


def import_received(folder: Path, study_uid: str | None = None, complete: bool = True,
                    database: str | None = None) -> ImportResult:
    """Import what a transfer wrote into ``folder`` (copied into the store), then remove the folder.

    ``complete`` False marks ``study_uid`` (or, without one, every study the folder held) incomplete;
    True marks ``study_uid`` complete again (a retrieve that finished this time)."""
    try:
        with StudyDatabase(database) as db:
            result = db.import_paths([folder], copy=True, parallel=False) if any(folder.iterdir()) else ImportResult()
            for uid in ([study_uid] if study_uid else result.studies if not complete else []):
                if db.study_of(uid) == uid:
                    db.set_incomplete(uid, not complete)
            return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def files_or_studies(items: Iterable[str]) -> list[str]:
    """Paths as given; a study UID of the study database (not an existing path) becomes its files."""
    out: list[str] = []
    for item in items:
        if not os.path.exists(item) and knows_uid(item):
            with StudyDatabase() as db:
                out.extend(db.files_of(db.study_of(item)))
        else:
            out.append(item)
    return out


class StudyDatabaseError(MedviewError):
    """The database cannot be opened or a request on it is not valid."""


def database_path() -> Path:
    return data_dir() / DB_NAME


def knows_uid(uid: str) -> bool:
    """Whether the study database (if there is one: none is created) holds this study or series UID."""
    if not re.match(r"^[0-9]+(\.[0-9]+)+$", uid) or not database_path().exists():
        return False
    with StudyDatabase() as db:
        return db.study_of(uid) is not None


def parse_date_range(text: str | None) -> tuple[str | None, str | None]:
    """``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD-`` or ``-YYYYMMDD`` -> (first, last), inclusive."""
    if text is None or not text.strip():
        return None, None
    text = text.strip()
    first, sep, last = text.partition("-")
    if not sep:
        last = first
    for part in (first, last):
        if part and not _DATE.match(part):
            raise StudyDatabaseError(f"A date range is YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD, "
                                     f"not {text!r}")
    if first and last and first > last:
        raise StudyDatabaseError(f"The date range {text} ends before it starts")
    return first or None, last or None


def _escape_like(text: str) -> str:
    """``text`` matched literally in a LIKE pattern with ``ESCAPE '\\'``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(pattern: str) -> str:
    """A DICOM-style wildcard (``*``, ``?``) as a LIKE pattern (escape ``\\``); no wildcard: a prefix."""
    escaped = _escape_like(pattern)
    if "*" not in pattern and "?" not in pattern:
        return escaped + "%"
    return escaped.replace("*", "%").replace("?", "_")


@dataclass
class ImportResult:
    """What an import did: files added / updated (changed since the last import) / unchanged / skipped (not
    DICOM images, with why), files marked missing, and the studies the imported files belong to."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    missing: int = 0
    studies: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def indexed(self) -> int:
        return self.added + self.updated

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "skipped": len(self.skipped), "missing": self.missing, "studies": self.studies,
                "seconds": round(self.seconds, 3)}


def _source_key(path: str, member: str | None) -> str:
    return f"{path}!{member}" if member else path


def _stat(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _dicomdir_files(path: str) -> list[tuple[str, str | None]]:
    """The files a DICOMDIR references (pydicom's FileSet), each checked to lie inside the medium."""
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(path)
    except Exception as exc:  # pydicom raises ValueError/InvalidDicomError/... for a bad DICOMDIR
        raise StudyDatabaseError(f"Cannot read the DICOMDIR {path}: {exc}") from None
    root = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    out: list[tuple[str, str | None]] = []
    for instance in fileset:
        file = os.path.realpath(instance.path)
        if os.path.commonpath([root, file]) != root:
            continue  # a referenced file outside the medium is not followed
        out.append((file, None))
    return out


def _expand(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Every candidate (file, zip member) under the paths, and the folders among them (for missing files)."""
    sources: list[tuple[str, str | None]] = []
    folders: list[str] = []
    for raw in paths:
        path = os.path.abspath(os.fspath(raw))
        if not os.path.exists(path):
            raise InputNotFoundError(f"No such file or folder: {path}")
        if os.path.isdir(path):
            folders.append(path)
            try:
                sources.extend(list_sources(path))
            except InputNotFoundError:
                continue  # an empty folder: nothing to import (its vanished files are marked below)
        elif os.path.basename(path).upper() == "DICOMDIR":
            sources.extend(_dicomdir_files(path))
        else:
            sources.extend(list_sources(path))
    seen: set[str] = set()
    unique = []
    for s in sources:
        key = _source_key(*s)
        if key not in seen:
            seen.add(key)
            unique.append(s)
    return unique, folders


class StudyDatabase:
    """``with StudyDatabase() as db: db.import_paths([...]); db.list_studies(...)``.

    One connection per object, used from one thread (sqlite3's rule); the GUI opens its own in its worker.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else database_path()
        self.store = self.path.parent / "store"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=30.0)
        except (OSError, sqlite3.Error) as exc:
            raise StudyDatabaseError(f"Cannot open the study database {self.path}: {exc}") from None
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                if row is None:
                    self.conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                elif int(row[0]) > SCHEMA_VERSION:
                    raise StudyDatabaseError(f"The study database {self.path} was made by a newer medview "
                                             f"(schema {row[0]}); this one reads schema {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StudyDatabaseError(f"The study database {self.path} is damaged or not a database: {exc}") from None

    # -- lifetime -----------------------------------------------------------------------------------------
    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> StudyDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self.conn:
            yield self.conn

    # -- import -------------------------------------------------------------------------------------------
    def import_paths(self, paths: Iterable[str | os.PathLike[str]], copy: bool = False,
                     task: TaskContext | None = None, parallel: bool | None = None,
                     chunk: int | None = None) -> ImportResult:
        """Index the DICOM images under ``paths`` (see the module notes); ``copy`` copies them into the store;
        ``chunk`` files per transaction (default :data:`CHUNK`)."""
        chunk = max(int(chunk or CHUNK), 1)
        t0 = time.perf_counter()
        result = ImportResult()
        report(task, 0.0, "Listing files", force=True)
        sources, folders = _expand(paths)
        known = {r["path"]: (r["size"], r["mtime_ns"], r["missing"])
                 for r in self.conn.execute("SELECT path, size, mtime_ns, missing FROM instances WHERE stored=0")}
        skipped_known = {r["path"]: (r["size"], r["mtime_ns"])
                         for r in self.conn.execute("SELECT path, size, mtime_ns FROM skipped")}
        todo: list[tuple[str, str | None, int, int]] = []
        came_back: list[str] = []
        for path, member in sources:
            key = _source_key(path, member)
            try:
                size, mtime = _stat(path)
            except OSError as exc:
                result.skipped.append((key, f"cannot read: {exc}"))
                continue
            before = known.get(key) if not copy else None
            if before is not None and before[:2] == (size, mtime):
                result.unchanged += 1
                if before[2]:
                    came_back.append(key)
                continue
            if skipped_known.get(key) == (size, mtime):
                result.unchanged += 1  # not an image last time either
                continue
            todo.append((path, member, size, mtime))
        if came_back:
            with self._transaction() as c:
                c.executemany("UPDATE instances SET missing=0 WHERE path=?", [(k,) for k in came_back])
        touched_series: set[int] = set()
        studies: set[str] = set()
        n = len(todo)
        for start in range(0, n, chunk):
            check_cancel(task)
            batch = todo[start:start + chunk]
            records, skipped = read_all_headers([(p, m) for p, m, _s, _t in batch], None, parallel)
            by_file: dict[str, list[FrameRecord]] = defaultdict(list)
            for r in records:
                by_file[_source_key(r.path, r.member)].append(r)
            skipped_reason = dict(skipped)
            with self._transaction() as c:
                for path, member, size, mtime in batch:
                    key = _source_key(path, member)
                    recs = by_file.get(key)
                    if not recs:
                        reason = skipped_reason.get(key, "not a DICOM image")
                        result.skipped.append((key, reason))
                        c.execute("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", (key, size, mtime, reason))
                        continue
                    stored_path, stored = key, 0
                    if copy:
                        stored_path = self._store_copy(path, member, recs)
                        stored = 1
                        for r in recs:
                            r.path, r.member = stored_path, None
                    series_id, study_uid = self._upsert_series(c, recs[0])
                    touched_series.add(series_id)
                    studies.add(study_uid)
                    existed = c.execute("SELECT id FROM instances WHERE path=?", (stored_path,)).fetchone()
                    c.execute(
                        "INSERT INTO instances (series, sop_uid, path, size, mtime_ns, transfer_syntax, "
                        "instance_number, n_frames, stored, missing, records) VALUES (?,?,?,?,?,?,?,?,?,0,?) "
                        "ON CONFLICT (path) DO UPDATE SET series=excluded.series, sop_uid=excluded.sop_uid, "
                        "size=excluded.size, mtime_ns=excluded.mtime_ns, transfer_syntax=excluded.transfer_syntax, "
                        "instance_number=excluded.instance_number, n_frames=excluded.n_frames, missing=0, "
                        "records=excluded.records",
                        (series_id, recs[0].sop_instance_uid, stored_path, size, mtime, recs[0].transfer_syntax,
                         recs[0].instance_number, len(recs), stored,
                         pickle.dumps(recs, protocol=pickle.HIGHEST_PROTOCOL)))
                    c.execute("DELETE FROM skipped WHERE path=?", (key,))
                    if existed is None or (known.get(key) is None and not copy):
                        result.added += 1
                    else:
                        result.updated += 1
                self._refresh_counts(c, touched_series)
            report(task, min(start + len(batch), n) / max(n, 1),
                   f"Indexed {min(start + len(batch), n)} of {n} files")
        result.missing = self._mark_missing(folders, {_source_key(p, m) for p, m in sources})
        result.studies = sorted(studies)
        result.seconds = time.perf_counter() - t0
        report(task, 1.0, f"Imported {result.indexed} files", force=True)
        return result

    def _store_copy(self, path: str, member: str | None, recs: list[FrameRecord]) -> str:
        """Copy one file into the store, named by the hash of its bytes; returns the stored path."""
        from medview.core.atomic import atomic_write_bytes
        from medview.io.dicom.headers import open_source

        with open_source(path, member) as fp:
            data = fp.read()
        digest = hashlib.sha256(data).hexdigest()
        target = self.store / digest[:2] / f"{digest}.dcm"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
        return str(target)

    def _upsert_series(self, c: sqlite3.Connection, r: FrameRecord) -> tuple[int, str]:
        c.execute("INSERT OR IGNORE INTO patients (patient_id, patient_name, birth_date, sex) VALUES (?,?,?,?)",
                  (r.patient_id, r.patient_name, r.patient_birth_date, r.patient_sex))
        patient = c.execute("SELECT id FROM patients WHERE patient_id=? AND patient_name=? AND birth_date=?",
                            (r.patient_id, r.patient_name, r.patient_birth_date)).fetchone()[0]
        study_uid = r.study_uid or f"nostudy:{r.series_uid}"
        c.execute("INSERT OR IGNORE INTO studies (study_uid, patient, study_date, study_time, accession, "
                  "description, study_id, referring, added) VALUES (?,?,?,?,?,?,?,?,?)",
                  (study_uid, patient, r.study_date, r.study_time, r.accession_number, r.study_description,
                   r.study_id, r.referring_physician, time.time()))
        study = c.execute("SELECT id FROM studies WHERE study_uid=?", (study_uid,)).fetchone()[0]
        c.execute("INSERT OR IGNORE INTO series (series_uid, study, number, description, modality, body_part) "
                  "VALUES (?,?,?,?,?,?)", (r.series_uid, study, r.series_number, r.series_description,
                                           r.modality, r.body_part))
        series = c.execute("SELECT id FROM series WHERE series_uid=?", (r.series_uid,)).fetchone()[0]
        return series, study_uid

    def _refresh_counts(self, c: sqlite3.Connection, series_ids: Iterable[int]) -> None:
        """Counts, modalities and warnings of the given series and their studies."""
        series_ids = list(series_ids)
        if not series_ids:
            return
        studies: set[int] = set()
        for sid in series_ids:
            c.execute("UPDATE series SET n_instances=(SELECT count(*) FROM instances WHERE series=? AND missing=0), "
                      "n_missing=(SELECT count(*) FROM instances WHERE series=? AND missing=1) WHERE id=?",
                      (sid, sid, sid))
            row = c.execute("SELECT study FROM series WHERE id=?", (sid,)).fetchone()
            if row is not None:
                studies.add(row[0])
        for sid in series_ids:
            warnings = [w for info in self._series_infos(c, sid) for w in info.warnings]
            c.execute("UPDATE series SET warnings=? WHERE id=?", (json.dumps(sorted(set(warnings))), sid))
        for study in studies:
            modalities = [r[0] for r in c.execute(
                "SELECT DISTINCT modality FROM series WHERE study=? AND modality<>'' ORDER BY modality", (study,))]
            c.execute("UPDATE studies SET modalities=?, n_series=(SELECT count(*) FROM series WHERE study=?), "
                      "n_instances=(SELECT coalesce(sum(n_instances), 0) FROM series WHERE study=?), "
                      "n_missing=(SELECT coalesce(sum(n_missing), 0) FROM series WHERE study=?) WHERE id=?",
                      ("\\".join(modalities), study, study, study, study))

    def _mark_missing(self, folders: list[str], seen: set[str]) -> int:
        """Instances indexed under an imported folder whose file is gone (not seen now) are marked missing."""
        if not folders:
            return 0
        gone: list[str] = []
        for folder in folders:
            prefix = folder.rstrip(os.sep) + os.sep
            escaped = _escape_like(prefix)
            for row in self.conn.execute("SELECT path FROM instances WHERE stored=0 AND missing=0 AND path LIKE ? "
                                         "ESCAPE '\\'", (escaped + "%",)):
                if row["path"] not in seen:
                    gone.append(row["path"])
        if not gone:
            return 0
        with self._transaction() as c:
            c.executemany("UPDATE instances SET missing=1 WHERE path=?", [(p,) for p in gone])
            series = {r[0] for r in c.execute(
                f"SELECT DISTINCT series FROM instances WHERE path IN ({','.join('?' * len(gone))})", gone)}
            self._refresh_counts(c, series)
        return len(gone)

    # -- queries ------------------------------------------------------------------------------------------
    def list_studies(self, patient_id: str | None = None, patient_name: str | None = None,
                     date: str | None = None, modality: str | None = None, accession: str | None = None,
                     study_uid: str | None = None, text: str | None = None, limit: int | None = None,
                     offset: int = 0) -> list[dict[str, Any]]:
        """Studies matching every filter given, newest first.  ``patient_name`` with ``*``/``?`` wildcards
        (case-insensitive; without a wildcard, a prefix), ``date`` a range (:func:`parse_date_range`);
        ``text`` (a search box) matches the patient name or ID the same way, or the accession number."""
        where, args = [], []
        if text:
            where.append("(p.patient_name LIKE ? ESCAPE '\\' OR p.patient_id LIKE ? ESCAPE '\\' OR s.accession = ?)")
            args += [_like(text), _like(text), text]
        if patient_id:
            where.append("p.patient_id LIKE ? ESCAPE '\\'")
            args.append(_like(patient_id) if ("*" in patient_id or "?" in patient_id) else _escape_like(patient_id))
        if patient_name:
            where.append("p.patient_name LIKE ? ESCAPE '\\'")
            args.append(_like(patient_name))
        first, last = parse_date_range(date)
        if first:
            where.append("s.study_date >= ?")
            args.append(first)
        if last:
            where.append("s.study_date <= ?")
            args.append(last)
        if modality:
            where.append("('\\' || s.modalities || '\\') LIKE ?")
            args.append(f"%\\{modality.upper()}\\%")
        if accession:
            where.append("s.accession = ?")
            args.append(accession)
        if study_uid:
            where.append("s.study_uid = ?")
            args.append(study_uid)
        sql = ("SELECT s.study_uid, s.study_date, s.study_time, s.accession, s.description, s.modalities, "
               "s.n_series, s.n_instances, s.n_missing, s.incomplete, p.patient_id, p.patient_name, p.birth_date, "
               "p.sex FROM studies s JOIN patients p ON p.id = s.patient")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY s.study_date DESC, s.study_time DESC, s.id DESC"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        return [self._study_dict(r) for r in self.conn.execute(sql, args)]

    @staticmethod
    def _study_dict(r: sqlite3.Row) -> dict[str, Any]:
        return {"StudyInstanceUID": r["study_uid"], "PatientID": r["patient_id"], "PatientName": r["patient_name"],
                "PatientBirthDate": r["birth_date"], "PatientSex": r["sex"], "StudyDate": r["study_date"],
                "StudyTime": r["study_time"], "AccessionNumber": r["accession"], "StudyDescription": r["description"],
                "ModalitiesInStudy": r["modalities"].split("\\") if r["modalities"] else [],
                "NumberOfStudyRelatedSeries": r["n_series"], "NumberOfStudyRelatedInstances": r["n_instances"],
                "MissingInstances": r["n_missing"], "Complete": not r["incomplete"] and not r["n_missing"]}

    def count_studies(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM studies").fetchone()[0])

    def list_series(self, study_uid: str) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT se.series_uid, se.number, se.description, se.modality, se.body_part, se.n_instances, "
            "se.n_missing, se.warnings FROM series se JOIN studies s ON s.id = se.study WHERE s.study_uid=? "
            "ORDER BY coalesce(se.number, 1 << 30), se.series_uid", (study_uid,)).fetchall()
        return [{"SeriesInstanceUID": r["series_uid"], "SeriesNumber": r["number"],
                 "SeriesDescription": r["description"], "Modality": r["modality"], "BodyPartExamined": r["body_part"],
                 "NumberOfSeriesRelatedInstances": r["n_instances"], "MissingInstances": r["n_missing"],
                 "Warnings": json.loads(r["warnings"])} for r in rows]

    def _series_infos(self, c: sqlite3.Connection, series_id: int) -> list[SeriesInfo]:
        records: list[FrameRecord] = []
        for row in c.execute("SELECT records FROM instances WHERE series=? AND missing=0", (series_id,)):
            records.extend(pickle.loads(row[0]))  # medview's own database: records it pickled
        return group_series(records, source=str(self.path)) if records else []

    def series_infos(self, series_uid: str) -> list[SeriesInfo]:
        """The loadable series (as the scan makes them) of an indexed series, from the stored records: no
        header is read.  Raises when the series is unknown or all its files are missing."""
        row = self.conn.execute("SELECT id, n_instances, n_missing FROM series WHERE series_uid=?",
                                (series_uid,)).fetchone()
        if row is None:
            raise StudyDatabaseError(f"No series {series_uid} in the study database")
        infos = self._series_infos(self.conn, row["id"])
        if not infos:
            raise StudyDatabaseError(f"Every file of series {series_uid} is missing ({row['n_missing']} files); "
                                     "re-import their folder or remove the study")
        for info in infos:
            if row["n_missing"]:
                info.warnings.append(f"{row['n_missing']} file(s) of this series are missing from the disk")
        return infos

    def set_incomplete(self, study_uid: str, incomplete: bool = True) -> None:
        """Mark a study incomplete (a retrieve that did not finish): it is then not listed as Complete."""
        with self._transaction() as c:
            c.execute("UPDATE studies SET incomplete=? WHERE study_uid=?", (int(bool(incomplete)), study_uid))

    def series_summary(self, series_uid: str) -> dict[str, Any]:
        """Bytes on disk, voxels, bytes per stored value and size text of an indexed series (for scheduling
        and memory estimates), from the index."""
        row = self.conn.execute("SELECT id FROM series WHERE series_uid=?", (series_uid,)).fetchone()
        if row is None:
            raise StudyDatabaseError(f"No series {series_uid} in the study database")
        size = self.conn.execute("SELECT coalesce(sum(size), 0) FROM instances WHERE series=? AND missing=0",
                                 (row["id"],)).fetchone()[0]
        infos = self.series_infos(series_uid)
        z, y, x = infos[0].geometry.shape
        first = next(r for r in infos[0].slots if r is not None)
        return {"bytes": int(size), "voxels": x * y * z, "itemsize": max(1, first.bits_allocated // 8)
                * max(1, first.samples_per_pixel), "size": f"{x}x{y}x{z}"}

    def study_of(self, uid: str) -> str | None:
        """The study UID for a study or series UID known to the database, else None."""
        if self.conn.execute("SELECT 1 FROM studies WHERE study_uid=?", (uid,)).fetchone():
            return uid
        row = self.conn.execute("SELECT s.study_uid FROM series se JOIN studies s ON s.id = se.study "
                                "WHERE se.series_uid=?", (uid,)).fetchone()
        return None if row is None else row[0]

    def files_of(self, study_uid: str, include_missing: bool = False) -> list[str]:
        rows = self.conn.execute(
            "SELECT i.path FROM instances i JOIN series se ON se.id = i.series JOIN studies s ON s.id = se.study "
            "WHERE s.study_uid=?" + ("" if include_missing else " AND i.missing=0") + " ORDER BY i.path",
            (study_uid,))
        return [r[0] for r in rows]

    # -- removal ------------------------------------------------------------------------------------------
    def remove_study(self, study_uid: str) -> int:
        """Forget a study; files in the managed store that no other instance uses are deleted (files imported
        by reference are never touched).  Returns the number of instances removed."""
        row = self.conn.execute("SELECT id, patient FROM studies WHERE study_uid=?", (study_uid,)).fetchone()
        if row is None:
            raise StudyDatabaseError(f"No study {study_uid} in the study database")
        stored = [r[0] for r in self.conn.execute(
            "SELECT i.path FROM instances i JOIN series se ON se.id = i.series WHERE se.study=? AND i.stored=1",
            (row["id"],))]
        with self._transaction() as c:
            n = c.execute("SELECT count(*) FROM instances i JOIN series se ON se.id = i.series WHERE se.study=?",
                          (row["id"],)).fetchone()[0]
            c.execute("DELETE FROM instances WHERE series IN (SELECT id FROM series WHERE study=?)", (row["id"],))
            c.execute("DELETE FROM series WHERE study=?", (row["id"],))
            c.execute("DELETE FROM studies WHERE id=?", (row["id"],))
            c.execute("DELETE FROM patients WHERE id=? AND NOT EXISTS (SELECT 1 FROM studies WHERE patient=?)",
                      (row["patient"], row["patient"]))
        store = os.path.realpath(self.store)
        for path in stored:
            real = os.path.realpath(path)
            if os.path.commonpath([store, real]) != store:
                continue  # never delete outside the store
            if self.conn.execute("SELECT 1 FROM instances WHERE path=?", (path,)).fetchone() is None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(real)
        return int(n)

