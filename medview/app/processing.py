"""Processing and segmentation commands shared by the GUI, the CLI and batch pipelines.

Each command validates its parameters through the operation catalogue
(:mod:`medview.algorithms.operations`), runs the plain function, and records provenance (what ran, with
which parameters and which library) on the result, so a result file or a pipeline says how it was made.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from medview.algorithms.operations import Operation, get_operation
from medview.app import replay
from medview.core.errors import MedviewError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume
from medview.io.readers import open_image
from medview.io.writers import check_output_path, write_image


def describe(op: Operation, params: dict[str, Any]) -> str:
    """``gaussian(sigma=1.5 mm)``: a one-line, human-readable record of a step."""
    parts = []
    for p in op.params:
        if p.name in params:
            value = params[p.name]
            shown = ";".join(",".join(f"{c:g}" for c in pt) for pt in value) if p.kind == "points" else (
                ",".join(f"{c:g}" for c in value) if p.kind == "point" else
                (f"{value:g}" if isinstance(value, float) else str(value)))
            parts.append(f"{p.name}={shown}{f' {p.unit}' if p.unit and p.kind not in ('point', 'points') else ''}")
    return f"{op.name}({', '.join(parts)})"


def _provenance(op: Operation, params: dict[str, Any]) -> dict[str, Any]:
    return {"operation": op.name, "kind": op.kind, "library": op.library, "params": params,
            "text": describe(op, params)}


def _run(kind: str, volume: Volume, name: str, params: dict[str, Any] | None, task: TaskContext | None
         ) -> tuple[Any, Operation, dict[str, Any]]:
    """Validate ``params`` for the operation ``name`` of ``kind`` and run it: (result, operation, params)."""
    op = get_operation(kind, name)  # type: ignore[arg-type]
    parsed = op.parse(params)
    if volume.is_color:
        raise MedviewError(f"{op.name} works on grey-scale images; this one is colour")
    return op.function(volume, task=task, **parsed), op, parsed


def run_filter(volume: Volume, name: str, params: dict[str, Any] | None = None,
               task: TaskContext | None = None) -> Volume:
    """Run the filter ``name`` on ``volume`` with validated ``params``; the result lists the steps made."""
    result, op, parsed = _run("filter", volume, name, params, task)
    result.metadata.extra["steps"] = [*volume.metadata.extra.get("steps", []), _provenance(op, parsed)]
    result.metadata.extra["replay_step"] = replay.filter_step(op.name, parsed)
    return result


def run_segmentation(volume: Volume, method: str, params: dict[str, Any] | None = None,
                     task: TaskContext | None = None) -> LabelMap:
    """Segment ``volume`` with ``method`` (validated ``params``); the label map records how it was made."""
    labels, op, parsed = _run("segment", volume, method, params, task)
    if not isinstance(labels, LabelMap):  # pragma: no cover - a registration error
        raise MedviewError(f"{op.name} did not produce a label map")
    labels.source = labels.source or _provenance(op, parsed)["text"]
    labels.provenance["step"] = replay.segment_step(op.name, parsed)
    return labels


@dataclass
class PanelResult:
    """What a GUI panel's job returns: the ``result`` and, when it can be applied in place of what the job was
    given (same grid and data type), its undo ``step``, prepared in the job's process (see
    :class:`medview.app.history.PreparedStep`), so that the window only copies it in."""

    result: Any
    step: Any = None  # a medview.app.history.PreparedStep, or None


def _volume_step(before: Volume, after: Volume, description: str) -> Any:
    from medview.algorithms.label_edit import diff_edit
    from medview.app.history import prepare_step

    if before.geometry != after.geometry or before.array.dtype != after.array.dtype or \
            before.array.shape != after.array.shape:
        return None  # another grid or type: the result replaces the volume as a whole
    return prepare_step(diff_edit(before.array, after.array, description))


def _label_step(current: LabelMap | None, result: LabelMap, description: str) -> Any:
    from medview.algorithms.label_edit import replace_array
    from medview.app.history import prepare_step

    counts = result.voxel_counts()  # counted here, with the result: the window takes them as they are
    if current is None or not current.geometry.is_same_grid(result.geometry):
        return None
    edit = replace_array(current, result.array, description)  # refuses to overwrite a locked label
    return prepare_step(edit, counts=counts)


def filter_panel_job(volume: Volume, name: str, params: dict[str, Any] | None = None,
                     task: TaskContext | None = None) -> PanelResult:
    """The Filter panel's job (run in a process of its own): :func:`run_filter` and the result's undo step."""
    result = run_filter(volume, name, params, task=task)
    report(task, 1.0, "Preparing undo", force=True)
    return PanelResult(result, _volume_step(volume, result, name))


def segment_panel_job(volume: Volume, method: str, params: dict[str, Any] | None = None,
                      current: LabelMap | None = None, task: TaskContext | None = None) -> PanelResult:
    """The Segment panel's job: :func:`run_segmentation` and its undo step on the ``current`` label map."""
    labels = run_segmentation(volume, method, params, task=task)
    report(task, 1.0, "Preparing undo", force=True)
    return PanelResult(labels, _label_step(current, labels, method))


def label_panel_job(labels: LabelMap, name: str, params: dict[str, Any] | None = None,
                    task: TaskContext | None = None) -> PanelResult:
    """The Refine-labels panel's job: :func:`run_label_operation` and its undo step on ``labels``."""
    result = run_label_operation(labels, name, params, task=task)
    report(task, 1.0, "Preparing undo", force=True)
    return PanelResult(result, _label_step(labels, result, name))


def run_panel_job(job: Any, *args: Any, task: TaskContext | None = None) -> PanelResult:
    """Run a panel's ``job`` in a process of its own (SciPy, scikit-image and scikit-learn hold the GIL: in a
    thread they froze the window) from a GUI worker thread, and map the result's memory there."""
    from medview.app.offload import run_in_process

    out = run_in_process(job, *args, task=task, own_process=True)
    arrays = [getattr(out.result, "array", None), getattr(out.step, "after", None)]
    for array in arrays:  # fault the shared pages in here, not on the GUI thread
        if isinstance(array, np.ndarray) and array.size and array.flags.c_contiguous:
            np.bitwise_or.reduce(array.reshape(-1).view(np.uint8)[::4096])
    if out.step is not None:
        out.step = out.step.with_bytes()  # the blobs came in shared memory: copied here, in this thread
    return out


@dataclass
class FileResult:
    output: str
    description: str


def _operation_file(kind: str, name: str, input_path: str, output: str, params: dict[str, Any] | None,
                    series: str | None, task: TaskContext | None) -> FileResult:
    """Read, run a filter or segmentation, write the result with the input's exact geometry."""
    op = get_operation(kind, name)  # type: ignore[arg-type]
    parsed = op.parse(params)  # before reading: a bad parameter should not cost a load
    check_output_path(output)
    volume = open_image(input_path, series=series, task=task)
    run = run_filter if kind == "filter" else run_segmentation
    result = run(volume, op.name, parsed, task=task)
    report(task, 1.0, f"Writing {os.path.basename(output)}", force=True)
    write_image(result, output)
    return FileResult(output, describe(op, parsed))


def filter_file(name: str, input_path: str, output: str, params: dict[str, Any] | None = None,
                series: str | None = None, task: TaskContext | None = None) -> FileResult:
    """``medview filter``: read, filter, write with the input's exact geometry."""
    return _operation_file("filter", name, input_path, output, params, series, task)


def segment_file(method: str, input_path: str, output: str, params: dict[str, Any] | None = None,
                 series: str | None = None, task: TaskContext | None = None) -> FileResult:
    """``medview segment``: read, segment, write the label map (NIfTI/NRRD/MHA) on the input's grid."""
    return _operation_file("segment", method, input_path, output, params, series, task)


def export_seg_file(dicom_dir: str, labels_path: str, output: str, series: str | None = None,
                    description: str = "Segmentation", task: TaskContext | None = None) -> FileResult:
    """``medview export-seg``: a DICOM SEG of ``labels_path`` referencing the series it was drawn on.

    The label map is placed on the series' grid (resampled, with a warning, if it was saved on another);
    only headers of the source series are read for the references, but its pixels are loaded once so
    the label map can be checked against (and, if needed, resampled onto) the true grid.
    """
    from medview.app.label_maps import label_map_warnings, open_label_map
    from medview.io.readers import load_info, scan, select_series
    from medview.io.seg import write_seg

    if os.path.isdir(output):
        raise MedviewError(f"{output} is a folder; give the SEG file's name, e.g. {os.path.join(output, 'seg.dcm')}")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise MedviewError(f"The output folder {parent} does not exist")
    found = [s for s in scan(dicom_dir, task=task) if hasattr(s, "series_uid")]
    if not found:
        raise MedviewError(f"{dicom_dir} holds no DICOM image series to reference")
    info = select_series(found, series, dicom_dir)
    volume = load_info(info, task=task)
    labels = open_label_map(labels_path, reference=volume, task=task)
    report(task, 0.9, "Writing the SEG", force=True)
    seg_notes: list[str] = []  # highdicom's/pydicom's warnings, as medview's lines (never on stderr)
    write_seg(labels, info, output, description=description, task=task, warnings=seg_notes)
    notes = [*label_map_warnings(labels), *seg_notes]
    return FileResult(output, f"{len(labels.present_values())} segment(s) on series {info.series_uid}"
                      + (f"; {'; '.join(notes)}" if notes else ""))


def label_statistics_file(image_path: str, labels_path: str, csv_path: str | None = None,
                          task: TaskContext | None = None) -> dict[str, Any]:
    """``medview labels stats``: per-label statistics of a label map over its image (and a CSV)."""
    import math

    from medview.algorithms.label_stats import label_statistics, to_csv
    from medview.app.label_maps import label_map_warnings, open_label_map

    if csv_path is not None:
        parent = os.path.dirname(os.path.abspath(csv_path))
        if not os.path.isdir(parent):
            raise MedviewError(f"The output folder {parent} does not exist")
    volume = open_image(image_path, task=task)
    labels = open_label_map(labels_path, reference=volume, task=task)
    if not labels.present_values():
        raise MedviewError(f"{os.path.basename(labels_path)} holds no labels")
    stats = label_statistics(labels, None if volume.is_color else volume, task=task)
    if csv_path is not None:
        to_csv(stats, csv_path)

    def number(x: float) -> float | None:
        return None if isinstance(x, float) and math.isnan(x) else float(x)

    rows = [{"value": s.value, "name": s.name, "voxels": s.voxels, "volume_ml": s.volume_ml,
             "mean": number(s.mean), "std": number(s.std), "min": number(s.minimum), "max": number(s.maximum),
             "surface_mm2": s.surface_mm2, "bbox_min_lps": list(s.bbox_min_lps), "bbox_max_lps": list(s.bbox_max_lps),
             "bbox_min_xyz": list(s.bbox_min_xyz), "bbox_max_xyz": list(s.bbox_max_xyz)} for s in stats]
    return {"image": os.path.abspath(image_path), "labels_file": os.path.abspath(labels_path),
            "units": volume.metadata.units, "warnings": label_map_warnings(labels), "labels": rows}


def label_operations() -> dict[str, Operation]:
    """Operations on a label map (morphology, components, holes, smoothing), as catalogue entries."""
    from medview.algorithms.morphology import LABEL_OPERATIONS

    return {name: Operation(name, "segment", fn, params, help=(fn.__doc__ or "").strip().splitlines()[0],
                            library="SciPy")
            for name, (fn, params) in LABEL_OPERATIONS.items()}


def run_label_operation(labels: LabelMap, name: str, params: dict[str, Any] | None = None,
                        task: TaskContext | None = None) -> LabelMap:
    """Refine a label map with the operation ``name`` (validated ``params``); returns a new label map."""
    ops = label_operations()
    if name not in ops:
        raise MedviewError(f"Unknown label operation {name!r}; choose one of {', '.join(ops)}")
    op = ops[name]
    parsed = op.parse(params)
    result = op.function(labels, task=task, **parsed)
    result.provenance["step"] = replay.refine_step(op.name, parsed)
    return result


def refine_labels_file(name: str, labels_path: str, output: str, params: dict[str, Any] | None = None,
                       task: TaskContext | None = None) -> FileResult:
    """``medview labels refine``: a label operation on a label file, written with the same geometry."""
    from medview.app.label_maps import open_label_map

    ops = label_operations()
    if name not in ops:
        raise MedviewError(f"Unknown label operation {name!r}; choose one of {', '.join(ops)}")
    parsed = ops[name].parse(params)
    check_output_path(output)
    labels = open_label_map(labels_path, task=task)
    result = run_label_operation(labels, name, parsed, task=task)
    write_image(result, output)
    return FileResult(output, describe(ops[name], parsed))


def label_statistics_job(labels: LabelMap, image: Volume | None):
    """Per-label statistics as a picklable job (the GUI runs it in a worker process: marching cubes
    holds the GIL for as long as it runs)."""
    from medview.algorithms.label_stats import label_statistics

    return label_statistics(labels, image)
