"""Detections: points of interest (nodule candidates, lesions) found in a volume, in LPS millimetres.

A classical detector (:mod:`medview.algorithms.detect`) and a detection model return the same
:class:`DetectionSet`, so the viewer, the CLI and an evaluation script need one reader.

JSON schema (``DetectionSet.to_json``; every coordinate is DICOM patient **LPS, mm**)::

    {
      "format": "medview-detections",        # fixed
      "version": 1,
      "coordinates": "LPS mm",                # fixed: x to the patient's left, y posterior, z superior
      "source": "chest_ct/dicom",             # what was searched (path, series UID, description)
      "method": "blob-log",                   # what found them (detector name, model name + version)
      "params": {"min_diameter": 4.0, ...},   # the detector's parameters (JSON values)
      "detections": [
        {
          "center_lps": [x, y, z],            # mm
          "diameter_mm": 12.3 | null,         # equivalent diameter, null when the detector has none
          "score": 0.87,                      # higher is more confident; the scale is the method's
          "label": "nodule candidate",
          "box_lps": [x0, y0, z0, x1, y1, z1] | null   # axis-aligned in LPS: min corner, max corner (mm)
        }, ...
      ]
    }

Floats are written with Python's shortest round-trip representation, so ``from_json(to_json(s))``
reproduces every value exactly.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.core.errors import CorruptFileError, InputNotFoundError, MedviewError, WriteError

FORMAT = "medview-detections"
VERSION = 1
COORDINATES = "LPS mm"


def _finite_tuple(values: Sequence[float], n: int, name: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise MedviewError(f"{name} must be {n} numbers, got {values!r}") from None
    if len(out) != n:
        raise MedviewError(f"{name} must be {n} numbers, got {len(out)}")
    if not all(math.isfinite(v) for v in out):
        raise MedviewError(f"{name} contains a non-finite value: {list(out)}")
    return out


@dataclass(frozen=True)
class Detection:
    """One finding.

    Parameters
    ----------
    center_lps
        Centre ``(x, y, z)`` in LPS mm.
    diameter_mm
        Equivalent diameter in mm, or ``None`` when the detector does not estimate a size.
    score
        Confidence or response; higher is stronger.  Its scale depends on the method.
    label
        What was found (``"nodule candidate"``).
    box_lps
        Axis-aligned bounding box in LPS mm, ``(x0, y0, z0, x1, y1, z1)`` with ``x0 <= x1`` etc., or ``None``.
    """

    center_lps: tuple[float, float, float]
    diameter_mm: float | None = None
    score: float = 0.0
    label: str = "candidate"
    box_lps: tuple[float, float, float, float, float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "center_lps", _finite_tuple(self.center_lps, 3, "Detection centre"))
        if self.diameter_mm is not None:
            d = _finite_tuple([self.diameter_mm], 1, "Detection diameter")[0]
            if d <= 0:
                raise MedviewError(f"A detection's diameter must be positive, got {d:g} mm")
            object.__setattr__(self, "diameter_mm", d)
        object.__setattr__(self, "score", _finite_tuple([self.score], 1, "Detection score")[0])
        object.__setattr__(self, "label", str(self.label))
        if self.box_lps is not None:
            box = _finite_tuple(self.box_lps, 6, "Detection box")
            if any(box[i] > box[i + 3] for i in range(3)):
                raise MedviewError(f"A detection box needs its min corner first, got {list(box)}")
            object.__setattr__(self, "box_lps", box)

    def to_dict(self) -> dict[str, Any]:
        return {
            "center_lps": list(self.center_lps),
            "diameter_mm": self.diameter_mm,
            "score": self.score,
            "label": self.label,
            "box_lps": None if self.box_lps is None else list(self.box_lps),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        if not isinstance(data, dict) or "center_lps" not in data:
            raise MedviewError(f"A detection needs at least a centre_lps, got {data!r}")
        return cls(
            center_lps=data["center_lps"],
            diameter_mm=data.get("diameter_mm"),
            score=data.get("score", 0.0),
            label=data.get("label", "candidate"),
            box_lps=data.get("box_lps"),
        )


def _json_value(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` as plain JSON values (tuples become lists), so a round trip compares equal."""
    try:
        out = json.loads(json.dumps(params, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise MedviewError(f"Detection parameters must be plain JSON values: {exc}") from None
    if not isinstance(out, dict):
        raise MedviewError("Detection parameters must be a mapping")
    return out


@dataclass
class DetectionSet:
    """The detections of one run: what was searched (``source``), how (``method``, ``params``)."""

    detections: list[Detection] = field(default_factory=list)
    source: str = ""
    method: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.detections = [d if isinstance(d, Detection) else Detection.from_dict(d) for d in self.detections]
        self.params = _json_value(dict(self.params))
        self.source = str(self.source)
        self.method = str(self.method)

    def __len__(self) -> int:
        return len(self.detections)

    def __iter__(self) -> Iterator[Detection]:
        return iter(self.detections)

    def sorted_by_score(self) -> list[Detection]:
        """Detections, strongest first."""
        return sorted(self.detections, key=lambda d: -d.score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "coordinates": COORDINATES,
            "source": self.source,
            "method": self.method,
            "params": self.params,
            "detections": [d.to_dict() for d in self.detections],
        }

    @classmethod
    def from_dict(cls, data: Any) -> DetectionSet:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MedviewError("Not a medview detections file (its 'format' is not 'medview-detections')")
        if int(data.get("version", 0)) > VERSION:
            raise MedviewError(f"Detections file version {data.get('version')} is newer than this medview reads "
                               f"({VERSION}); update medview")
        if data.get("coordinates") != COORDINATES:
            raise MedviewError(f"Detections must be in {COORDINATES!r}, the file says {data.get('coordinates')!r}")
        items = data.get("detections", [])
        if not isinstance(items, list):
            raise MedviewError("The file's 'detections' is not a list")
        return cls([Detection.from_dict(d) for d in items], str(data.get("source", "")),
                   str(data.get("method", "")), data.get("params") or {})

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the schema above to ``path`` atomically (a temporary file beside it, then a rename)."""
        path = Path(path)
        if path.is_dir():
            raise WriteError(f"{path} is a folder; give the detections file's name, e.g. {path / 'detections.json'}")
        if not path.parent.is_dir():
            raise WriteError(f"The output folder {path.parent} does not exist", path=str(path))
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        from medview.core.atomic import atomic_write_text

        atomic_write_text(path, text + "\n")  # temporary file, fsync, rename; the user's umask
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DetectionSet:
        """Read a file written by :meth:`to_json`."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"No detections file at {path}", path=str(path))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CorruptFileError(f"The detections file cannot be read: {exc}", path=str(path)) from None
        try:
            return cls.from_dict(data)
        except MedviewError as exc:
            raise CorruptFileError(str(exc), path=str(path)) from None


def parabola_peak_offset(minus: float, centre: float, plus: float) -> float:
    """Sub-voxel refinement of a detector's peak: the offset (-0.5..0.5 samples) of the vertex of the
    parabola through three equally spaced samples around it; 0 where they do not bend down (flat, saddle)."""
    curvature = minus - 2.0 * centre + plus
    if curvature >= 0.0:
        return 0.0
    return min(0.5, max(-0.5, 0.5 * (minus - plus) / curvature))
