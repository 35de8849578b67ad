"""Crash-safe file writing: a file is either the complete old version or the complete new one, never a mix.

The new content goes to a temporary file in the *same folder* (so the final rename never crosses a file
system), is flushed and ``fsync``-ed, then moved over the target with :func:`os.replace` (atomic on POSIX
and Windows), and finally the folder itself is ``fsync``-ed so the rename survives a power cut.  A process
killed at any moment (``kill -9``, a crash, a full disk) leaves the previous file untouched; at worst a
stray temporary file named ``.partial-<token>-<name>`` remains, which :func:`remove_partials` cleans up.

Used by the undo history, autosave and CSV exports; anything that writes a file users rely on should go
through :func:`atomic_path` (for writers that want a path, such as SimpleITK) or :func:`atomic_write_bytes`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from medview.core.errors import WriteError

PARTIAL_PREFIX = ".partial-"


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


def partial_path(path: str | os.PathLike[str]) -> Path:
    """A fresh temporary name next to ``path`` that keeps its extension (``.partial-<token>-<name>``)."""
    target = Path(os.path.abspath(os.fspath(path)))
    return target.with_name(f"{PARTIAL_PREFIX}{secrets.token_hex(6)}-{target.name}")


def _check_folder(target: Path) -> None:
    if not target.parent.is_dir():
        raise WriteError(f"The output folder {target.parent} does not exist")
    if not os.access(target.parent, os.W_OK):
        raise WriteError(f"The output folder {target.parent} is not writable")


def _commit(tmp: Path, target: Path) -> None:
    fsync_file(tmp)
    os.replace(tmp, target)
    fsync_folder(target.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path`` atomically.

    The temporary name ends with the target's name, so writers that choose the format by extension
    (``.nii.gz``, ``.nrrd``) behave the same.  If the body raises, the temporary file is removed and
    ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_path("labels.nii.gz") as tmp:  # doctest: +SKIP
    ...     write_image(label_map, tmp)
    """
    target = Path(os.path.abspath(os.fspath(path)))
    _check_folder(target)
    tmp = partial_path(target)
    try:
        yield tmp
        if not tmp.exists():
            raise WriteError(f"Nothing was written for {target.name}")
        _commit(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise WriteError(f"Could not write {target}: {exc.strerror or exc}") from None
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring).  Returns the absolute path."""
    target = Path(os.path.abspath(os.fspath(path)))
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; newlines are written as given (no platform translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_copy(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> Path:
    """Copy a file so that ``destination`` is never seen half-copied."""
    import shutil

    target = Path(os.path.abspath(os.fspath(destination)))
    with atomic_path(target) as tmp:
        shutil.copyfile(os.fspath(source), tmp)
    return target


def remove_partials(folder: str | os.PathLike[str], older_than_s: float = 0.0) -> list[Path]:
    """Delete temporary files left in ``folder`` by writers that were killed; returns what was removed.

    Only files whose name starts with ``.partial-`` and that were last modified more than
    ``older_than_s`` seconds ago are touched, so a write in progress in another process is not
    disturbed when a positive age is given.
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
            if now - entry.stat().st_mtime >= older_than_s:
                entry.unlink()
                removed.append(entry)
    return removed
