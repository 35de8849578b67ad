"""Crash-safe autosave of edited label maps (and their undo history) to a recovery folder.

Layout: ``<recovery dir>/<session id>/`` holds, per autosaved label map (a *key*), the latest label file
``<key>-<n>.nii.gz``, its history ``<key>-<n>.nii.gz.medview-history`` and one ``manifest.json`` for the
session.  The recovery dir is ``recovery`` in medview's data folder (``$MEDVIEW_DATA_DIR``), or
``$MEDVIEW_RECOVERY_DIR`` when set.

Every file is written atomically (:mod:`medview.io.atomic`), and a save writes a *new* numbered pair
before the manifest is switched to it, so the manifest is the single commit point: a process killed at
any moment leaves a manifest naming a complete label file and the history that matches it.  A clean
exit (:meth:`AutosaveSession.close`, or leaving its ``with`` block without an exception) removes the
session's folder; what a crashed session leaves is listed on the next start by
:func:`pending_recoveries` and can be opened (:func:`open_recovery`), copied out (:func:`recover`) or
thrown away (:func:`discard`).

Threads: :meth:`AutosaveSession.snapshot` (main thread, copies the label array: ~30 ms for 512 x 512 x
300) and :meth:`AutosaveSession.write` (any thread: compression and disk) split a save so that the GUI
never waits for the disk; :meth:`AutosaveSession.save` does both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medview.app.history import History, HistorySnapshot, history_path_for
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.processes import is_running, process_started
from medview.core.resources import data_dir
from medview.io.atomic import atomic_copy, atomic_path, atomic_write_text, remove_partials
from medview.io.writers import check_output_path, write_image

ENV_RECOVERY_DIR = "MEDVIEW_RECOVERY_DIR"
MANIFEST_NAME = "manifest.json"
LABEL_SUFFIX = ".nii.gz"
_FORMAT = 1
_ABANDONED_S = 24 * 3600  # a folder without a manifest this old was left by a session that never saved


def recovery_dir() -> Path:
    """The folder holding every session's recovery files (not created here)."""
    configured = os.environ.get(ENV_RECOVERY_DIR)
    if configured:
        return Path(configured)
    return data_dir() / "recovery"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _safe_key(key: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key)).strip("._") or "labels"
    return cleaned[:64]


def _label_table(labels: list[Label]) -> list[dict[str, Any]]:
    return [{"value": e.value, "name": e.name, "color": list(e.color), "visible": e.visible,
             "opacity": e.opacity, "locked": e.locked} for e in labels]


@dataclass(frozen=True)
class Recovery:
    """One label map a crashed session autosaved, as its manifest describes it."""

    session_id: str
    key: str
    folder: Path
    study: str
    labels_source: str
    saved_at: str
    recovery_file: Path
    history_file: Path | None
    target_id: str
    pid: int
    labels: tuple[Label, ...] = field(default=(), compare=False)

    def describe(self) -> str:
        """One line for the recovery dialog."""
        what = os.path.basename(self.labels_source) if self.labels_source else "Unsaved labels"
        study = f" on {self.study}" if self.study else ""
        return f"{what}{study}, autosaved {self.saved_at}"


@dataclass
class AutosaveJob:
    """Everything one autosave writes, captured on the main thread (see :meth:`AutosaveSession.snapshot`)."""

    key: str
    array: np.ndarray
    geometry: Geometry
    labels: list[Label]
    study: str
    labels_source: str
    target_id: str
    history: HistorySnapshot | None
    version: int | None


class AutosaveSession:
    """The recovery files of one running medview.

    Parameters
    ----------
    root
        Recovery folder; default :func:`recovery_dir`.
    session_id
        Name of this session's sub-folder; default: time, pid and a random token.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, session_id: str | None = None) -> None:
        self.root = Path(root) if root is not None else recovery_dir()
        self.session_id = session_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        self.folder = self.root / self.session_id
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = {}
        self._sequence: dict[str, int] = {}
        self._saved_version: dict[str, int | None] = {}
        self._started = _now()
        self._closed = False

    # -- saving -----------------------------------------------------------------------------------
    def needs_save(self, key: str, version: int) -> bool:
        """False when ``key`` was last saved at this history ``version`` (nothing changed since)."""
        return self._saved_version.get(_safe_key(key), -1) != version

    def snapshot(self, label_map: LabelMap, key: str = "labels", *, study: str = "", labels_source: str = "",
                 history: History | None = None, target_id: str | None = None) -> AutosaveJob:
        """Capture what to save (copies the array): call on the thread that edits the label map."""
        target_id = target_id or key
        return AutosaveJob(
            key=_safe_key(key), array=label_map.array.copy(), geometry=label_map.geometry,
            labels=[Label(e.value, e.name, tuple(e.color), e.visible, e.opacity, e.locked) for e in label_map.labels],
            study=study, labels_source=labels_source or label_map.source, target_id=target_id,
            history=history.snapshot(target_id) if history is not None else None,
            version=history.version if history is not None else None)

    def write(self, job: AutosaveJob) -> Path:
        """Write a snapshot (any thread): label file, history, then the manifest; returns the label file."""
        if self._closed:
            raise MedviewError("This autosave session has been closed")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not (self.folder / MANIFEST_NAME).exists():
                self._write_manifest()  # claim the folder first, so a crash before the first save is tidied up
            sequence = self._sequence.get(job.key, 0) + 1
            label_file = self.folder / f"{job.key}-{sequence:06d}{LABEL_SUFFIX}"
            with atomic_path(label_file) as tmp:
                write_image(LabelMap(job.array, job.geometry, labels=list(job.labels)), tmp)
            history_file = None
            if job.history is not None:
                history_file = history_path_for(label_file)
                job.history.write(history_file, job.array, job.geometry)
            previous = self._entries.get(job.key)
            self._entries[job.key] = {
                "study": job.study, "labels_source": job.labels_source, "saved_at": _now(),
                "recovery_file": label_file.name, "history_file": history_file.name if history_file else None,
                "target_id": job.target_id, "sequence": sequence, "labels": _label_table(job.labels),
            }
            self._sequence[job.key] = sequence
            self._write_manifest()  # the commit point
            self._saved_version[job.key] = job.version
            if previous is not None:  # the superseded pair is no longer named anywhere
                for name in (previous["recovery_file"], previous["history_file"]):
                    if name:
                        with contextlib.suppress(OSError):
                            (self.folder / name).unlink()
        return label_file

    def save(self, label_map: LabelMap, key: str = "labels", *, study: str = "", labels_source: str = "",
             history: History | None = None, target_id: str | None = None) -> Path:
        """Snapshot and write in one call (blocks for the compression and the disk)."""
        return self.write(self.snapshot(label_map, key, study=study, labels_source=labels_source, history=history,
                                        target_id=target_id))

    def remove(self, key: str) -> None:
        """Forget one label map (it was saved by the user or closed without changes)."""
        key = _safe_key(key)
        with self._lock:
            entry = self._entries.pop(key, None)
            self._saved_version.pop(key, None)
            if entry is None:
                return
            self._write_manifest()
            for name in (entry["recovery_file"], entry["history_file"]):
                if name:
                    with contextlib.suppress(OSError):
                        (self.folder / name).unlink()

    def _write_manifest(self) -> None:
        manifest = {
            "format": _FORMAT, "session": self.session_id, "pid": os.getpid(),
            "process_started": process_started(os.getpid()), "host": socket.gethostname(),
            "started_at": self._started, "updated_at": _now(), "entries": self._entries,
        }
        atomic_write_text(self.folder / MANIFEST_NAME, json.dumps(manifest, indent=1))

    # -- clean exit -------------------------------------------------------------------------------
    def close(self) -> None:
        """Clean exit: delete this session's recovery files."""
        with self._lock:
            self._closed = True
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> AutosaveSession:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:  # an exception is not a clean exit: keep the files for recovery
            self.close()


# -- the next start ---------------------------------------------------------------------------------
def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        with open(folder / MANIFEST_NAME, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("entries"), dict) else None


def _session_alive(manifest: dict[str, Any]) -> bool:
    if manifest.get("host") not in (None, socket.gethostname()):
        return False  # another machine sharing this folder: it cannot be checked, so offer it
    return is_running(int(manifest.get("pid", -1)), manifest.get("process_started"))


def _tidy(folder: Path, manifest: dict[str, Any]) -> None:
    """Delete what a killed writer left that the manifest does not name (partial or superseded files)."""
    named = {MANIFEST_NAME}
    for entry in manifest["entries"].values():
        named.update(n for n in (entry.get("recovery_file"), entry.get("history_file")) if n)
    remove_partials(folder)
    for path in folder.iterdir():
        if path.name not in named:
            with contextlib.suppress(OSError):
                path.unlink()


def pending_recoveries(root: str | os.PathLike[str] | None = None) -> list[Recovery]:
    """What sessions that did not exit cleanly left behind, newest first.

    Sessions still running (on this machine) are skipped.  Leftovers of killed writes are deleted, and
    so are crashed sessions that never saved anything.
    """
    root = Path(root) if root is not None else recovery_dir()
    if not root.is_dir():
        return []
    found: list[Recovery] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = _read_manifest(folder)
        if manifest is None:  # a session starting up; or one killed before its first save, if long ago
            if time.time() - folder.stat().st_mtime > _ABANDONED_S and not (folder / MANIFEST_NAME).exists():
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if _session_alive(manifest):
            continue
        _tidy(folder, manifest)
        if not manifest["entries"]:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for key, entry in manifest["entries"].items():
            label_file = folder / entry["recovery_file"]
            if not label_file.exists():
                continue
            history = entry.get("history_file")
            found.append(Recovery(
                session_id=str(manifest.get("session", folder.name)), key=key, folder=folder,
                study=str(entry.get("study", "")), labels_source=str(entry.get("labels_source", "")),
                saved_at=str(entry.get("saved_at", "")), recovery_file=label_file,
                history_file=(folder / history) if history and (folder / history).exists() else None,
                target_id=str(entry.get("target_id", key)), pid=int(manifest.get("pid", -1)),
                labels=tuple(Label(int(e["value"]), str(e["name"]), tuple(e["color"]), bool(e["visible"]),
                                   float(e["opacity"]), bool(e["locked"])) for e in entry.get("labels", []))))
    found.sort(key=lambda r: r.saved_at, reverse=True)
    return found


def discard(recovery: Recovery) -> None:
    """Throw away one recovered label map; the session's folder goes when nothing is left in it."""
    manifest = _read_manifest(recovery.folder)
    if manifest is None:
        shutil.rmtree(recovery.folder, ignore_errors=True)
        return
    manifest["entries"].pop(recovery.key, None)
    if not manifest["entries"]:
        shutil.rmtree(recovery.folder, ignore_errors=True)
        return
    atomic_write_text(recovery.folder / MANIFEST_NAME, json.dumps(manifest, indent=1))
    _tidy(recovery.folder, manifest)


def recover(recovery: Recovery, destination: str | os.PathLike[str] | None = None) -> Path:
    """The recovered label file: ``recovery.recovery_file`` itself, or a copy at ``destination``.

    With a ``destination`` the label file and its history (``<destination>.medview-history``) are copied
    there atomically and the recovery entry is discarded; without one the files stay in the recovery
    folder until :func:`discard`.
    """
    if not recovery.recovery_file.exists():
        raise MedviewError(f"The recovery file {recovery.recovery_file} is gone")
    if destination is None:
        return recovery.recovery_file
    destination = Path(os.path.abspath(os.fspath(destination)))
    check_output_path(str(destination))
    if not str(destination).lower().endswith(LABEL_SUFFIX):
        raise MedviewError(f"Recovered labels are NIfTI: name the file ...{LABEL_SUFFIX}, not {destination.name}")
    atomic_copy(recovery.recovery_file, destination)
    if recovery.history_file is not None:
        atomic_copy(recovery.history_file, history_path_for(destination))
    discard(recovery)
    return destination


def open_recovery(recovery: Recovery, reference: Any = None,
                  budget_bytes: int | None = None) -> tuple[LabelMap, History, str | None]:
    """Open a recovered label map with its label table and undo history.

    Returns the label map, its history (target id ``recovery.target_id``; empty when the history file
    is missing or does not match) and a message to show when the history could not be used.
    """
    from medview.app.label_maps import open_label_map

    label_map = open_label_map(recovery.recovery_file, reference=reference)
    if recovery.labels:
        label_map.labels = [Label(e.value, e.name, tuple(e.color), e.visible, e.opacity, e.locked)
                            for e in recovery.labels]
    label_map.source = recovery.labels_source or label_map.source
    kwargs = {} if budget_bytes is None else {"budget_bytes": budget_bytes}
    if recovery.history_file is None:
        history = History(**kwargs)
        history.register(recovery.target_id, label_map)
        return label_map, history, None
    history, message = History.load_or_empty(recovery.history_file, recovery.target_id, label_map, **kwargs)
    return label_map, history, message
