"""Whole images kept for undo: the image a filter of another data type or grid replaced (and the label map
that grid carried), in memory while it is small against the undo budget, else in a temporary ``.npy`` file.

The files lie in ``<data dir>/undo`` (:func:`medview.core.resources.data_dir`), are named after the process
that wrote them, and are removed when their step is dropped (budget, a new study, the redo branch ending), when
the program exits, and -- for a program that died -- by the next one that keeps an image there.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from medview.core.errors import MedviewError
from medview.core.labels import LabelMap
from medview.core.resources import data_dir

log = logging.getLogger(__name__)
SPILL_FOLDER = "undo"
_NAME = re.compile(r"^undo-(\d+)-.*\.npy$")


def spill_dir() -> Path:
    """Where images too large for memory are kept for undo."""
    return data_dir() / SPILL_FOLDER


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()
    paths.clear()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_files(folder: Path | None = None) -> int:
    """Delete the kept-image files of medview processes that no longer run; returns how many."""
    folder = folder or spill_dir()
    removed = 0
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            m = _NAME.match(entry.name)
            if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed += 1
    return removed


def image_bytes(volume: Any, labels: LabelMap | None = None) -> int:
    return int(volume.array.nbytes) + (int(labels.array.nbytes) if labels is not None else 0)


def can_keep(nbytes: int, memory_limit: int) -> str | None:
    """None when an image of ``nbytes`` can be kept for undo (in memory up to ``memory_limit``, else in a file);
    otherwise why not, in a sentence."""
    if nbytes <= memory_limit:
        return None
    folder = spill_dir()
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        return (f"the previous image ({nbytes / 2**20:.0f} MB) is larger than the undo memory allows "
                f"({memory_limit / 2**20:.0f} MB) and medview's data folder {folder} cannot be written")
    free = shutil.disk_usage(probe).free
    if free < nbytes + (64 << 20):
        return (f"the previous image ({nbytes / 2**20:.0f} MB) is larger than the undo memory allows "
                f"({memory_limit / 2**20:.0f} MB) and the disk of {folder} has only {free / 2**20:.0f} MB free")
    return None


class KeptImage:
    """A volume (and optionally a label map) kept for undo/redo; :meth:`restore` gives them back.

    In memory when ``image_bytes <= memory_limit``; otherwise written to ``.npy`` files, in a background thread
    (numpy writes without the GIL: the window goes on), the objects released once written.  A restored image
    is then a new Volume / LabelMap with the same values (mapped copy-on-write from the file: no read on the GUI
    thread), geometry, metadata, label table and voxel counts.  Raises :class:`MedviewError` when it can be
    kept neither way.
    """

    def __init__(self, volume: Any, labels: LabelMap | None, memory_limit: int) -> None:
        self.volume, self.labels = volume, labels
        self.size = image_bytes(volume, labels)
        self.paths: list[Path] = []
        self._files: dict[str, Path] = {}
        self._held: tuple[Any, LabelMap | None] | None = None  # the objects, until their files are written
        self._error: str | None = None
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._finalizer = weakref.finalize(self, _remove, self.paths)  # also at exit
        if self.size > memory_limit:
            self._spill(memory_limit)

    @property
    def in_memory(self) -> bool:
        """True when kept in memory by design (not written to files)."""
        return not self._files

    @property
    def nbytes(self) -> int:
        """Memory counted against the undo budget: 0 for an image kept in files."""
        return self.size if self.in_memory else 0

    def _spill(self, memory_limit: int) -> None:
        reason = can_keep(self.size, memory_limit)
        if reason is not None:
            raise MedviewError(f"This step cannot be undone: {reason}")
        folder = spill_dir()
        items: list[tuple[int, np.ndarray]] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_files(folder)
            for key, obj in (("volume", self.volume), ("labels", self.labels)):
                if obj is None:
                    continue
                fd, name = tempfile.mkstemp(prefix=f"undo-{os.getpid()}-{key}-", suffix=".npy", dir=folder)
                self.paths.append(Path(name))
                self._files[key] = Path(name)
                items.append((fd, obj.array))
        except OSError as exc:
            for fd, _ in items:
                os.close(fd)
            _remove(self.paths)
            self._files.clear()
            raise MedviewError(f"This step cannot be undone: the previous image ({self.size / 2**20:.0f} MB) does "
                               f"not fit the undo memory and could not be written to {folder} "
                               f"({exc.strerror or exc})") from None
        if self.labels is not None:
            self.labels.voxel_counts()  # kept with the table: a restored map needs no recount
        self._held = (self.volume, self.labels)
        self.volume = _shell(self.volume)  # everything but the voxels
        self.labels = _shell(self.labels) if self.labels is not None else None
        self._writer = threading.Thread(target=self._write, args=(items,), name="medview-undo-spill", daemon=True)
        self._writer.start()

    def _write(self, items: list[tuple[int, np.ndarray]]) -> None:
        try:
            for fd, array in items:
                with os.fdopen(fd, "wb") as fh:
                    np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        except (OSError, ValueError) as exc:  # kept in memory instead: nothing is lost
            log.warning("the image kept for undo stays in memory: writing %s failed (%s)", self.paths, exc)
            self._error = str(exc)
            return
        with self._lock:
            self._held = None

    def restore(self) -> tuple[Any, LabelMap | None]:
        """The kept volume and label map (mapped from the files when they were written out)."""
        if self.in_memory:
            return self.volume, self.labels
        with self._lock:
            held = self._held
        if held is not None:  # still being written (or the write failed): the objects themselves
            return held
        try:
            arrays = {key: np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
                      for key, path in self._files.items()}
        except (OSError, ValueError) as exc:
            raise MedviewError(f"The image kept for undo could not be read back from {spill_dir()} "
                               f"({getattr(exc, 'strerror', None) or exc}); it cannot be restored") from None
        from medview.core.volume import Volume

        shell = self.volume
        volume = Volume(arrays["volume"], shell.geometry, shell.metadata)
        labels = None
        if self.labels is not None:
            s = self.labels
            labels = LabelMap(arrays["labels"], s.geometry, labels=list(s.table_snapshot()), source=s.source,
                              provenance=dict(s.provenance))
            if s._counts is not None:
                labels.changed(counts=s._counts)
        return volume, labels

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the files are written (tests)."""
        if self._writer is not None:
            self._writer.join(timeout_s)

    def discard(self) -> None:
        """Remove the files now (the step is dropped)."""
        self._finalizer()


def _shell(obj: Any) -> Any:
    shell = copy.copy(obj)
    shell.array = None  # only this object holds no voxels; the original is untouched
    if isinstance(shell, LabelMap):
        shell.labels = list(obj.table_snapshot())
    return shell
