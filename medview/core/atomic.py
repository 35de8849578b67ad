"""Crash-safe file writing: a file is either the complete old version or the complete new one, never a mix.

The new content goes to a temporary file in the *same folder* (so the final rename never crosses a file
system), is flushed and ``fsync``-ed, given the permissions the file should have (the old file's mode when
one is replaced, else ``0666 & ~umask``), moved over the target with :func:`os.replace` (atomic on POSIX
and Windows), and finally the folder itself is ``fsync``-ed so the rename survives a power cut.  A process
killed at any moment (``kill -9``, a crash, a full disk) leaves the previous file untouched; at worst a
stray temporary file named ``.partial-<token>.<pid>.<host>-<name>`` remains.  The next atomic write into
that folder (and the GUI at start-up, for the folders it remembers) removes such leftovers once their
writer is known to be dead or they are older than :data:`STALE_AGE_S` (:func:`remove_stale_partials`).

Writers that put a separate data file beside a header (MetaImage ``.mhd`` + ``.raw``/``.zraw``, NRRD
``.nhdr`` + ``.raw.gz``) name it after the temporary header; those companions are moved to their final
names first and the header is pointed at them before it is renamed.

This module lives in ``medview.core`` (standard library only) so that every layer, including
``medview.algorithms`` and ``medview.render``, writes through the same code; ``medview.io.atomic``
re-exports it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from medview.core.errors import WriteError

PARTIAL_PREFIX = ".partial-"
STALE_AGE_S = 24 * 3600.0
"""A leftover whose writer cannot be checked (another machine, an older medview) is removed after this long."""

_PARTIAL_NAME = re.compile(
    r"^\.partial-(?P<token>[0-9a-f]{12})(?:\.(?P<pid>\d+)\.(?P<host>[0-9a-f]{4}))?-(?P<name>.+)$", re.S)
_HEADER_FORMATS = (".mhd", ".nhdr")
_DATA_FILE_KEYS = ("elementdatafile", "data file", "datafile")
_umask_lock = threading.Lock()


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:4]


def current_umask() -> int:
    """The process's file-creation mask (read from /proc where possible, so no thread sees it changed)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def mode_for(target: str | os.PathLike[str]) -> int:
    """Permission bits a new version of ``target`` gets: those of the file it replaces, else 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    if os.name == "nt":
        return
    fd = os.open(os.fspath(folder), os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (e.g. certain network mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file written by someone else (e.g. SimpleITK) to disk."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _target(path: str | os.PathLike[str]) -> Path:
    """Absolute path of the file to replace; a symbolic link is followed, so the link itself stays."""
    absolute = os.path.abspath(os.fspath(path))
    return Path(os.path.realpath(absolute)) if os.path.islink(absolute) else Path(absolute)


def partial_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name next to ``path`` that keeps its extension and names its writer.

    ``.partial-<12 hex token>.<process id>.<host tag>-<name>``: the process id and a 4-hex tag of the host
    name let :func:`remove_stale_partials` tell a killed writer's leftover from a write in progress.
    """
    target = _target(path)
    return target.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(6)}.{os.getpid()}.{_host_tag()}-{target.name}")


def _check_folder(target: Path) -> None:
    if not target.parent.is_dir():
        raise WriteError(f"The output folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise WriteError(f"The output folder {target.parent} is not writable")


def _token_prefix(tmp: Path) -> str:
    """``.partial-<token>...-``: the part of ``tmp``'s name that its companion files share."""
    return tmp.name[: tmp.name.index("-", len(PARTIAL_PREFIX)) + 1]


def _companions(tmp: Path) -> list[Path]:
    prefix = _token_prefix(tmp)
    try:
        return sorted(p for p in tmp.parent.iterdir() if p.name.startswith(prefix) and p.name != tmp.name)
    except OSError:
        return []


def _point_header_at(header: Path, renames: dict[str, str]) -> None:
    """Rewrite a detached header's data-file line from temporary companion names to their final names."""
    text = header.read_bytes().decode("latin-1")
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        key, sep, value = line.partition("=" if "=" in line.split(":", 1)[0] else ":")
        if not sep or key.strip().lower() not in _DATA_FILE_KEYS:
            continue
        for old, new in renames.items():
            value = value.replace(old, new)
        lines[i] = key + sep + value
    header.write_bytes("".join(lines).encode("latin-1"))


def _commit(tmp: Path, target: Path) -> None:
    companions = _companions(tmp)
    prefix = _token_prefix(tmp)
    if companions and target.name.lower().endswith(_HEADER_FORMATS):
        _point_header_at(tmp, {c.name: c.name[len(prefix):] for c in companions})
    # Companion data files first, the header last: the header never names a file that is not there yet.
    for companion in companions:
        final = companion.with_name(companion.name[len(prefix):])
        os.chmod(companion, mode_for(final))
        fsync_file(companion)
        os.replace(companion, final)
    os.chmod(tmp, mode_for(target))
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_folder(target.parent)


def _discard(tmp: Path) -> None:
    for path in (tmp, *_companions(tmp)):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically.

    The temporary name ends with the target's name, so writers that choose the format by extension
    (``.nii.gz``, ``.nrrd``) behave the same.  If the body raises, the temporary file (and any companion
    data file written beside it) is removed and ``path`` is left as it was.  Stale leftovers of killed
    writers in the same folder are removed first.

    Examples
    --------
    >>> with atomic_path("labels.nii.gz") as tmp:  # doctest: +SKIP
    ...     write_image(label_map, tmp)
    """
    target = _target(path)
    _check_folder(target)
    with contextlib.suppress(OSError):
        remove_stale_partials(target.parent)
    tmp = partial_path(target)
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(f"Nothing was written for {target.name}")
        _commit(tmp, target)
    except BaseException as exc:
        _discard(tmp)
        if isinstance(exc, OSError):
            raise WriteError(f"Could not write {target}: {exc.strerror or exc}") from None
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose result replaces ``path`` atomically when the block ends without an error.

    ``mode`` is ``"w"`` (text; ``encoding`` defaults to UTF-8) or ``"wb"``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a new file: mode 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring).  Returns the absolute path."""
    target = _target(path)
    with atomic_open(target, "wb") as fh:
        fh.write(data)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Copy a file so that ``destination`` is never seen half-copied."""
    target = _target(destination)
    with atomic_path(target) as tmp:
        shutil.copyfile(os.fspath(source), tmp)
    return target


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        return True
    except OSError:
        return False


def remove_partials(folder: str | os.PathLike[str], older_than_s: float = 0.0) -> list[Path]:
    """Delete temporary files left in ``folder`` by writers that were killed; returns what was removed.

    Every file whose name starts with ``.partial-`` and that was last modified more than ``older_than_s``
    seconds ago is removed, whoever wrote it: for folders medview owns (autosave).  Elsewhere use
    :func:`remove_stale_partials`, which spares writes still in progress.
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for entry in folder.iterdir():
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime >= older_than_s and _remove(entry):
                removed.append(entry)
    return removed


def _writer_is_gone(pid: int, modified: float) -> bool:
    """True when no process ``pid`` runs, or the one running started after the file was last written."""
    from medview.core.processes import process_started

    started = process_started(pid)
    return started is None or started > modified + 2.0


def is_stale_partial(entry: Path, now: float | None = None, max_age_s: float = STALE_AGE_S) -> bool:
    """Whether ``entry`` is medview's own leftover of a killed write (see :func:`remove_stale_partials`)."""
    match = _PARTIAL_NAME.match(entry.name)
    if match is None:
        return False  # not a name medview makes: never touched
    modified = entry.lstat().st_mtime
    if (time.time() if now is None else now) - modified >= max_age_s:
        return True
    if match["pid"] is None or match["host"] != _host_tag():
        return False  # an older medview or another machine: only the age tells
    pid = int(match["pid"])
    return pid != os.getpid() and _writer_is_gone(pid, modified)


def remove_stale_partials(folder: str | os.PathLike[str], max_age_s: float = STALE_AGE_S) -> list[Path]:
    """Remove medview's own leftovers of killed writes in ``folder``; returns what was removed.

    Only names :func:`partial_path` makes are considered.  One is removed when its writer (process id and
    host in the name) is no longer running on this machine, or when it was last modified more than
    ``max_age_s`` seconds ago (a writer on another machine, or a name from an older medview).  A write in
    progress, in this process or another, is never disturbed.
    """
    removed: list[Path] = []
    folder = Path(folder)
    try:
        entries = [e for e in folder.iterdir() if e.name.startswith(PARTIAL_PREFIX)]
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        with contextlib.suppress(OSError):
            if is_stale_partial(entry, now, max_age_s) and _remove(entry):
                removed.append(entry)
    return removed
