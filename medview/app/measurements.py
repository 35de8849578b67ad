"""Measurements made on slice views: distance, angle and region statistics, kept in world (LPS) mm.

A measurement stores its points in world coordinates and, for regions, the plane it was drawn on,
so it stays correct when the view scrolls, zooms or is edited, and exports without the GUI.
"""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.algorithms.measure import (
    angle_deg,
    distance_mm,
    ellipse_mask,
    polygon_mask,
    rectangle_mask,
    roi_stats,
)
from medview.algorithms.reslice import Plane, reslice
from medview.core.errors import MedviewError, WriteError
from medview.core.volume import Volume
from medview.io.atomic import atomic_open

KINDS = ("distance", "angle", "rectangle", "ellipse", "polygon")
_POINTS_NEEDED = {"distance": 2, "angle": 3, "rectangle": 2, "ellipse": 2}
_ids = itertools.count(1)


@dataclass
class Measurement:
    """One measurement.  ``points`` are LPS mm; regions also keep their ``plane``.

    Ellipse points are (centre, a corner of the bounding box); rectangle points are two opposite
    corners; polygon (freehand) points are its vertices in order.
    """

    kind: str
    points: list[np.ndarray]
    view: str = ""
    plane: Plane | None = None
    name: str = ""
    id: int = field(default_factory=lambda: next(_ids))
    results: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MedviewError(f"Unknown measurement {self.kind}; choose one of {', '.join(KINDS)}")
        self.points = [np.asarray(p, dtype=float) for p in self.points]
        needed = _POINTS_NEEDED.get(self.kind, 3)
        if len(self.points) < needed if self.kind == "polygon" else len(self.points) != needed:
            raise MedviewError(f"A {self.kind} needs {needed} point(s), got {len(self.points)}")
        if self.kind in ("rectangle", "ellipse", "polygon") and self.plane is None:
            raise MedviewError(f"A {self.kind} needs the plane it was drawn on")
        if not self.name:
            self.name = f"{self.kind.capitalize()} {self.id}"

    def plane_pixels(self) -> np.ndarray:
        """The points as continuous (col, row) pixel coordinates of the region's plane."""
        assert self.plane is not None
        return np.array([self.plane.world_to_pixel(p) for p in self.points], dtype=float)

    def compute(self, volume: Volume) -> dict[str, float]:
        """(Re)compute the results on ``volume``: mm, degrees or region statistics in image units."""
        if self.kind == "distance":
            self.results = {"value": distance_mm(self.points[0], self.points[1])}
        elif self.kind == "angle":
            self.results = {"value": angle_deg(self.points[0], self.points[1], self.points[2])}
        else:
            assert self.plane is not None
            image = reslice(volume.array, volume.geometry, self.plane)
            if image.ndim == 3:
                image = image.mean(axis=-1)
            px = self.plane_pixels()
            shape = image.shape[:2]
            if self.kind == "rectangle":
                mask = rectangle_mask(shape, px[0], px[1])
            elif self.kind == "ellipse":
                mask = ellipse_mask(shape, px[0], np.abs(px[1] - px[0]))
            else:
                mask = polygon_mask(shape, px)
            stats = roi_stats(image, mask, self.plane.spacing)
            self.results = {"mean": stats.mean, "std": stats.std, "min": stats.min, "max": stats.max,
                            "area_mm2": stats.area_mm2, "n_pixels": float(stats.n_pixels)}
        return self.results

    @property
    def unit(self) -> str:
        return {"distance": "mm", "angle": "deg"}.get(self.kind, "")

    def summary(self, units: str = "") -> str:
        """One line for the measurement list and the on-image label."""
        r = self.results
        if not r:
            return self.name
        if self.kind in ("distance", "angle"):
            return f"{r['value']:.1f} {'mm' if self.kind == 'distance' else '°'}"
        return (f"mean {r['mean']:.1f} ± {r['std']:.1f} {units}".rstrip() +
                f", min {r['min']:.0f}, max {r['max']:.0f}, area {r['area_mm2'] / 100.0:.2f} cm²")

    def label_text(self, units: str = "") -> str:
        """The on-image label: the summary, a region's statistics on short lines (a view can be narrow)."""
        r = self.results
        if not r or self.kind in ("distance", "angle"):
            return self.summary(units)
        return "\n".join([f"mean {r['mean']:.1f} ± {r['std']:.1f} {units}".rstrip(),
                          f"min {r['min']:.0f}  max {r['max']:.0f}", f"area {r['area_mm2'] / 100.0:.2f} cm²"])


class MeasurementList(list):
    """The measurements of the current study, exportable to CSV."""

    def add(self, measurement: Measurement) -> None:
        self.append(measurement)

    def to_rows(self) -> list[dict[str, Any]]:
        rows = []
        for m in self:
            row: dict[str, Any] = {"id": m.id, "name": m.name, "kind": m.kind, "view": m.view,
                                   "value": "", "unit": m.unit}
            row.update({k: "" for k in ("mean", "std", "min", "max", "area_mm2", "n_pixels")})
            if m.kind in ("distance", "angle"):
                row["value"] = round(m.results.get("value", float("nan")), 3)
            else:
                row.update({k: round(v, 3) for k, v in m.results.items()})
            row["points_lps_mm"] = "; ".join(" ".join(f"{c:.2f}" for c in p) for p in m.points)
            rows.append(row)
        return rows

    def to_csv(self, path: str | os.PathLike[str]) -> str:
        path = os.fspath(path)
        columns = ["id", "name", "kind", "view", "value", "unit", "mean", "std", "min", "max", "area_mm2",
                   "n_pixels", "points_lps_mm"]
        try:
            with atomic_open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(self.to_rows())
        except OSError as exc:
            raise WriteError(f"Could not write {path}: {exc.strerror or exc}") from None
        return path
