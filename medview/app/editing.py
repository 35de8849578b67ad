"""Label editing as the GUI (and scripts) use it: brush strokes and fills that become single undo steps.

A stroke applies each dab at once (the views redraw while the mouse moves) and, when the button is
released, records the whole stroke as one step of the ViewerState's history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medview.algorithms.label_edit import Edit, brush_region, combine_edits, erase, fill, paint
from medview.app.history import Change
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError


@dataclass
class BrushSettings:
    """What the paint, erase and fill tools do.

    ``radius_mm``: brush radius; ``shape``: ``'disc'`` in the view's slice or ``'sphere'`` (3D);
    ``low``/``high``: when ``limit`` is on, only voxels whose image value lies in the range are painted
    (and a fill stops at values outside it); ``fill_3d``: fills the connected region in 3D instead of
    in the slice.
    """

    radius_mm: float = 3.0
    shape: str = "disc"
    limit: bool = False
    low: float = -1000.0
    high: float = 3000.0
    fill_3d: bool = False

    def bounds(self) -> tuple[float | None, float | None]:
        if not self.limit:
            return None, None
        if self.high < self.low:
            raise MedviewError(f"The paint range is empty: {self.low:g} > {self.high:g}")
        return self.low, self.high


class Stroke:
    """One press-drag-release of the paint or erase tool in one view."""

    def __init__(self, state: ViewerState, settings: BrushSettings, view: str, erase_mode: bool = False) -> None:
        if state.volume is None:
            raise MedviewError("Open an image before drawing labels")
        if state.labels is None:
            state.new_label_map()
        self.state, self.settings, self.view, self.erase_mode = state, settings, view, erase_mode
        self.value = int(state.active_label)
        if not erase_mode:
            state.labels.label(self.value)  # raises a clear error for a value not in the table
        self.dabs: list[Edit] = []
        self.table_before = state.labels.table_snapshot()  # entries the stroke adds belong to its undo step
        self._last: np.ndarray | None = None
        self.settings.bounds()  # an empty range is refused before anything is painted

    def add(self, point_lps: np.ndarray) -> None:
        """A dab at ``point_lps`` (and dabs in between, so a fast drag leaves no gaps)."""
        point = np.asarray(point_lps, dtype=float)
        points = [point]
        if self._last is not None:
            step = max(self.settings.radius_mm * 0.5, min(self.state.volume.geometry.spacing) * 0.5)
            n = int(np.linalg.norm(point - self._last) // step)
            points = [self._last + (point - self._last) * (i / (n + 1)) for i in range(1, n + 1)] + [point]
        self._last = point
        labels, image = self.state.labels, self.state.volume
        low, high = self.settings.bounds()
        for p in points:
            if not labels.geometry.contains_index(labels.geometry.world_to_index(p)):
                continue  # the brush centre left the volume: nothing to paint there
            region = brush_region(labels.geometry, p, self.settings.radius_mm, self.settings.shape, self.view)
            if self.erase_mode:
                edit = erase(labels, region, image=image, low=low, high=high)
            else:
                edit = paint(labels, region, self.value, image=image, low=low, high=high)
            if edit.is_empty:
                continue
            before = labels.array[edit.bbox].copy()
            edit.apply(labels.array)
            labels.changed(before, labels.array[edit.bbox])
            self.dabs.append(edit)
        self.state._labels_changed()

    def finish(self) -> Change | None:
        """Record the stroke as one undo step (None when it changed nothing)."""
        labels = self.state.labels
        if labels is None or not self.dabs:
            return None
        verb = "Erase" if self.erase_mode else f"Paint {labels.label(self.value).name}"
        edit = combine_edits(labels.array, self.dabs, f"{verb} ({self.settings.radius_mm:g} mm {self.settings.shape})")
        self.dabs = []
        change = self.state.history.record("labels", edit, edit.description, table_before=self.table_before)
        self.state._labels_changed()
        return change


def fill_at(state: ViewerState, point_lps: np.ndarray, view: str, settings: BrushSettings) -> Change | None:
    """Flood fill with the active label from a point (in the view's slice, or 3D)."""
    if state.volume is None:
        raise MedviewError("Open an image before drawing labels")
    if state.labels is None:
        state.new_label_map()
    low, high = settings.bounds()
    edit = fill(state.labels, point_lps, int(state.active_label), view=None if settings.fill_3d else view,
                image=state.volume, low=low, high=high)
    return state.edit_labels(edit, edit.description or f"Fill with {state.labels.label(state.active_label).name}")
