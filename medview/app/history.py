"""One bounded undo history for every change to a label map or a volume, that survives reopening.

Each step stores only the changed bounding box of one array, compressed with zlib: the values before
the change, and the XOR of the values after with those before (mostly zeros for a brush stroke, so it
compresses to almost nothing).  A brush stroke on a 512 x 512 x 300 label map costs a few hundred bytes,
not a 75 MB copy.  The sum of the compressed steps (plus a fixed per-step overhead) never exceeds
``budget_bytes``: the oldest steps are dropped first.

Targets (label maps, volumes or bare arrays) are registered under an id; :meth:`History.undo` and
:meth:`History.redo` write into the registered target's ``array`` in place, call its ``changed()``
when it has one (so :class:`~medview.core.labels.LabelMap` recounts its voxels) and return a
:class:`Change` naming the target and bounding box, so the GUI redraws only what changed.

Next to a label file ``seg.nii.gz`` the history is saved as ``seg.nii.gz.medview-history``
(:func:`history_path_for`).  The file records the grid and a hash of the label content it was saved
with; :meth:`History.load` refuses it (:class:`HistoryMismatchError`) when the label file has been
changed outside medview since, because replaying diffs onto other content would corrupt it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import replace as replace_dc
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medview.algorithms.label_edit import EMPTY_BBOX, BBox, Edit, empty_edit
from medview.core.errors import CorruptFileError, MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import (
    LabelMap,
    TableSnapshot,
    apply_table_change,
    table_from_json,
    table_snapshot,
    table_to_json,
)
from medview.io.atomic import atomic_write_bytes

HISTORY_SUFFIX = ".medview-history"
DEFAULT_BUDGET_BYTES = 256 * 2**20
STEP_OVERHEAD_BYTES = 256  # Python objects and bookkeeping of one step, counted against the budget
_MAGIC = b"MEDVIEW-HISTORY\n"
_FORMAT = 2  # 2: steps carry the label table before and after; the target its table
_HASH_CHUNK_BYTES = 16 * 2**20


class HistoryMismatchError(MedviewError):
    """A saved history does not belong to the label map it sits next to (changed outside medview)."""


def history_path_for(label_path: str | os.PathLike[str]) -> Path:
    """Where the history of ``label_path`` is kept: ``<label file>.medview-history``."""
    return Path(os.fspath(label_path) + HISTORY_SUFFIX)


@dataclass(frozen=True)
class Change:
    """What an undo, redo or new step changed: redraw ``bbox`` (z, y, x slices) of ``target_id``.

    ``undoable`` is False when the step was larger than the whole memory budget and could not be kept.
    """

    target_id: str
    bbox: BBox
    description: str
    kind: Literal["do", "undo", "redo"]
    undoable: bool = True
    tag: Any = field(default=None, compare=False)  # the tag the step was recorded with
    # a whole-image step (another data type or grid): the image now registered under ``target_id`` and, when
    # the step also swaps the label map (the grid changed), the label map now registered (None: none)
    image: Any = field(default=None, compare=False)
    labels: Any = field(default=None, compare=False)
    swaps_labels: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class _Step:
    target_id: str
    description: str
    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    dtype: str
    before_z: bytes
    delta_z: bytes
    tag: Any = None  # an opaque marker of what made the step (the replay log asks whether it is undone)
    # a label map's table before and after the step (None: the step did not change it): undo and redo
    # restore the names, colours, locks, visibility and opacity the voxels had, with them
    table_before: TableSnapshot | None = None
    table_after: TableSnapshot | None = None

    @property
    def nbytes(self) -> int:
        table = 96 * (len(self.table_before or ()) + len(self.table_after or ()))
        return len(self.before_z) + len(self.delta_z) + STEP_OVERHEAD_BYTES + table

    @property
    def bbox(self) -> BBox:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.shape, strict=True))  # type: ignore[return-value]

    def _raw(self, blob: bytes) -> np.ndarray:
        return np.frombuffer(zlib.decompress(blob), dtype=np.uint8)

    def before(self) -> np.ndarray:
        return self._raw(self.before_z).view(np.dtype(self.dtype)).reshape(self.shape)

    def after(self) -> np.ndarray:
        raw = np.bitwise_xor(self._raw(self.before_z), self._raw(self.delta_z))
        return raw.view(np.dtype(self.dtype)).reshape(self.shape)

    @classmethod
    def from_edit(cls, target_id: str, edit: Edit, description: str, tag: Any = None,
                  tables: tuple[TableSnapshot, TableSnapshot] | None = None) -> _Step:
        table_before, table_after = tables if tables is not None and tables[0] != tables[1] else (None, None)
        before = np.ascontiguousarray(edit.before)
        after = np.ascontiguousarray(edit.after, dtype=before.dtype)
        b = before.reshape(-1).view(np.uint8)
        delta = np.bitwise_xor(after.reshape(-1).view(np.uint8), b)
        # level 1: label data compresses nearly as well as at level 6, several times faster on big edits
        return cls(target_id, description, tuple(int(s.start) for s in edit.bbox), tuple(before.shape),  # type: ignore[arg-type]
                   before.dtype.str, zlib.compress(b, 1), zlib.compress(delta, 1), tag, table_before, table_after)


@dataclass(frozen=True, eq=False)
class PreparedStep:
    """The undo step of an edit, compressed where the edit was computed (a job's process), so that applying a
    whole-volume result on the GUI thread is a copy of ``after`` into place (compressing a CT's before/after
    there stalled the window for over a second: issue 17).  Made by :func:`prepare_step`; applied with
    :meth:`History.perform_prepared`.  ``counts``: a label map's voxel counts after the edit (no recount)."""

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    dtype: str
    # the compressed blobs as uint8 arrays (bytes-like): from a job's process they arrive in shared memory, not
    # through the pipe and pickle (tens of MB for a float CT: copies that hold the GIL, and the window)
    before_z: np.ndarray | bytes
    delta_z: np.ndarray | bytes
    after: np.ndarray
    counts: dict[int, int] | None = None

    def with_bytes(self) -> PreparedStep:
        """The same step with its blobs as bytes, as the history keeps them (one plain copy, no pickle)."""
        return replace_dc(self, before_z=bytes(memoryview(self.before_z)), delta_z=bytes(memoryview(self.delta_z)))

    @property
    def bbox(self) -> BBox:
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.shape, strict=True))  # type: ignore[return-value]

    @property
    def is_empty(self) -> bool:
        return self.after.size == 0


def prepare_step(edit: Edit, counts: dict[int, int] | None = None) -> PreparedStep:
    """Compress ``edit`` (not yet applied) into a :class:`PreparedStep`; ``counts``: see there."""
    step = _Step.from_edit("", edit, edit.description or "Edit")
    return PreparedStep(step.start, step.shape, step.dtype, np.frombuffer(step.before_z, np.uint8),
                        np.frombuffer(step.delta_z, np.uint8), np.ascontiguousarray(edit.after), counts)


REPLACEMENT_SHARE = 0.25  # an image kept whole for undo stays in memory up to this share of the budget


@dataclass(eq=False)
class _Replacement:
    """A step that replaced a target's object as a whole (a filter result of another data type or grid): it
    keeps the side not shown now -- the image before while the step is done, the result while it is undone --
    in memory or in a file (:class:`~medview.app.kept_images.KeptImage`).  ``labels_id``: the label map's
    target, when the grid changed and the label map went with the image."""

    target_id: str
    description: str
    kept: Any  # a KeptImage
    tag: Any = None
    labels_id: str | None = None

    @property
    def nbytes(self) -> int:
        return self.kept.nbytes + STEP_OVERHEAD_BYTES

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1, 1, 1)  # it changes the target's data (data_version moves on)

    @property
    def bbox(self) -> BBox:
        return EMPTY_BBOX


def _discard(steps: Iterable[Any]) -> None:
    """Steps leave the history: the files of whole images they kept go with them."""
    for step in steps:
        if isinstance(step, _Replacement):
            step.kept.discard()


def _array_of(target: Any) -> np.ndarray:
    array = target if isinstance(target, np.ndarray) else getattr(target, "array", None)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"A history target must be an array or have an .array, got {type(target).__name__}")
    return array


def _geometry_of(target: Any) -> Geometry | None:
    geometry = getattr(target, "geometry", None)
    return geometry if isinstance(geometry, Geometry) else None


def content_hash(array: np.ndarray) -> str:
    """SHA-256 of an array's values and shape, independent of the integer type that holds them.

    A uint16 label map holding only values below 256 hashes like its uint8 copy, because label files
    come back from disk in the smallest type that holds their values.
    """
    dtype = array.dtype
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        canon = np.dtype("u1") if lo >= 0 and hi < 256 else np.dtype("<u2") if lo >= 0 and hi < 65536 else np.dtype(
            "<i8")
    else:
        canon = dtype.newbyteorder("<")
    h = hashlib.sha256(f"{tuple(array.shape)}|{canon.str}|".encode())
    if array.ndim == 0 or array.size == 0:
        h.update(np.ascontiguousarray(array, dtype=canon).tobytes())
        return h.hexdigest()
    per_row = max(array[0].size * canon.itemsize, 1)
    rows = max(_HASH_CHUNK_BYTES // per_row, 1)
    for start in range(0, array.shape[0], rows):
        h.update(np.ascontiguousarray(array[start:start + rows], dtype=canon).data)
    return h.hexdigest()


@dataclass(frozen=True)
class HistorySnapshot:
    """The steps of one target at one moment (oldest undo first, next redo last), ready to be written."""

    undo: tuple[_Step, ...]
    redo: tuple[_Step, ...]
    table: TableSnapshot | None = None  # the label table when the snapshot was taken (the steps end at it)

    def write(self, path: str | os.PathLike[str], array: np.ndarray, geometry: Geometry | None = None,
              table: TableSnapshot | None = None) -> Path:
        """Write the steps to ``path`` atomically, stamped with ``array``'s content and ``geometry``.

        ``array`` must hold the content the steps end at (the label file saved alongside); ``table``: the label
        table that goes with it (kept in the file, so the names survive even without a table file beside it).
        """
        table = table if table is not None else self.table
        blobs: list[bytes] = []
        offset = 0

        def describe(steps: Iterable[_Step]) -> list[dict[str, Any]]:
            nonlocal offset
            out = []
            for s in steps:
                entry = {"description": s.description, "start": list(s.start), "shape": list(s.shape),
                         "dtype": s.dtype}
                for key, blob in (("before", s.before_z), ("delta", s.delta_z)):
                    entry[key] = [offset, len(blob), zlib.crc32(blob)]
                    blobs.append(blob)
                    offset += len(blob)
                if s.table_before is not None and s.table_after is not None:
                    entry["table_before"], entry["table_after"] = table_to_json(s.table_before), table_to_json(
                        s.table_after)
                out.append(entry)
            return out

        header = {
            "format": _FORMAT,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "target": {
                "shape": list(array.shape),
                "dtype": array.dtype.str,
                "sha256": content_hash(array),
                "geometry": None if geometry is None else {
                    "spacing": list(geometry.spacing), "origin": list(geometry.origin),
                    "direction": list(geometry.direction)},
                "table": None if table is None else table_to_json(table),
            },
            "undo": describe(self.undo),
            "redo": describe(self.redo),
        }
        head = json.dumps(header).encode("utf-8")
        return atomic_write_bytes(path, b"".join([_MAGIC, struct.pack("<Q", len(head)), head, *blobs]))


class History:
    """Undo/redo of array edits for any number of targets, within a memory budget.

    Parameters
    ----------
    budget_bytes
        Upper bound of the memory the steps may hold (compressed diffs plus
        :data:`STEP_OVERHEAD_BYTES` each); the oldest steps are dropped to stay under it.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes <= 0:
            raise MedviewError(f"The undo memory budget must be positive, got {budget_bytes} bytes")
        self.budget_bytes = int(budget_bytes)
        self._targets: dict[str, Any] = {}
        self._undo: deque[_Step] = deque()
        self._redo: list[_Step] = []
        self._memory = 0
        self.dropped_steps = 0
        self.version = 0  # increases on every change (autosave compares it)
        # the label table a loaded history file ended at (the table saved with the label file), or None
        self.saved_table: TableSnapshot | None = None
        self._data_versions: dict[str, int] = {}

    # -- targets ----------------------------------------------------------------------------------
    def register(self, target_id: str, target: Any) -> None:
        """Make ``target`` (a LabelMap, Volume or ndarray) editable under ``target_id``."""
        _array_of(target)
        self._targets[str(target_id)] = target

    def data_version(self, target_id: str) -> int:
        """Increases whenever a step (do, undo, redo) changes ``target_id``'s voxels; a result computed from
        them (features, statistics) is stale once this moves on."""
        return self._data_versions.get(target_id, 0)

    def _touched(self, step: _Step) -> None:
        if all(n > 0 for n in step.shape):
            self._data_versions[step.target_id] = self._data_versions.get(step.target_id, 0) + 1

    def target(self, target_id: str) -> Any:
        try:
            return self._targets[target_id]
        except KeyError:
            raise KeyError(f"No history target {target_id!r}; register it first") from None

    def forget(self, target_id: str) -> None:
        """Drop a target and all of its steps (its label map was closed)."""
        self._targets.pop(target_id, None)
        _discard(s for s in (*self._undo, *self._redo) if s.target_id == target_id)
        kept = [s for s in self._undo if s.target_id != target_id]
        self._undo = deque(kept)
        self._redo = [s for s in self._redo if s.target_id != target_id]
        self._memory = sum(s.nbytes for s in self._undo) + sum(s.nbytes for s in self._redo)
        self.version += 1

    def clear(self) -> None:
        _discard((*self._undo, *self._redo))
        self._undo.clear()
        self._redo.clear()
        self._memory = 0
        self.version += 1

    # -- recording --------------------------------------------------------------------------------
    def record(self, target_id: str, edit: Edit, description: str | None = None, tag: Any = None,
               table_before: TableSnapshot | None = None) -> Change | None:
        """Remember an edit that has already been applied to the target.  Returns None for an empty edit.

        ``tag``: any object identifying what made the step; :meth:`is_undone` answers for it later.
        ``table_before``: for a label map, its table before the change (names a result gave its labels...):
        the step keeps it and the table now, so undo and redo restore the table with the voxels.  Values the
        edit wrote that have no entry get one ("Label N") as part of the step.  An empty edit that changed
        the table is a step of its own (a rename)."""
        target = self.target(target_id)
        array = _array_of(target)
        tables = self._tables(target, table_before, edit.is_empty)
        if edit.is_empty and (tables is None or tables[0] == tables[1]):
            return None
        if any(int(s.stop) > n for s, n in zip(edit.bbox, array.shape, strict=True)):
            raise ValueError(f"Edit bbox {edit.bbox} lies outside the target's shape {array.shape}")
        if not np.array_equal(array[edit.bbox], edit.after):  # recorded before being applied: undo would corrupt
            raise ValueError(f"record() needs an applied edit: {target_id} does not hold its values (use perform())")
        step = _Step.from_edit(target_id, edit, description or edit.description or "Edit", tag, tables)
        return self._push(step)

    @staticmethod
    def _tables(target: Any, table_before: TableSnapshot | None, empty: bool
                ) -> tuple[TableSnapshot, TableSnapshot] | None:
        if not isinstance(target, LabelMap):
            return None
        before = table_before if table_before is not None else target.table_snapshot()
        if not empty:
            target.add_missing_entries()
        return table_snapshot(list(before)), target.table_snapshot()

    def perform_prepared(self, target_id: str, prepared: PreparedStep, description: str, tag: Any = None,
                         table_before: TableSnapshot | None = None) -> Change | None:
        """Apply and record an edit compressed elsewhere (:func:`prepare_step`): its values are copied into the
        target and the step is kept as it came.  The caller makes sure the target still holds the content the
        step was prepared from (e.g. ``data_version`` unchanged since); see :meth:`record` for the rest."""
        target = self.target(target_id)
        array = _array_of(target)
        if prepared.is_empty and table_before is None:
            return None
        if any(int(s.stop) > n for s, n in zip(prepared.bbox, array.shape, strict=True)):
            raise ValueError(f"Step bbox {prepared.bbox} lies outside the target's shape {array.shape}")
        if not prepared.is_empty:
            self._write(target, prepared.bbox, prepared.after, counts=prepared.counts)
        tables = self._tables(target, table_before, prepared.is_empty)
        if prepared.is_empty and (tables is None or tables[0] == tables[1]):
            return None
        table_b, table_a = tables if tables is not None and tables[0] != tables[1] else (None, None)
        step = _Step(target_id, description, prepared.start, prepared.shape, prepared.dtype, prepared.before_z,
                     prepared.delta_z, tag, table_b, table_a)
        return self._push(step)

    def _push(self, step: _Step) -> Change:
        """Keep a new step (it ends the redo branch), within the budget."""
        self._memory -= sum(s.nbytes for s in self._redo)  # a new change ends the redo branch
        _discard(self._redo)
        self._redo.clear()
        self._undo.append(step)
        self._memory += step.nbytes
        self._enforce_budget()
        self.version += 1
        self._touched(step)
        kept = bool(self._undo) and self._undo[-1] is step
        return Change(step.target_id, step.bbox, step.description, "do", undoable=kept, tag=step.tag)

    def perform(self, target_id: str, edit: Edit, description: str | None = None, tag: Any = None,
                table_before: TableSnapshot | None = None) -> Change | None:
        """Apply ``edit`` to the target and record it: the usual way to make a change.

        ``table_before``: see :meth:`record` (the table may already hold the result's names)."""
        target = self.target(target_id)
        if edit.is_empty and table_before is None:
            return None
        if not edit.is_empty:
            self._write(target, edit.bbox, edit.after)
        return self.record(target_id, edit, description, tag, table_before=table_before)

    def record_table(self, target_id: str, table_before: TableSnapshot, description: str,
                     tag: Any = None) -> Change | None:
        """A change of a label map's table alone (rename, colour, lock, a new entry), already made: one step."""
        array = _array_of(self.target(target_id))
        return self.record(target_id, empty_edit(array.dtype, description), description, tag,
                           table_before=table_before)

    def is_undone(self, tag: Any) -> bool:
        """True when the step recorded with ``tag`` has been undone (and not redone)."""
        return tag is not None and any(s.tag is tag for s in self._redo)

    def _enforce_budget(self) -> None:
        while self._memory > self.budget_bytes and self._undo:
            dropped = self._undo.popleft()
            self._memory -= dropped.nbytes
            _discard((dropped,))
            self.dropped_steps += 1

    # -- undo / redo ------------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        """Menu text for the next undo ("Undo Paint label 2"), None when there is nothing to undo."""
        return self._undo[-1].description if self._undo else None

    @property
    def redo_description(self) -> str | None:
        return self._redo[-1].description if self._redo else None

    def undo_descriptions(self) -> list[str]:
        """Descriptions of the undoable steps, most recent first."""
        return [s.description for s in reversed(self._undo)]

    def redo_descriptions(self) -> list[str]:
        """Descriptions of the redoable steps, next first."""
        return [s.description for s in reversed(self._redo)]

    @property
    def memory_bytes(self) -> int:
        """Bytes the steps hold (compressed diffs plus per-step overhead); never above ``budget_bytes``."""
        return self._memory

    def __len__(self) -> int:
        return len(self._undo) + len(self._redo)

    def undo(self) -> Change:
        """Revert the most recent step; returns what changed."""
        if not self._undo:
            raise MedviewError("Nothing to undo")
        step = self._undo[-1]
        if isinstance(step, _Replacement):
            return self._replace_back(step, "undo")
        self._swap(step, step.after(), step.before(), "Undo")
        self._restore_table(step, step.table_after, step.table_before)
        self._redo.append(self._undo.pop())
        self.version += 1
        self._touched(step)
        return Change(step.target_id, step.bbox, step.description, "undo", tag=step.tag)

    def redo(self) -> Change:
        """Re-apply the most recently undone step; returns what changed."""
        if not self._redo:
            raise MedviewError("Nothing to redo")
        step = self._redo[-1]
        if isinstance(step, _Replacement):
            return self._replace_back(step, "redo")
        self._swap(step, step.before(), step.after(), "Redo")
        self._restore_table(step, step.table_before, step.table_after)
        self._undo.append(self._redo.pop())
        self.version += 1
        self._touched(step)
        return Change(step.target_id, step.bbox, step.description, "redo", tag=step.tag)

    # -- whole-image steps ----------------------------------------------------------------------------
    @property
    def image_memory_limit(self) -> int:
        """Bytes an image kept whole for undo may hold in memory; a larger one is kept in a file."""
        return int(self.budget_bytes * REPLACEMENT_SHARE)

    def replace(self, target_id: str, new: Any, description: str, tag: Any = None,
                labels_id: str | None = None) -> Change:
        """Replace ``target_id``'s object by ``new`` (a volume of another data type or grid) as one step: the
        object before is kept (in memory within :attr:`image_memory_limit`, else in a temporary file) so undo
        brings it back.  ``labels_id``: the label map's target, when it goes with the old grid (it is then
        unregistered, and restored by undo).  Raises MedviewError (and changes nothing) when the image can be
        kept neither in memory nor in a file."""
        from medview.app.kept_images import KeptImage

        old = self.target(target_id)
        old_labels = self._targets.get(labels_id) if labels_id else None
        kept = KeptImage(old, old_labels, self.image_memory_limit)
        self.register(target_id, new)
        if labels_id:
            self._targets.pop(labels_id, None)
        step = _Replacement(target_id, description, kept, tag, labels_id)
        change = self._push(step)
        return replace_dc(change, image=new, labels=None, swaps_labels=bool(labels_id))

    def _replace_back(self, step: _Replacement, kind: Literal["undo", "redo"]) -> Change:
        """Undo or redo a whole-image step: show the kept side, keep the side shown now."""
        from medview.app.kept_images import KeptImage

        image, labels = step.kept.restore()
        shown = self.target(step.target_id)
        shown_labels = self._targets.get(step.labels_id) if step.labels_id else None
        leaving = KeptImage(shown, shown_labels, self.image_memory_limit)  # raises before anything changes
        self.register(step.target_id, image)
        if step.labels_id:
            if labels is not None:
                self.register(step.labels_id, labels)
            else:
                self._targets.pop(step.labels_id, None)
        self._memory += leaving.nbytes - step.kept.nbytes
        step.kept.discard()
        step.kept = leaving
        if kind == "undo":
            self._redo.append(self._undo.pop())
        else:
            self._undo.append(self._redo.pop())
        self._enforce_budget()
        self.version += 1
        self._touched(step)
        return Change(step.target_id, step.bbox, step.description, kind, tag=step.tag, image=image, labels=labels,
                      swaps_labels=bool(step.labels_id))

    def _swap(self, step: _Step, expected: np.ndarray, new: np.ndarray, verb: str) -> None:
        target = self.target(step.target_id)
        array = _array_of(target)
        if any(s.stop > n for s, n in zip(step.bbox, array.shape, strict=True)) or not np.array_equal(
                array[step.bbox], expected):
            raise MedviewError(f"{verb} of '{step.description}' is not possible: {step.target_id} was changed "
                               "outside the undo history.  Clear the history to go on editing.")
        self._write(target, step.bbox, new)

    def _restore_table(self, step: _Step, old: TableSnapshot | None, new: TableSnapshot | None) -> None:
        target = self.target(step.target_id)
        if old is not None and new is not None and isinstance(target, LabelMap):
            target.labels[:] = apply_table_change(target.labels, old, new)

    @staticmethod
    def _write(target: Any, bbox: BBox, values: np.ndarray, counts: dict[int, int] | None = None) -> None:
        array = _array_of(target)
        if values.dtype != array.dtype and not np.can_cast(values.dtype, array.dtype) and values.size:
            info = np.iinfo(array.dtype) if np.issubdtype(array.dtype, np.integer) else None
            if info is not None and (int(values.max()) > info.max or int(values.min()) < info.min):
                if isinstance(target, np.ndarray):
                    raise MedviewError(f"Values up to {int(values.max())} do not fit the {array.dtype} array")
                target.array = array = array.astype(np.promote_types(array.dtype, values.dtype))
        changed = getattr(target, "changed", None)
        if counts is not None and isinstance(target, LabelMap):  # known counts after the change: no recount
            array[bbox] = values
            target.changed(counts=counts)
            return
        before = array[bbox].copy() if callable(changed) and isinstance(target, LabelMap) else None
        array[bbox] = values
        if callable(changed):
            if before is not None:
                changed(before, array[bbox])  # label counts updated from the edited box only
            else:
                changed()

    # -- persistence ------------------------------------------------------------------------------
    def snapshot(self, target_id: str) -> HistorySnapshot:
        """The steps of ``target_id`` as they are now; cheap (steps are immutable), safe to write from a worker."""
        target = self.target(target_id)
        return HistorySnapshot(tuple(s for s in self._undo if s.target_id == target_id and isinstance(s, _Step)),
                               tuple(s for s in self._redo if s.target_id == target_id and isinstance(s, _Step)),
                               target.table_snapshot() if isinstance(target, LabelMap) else None)

    def save(self, path: str | os.PathLike[str], target_id: str) -> Path:
        """Write ``target_id``'s steps to ``path`` atomically, stamped with the target's current content.

        Save right after the label file itself, so the stamp matches what is on disk.
        """
        target = self.target(target_id)
        table = target.table_snapshot() if isinstance(target, LabelMap) else None
        return self.snapshot(target_id).write(path, _array_of(target), _geometry_of(target), table)

    @classmethod
    def load(cls, path: str | os.PathLike[str], target_id: str, target: Any,
             budget_bytes: int = DEFAULT_BUDGET_BYTES) -> History:
        """A history with the steps saved in ``path``, registered on ``target`` under ``target_id``.

        Raises
        ------
        HistoryMismatchError
            The file was saved for other content: the labels changed outside medview (or it belongs to
            another label file).
        CorruptFileError
            The file is damaged.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MedviewError(f"Cannot read the undo history {path}: {exc.strerror or exc}") from None
        header, body = _parse(data, path)
        array = _array_of(target)
        saved = header["target"]
        label_name = path.name[: -len(HISTORY_SUFFIX)] if path.name.endswith(HISTORY_SUFFIX) else "the label map"
        if tuple(saved["shape"]) != tuple(array.shape):
            raise HistoryMismatchError(
                f"The undo history {path.name} was saved for a {tuple(saved['shape'])} grid, but {label_name} is "
                f"{tuple(array.shape)}: starting with an empty history")
        geometry = _geometry_of(target)
        if geometry is not None and saved.get("geometry"):
            g = saved["geometry"]
            stored = Geometry(tuple(array.shape), tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]))
            if not stored.is_same_grid(geometry, tol_mm=1e-2):
                raise HistoryMismatchError(
                    f"The undo history {path.name} was saved for another image grid than {label_name}'s: "
                    "starting with an empty history")
        if content_hash(array) != saved["sha256"]:
            raise HistoryMismatchError(
                f"{label_name} was changed outside medview after its undo history was saved "
                f"({header.get('saved_at', 'unknown time')}): starting with an empty history")
        history = cls(budget_bytes)
        history.register(target_id, target)

        def steps(entries: list[dict[str, Any]]) -> list[_Step]:
            out = []
            for e in entries:
                blobs = []
                for key in ("before", "delta"):
                    start, length, crc = e[key]
                    blob = bytes(body[start:start + length])
                    if len(blob) != length or zlib.crc32(blob) != crc:
                        raise CorruptFileError(f"The undo history {path.name} is damaged (step '{e['description']}')",
                                               path=str(path))
                    blobs.append(blob)
                tables = (None, None)
                if e.get("table_before") is not None and e.get("table_after") is not None:
                    try:
                        tables = (table_from_json(e["table_before"]), table_from_json(e["table_after"]))
                    except (KeyError, TypeError, ValueError):
                        raise CorruptFileError(f"The undo history {path.name} is damaged (the label table of "
                                               f"step '{e['description']}')", path=str(path)) from None
                out.append(_Step(target_id, str(e["description"]), tuple(e["start"]), tuple(e["shape"]),
                                 str(e["dtype"]), blobs[0], blobs[1], None, *tables))
            return out

        try:
            saved_table = saved.get("table")
            history.saved_table = None if saved_table is None else table_from_json(saved_table)
        except (KeyError, TypeError, ValueError):
            history.saved_table = None
        history._undo = deque(steps(header["undo"]))
        history._redo = steps(header["redo"])
        history._memory = sum(s.nbytes for s in history._undo) + sum(s.nbytes for s in history._redo)
        while history._memory > history.budget_bytes and history._redo:  # keep the past before the future
            history._memory -= history._redo.pop(0).nbytes
            history.dropped_steps += 1
        history._enforce_budget()
        return history

    @classmethod
    def load_or_empty(cls, path: str | os.PathLike[str], target_id: str, target: Any,
                      budget_bytes: int = DEFAULT_BUDGET_BYTES) -> tuple[History, str | None]:
        """Like :meth:`load`, but never fails: an empty history and the reason when the file cannot be used.

        A missing file is not a problem (no message).
        """
        if not Path(path).exists():
            history = cls(budget_bytes)
            history.register(target_id, target)
            return history, None
        try:
            return cls.load(path, target_id, target, budget_bytes), None
        except MedviewError as exc:
            history = cls(budget_bytes)
            history.register(target_id, target)
            return history, str(exc)


def _parse(data: bytes, path: Path) -> tuple[dict[str, Any], memoryview]:
    damaged = CorruptFileError(f"{path.name} is not a medview undo history or is damaged", path=str(path))
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        raise damaged
    (size,) = struct.unpack_from("<Q", data, len(_MAGIC))
    start = len(_MAGIC) + 8
    try:
        header = json.loads(data[start:start + size].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise damaged from None
    if not isinstance(header, dict) or "target" not in header:
        raise damaged
    if int(header.get("format", 0)) > _FORMAT:
        raise MedviewError(f"The undo history {path.name} was written by a newer medview", path=str(path))
    return header, memoryview(data)[start + size:]
