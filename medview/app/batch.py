"""``medview batch``: a pipeline over a cohort on Dask distributed, with one features table at the end.

Everything is validated first (the pipeline's steps, the cohort's columns, ids and files, the output
folder, the Dask options), so a mistake costs no cluster start.  The cases then run through the generic
engine :func:`medview.analysis.cohort.run_cohort` (a local cluster of worker processes, or a running
scheduler), each writing ``OUT/cases/<case_id>/`` and its ``case.json``.  Finished cases of an earlier run
with the same pipeline are skipped.  At the end the tables are rebuilt from the ``case.json`` of *every*
case of the cohort, so a resumed run still produces the complete table:

* ``features.parquet`` and ``features.csv``: one row per case: ``case_id``, ``target`` (when the cohort
  has targets), ``status``, then the features (empty for failed cases);
* ``errors.csv``: ``case_id,error`` for the failed cases;
* ``summary.json``: counts, times, the pipeline's fingerprint and where it ran.

Before the cluster starts, each case's memory is estimated from its image's header (voxels x bytes x the
pipeline's costliest step, :func:`estimate_case_memory`): cases over a worker's ``--memory-limit`` are named,
and a run where none fits is refused.  Progress goes to stderr as a bar on a terminal, else as plain lines.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext

from .pipeline import (
    CaseResult,
    Cohort,
    Pipeline,
    case_dir,
    is_case_done,
    read_case_record,
    run_case,
    write_case_record,
)

DEFAULT_MEMORY_LIMIT = "2GB"

# Peak memory of a case, in copies of its image at 4 bytes a voxel (float32, what the filters make) at each
# step's peak, on top of the worker itself.  Measured as peak RSS (ru_maxrss) minus the process's RSS before
# the case, on the 512 x 512 x 48 lung1 CT (int16): load 7.7 bytes/voxel, threshold 9.0, median 13.1,
# Gaussian 19.2, N4 27.8, Gaussian + threshold + remove-islands 22.9, and + PyRadiomics' default features on
# that whole-CT label 36.9; rounded up.  infer: not measured here (sliding windows of torch, plus its import).
STEP_IMAGE_COPIES = {"load": 2.0, "filter": 5.0, "segment": 3.0, "refine": 6.0, "infer": 8.0, "features": 10.0,
                     "export": 3.0}
FILTER_IMAGE_COPIES = {"n4": 8.0}
WORKER_BASE_BYTES = 250e6  # a Dask worker with medview, SimpleITK and PyRadiomics imported: 206 MB measured
TORCH_BASE_BYTES = 600e6  # an infer step imports torch (and MONAI)


def run_case_record(case, out_dir: str, *, pipeline: Pipeline) -> dict[str, Any]:
    """The Dask task for one case (module level so workers import it): :func:`run_case` as a record."""
    return run_case(pipeline, case, out_dir).to_record()


def image_bytes(case) -> float:
    """A case's cost estimate for scheduling: its image's size on disk (a DICOM folder: its files, not recursive)."""
    if os.path.isdir(case.image):
        with os.scandir(case.image) as entries:
            return float(sum(e.stat().st_size for e in entries if e.is_file()))
    if not os.path.exists(case.image):  # a series of the study database, by its UID
        from medview.io.studydb import StudyDatabase

        with StudyDatabase() as db:
            return float(db.series_summary(case.image)["bytes"])
    return float(os.path.getsize(case.image))


def _itemsize(pixel_type: str) -> int:
    """Bytes per stored value from a scan's pixel type text (``16-bit signed integer``, ``int16 (scaled...)``)."""
    bits = re.search(r"(\d+)-bit", pixel_type) or re.search(r"(?:int|uint|float)(\d+)", pixel_type)
    return max(1, int(bits.group(1)) // 8) if bits else 4


def _dicom_voxels(path: str) -> tuple[int, int, str] | None:
    """(voxels, bytes per stored value, description) of a DICOM folder or file from one file's header and
    the number of files; None for a zip or when no header can be read."""
    import pydicom

    if os.path.isfile(path):
        files = [path]
    else:
        files = [os.path.join(root, n) for root, _, names in os.walk(path) for n in names if not n.startswith(".")]
    for f in files[:20]:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["Rows", "Columns", "NumberOfFrames",
                                                                           "BitsAllocated"])
            rows, cols = int(ds.Rows), int(ds.Columns)
        except Exception:  # not DICOM (a DICOMDIR, a note): try the next file
            continue
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        folder = os.path.dirname(f)  # the series' folder: the files beside the first slice (not notes above it)
        n = sum(1 for g in files if os.path.dirname(g) == folder)
        return (rows * cols * frames * n, max(1, int(getattr(ds, "BitsAllocated", 16) or 16) // 8),
                f"{cols}x{rows}x{frames * n}")
    return None


def estimate_case_memory(case, *, pipeline: Pipeline) -> tuple[float, str] | None:
    """The memory one case will need on a worker, from its image's header, and how that was worked out.

    voxels x max(4, bytes per value) x the pipeline's costliest step (:data:`STEP_IMAGE_COPIES`) + the worker
    itself; None when the header cannot be read (the case then runs and reports its own error).
    """
    path = case.image
    if os.path.isfile(path) and path.lower().endswith(".zip"):
        return None
    from medview.io.readers import ITK_EXTENSIONS, FileImageInfo, scan

    if os.path.isfile(path) and path.lower().endswith(ITK_EXTENSIONS):
        info = scan(path)[0]
        if not isinstance(info, FileImageInfo):
            return None
        z, y, x = info.geometry.shape
        voxels, itemsize, size = x * y * z, _itemsize(info.pixel_type) * max(1, info.components), f"{x}x{y}x{z}"
    elif not os.path.exists(path):  # a series of the study database: its index knows the grid
        from medview.io.studydb import StudyDatabase

        with StudyDatabase() as db:
            summary = db.series_summary(path)
        voxels, itemsize, size = summary["voxels"], summary["itemsize"], summary["size"]
    else:
        found = _dicom_voxels(path)
        if found is None:
            return None
        voxels, itemsize, size = found
    steps = [step.name for step in pipeline.steps]
    copies = max(STEP_IMAGE_COPIES["load"], *(
        FILTER_IMAGE_COPIES.get(str(st.params.get("name")), STEP_IMAGE_COPIES[st.name]) if st.name == "filter"
        else STEP_IMAGE_COPIES.get(st.name, 2.0) for st in pipeline.steps))
    per_voxel = max(4, itemsize)
    base = WORKER_BASE_BYTES + (TORCH_BASE_BYTES if "infer" in steps else 0.0)
    need = voxels * per_voxel * copies + base
    return need, (f"{size} voxels x {per_voxel} bytes x {copies:g} for {', '.join(steps)}, + "
                  f"{base / 1e6:.0f} MB for the worker")


def _case_is_done(case, *, out_dir: str, fingerprint: str) -> bool:
    return is_case_done(out_dir, case.case_id, fingerprint)


def _prepare_out_dir(out_dir: str | os.PathLike[str]) -> Path:
    out = Path(os.path.abspath(os.fspath(out_dir)))
    if out.exists() and not out.is_dir():
        raise MedviewError(f"The output {out} is a file; give a folder")
    if not out.parent.is_dir():
        raise MedviewError(f"The output's parent folder {out.parent} does not exist")
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise MedviewError(f"Cannot create the output folder {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise MedviewError(f"The output folder {out} is not writable")
    return out


def _memory_budget_mb(memory_limit: str | None) -> str | None:
    """Half the worker's memory for one image (readers refuse larger ones with a clear error instead of the
    worker being killed)."""
    if memory_limit is None:
        return None
    from medview.analysis.cohort import parse_memory_limit

    n = parse_memory_limit(memory_limit)
    return None if n is None else str(max(n // 2 // 2**20, 64))


def run_batch(pipeline_path: str | os.PathLike[str] | Pipeline, cohort_path: str | os.PathLike[str] | Cohort,
              out_dir: str | os.PathLike[str], workers: int | None = None, scheduler: str | None = None,
              memory_limit: str | None = None, task: TaskContext | None = None, progress: bool = True,
              retries: int = 1) -> dict[str, Any]:
    """Run a pipeline over a cohort; write per-case outputs, the features tables, errors and a summary.

    Parameters
    ----------
    pipeline_path, cohort_path
        A pipeline YAML and a cohort CSV or folder (or already loaded :class:`Pipeline` / :class:`Cohort`).
    out_dir
        Output folder (created if its parent exists); re-running into it skips finished cases.
    workers, scheduler
        Local worker processes (default: the CPU count), or the address of a running Dask scheduler.
    memory_limit
        Memory per local worker (default ``2GB``); bad values are rejected before anything runs.
    task
        Progress over the cases and cancellation (a cancel stops like Ctrl-C; finished cases are kept).

    Returns
    -------
    dict
        The content of ``summary.json``: ``cases``, ``ran``, ``skipped``, ``ok`` and ``failed`` (over the
        whole cohort, earlier runs included), the file paths written, ``seconds``, ``workers``, ``scheduler``.
    """
    from medview.analysis.cohort import check_scheduler_address, parse_memory_limit, run_cohort

    started = time.perf_counter()
    pipeline = pipeline_path if isinstance(pipeline_path, Pipeline) else Pipeline.load(pipeline_path)
    cohort = cohort_path if isinstance(cohort_path, Cohort) else Cohort.load(
        cohort_path, exclude=(os.path.abspath(os.fspath(out_dir)),))
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise MedviewError(f"--workers must be a whole number >= 1, got {workers!r}")
    if scheduler is not None and workers is not None:
        raise MedviewError("Give either a number of local workers or a scheduler address, not both")
    if scheduler is not None:
        scheduler = check_scheduler_address(scheduler)
    limit = memory_limit or DEFAULT_MEMORY_LIMIT
    parse_memory_limit(limit)
    out = _prepare_out_dir(out_dir)
    fingerprint = pipeline.fingerprint()
    env = {}
    # one image may use half a local worker's memory (unless the user set the budget): readers refuse a larger one
    # with a clear error instead of the worker being killed
    budget = _memory_budget_mb(limit) if scheduler is None and "MEDVIEW_MEMORY_BUDGET_MB" not in os.environ else None
    if budget:
        env["MEDVIEW_MEMORY_BUDGET_MB"] = budget

    run = run_cohort(cohort.cases, functools.partial(run_case_record, pipeline=pipeline), str(out),
                     workers=workers, scheduler=scheduler, memory_limit=limit, progress=progress, retries=retries,
                     is_done=functools.partial(_case_is_done, out_dir=str(out), fingerprint=fingerprint),
                     env=env or None, cost=image_bytes, task=task,
                     memory=functools.partial(estimate_case_memory, pipeline=pipeline), progress_prefix="medview batch")
    # a case whose worker died for good has no case.json: record its error here (the client's side)
    for case in cohort.cases:
        record = run["records"].get(case.case_id)
        if record is not None and record.get("status") != "ok" and read_case_record(out, case.case_id) is None:
            write_case_record(out, CaseResult(case.case_id, "error", error=str(record.get("error")),
                                              steps_total=len(pipeline.steps), target=case.target, image=case.image,
                                              label=case.label, pipeline=fingerprint))
    tables = write_tables(cohort, out)
    summary = {
        "cases": len(cohort.cases), "ran": run["ran"], "skipped": run["skipped"],
        "ok": tables["ok"], "failed": tables["failed"], "missing": tables["missing"],
        "ok_this_run": run["ok"], "failed_this_run": run["failed"],
        "seconds": time.perf_counter() - started, "workers": run["workers"], "scheduler": run["scheduler"],
        "pipeline": os.path.abspath(pipeline.source) if pipeline.source else None,
        "pipeline_fingerprint": fingerprint, "cohort": os.path.abspath(cohort.source) if cohort.source else None,
        "out": str(out), "features_csv": tables["features_csv"], "features_parquet": tables["features_parquet"],
        "errors_csv": tables["errors_csv"], "summary_json": str(out / "summary.json"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "warnings": run.get("warnings", []), "memory_restarts": run.get("memory_restarts", 0),
    }
    from medview.io.atomic import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _target_column(values: list[str | None]):
    """Targets as numbers when every given one is a number, else as text."""
    present = [v for v in values if v is not None]
    try:
        numbers = [float(v) for v in present]
    except ValueError:
        return values
    if all(n.is_integer() for n in numbers):
        return [None if v is None else int(float(v)) for v in values]
    return [None if v is None else float(v) for v in values]


def features_table(cohort: Cohort, out_dir: str | os.PathLike[str]):
    """The cohort's table from every case's ``case.json``: ``case_id[, target], status, <features>...``.

    Cases without a ``case.json`` (never run, or interrupted) have status ``missing``.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    feature_names: dict[str, None] = {}
    records = {c.case_id: read_case_record(out_dir, c.case_id) for c in cohort.cases}
    for record in records.values():
        for name in (record or {}).get("features") or {}:
            feature_names.setdefault(name, None)
    for case in cohort.cases:
        record = records[case.case_id] or {}
        features = record.get("features") or {}
        row: dict[str, Any] = {"case_id": case.case_id}
        if cohort.has_target:
            row["target"] = case.target
        row["status"] = record.get("status", "missing")
        for name in feature_names:
            value = features.get(name)
            row[name] = math.nan if value is None else value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["case_id", *(["target"] if cohort.has_target else []), "status",
                                        *feature_names])
    if cohort.has_target:
        frame["target"] = pd.Series(_target_column(list(frame["target"])), dtype=object).infer_objects()
    for name in feature_names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    return frame, records


def write_tables(cohort: Cohort, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``features.parquet``, ``features.csv`` and ``errors.csv`` (atomically) from all ``case.json``."""
    import pandas as pd

    from medview.io.atomic import atomic_path, atomic_write_text

    out = Path(out_dir)
    frame, records = features_table(cohort, out)
    with atomic_path(out / "features.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_text(out / "features.csv", buffer.getvalue())
    errors = [{"case_id": c.case_id, "error": (records[c.case_id] or {}).get("error") or "not run (no case.json in "
               f"{case_dir(out, c.case_id)})"} for c in cohort.cases
              if (records[c.case_id] or {}).get("status") != "ok"]
    buffer = io.StringIO()
    pd.DataFrame(errors, columns=["case_id", "error"]).to_csv(buffer, index=False)
    atomic_write_text(out / "errors.csv", buffer.getvalue())
    statuses = list(frame["status"])
    return {"ok": statuses.count("ok"), "failed": statuses.count("error"), "missing": statuses.count("missing"),
            "features_csv": str(out / "features.csv"), "features_parquet": str(out / "features.parquet"),
            "errors_csv": str(out / "errors.csv")}
