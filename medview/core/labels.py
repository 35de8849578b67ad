"""Label maps: integer segmentations on a volume's grid plus a label table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry

# A colour cycle with good contrast on greyscale images (RGB 0-255).
_DEFAULT_COLORS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
]


def default_color(value: int) -> tuple[int, int, int]:
    """A distinct colour for label ``value`` (1-based)."""
    return _DEFAULT_COLORS[(value - 1) % len(_DEFAULT_COLORS)]


@dataclass
class Label:
    """One entry of a label table."""

    value: int
    name: str
    color: tuple[int, int, int] = (255, 0, 0)
    visible: bool = True
    opacity: float = 0.5
    locked: bool = False


LABEL_FIELDS = ("name", "color", "visible", "opacity", "locked")  # what an undo step restores of an entry

# A label table frozen at one moment: copies of its entries, in order (an undo step keeps two of them).
TableSnapshot = tuple[Label, ...]


def table_snapshot(entries: list[Label]) -> TableSnapshot:
    """Copies of ``entries`` (a later rename or colour change does not reach them)."""
    return tuple(replace(e, color=tuple(e.color)) for e in entries)


def table_to_json(snapshot: TableSnapshot) -> list[dict[str, Any]]:
    return [{**asdict(e), "color": list(e.color)} for e in snapshot]


def table_from_json(items: list[dict[str, Any]]) -> TableSnapshot:
    known = {f.name for f in fields(Label)}
    return tuple(Label(**{**{k: v for k, v in item.items() if k in known}, "value": int(item["value"]),
                          "color": tuple(int(c) for c in item.get("color", (255, 0, 0)))}) for item in items)


def apply_table_change(entries: list[Label], old: TableSnapshot, new: TableSnapshot) -> list[Label]:
    """``entries`` with the change from ``old`` to ``new`` applied, and only that change.

    An entry added between ``old`` and ``new`` is added (at its place in ``new``), one removed is removed,
    and of an entry in both only the fields that differ (:data:`LABEL_FIELDS`) are set to ``new``'s values:
    undo passes ``(after, before)``, redo ``(before, after)``, and a later change the step did not make (a
    label hidden since) stays as it is.  Returns a new list of new entries.
    """
    was = {e.value: e for e in old}
    will = {e.value: e for e in new}
    out = [replace(e) for e in entries if not (e.value in was and e.value not in will)]
    by_value = {e.value: e for e in out}
    for index, entry in enumerate(new):
        current = by_value.get(entry.value)
        if current is None:
            out.insert(min(index, len(out)), replace(entry, color=tuple(entry.color)))
            continue
        before = was.get(entry.value)
        for name in LABEL_FIELDS:
            value = getattr(entry, name)
            if before is None or getattr(before, name) != value:
                setattr(current, name, tuple(value) if name == "color" else value)
    return out


@dataclass
class LabelMap:
    """An integer array ``(z, y, x)`` on a geometry; 0 is background."""

    array: np.ndarray
    geometry: Geometry
    labels: list[Label] = field(default_factory=list)
    source: str = ""
    # how the map was made, machine-readable (e.g. {"step": <pipeline step>}); ``source`` is the text
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    _counts: dict[int, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.array.ndim != 3 or tuple(self.array.shape) != self.geometry.shape:
            raise MedviewError(
                f"Label array shape {self.array.shape} does not match the image grid {self.geometry.shape}"
            )
        if not np.issubdtype(self.array.dtype, np.integer):
            raise MedviewError(f"Label maps must hold integers, got {self.array.dtype}")
        if self.array.dtype not in (np.uint8, np.uint16):
            if self.array.min(initial=0) < 0 or self.array.max(initial=0) > 65535:
                raise MedviewError("Label values must lie between 0 and 65535")
            dtype = np.uint8 if self.array.max(initial=0) < 256 else np.uint16
            self.array = self.array.astype(dtype)
        if not self.labels:
            self.labels = [Label(int(v), f"Label {int(v)}", default_color(int(v))) for v in self.present_values()]

    def voxel_counts(self) -> dict[int, int]:
        """Voxels per non-zero label value (one pass over the array, cached until :meth:`changed`)."""
        if self._counts is None:
            flat = self.array.reshape(-1)
            counts = np.zeros(int(self.array.max(initial=0)) + 1, dtype=np.int64)
            step = 1 << 22  # chunks: no int64 copy of the whole map (600 MB for a 512 x 512 x 300 CT)
            for i in range(0, flat.size, step):
                counts += np.bincount(flat[i:i + step], minlength=counts.size)
            self._counts = {int(v): int(n) for v, n in enumerate(counts) if v and n}
        return self._counts

    def changed(self, before: np.ndarray | None = None, after: np.ndarray | None = None,
                counts: dict[int, int] | None = None) -> None:
        """Call after editing ``array`` in place: cached statistics are recomputed on next use.

        With the edited region's ``before`` and ``after`` values, the cached voxel counts are updated
        from that region alone (a brush stroke need not recount a whole CT).  ``counts``: the voxel counts
        of the new content, when they are known already (computed with a whole-map result, in its worker).
        """
        if counts is not None:
            self._counts = {int(v): int(n) for v, n in sorted(counts.items()) if v and n > 0}
            return
        if self._counts is None or before is None or after is None or before.shape != after.shape:
            self._counts = None
            return
        counts = dict(self._counts)
        for values, sign in ((before, -1), (after, 1)):
            flat = values.reshape(-1)  # uint8/uint16 counted as they are: an intp copy of a CT doubled the time
            for v, n in enumerate(np.bincount(flat if np.can_cast(flat.dtype, np.intp) else flat.astype(np.intp))):
                if v and n:
                    counts[v] = counts.get(v, 0) + sign * int(n)
        self._counts = {v: n for v, n in sorted(counts.items()) if n > 0}

    def table_snapshot(self) -> TableSnapshot:
        """The label table as it is now (copies), for an undo step."""
        return table_snapshot(self.labels)

    def add_missing_entries(self) -> list[Label]:
        """Give every value present in the array an entry ("Label N", a default colour); returns those added."""
        known = {e.value for e in self.labels}
        added = [Label(v, f"Label {v}", default_color(v)) for v in self.voxel_counts() if v not in known]
        self.labels.extend(added)
        return added

    def present_values(self) -> list[int]:
        """Non-zero values that occur in the array, ascending."""
        return sorted(self.voxel_counts())

    def label(self, value: int) -> Label:
        for entry in self.labels:
            if entry.value == value:
                return entry
        raise MedviewError(f"No label with value {value}; the table has {[e.value for e in self.labels]}")

    def voxel_count(self, value: int) -> int:
        return self.voxel_counts().get(int(value), 0)

    def volume_ml(self, value: int) -> float:
        """Volume of one label in millilitres (1 mL = 1000 mm^3)."""
        return self.voxel_count(value) * self.geometry.voxel_volume_mm3 / 1000.0
