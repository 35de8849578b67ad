"""GUI-free state of the reading workstation: what is shown, where the cursor is, how it is windowed.

Views are thin: they read this state and redraw when it emits an event; user input calls its
methods.  Everything here works (and is tested) without Qt.  World coordinates are LPS mm.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from medview.algorithms.label_edit import Edit
from medview.algorithms.reslice import VIEW_FRAMES, Plane, aligned_normal_axis, step_mm, view_plane
from medview.app.history import Change, History, PreparedStep
from medview.app.measurements import Measurement, MeasurementList
from medview.app.replay import StepLog, features_step, step_of
from medview.core.errors import MedviewError
from medview.core.labels import Label, LabelMap, default_color
from medview.core.resources import preset_path
from medview.core.volume import Volume, WindowPreset
from medview.io.limits import memory_budget_bytes

VIEWS = ("axial", "coronal", "sagittal")
SLAB_MODES = ("mean", "mip", "minip")
COLORMAPS = ("grey", "viridis", "inferno", "magma", "plasma", "cividis")
X_MAJOR_ARRAYS = ("volume", "labels")  # the arrays the views read planes from, by the event that changes them
X_MAJOR_MEMORY_SHARE = 0.25  # an x-major copy is made only within this share of medview's memory budget


@lru_cache(maxsize=1)
def window_presets_file() -> dict[str, Any]:
    with open(preset_path("window_level.json"), encoding="utf-8") as fh:
        return json.load(fh)


def ct_presets() -> list[WindowPreset]:
    return [WindowPreset(p["center"], p["width"], p["name"]) for p in window_presets_file()["CT"]]


@dataclass
class LabelDisplay:
    """How label maps are drawn: filled or outlined, overall opacity multiplier."""

    outline: bool = False
    opacity: float = 1.0


@dataclass
class ViewerState:
    """The current study as the workstation shows it.

    Events (``subscribe(event, callback)``): ``volume`` (also means: cursor and window may have
    changed), ``cursor``, ``window``, ``labels``,
    ``geometry_view`` (rotation, slab), ``overlay`` (PHI switch, colormap, invert), ``measurements``.
    """

    volume: Volume | None = None
    labels: LabelMap | None = None
    cursor: np.ndarray = field(default_factory=lambda: np.zeros(3))
    window: WindowPreset = field(default_factory=lambda: WindowPreset(0.0, 1.0))
    invert: bool = False
    colormap: str = "grey"
    rotations: dict[str, np.ndarray] = field(default_factory=lambda: {v: np.eye(3) for v in VIEWS})
    slab_mm: float = 0.0
    slab_mode: str = "mip"
    hide_phi: bool = False
    loading: bool = False
    label_max: int = 0
    label_display: LabelDisplay = field(default_factory=LabelDisplay)
    measurements: MeasurementList = field(default_factory=MeasurementList)
    _listeners: dict[str, list[Callable[..., None]]] = field(default_factory=lambda: defaultdict(list), repr=False)
    # (lower, upper) of a threshold being edited: the views show that mask live (None: no preview)
    threshold_preview: tuple[float | None, float | None] | None = None
    # one undo history for every change to the label map ("labels") and the volume ("volume")
    history: History = field(default_factory=History, repr=False)
    active_label: int = 1  # the value the paint and fill tools write
    detections: Any = None  # a medview.core.detections.DetectionSet shown over the slices, or None
    # what was applied to this study, as pipeline steps (exported for `medview batch`); follows undo/redo
    steps: StepLog = field(default_factory=StepLog, repr=False)
    # images on the study's grid that can be shown in its place: the study and model outputs (by name)
    layers: dict[str, Volume] = field(default_factory=dict, repr=False)
    current_layer: str = ""
    _planes: dict[tuple, Plane] = field(default_factory=dict, repr=False)
    _view_normals: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)
    _fill: dict[int, float] = field(default_factory=dict, repr=False)
    _oblique: bool = field(default=False, repr=False)
    # x-major copies of the volume's and the labels' arrays (reslice.x_major), made in the background: planes
    # across x (sagittal) are read from them.  Any "volume" / "labels" event drops the copy of that array.
    _x_major: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    # why the last filter result of another data type or grid could not be kept for undo (None: it was)
    last_replace_problem: str | None = field(default=None, repr=False)
    _array_serial: dict[str, int] = field(default_factory=lambda: dict.fromkeys(X_MAJOR_ARRAYS, 0), repr=False)

    # -- events ---------------------------------------------------------------------------------
    def subscribe(self, event: str, callback: Callable[..., None]) -> None:
        self._listeners[event].append(callback)

    def unsubscribe(self, event: str, callback: Callable[..., None]) -> None:
        if callback in self._listeners[event]:
            self._listeners[event].remove(callback)

    def emit(self, event: str, *args: Any) -> None:
        if event in self._array_serial:  # the array may have changed (also in place): its copy is stale
            self._array_serial[event] += 1
            self._x_major.pop(event, None)
        for callback in list(self._listeners[event]):
            callback(*args)

    # -- arrays the views read planes from --------------------------------------------------------
    def _shown_array(self, kind: str) -> tuple[np.ndarray, Any] | tuple[None, None]:
        """``(array, geometry)`` of ``"volume"`` or ``"labels"``."""
        if kind not in self._array_serial:
            raise ValueError(f"no array {kind!r}; one of {X_MAJOR_ARRAYS}")
        shown = self.volume if kind == "volume" else self.labels
        return (None, None) if shown is None else (shown.array, shown.geometry)

    def slice_array(self, kind: str, plane: Plane) -> np.ndarray | None:
        """The array to cut ``plane`` from for ``kind`` (``"volume"`` or ``"labels"``): its x-major copy when
        the plane lies across x and a copy is ready, else the array itself (the same samples either way)."""
        array, geometry = self._shown_array(kind)
        kept = self._x_major.get(kind)
        if kept is not None and kept[0] is array and aligned_normal_axis(geometry, plane) == 0:
            return kept[1]
        return array

    def x_major_wanted(self, kind: str) -> tuple[np.ndarray, int] | None:
        """``(array, serial)`` to copy with :func:`medview.algorithms.reslice.x_major` in the background, or
        None: no copy needed (no array, a copy kept, a series still loading, a single column or a single
        slice, e.g. a radiograph) or no room for it (more than ``X_MAJOR_MEMORY_SHARE`` of
        :func:`medview.io.limits.memory_budget_bytes`: ``MEDVIEW_MEMORY_BUDGET_MB``, else 80 % of the free memory)."""
        array, _ = self._shown_array(kind)
        if array is None or self.loading or kind in self._x_major or min(array.shape[0], array.shape[2]) < 2:
            return None
        if array.nbytes > X_MAJOR_MEMORY_SHARE * memory_budget_bytes():
            return None
        return array, self._array_serial[kind]

    def set_x_major(self, kind: str, source: np.ndarray, serial: int, copy: np.ndarray) -> bool:
        """Keep ``copy`` (made from ``source`` when ``x_major_wanted`` gave ``serial``) if ``source`` is still
        the shown array and no event has changed it since; True when kept."""
        array, _ = self._shown_array(kind)
        if source is not array or serial != self._array_serial[kind] or copy.shape != array.shape:
            return False
        self._x_major[kind] = (source, copy)
        return True

    # -- volume ---------------------------------------------------------------------------------
    def set_volume(self, volume: Volume, keep_view: bool = False, loading: bool = False,
                   derived: bool = False, recorded: bool = False) -> None:
        """Show ``volume``: cursor at its centre, the file's window (else CT default or percentiles).

        ``loading`` marks a volume whose slices are still arriving (only its middle slice is there):
        views across the slices wait for the complete volume instead of drawing empty data.
        ``derived``: a result computed from the current image (a filter that changed the grid), which keeps
        the replay log; any other new volume is a new study and starts a new log.  ``recorded``: the history
        has the change as a step already (:meth:`History.replace`, or its undo/redo): its steps are kept.
        """
        self.loading = loading
        same_grid = self.volume is not None and self.volume.geometry == volume.geometry
        if volume is not self.volume:
            if not recorded:  # (an undone whole-image step keeps its log entry: redo brings it back)
                self.steps.prune(self.history)
            if not derived:
                self.steps.clear()
                self.current_layer = volume.metadata.series_description or "Study"
                self.layers = {self.current_layer: volume}
            else:
                self.layers = {n: v for n, v in self.layers.items() if v.geometry == volume.geometry}
                self.layers[self.current_layer] = volume
            if not recorded:
                self.history.forget("volume")  # its steps belong to the image that is closing
                self.history.register("volume", volume)
        self.volume = volume
        if self.labels is not None and not self.labels.geometry.is_same_grid(volume.geometry):
            self.labels = None
            self.emit("labels")
        if not (keep_view and same_grid):
            g = volume.geometry
            # on a voxel centre (never half-way, which would make slice snapping ambiguous); z is the
            # middle slice, the one the loader delivers first
            centre = np.floor(np.array(g.size_xyz, dtype=float) / 2.0)
            self.cursor = g.index_to_world(centre)
            self.rotations = self.native_rotations()
            self._oblique = False
            self.window = self.initial_window(volume)
        self.emit("volume")  # implies a new cursor and window: listeners redraw everything once

    def initial_window(self, volume: Volume) -> WindowPreset:
        if volume.metadata.window_presets:
            return volume.metadata.window_presets[0]
        if volume.modality == "CT":
            return next(p for p in ct_presets() if p.name == "Mediastinum")
        return volume.percentile_window(1.0, 99.0, "Auto 1-99%")

    def window_choices(self) -> list[WindowPreset]:
        """File presets, then CT presets (for CT), then percentile windows."""
        if self.volume is None:
            return []
        choices = list(self.volume.metadata.window_presets)
        if self.volume.modality == "CT" or self.volume.metadata.units == "HU":
            choices += ct_presets()
        for p in window_presets_file()["percentiles"]:
            choices.append(WindowPreset(0, 1, p["name"]))  # computed when chosen
        return choices

    def apply_window(self, name: str) -> WindowPreset:
        if self.volume is None:
            raise MedviewError("No image is open")
        for p in window_presets_file()["percentiles"]:
            if p["name"] == name:
                return self.set_window(self.volume.percentile_window(p["low"], p["high"], name))
        for preset in self.window_choices():
            if preset.name == name:
                return self.set_window(preset)
        raise MedviewError(f"No window preset called {name}")

    def set_window(self, preset: WindowPreset) -> WindowPreset:
        width = max(float(preset.width), 1e-6)
        self.window = WindowPreset(float(preset.center), width, preset.name)
        self.emit("window")
        return self.window

    def adjust_window(self, d_center: float, d_width: float) -> None:
        """Right-button drag: move the level and widen/narrow the window (same units as the image)."""
        w = self.window
        self.set_window(WindowPreset(w.center + d_center, max(w.width + d_width, 1e-6), "Custom"))

    def set_invert(self, invert: bool) -> None:
        self.invert = bool(invert)
        self.emit("overlay")

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            raise MedviewError(f"Unknown colormap {name}; choose one of {', '.join(COLORMAPS)}")
        self.colormap = name
        self.emit("overlay")

    def set_hide_phi(self, hide: bool) -> None:
        self.hide_phi = bool(hide)
        self.emit("overlay")

    # -- cursor and planes ------------------------------------------------------------------------
    def plane(self, view: str) -> Plane:
        """The plane ``view`` shows now (cached until the cursor, rotation or volume changes)."""
        if self.volume is None:
            raise MedviewError("No image is open")
        rotation_key = self.rotations[view].tobytes()
        normal = self._view_normals.get((view, rotation_key))
        if normal is None:
            u0, v0 = VIEW_FRAMES[view]
            normal = self._view_normals[(view, rotation_key)] = self.rotations[view] @ np.cross(u0, v0)
        # a view's plane depends on the cursor only through its position along the normal
        key = (view, id(self.volume.geometry), rotation_key, round(float(self.cursor @ normal), 6))
        plane = self._planes.get(key)
        if plane is None:
            plane = view_plane(self.volume.geometry, view, self.cursor, self.rotations[view])
            if len(self._planes) > 64:
                self._planes.clear()
            self._planes[key] = plane
        return plane

    def fill_value(self) -> float:
        """Value shown outside the volume on oblique planes: the volume's minimum (air for CT), cached."""
        if self.volume is None:
            return 0.0
        cached = self._fill.get(id(self.volume))
        if cached is None:
            data = self.volume.array if not self.volume.is_color else self.volume.array[..., 0]
            cached = self._fill[id(self.volume)] = float(data.min())
        return cached

    def native_rotations(self) -> dict[str, np.ndarray]:
        """Each view turned onto the acquisition's own planes (the identity for axis-aligned data)."""
        frame = self.volume.geometry.acquisition_frame() if self.volume is not None else np.eye(3)
        return {v: frame.copy() for v in VIEWS}

    @property
    def is_oblique(self) -> bool:
        """True when the user has turned the crosshair away from the acquisition planes."""
        return self._oblique

    def _rotations_changed(self) -> None:
        native = self.native_rotations()
        self._oblique = any(not np.allclose(r, native[v]) for v, r in self.rotations.items())
        self.emit("geometry_view")

    def set_cursor(self, point_lps: np.ndarray | list[float]) -> None:
        """Move the crosshair to a world point, clamped to the volume's bounding box."""
        if self.volume is None:
            return
        g = self.volume.geometry
        idx = g.world_to_index(point_lps)
        idx = np.clip(idx, 0, np.array(g.size_xyz) - 1)
        self.cursor = g.index_to_world(idx)
        self.emit("cursor")

    def scroll(self, view: str, steps: int) -> None:
        """Move the cursor by ``steps`` slices along the view's normal (mouse wheel, arrow keys)."""
        if self.volume is None:
            return
        plane = self.plane(view)
        self.set_cursor(self.cursor + steps * step_mm(self.volume.geometry, plane) * plane.normal())

    def rotate(self, view: str, degrees: float) -> None:
        """Oblique MPR: rotate the crosshair in ``view`` about its normal.

        The view itself keeps its plane; the two other planes turn about the view's normal, so the
        crosshair lines turn on screen in ``view`` and the other views show oblique planes.  The
        three planes stay mutually perpendicular.
        """
        u, v = (np.asarray(a, dtype=float) for a in VIEW_FRAMES[view])
        axis = self.rotations[view] @ np.cross(u, v)
        a = np.radians(degrees)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        turn = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)  # Rodrigues' formula
        for other in VIEWS:
            if other != view:
                self.rotations[other] = turn @ self.rotations[other]
        self._rotations_changed()

    def reset_rotation(self) -> None:
        self.rotations = self.native_rotations()
        self._rotations_changed()

    def set_slab(self, thickness_mm: float, mode: str | None = None) -> None:
        if thickness_mm < 0:
            raise MedviewError("Slab thickness cannot be negative")
        if mode is not None and mode not in SLAB_MODES:
            raise MedviewError(f"Slab mode must be one of {', '.join(SLAB_MODES)}")
        self.slab_mm = float(thickness_mm)
        self.slab_mode = mode or self.slab_mode
        self.emit("geometry_view")

    # -- labels -----------------------------------------------------------------------------------
    def set_labels(self, labels: LabelMap | None, history: History | None = None,
                   step: dict[str, Any] | None = None, description: str = "") -> None:
        """Show ``labels`` (on the image's grid); ``history``: its undo history, reopened from disk.

        ``step``: the pipeline step that made ``labels`` (a segmentation or model result on a new map),
        recorded in the replay log.  A label map opened while steps are logged is logged as a manual step."""
        if labels is not None and self.volume is not None and not labels.geometry.is_same_grid(self.volume.geometry):
            raise MedviewError("The label map is not on the image's grid (resampling comes with label import)")
        self.steps.prune(self.history)
        if step is not None:
            self.steps.begin(step, description or next(iter(step)), self.history)
        elif labels is not None and labels is not self.labels and self.steps.entries:
            self.steps.begin(None, description or f"Label map {labels.source or 'replaced'}", self.history)
        if history is not None and labels is not None:
            history.register("labels", labels)
            if self.volume is not None:
                history.register("volume", self.volume)
            self.history = history
        elif labels is not self.labels:
            self.history.forget("labels")
            if labels is not None:
                self.history.register("labels", labels)
        self.labels = labels
        self.label_max = max(labels.voxel_counts(), default=0) if labels is not None else 0
        if labels is not None and labels.labels and self.active_label not in {e.value for e in labels.labels}:
            self.active_label = labels.labels[0].value
        self.emit("labels")

    # -- editing through the one history -------------------------------------------------------------
    def new_label_map(self) -> LabelMap:
        """An empty label map on the image's grid (to draw on), made current."""
        if self.volume is None:
            raise MedviewError("Open an image before drawing labels")
        labels = LabelMap(np.zeros(self.volume.geometry.shape, np.uint8), self.volume.geometry,
                          labels=[Label(1, "Label 1", default_color(1))], source="")
        self.set_labels(labels)
        return labels

    def edit_labels(self, edit: Edit | PreparedStep, description: str | None = None,
                    step: dict[str, Any] | None = None, table: list[Label] | None = None) -> Change | None:
        """Apply an edit of the label map and record it (undoable); redraws the views.

        ``step``: the pipeline step that made it, for the replay log (None: a hand edit).  ``table``: the
        entries of a result (a threshold's or a model's names and colours): a value new to the table is added,
        a known one takes the result's name, in the same undo step as the voxels.  ``edit`` may be a
        :class:`~medview.app.history.PreparedStep` made (off the GUI thread) from the map as it is now."""
        labels = self.labels
        if labels is None:
            raise MedviewError("There is no label map to edit")
        before = labels.table_snapshot()
        if table:
            known = {e.value: e for e in labels.labels}
            for entry in table:
                if entry.value in known:
                    known[entry.value].name = entry.name
                else:
                    labels.labels.append(Label(entry.value, entry.name, tuple(entry.color), entry.visible,
                                               entry.opacity, entry.locked))
        if isinstance(edit, PreparedStep):
            description = description or "Edit"
        entry = self.steps.begin(step, description or edit.description or "Edit", self.history)
        try:
            if isinstance(edit, PreparedStep):
                change = self.history.perform_prepared("labels", edit, description, tag=entry, table_before=before)
            else:
                change = self.history.perform("labels", edit, description, tag=entry, table_before=before)
        except Exception:
            labels.labels[:] = list(before)  # nothing was recorded: the table stays as it was
            raise
        if change is not None:
            self._labels_changed()
        return change

    def replace_label_array(self, array: np.ndarray, description: str, step: dict[str, Any] | None = None,
                            table: list[Label] | None = None) -> Change | None:
        """A whole-map result (segmentation, morphology) as one undoable step on the current label map, with
        the result's label ``table`` (see :meth:`edit_labels`)."""
        from medview.algorithms.label_edit import replace_array

        if self.labels is None:
            raise MedviewError("There is no label map to replace")
        return self.edit_labels(replace_array(self.labels, array, description), description, step=step, table=table)

    def apply_label_result(self, labels: LabelMap, description: str, step: dict[str, Any] | None = None,
                           prepared: PreparedStep | None = None) -> Change | None:
        """A segmentation, refinement or model result: on the current map's grid it replaces the voxels as one
        undo step that also carries the result's label names (undo brings back the old names and drops the
        new rows); otherwise it becomes the label map.  ``step``: default, the one the result records.
        ``prepared``: the result's undo step against the current map, made in the job's process (the caller
        makes sure the map has not changed since: :meth:`data_key`)."""
        from medview.app.replay import step_of

        step = step if step is not None else step_of(labels)
        current = self.labels
        if current is not None and current.geometry.is_same_grid(labels.geometry):
            if prepared is not None:
                return self.edit_labels(prepared, description, step=step, table=labels.labels)
            return self.replace_label_array(labels.array, description, step=step, table=labels.labels)
        self.set_labels(labels, step=step, description=description)
        return None

    def _edit_table(self, description: str, change: Callable[[LabelMap], None]) -> None:
        """A change of the label table (rename, colour, lock, new entry) as one undo step of its own."""
        labels = self.labels
        if labels is None:
            return
        before = labels.table_snapshot()
        change(labels)
        if labels.table_snapshot() != before:
            self.steps.prune(self.history)  # the step ends the redo branch: forget the undone log entries first
            self.history.record_table("labels", before, description)
        self.emit("labels")

    def replace_volume(self, volume: Volume, description: str, step: dict[str, Any] | None = None,
                       prepared: PreparedStep | None = None) -> Change | None:
        """A filter result, as one undo step: a diff of the voxels when it keeps the grid and data type, else
        the whole image (the one before is kept: :meth:`_replace_whole_volume`).

        ``step``: the pipeline step that made it (default: the one the result records), for the replay log.
        ``prepared``: its undo step against the current volume, made in the job's process (the caller makes sure
        the volume has not changed since: :meth:`data_key`)."""
        from medview.algorithms.label_edit import diff_edit

        step = step if step is not None else step_of(volume)
        current = self.volume
        self.last_replace_problem = None
        if (current is not None and current.geometry == volume.geometry and current.array.dtype == volume.array.dtype
                and current.array.shape == volume.array.shape and not self.loading):
            entry = self.steps.begin(step, description, self.history)
            if prepared is not None:
                change = self.history.perform_prepared("volume", prepared, description, tag=entry)
            else:
                change = self.history.perform("volume", diff_edit(current.array, volume.array, description),
                                              description, tag=entry)
            current.metadata.extra["steps"] = volume.metadata.extra.get("steps", [])
            self._fill.pop(id(current), None)
            self.emit("volume")
            return change
        return self._replace_whole_volume(volume, description, step)

    def _replace_whole_volume(self, volume: Volume, description: str, step: dict[str, Any] | None
                              ) -> Change | None:
        """A result of another data type or grid replaces the image as one undo step that keeps the image before
        (and the label map, when the grid changed): in memory within the history's share, else in a file.
        None (and :attr:`last_replace_problem` says why) when neither can hold it: then it is not undoable."""
        current = self.volume
        entry = self.steps.begin(step, description, self.history)
        change = None
        if current is not None and not self.loading:
            grid_changes = self.labels is not None and not self.labels.geometry.is_same_grid(volume.geometry)
            try:
                change = self.history.replace("volume", volume, description, tag=entry,
                                              labels_id="labels" if grid_changes else None)
            except MedviewError as exc:
                self.last_replace_problem = str(exc)
        self.set_volume(volume, keep_view=True, derived=True, recorded=change is not None)
        return change

    def replace_problem(self, more_bytes: int = 0) -> str | None:
        """Why a filter result of another data type or grid could not be undone now (None: it could): the image
        (and label map) it replaces must fit the undo memory's share or a file in the data folder."""
        from medview.app.kept_images import can_keep, image_bytes

        if self.volume is None:
            return None
        labels = self.labels
        return can_keep(image_bytes(self.volume, labels) + more_bytes, self.history.image_memory_limit)

    def add_layer(self, name: str, volume: Volume, show: bool = True, step: dict[str, Any] | None = None) -> str:
        """Keep ``volume`` (a model's output image on the study's grid) as a layer beside the study, shown at
        once unless ``show`` is False; returns its (made unique) name.  The study stays one click away."""
        if self.volume is None:
            raise MedviewError("Open a study before adding an image layer")
        if volume.geometry != self.volume.geometry:
            raise MedviewError("An image layer must lie on the study's grid")
        base, n = name, 2
        while name in self.layers:
            name, n = f"{base} ({n})", n + 1
        self.layers[name] = volume
        if step is not None:
            self.steps.begin(step, name, self.history)
        self.emit("layers")
        if show:
            self.show_layer(name)
        return name

    def show_layer(self, name: str) -> None:
        """Show the layer ``name`` in the views (labels, cursor, window and zoom are kept)."""
        if name not in self.layers:
            raise MedviewError(f"No image layer {name!r}; layers: {', '.join(self.layers)}")
        if name == self.current_layer and self.layers[name] is self.volume:
            return
        self.current_layer = name
        self.set_volume(self.layers[name], keep_view=True, derived=True)
        self.emit("layers")

    def data_key(self) -> tuple[int, int, int, int]:
        """Identifies the voxels of the image and label map shown now: a result computed from them (features,
        label statistics) belongs to them only while this is unchanged (no edit, undo, redo, new map)."""
        return (id(self.volume), id(self.labels), self.history.data_version("volume"),
                self.history.data_version("labels"))

    def record_features(self, label: int, params: Any = None, description: str = "") -> None:
        """Log a feature computation on the current study (it changes no data, so undo leaves it)."""
        self.steps.begin(features_step(label, params), description or f"Features of label {label}", self.history,
                         ends_redo=False)

    def export_pipeline(self, path: str, description: str = "") -> list[str]:
        """Write the logged steps in effect as a pipeline file for ``medview batch``; returns warnings."""
        return self.steps.save(path, self.history, description)

    def undo(self) -> Change:
        change = self.history.undo()
        self._after_history(change)
        return change

    def redo(self) -> Change:
        change = self.history.redo()
        self.steps.redone(change.tag)
        self._after_history(change)
        return change

    def _after_history(self, change: Change) -> None:
        if change.image is not None:  # a whole-image step: the other image (and label map) is shown again
            self.set_volume(change.image, keep_view=True, derived=True, recorded=True)
            if change.swaps_labels:
                self._show_restored_labels(change.labels)
            return
        if change.target_id == "labels":
            self._labels_changed()
        else:
            self._fill.pop(id(self.volume), None)
            self.emit("volume")

    def _show_restored_labels(self, labels: LabelMap | None) -> None:
        """The label map a whole-image undo/redo brought back with its grid (registered by the history)."""
        self.labels = labels
        self.label_max = max(labels.voxel_counts(), default=0) if labels is not None else 0
        if labels is not None and labels.labels and self.active_label not in {e.value for e in labels.labels}:
            self.active_label = labels.labels[0].value
        self.emit("labels")

    def _labels_changed(self) -> None:
        labels = self.labels
        if labels is None:
            return
        present = labels.voxel_counts()
        labels.add_missing_entries()
        known = {e.value for e in labels.labels}
        if labels.labels and self.active_label not in known:  # its entry went with an undo
            self.active_label = labels.labels[0].value
        self.label_max = max([*present, *known], default=0)
        self.emit("labels")

    # -- the label table ----------------------------------------------------------------------------
    def add_label(self, name: str | None = None, color: tuple[int, int, int] | None = None) -> Label:
        """A new entry with the next free value (made the active label)."""
        labels = self.labels if self.labels is not None else self.new_label_map()
        used = {e.value for e in labels.labels} | set(labels.voxel_counts())
        limit = 255 if labels.array.dtype == np.uint8 else 65535
        value = next((v for v in range(1, limit + 1) if v not in used), None)
        if value is None:
            raise MedviewError(f"All {limit} label values are in use")
        entry = Label(value, name or f"Label {value}", color or default_color(value))
        self.active_label = value
        self.label_max = max(self.label_max, value)
        self._edit_table(f"Add label {entry.name}", lambda m: m.labels.append(entry))
        return entry

    def rename_label(self, value: int, name: str) -> None:
        """Rename an entry (one undo step)."""
        if self.labels is None or not name.strip():
            raise MedviewError("A label needs a name")
        entry = self.labels.label(value)
        old = entry.name

        def rename(_m: LabelMap) -> None:
            entry.name = name.strip()

        self._edit_table(f"Rename {old} to {name.strip()}", rename)

    def set_label_color(self, value: int, color: tuple[int, int, int]) -> None:
        """Change an entry's colour (one undo step)."""
        if self.labels is None:
            return
        entry = self.labels.label(value)

        def recolour(_m: LabelMap) -> None:
            entry.color = tuple(int(np.clip(c, 0, 255)) for c in color)  # type: ignore[assignment]

        self._edit_table(f"Colour of {entry.name}", recolour)

    def set_label_locked(self, value: int, locked: bool) -> None:
        """Lock or unlock an entry against edits (one undo step)."""
        if self.labels is None:
            return
        entry = self.labels.label(value)

        def lock(_m: LabelMap) -> None:
            entry.locked = bool(locked)

        self._edit_table(f"{'Lock' if locked else 'Unlock'} {entry.name}", lock)

    def set_active_label(self, value: int) -> None:
        if self.labels is not None and value not in {e.value for e in self.labels.labels}:
            raise MedviewError(f"There is no label {value}")
        self.active_label = int(value)
        self.emit("labels")

    def set_threshold_preview(self, bounds: tuple[float | None, float | None] | None) -> None:
        """Show (or with None, stop showing) the voxels within ``(lower, upper)`` over the slices."""
        bounds = None if bounds is None else (bounds[0], bounds[1])
        if bounds != self.threshold_preview:
            self.threshold_preview = bounds
            self.emit("labels")

    def set_label_visible(self, value: int, visible: bool) -> None:
        if self.labels is None:
            return
        self.labels.label(value).visible = bool(visible)
        self.emit("labels")

    def set_label_opacity(self, value: int, opacity: float) -> None:
        if self.labels is None:
            return
        self.labels.label(value).opacity = float(np.clip(opacity, 0.0, 1.0))
        self.emit("labels")

    def set_label_outline(self, outline: bool) -> None:
        self.label_display.outline = bool(outline)
        self.emit("labels")

    # -- detections -----------------------------------------------------------------------------
    def set_detections(self, detections: Any) -> None:
        """Show a DetectionSet (points or boxes with scores, LPS mm) over the slices; None hides it."""
        self.detections = detections
        self.emit("detections")

    # -- measurements ---------------------------------------------------------------------------
    def add_measurement(self, measurement: Measurement) -> Measurement:
        if self.volume is None:
            raise MedviewError("No image is open")
        measurement.compute(self.volume)
        self.measurements.add(measurement)
        self.emit("measurements")
        return measurement

    def update_measurement(self, measurement: Measurement, points_lps: list[np.ndarray]) -> None:
        if self.volume is None:
            return
        measurement.points = [np.asarray(p, dtype=float) for p in points_lps]
        measurement.compute(self.volume)
        self.emit("measurements")

    def remove_measurement(self, measurement: Measurement) -> None:
        self.measurements.remove(measurement)
        self.emit("measurements")
