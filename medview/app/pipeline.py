"""Pipelines (a YAML list of the GUI's and CLI's commands) and cohorts (the cases to run them on).

A pipeline file names the same commands the workstation and ``medview filter|segment|labels refine|infer|
features`` use, with their parameters, so steps tuned on one case in the GUI replay unchanged on a cohort::

    medview_pipeline: 1
    description: optional text
    steps:
      - load: {series: null}                                # optional, first; the image is loaded anyway
      - filter: {name: median, params: {radius: 1.0}}       # replaces the image   (processing.run_filter)
      - segment: {method: otsu, params: {}}                 # replaces the label map (run_segmentation)
      - refine: {operation: remove-islands, params: {min_size_mm3: 50}}  # label map operation
      - infer: {model: demo-body-lungs, device: cpu}        # replaces the label map (inference.infer_volume);
                                                            # allow_modality_mismatch: true runs it on another modality
      - features: {label: 1, params: null}                  # null | PyRadiomics YAML/JSON path | inline dict
      - export: {image: true, labels: true, format: nii.gz} # writes the case's image and label map

Every step is validated when the pipeline is loaded (operation names and parameters through the operation
catalogue, models through their cards, files for existence), so a mistake is reported, with its step
number, before any case runs.

A case's state is its image (:class:`~medview.core.volume.Volume`), its label map (from the cohort's label
column, or made by a ``segment``/``infer`` step; None otherwise) and its features.  :func:`run_case` runs the
steps on one case without Dask (the batch runner calls it on the workers) and writes
``OUT/cases/<case_id>/``: the exported files and, last and atomically, ``case.json`` (status, error, seconds,
steps done, outputs, features).  A ``case.json`` with status ``ok`` and the same pipeline fingerprint is the
"finished" marker: re-running skips that case; failed cases and cases of an edited pipeline run again.

Cohorts: a CSV with the columns ``case_id,image[,label][,target]`` (paths relative to the CSV's folder), or
a folder of studies (rules in :meth:`Cohort.from_folder`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.app.replay import plain
from medview.core.errors import CancelledError, MedviewError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume

PIPELINE_VERSION = 1
STEP_NAMES = ("load", "filter", "segment", "refine", "infer", "features", "export")
EXPORT_FORMATS = ("nii.gz", "nii", "nrrd", "mha")
DEVICES = ("auto", "cpu", "cuda")
CASE_FILE = "case.json"
CASES_DIR = "cases"
_IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_LABEL_SUFFIXES = ("_label", "_labels", "_mask", "_seg", "_segmentation")
_LABEL_NAMES = ("label", "labels", "mask", "seg", "segmentation")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


# -- pipeline ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One pipeline step: its command ``name`` (a key of the YAML mapping) and its ``params`` (the value)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {self.name: json.loads(json.dumps(self.params))}


def _keys(params: dict[str, Any], allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise MedviewError(f"unknown key {unknown[0]!r}; this step takes {', '.join(allowed)}")
    for key in required:
        if params.get(key) in (None, ""):
            raise MedviewError(f"{key!r} is required")


def _operation_params(where: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = params.get("params")
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise MedviewError(f"{where}: 'params' must be a mapping of parameter names to values, got {raw!r}")
    return dict(raw)


def _refine_operation(name: str):
    from medview.app.processing import label_operations

    ops = label_operations()
    op = ops.get(name) or ops.get(str(name).replace("_", "-"))
    if op is None:
        raise MedviewError(f"Unknown label operation {name!r}; choose one of {', '.join(ops)}")
    return op


def _features_params_path(value: str, base_dir: str | None) -> str:
    path = value if os.path.isabs(value) or base_dir is None else os.path.join(base_dir, value)
    if not os.path.isfile(path):
        raise MedviewError(f"the PyRadiomics parameter file {path} does not exist")
    if not path.lower().endswith((".yaml", ".yml", ".json")):
        raise MedviewError(f"the PyRadiomics parameter file must be .yaml, .yml or .json: {path}")
    return os.path.abspath(path)


def _check_step(index: int, total: int, step: Step, base_dir: str | None) -> Step:
    """Validate one step (raising a MedviewError that names it); returns it with paths made absolute."""
    where = f"step {index + 1} of {total} ({step.name})"
    p = dict(step.params)
    try:
        if step.name == "load":
            _keys(p, ("series",))
            if index != 0:
                raise MedviewError("'load' can only be the first step")
            if p.get("series") is not None and not isinstance(p["series"], (str, int)):
                raise MedviewError(f"'series' must be a series UID or number, got {p['series']!r}")
        elif step.name in ("filter", "segment"):
            key = "name" if step.name == "filter" else "method"
            _keys(p, (key, "params"), (key,))
            from medview.algorithms.operations import get_operation

            get_operation(step.name, str(p[key])).parse(_operation_params(where, p))  # type: ignore[arg-type]
        elif step.name == "refine":
            _keys(p, ("operation", "params"), ("operation",))
            _refine_operation(str(p["operation"])).parse(_operation_params(where, p))
        elif step.name == "infer":
            _keys(p, ("model", "device", "allow_modality_mismatch"), ("model",))
            if p.get("device", "auto") not in DEVICES:
                raise MedviewError(f"'device' must be one of {', '.join(DEVICES)}, got {p['device']!r}")
            if not isinstance(p.get("allow_modality_mismatch", False), bool):
                raise MedviewError("'allow_modality_mismatch' must be true or false, got "
                                   f"{p['allow_modality_mismatch']!r}")
            from medview.app.inference import model_card

            model_card(str(p["model"]))
        elif step.name == "features":
            _keys(p, ("label", "params"))
            label = p.get("label", 1)
            if label is not None and (isinstance(label, bool) or not isinstance(label, int) or label < 1):
                raise MedviewError(f"'label' must be a label value >= 1 (or null: the only label), got {label!r}")
            params = p.get("params")
            if isinstance(params, str):
                p["params"] = params = _features_params_path(params, base_dir)
            elif params is not None and not isinstance(params, Mapping):
                raise MedviewError("'params' must be null, a PyRadiomics parameter file or a mapping of "
                                   f"PyRadiomics settings, got {params!r}")
            from medview.analysis.features import load_params

            load_params(dict(params) if isinstance(params, Mapping) else params)  # PyRadiomics' schema
        elif step.name == "export":
            _keys(p, ("image", "labels", "format"))
            for key in ("image", "labels"):
                if not isinstance(p.get(key, True), bool):
                    raise MedviewError(f"'{key}' must be true or false, got {p[key]!r}")
            if p.get("format", "nii.gz") not in EXPORT_FORMATS:
                raise MedviewError(f"'format' must be one of {', '.join(EXPORT_FORMATS)}, got {p['format']!r}")
            if not p.get("image", True) and not p.get("labels", True):
                raise MedviewError("'image' and 'labels' are both false: nothing to export")
        else:
            raise MedviewError(f"unknown step {step.name!r}; steps are {', '.join(STEP_NAMES)}")
    except MedviewError as exc:
        text = str(exc)
        raise MedviewError(text if text.startswith(where) else f"{where}: {text}") from None
    return Step(step.name, p)


@dataclass
class Pipeline:
    """An ordered list of :class:`Step` with a description; built by :meth:`load` / :meth:`from_dict`,
    which validate every step."""

    steps: list[Step]
    description: str = ""
    source: str | None = None  # the YAML file it was read from, for messages

    @classmethod
    def from_dict(cls, doc: Any, base_dir: str | os.PathLike[str] | None = None, source: str | None = None
                  ) -> Pipeline:
        """A validated pipeline from its document (``medview_pipeline: 1``, ``steps: [...]``).

        ``base_dir``: where relative paths in the steps (a PyRadiomics parameter file) are resolved
        (the YAML's folder when loaded from a file); they are stored absolute.
        """
        name = f"The pipeline {source}" if source else "The pipeline"
        if not isinstance(doc, Mapping):
            raise MedviewError(f"{name} must be a mapping with 'medview_pipeline: 1' and 'steps', got "
                               f"{type(doc).__name__}")
        unknown = [k for k in doc if k not in ("medview_pipeline", "description", "steps")]
        if unknown:
            raise MedviewError(f"{name} has an unknown key {unknown[0]!r}; keys are medview_pipeline, "
                               "description, steps")
        version = doc.get("medview_pipeline")
        if version != PIPELINE_VERSION:
            raise MedviewError(f"{name} must start with 'medview_pipeline: {PIPELINE_VERSION}' (the schema "
                               f"version), got {version!r}")
        description = doc.get("description") or ""
        if not isinstance(description, str):
            raise MedviewError(f"{name}: 'description' must be text")
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise MedviewError(f"{name} needs a non-empty list of 'steps'")
        steps = []
        base = os.fspath(base_dir) if base_dir is not None else None
        for i, raw in enumerate(raw_steps):
            if not isinstance(raw, Mapping) or len(raw) != 1:
                raise MedviewError(f"{name}: step {i + 1} of {len(raw_steps)} must be a one-key mapping such as "
                                   f"'- filter: {{name: median}}', got {raw!r}")
            (key, value), = raw.items()
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise MedviewError(f"{name}: step {i + 1} of {len(raw_steps)} ({key}) must map to a mapping of "
                                   f"its parameters, got {value!r}")
            steps.append(_check_step(i, len(raw_steps), Step(str(key), plain(value)), base))
        return cls(steps, description, source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pipeline:
        """Read and validate a pipeline YAML file."""
        import yaml

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise MedviewError(f"No such pipeline file: {path}")
        try:
            with open(path, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise MedviewError(f"The pipeline {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        return cls.from_dict(doc, base_dir=os.path.dirname(os.path.abspath(path)), source=path)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"medview_pipeline": PIPELINE_VERSION}
        if self.description:
            doc["description"] = self.description
        doc["steps"] = [s.to_dict() for s in self.steps]
        return doc

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write the pipeline as YAML, atomically; returns the path."""
        import yaml

        from medview.io.atomic import atomic_write_text

        path = os.fspath(path)
        if not path.lower().endswith((".yaml", ".yml")):
            raise MedviewError(f"A pipeline file ends in .yaml or .yml: {path}")
        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def fingerprint(self) -> str:
        """A short hash of the steps (and of a PyRadiomics parameter file's content): results made by
        another pipeline are not taken as finished."""
        digest = hashlib.sha256(json.dumps([s.to_dict() for s in self.steps], sort_keys=True).encode())
        for s in self.steps:
            if s.name == "features" and isinstance(s.params.get("params"), str):
                with contextlib.suppress(OSError):
                    digest.update(Path(s.params["params"]).read_bytes())
        return digest.hexdigest()[:16]


# -- cohorts -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One case of a cohort: absolute paths of its image (file or DICOM folder/zip) and optional label map."""

    case_id: str
    image: str
    label: str | None = None
    target: str | None = None


def _stem(name: str) -> str:
    lowered = name.lower()
    for ext in (*_IMAGE_EXTENSIONS, ".zip", ".dcm"):
        if lowered.endswith(ext):
            return name[: -len(ext)]
    return name


def _is_image_file(name: str) -> bool:
    return name.lower().endswith(_IMAGE_EXTENSIONS)


def _is_label_name(name: str) -> bool:
    stem = _stem(name).lower()
    return stem in _LABEL_NAMES or stem.endswith(_LABEL_SUFFIXES)


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _problems(items: list[str], what: str) -> str:
    shown = "; ".join(items[:8])
    return f"{what}: {shown}" + (f" (and {len(items) - 8} more)" if len(items) > 8 else "")


@dataclass
class Cohort:
    """The cases to run, in order, and where they were listed."""

    cases: list[Case]
    source: str = ""

    @property
    def has_target(self) -> bool:
        return any(c.target is not None for c in self.cases)

    @classmethod
    def load(cls, path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> Cohort:
        """A CSV file (:meth:`from_csv`) or a folder of studies (:meth:`from_folder`, ``exclude`` passed on)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            return cls.from_folder(path, exclude=exclude)
        if not os.path.isfile(path):
            raise MedviewError(f"No such cohort file or folder: {path}")
        if not path.lower().endswith((".csv", ".tsv")):
            raise MedviewError(f"A cohort is a .csv file (case_id,image[,label][,target]) or a folder of studies, "
                               f"got {path}")
        return cls.from_csv(path)

    @classmethod
    def from_database(cls, **filters: Any) -> Cohort:
        """One case per study of the study database matching ``filters`` (those of
        :meth:`medview.io.studydb.StudyDatabase.list_studies`): its image is the study's largest series (by
        instances), opened from the index by its UID; the case id is ``<PatientID>_<StudyDate>`` (made safe
        for a folder name, a counter added when it repeats)."""
        from medview.io.studydb import StudyDatabase

        cases: list[Case] = []
        seen: dict[str, int] = {}
        with StudyDatabase() as db:
            studies = db.list_studies(**{k: v for k, v in filters.items() if v})
            for study in reversed(studies):  # oldest first: ids stay put as newer studies arrive
                series = [s for s in db.list_series(study["StudyInstanceUID"]) if s["NumberOfSeriesRelatedInstances"]]
                if not series:
                    continue
                image = max(series, key=lambda s: s["NumberOfSeriesRelatedInstances"])["SeriesInstanceUID"]
                name = f"{study['PatientID'] or 'noid'}_{study['StudyDate'] or 'nodate'}"
                base = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
                base = base.strip("-.") or "case"
                seen[base] = seen.get(base, 0) + 1
                cases.append(Case(base if seen[base] == 1 else f"{base}-{seen[base]}", image))
        if not cases:
            shown = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "none"
            raise MedviewError(f"No study in the study database matches the filters ({shown}); see medview db list")
        return cls(cases, "study database")

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Cohort:
        """Cases from a CSV with a header ``case_id,image[,label][,target]`` (other columns are ignored).

        Relative paths are relative to the CSV's folder.  Every problem (a missing column, a repeated or
        unusable case id, a missing file) is found before any case runs and reported together.
        """
        path = os.fspath(path)
        base = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise MedviewError(f"Cannot read the cohort {path}: {exc}") from None
        dialect = "excel-tab" if path.lower().endswith(".tsv") else "excel"
        rows = list(csv.reader(text.splitlines(), dialect=dialect))
        rows = [r for r in rows if any(cell.strip() for cell in r)]
        if not rows:
            raise MedviewError(f"The cohort {path} is empty; it needs a header case_id,image[,label][,target]")
        header = [h.strip().lower() for h in rows[0]]
        missing = [c for c in ("case_id", "image") if c not in header]
        if missing:
            raise MedviewError(f"The cohort {path} has no column {', '.join(missing)}; its header is "
                               f"{','.join(rows[0])} (expected case_id,image[,label][,target])")
        col = {name: header.index(name) for name in ("case_id", "image", "label", "target") if name in header}
        cases: list[Case] = []
        problems: list[str] = []
        seen: dict[str, int] = {}

        def cell(row: list[str], name: str) -> str | None:
            i = col.get(name)
            value = row[i].strip() if i is not None and i < len(row) else ""
            return value or None

        for line, row in enumerate(rows[1:], start=2):
            case_id, image = cell(row, "case_id"), cell(row, "image")
            if case_id is None or image is None:
                problems.append(f"line {line}: case_id and image are required")
                continue
            if not _CASE_ID.match(case_id):
                problems.append(f"line {line}: case id {case_id!r} must be letters, digits, '.', '_' or '-' "
                                "(it names the case's output folder)")
                continue
            if case_id in seen:
                problems.append(f"line {line}: case id {case_id!r} repeats line {seen[case_id]}")
                continue
            seen[case_id] = line
            image_path = os.path.normpath(os.path.join(base, image))
            label = cell(row, "label")
            label_path = os.path.normpath(os.path.join(base, label)) if label else None
            for p in (image_path, label_path):
                if p is not None and not os.path.exists(p):
                    problems.append(f"line {line} ({case_id}): no such file {p}")
            cases.append(Case(case_id, image_path, label_path, cell(row, "target")))
        if problems:
            raise MedviewError(_problems(problems, f"The cohort {path} has {len(problems)} problem(s)"))
        if not cases:
            raise MedviewError(f"The cohort {path} lists no cases")
        return cls(cases, path)

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], exclude: tuple[str, ...] = ()) -> Cohort:
        """Cases from a folder of studies.  The rule, entry by entry (sorted; hidden entries skipped):

        * a **subfolder** is one case named after it.  If it holds NIfTI/NRRD/MHA files, the image is the
          one named ``image.*`` or ``*_image.*`` (or the only non-label file) and the label map the file
          named ``label|labels|mask|seg|segmentation.*`` or ``*_label.*``/``*_labels``/``*_mask``/``*_seg``;
          otherwise the subfolder is read as a DICOM study (it must hold one series).
        * an **image file** (NIfTI/NRRD/MHA) or a **.zip** of DICOM is one case named after the file without
          its extension and without a trailing ``_image``; a file beside it named ``<case>_label.*`` (or
          ``_labels``, ``_mask``, ``_seg``) is its label map.  So ``lung1_image.nrrd`` + ``lung1_label.nrrd``
          make the case ``lung1``.
        * other files (CSV, text, pictures) are ignored, and so are the paths in ``exclude`` (the batch
          output folder, when it lies inside the cohort folder).  Targets need a CSV cohort.
        """
        root = Path(os.fspath(path))
        skip = {os.path.realpath(p) for p in exclude}
        entries = sorted(e for e in root.iterdir() if not e.name.startswith(".") and os.path.realpath(e) not in skip)
        files = {e.name: e for e in entries if e.is_file()}
        cases: list[Case] = []
        problems: list[str] = []
        for entry in entries:
            if entry.is_dir():
                case = _folder_case(entry, problems)
            elif (_is_image_file(entry.name) and not _is_label_name(entry.name)) or entry.suffix.lower() == ".zip":
                case_id = _stem(entry.name)
                case_id = case_id[: -len("_image")] if case_id.lower().endswith("_image") else case_id
                label = next((files[n] for n in files if _is_image_file(n) and _is_label_name(n)
                              and _stem(n).lower() in {f"{case_id.lower()}{s}" for s in _LABEL_SUFFIXES}), None)
                case = Case(case_id, str(entry.resolve()), str(label.resolve()) if label else None)
            else:
                continue
            if case is not None:
                if not _CASE_ID.match(case.case_id):
                    problems.append(f"{case.case_id!r} cannot be a case id (letters, digits, '.', '_', '-')")
                elif any(c.case_id == case.case_id for c in cases):
                    problems.append(f"two entries make the case {case.case_id!r}")
                else:
                    cases.append(case)
        if problems:
            raise MedviewError(_problems(problems, f"The cohort folder {root} has {len(problems)} problem(s)"))
        if not cases:
            if any(_looks_like_dicom(f) for f in list(files.values())[:50]):
                raise MedviewError(f"{root} looks like one DICOM study, not a folder of studies: give the folder "
                                   "that holds one subfolder per study")
            raise MedviewError(f"The cohort folder {root} holds no studies (subfolders, NIfTI/NRRD/MHA files or "
                               "DICOM zips)")
        return cls(cases, str(root))


def _folder_case(folder: Path, problems: list[str]) -> Case | None:
    images = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
                    and _is_image_file(f.name))
    if not images:
        if not any(f.is_file() for f in folder.rglob("*")):
            return None  # an empty folder is not a study
        return Case(folder.name, str(folder.resolve()))
    labels = [f for f in images if _is_label_name(f.name)]
    others = [f for f in images if not _is_label_name(f.name)]
    named = [f for f in others if _stem(f.name).lower() == "image" or _stem(f.name).lower().endswith("_image")]
    chosen = named if named else others
    if len(chosen) != 1:
        problems.append(f"{folder.name}: cannot tell the image among {', '.join(f.name for f in chosen) or 'none'} "
                        "(name it image.* or *_image.*)")
        return None
    if len(labels) > 1:
        problems.append(f"{folder.name}: several label maps ({', '.join(f.name for f in labels)})")
        return None
    return Case(folder.name, str(chosen[0].resolve()), str(labels[0].resolve()) if labels else None)


# -- running one case -------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """What :func:`run_case` did; also the content of ``case.json``."""

    case_id: str
    status: str  # "ok" or "error"
    error: str | None = None
    seconds: float = 0.0
    steps_done: int = 0
    steps_total: int = 0
    outputs: list[str] = field(default_factory=list)  # relative to the run's output folder
    features: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    target: str | None = None
    image: str = ""
    label: str | None = None
    pipeline: str = ""  # the pipeline's fingerprint
    pid: int | None = None  # the process that ran it (a Dask worker's, in a batch)

    def to_record(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "status": self.status, "error": self.error, "seconds": self.seconds,
                "steps_done": self.steps_done, "steps_total": self.steps_total, "outputs": list(self.outputs),
                "features": dict(self.features), "warnings": list(self.warnings), "target": self.target,
                "image": self.image, "label": self.label, "pipeline": self.pipeline,
                "pid": self.pid}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CaseResult:
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        return cls(**known)


def case_dir(out_dir: str | os.PathLike[str], case_id: str) -> Path:
    return Path(out_dir) / CASES_DIR / case_id


def read_case_record(out_dir: str | os.PathLike[str], case_id: str) -> dict[str, Any] | None:
    """The ``case.json`` of a case, or None when there is none (or it cannot be read)."""
    path = case_dir(out_dir, case_id) / CASE_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_case_record(out_dir: str | os.PathLike[str], result: CaseResult) -> Path:
    """Write ``case.json`` atomically (the finished marker)."""
    from medview.io.atomic import atomic_write_text

    folder = case_dir(out_dir, result.case_id)
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / CASE_FILE, json.dumps(result.to_record(), indent=1, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def is_case_done(out_dir: str | os.PathLike[str], case_id: str, fingerprint: str | None = None) -> bool:
    """True when the case finished ok (and, given ``fingerprint``, with the same pipeline)."""
    record = read_case_record(out_dir, case_id)
    return bool(record and record.get("status") == "ok"
                and (fingerprint is None or record.get("pipeline") == fingerprint))


@dataclass
class _CaseState:
    image: Volume
    labels: LabelMap | None
    features: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _write_exported(image: Volume | LabelMap, path: Path) -> None:
    from medview.io.writers import write_image

    write_image(image, str(path))  # atomic: temporary file, fsync, rename


def _write_label_table(labels: LabelMap, path: Path) -> None:
    from medview.io.atomic import atomic_write_text

    table = {str(e.value): {"name": e.name, "color": list(e.color)} for e in labels.labels}
    atomic_write_text(path.parent / f"{path.name.split('.')[0]}_labels.json", json.dumps(table, indent=1))


def _run_step(index: int, step: Step, state: _CaseState, pipeline: Pipeline, folder: Path, out_dir: Path,
              outputs: list[str], task: TaskContext | None) -> None:
    from medview.app import processing

    p = step.params
    if step.name == "load":
        return  # done before the loop (it only says which series)
    if step.name == "filter":
        before = state.image.geometry
        state.image = processing.run_filter(state.image, str(p["name"]), p.get("params") or {}, task=task)
        if state.labels is not None and not state.image.geometry.is_same_grid(before):
            from medview.app.label_maps import resample_label_map

            state.labels = resample_label_map(state.labels, state.image.geometry)  # a crop or resample
    elif step.name == "segment":
        state.labels = processing.run_segmentation(state.image, str(p["method"]), p.get("params") or {}, task=task)
    elif step.name == "refine":
        if state.labels is None:
            raise MedviewError("there is no label map to refine (give the cohort a label column, or segment first)")
        op = _refine_operation(str(p["operation"]))
        state.labels = processing.run_label_operation(state.labels, op.name, p.get("params") or {}, task=task)
    elif step.name == "infer":
        from medview.app.inference import infer_volume

        result = infer_volume(str(p["model"]), state.image, device=str(p.get("device", "auto")), task=task,
                              allow_modality_mismatch=bool(p.get("allow_modality_mismatch", False)))
        if isinstance(result, LabelMap):
            state.labels = result
        elif isinstance(result, Volume):
            state.image = result
        elif isinstance(result, dict):  # a classification: its probabilities become table columns
            for name, prob in (result.get("probabilities") or {}).items():
                state.features[f"{p['model']}_p_{name}"] = float(prob)
    elif step.name == "features":
        if state.labels is None:
            raise MedviewError("there is no label map to compute features in (give the cohort a label column, "
                               "or segment first)")
        from medview.app.features import compute_features

        label = p.get("label", 1)
        values = compute_features(state.image, state.labels, label=None if label is None else int(label),
                                  params=p.get("params"), task=task)
        several = sum(s.name == "features" for s in pipeline.steps) > 1
        prefix = f"step{index + 1}_" if several else ""
        state.features.update({f"{prefix}{k}": v for k, v in values.items()})
    elif step.name == "export":
        fmt = str(p.get("format", "nii.gz"))
        several = sum(s.name == "export" for s in pipeline.steps) > 1
        prefix = f"step{index + 1}_" if several else ""
        if p.get("labels", True) and state.labels is None:
            raise MedviewError("there is no label map to export (set labels: false, or segment first)")
        if p.get("image", True):
            path = folder / f"{prefix}image.{fmt}"
            _write_exported(state.image, path)
            outputs.append(path.relative_to(out_dir).as_posix())
        if p.get("labels", True):
            assert state.labels is not None
            path = folder / f"{prefix}labels.{fmt}"
            _write_exported(state.labels, path)
            _write_label_table(state.labels, path)
            outputs.append(path.relative_to(out_dir).as_posix())


def _error_text(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, MedviewError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:2000]


def run_case(pipeline: Pipeline, case: Case, out_dir: str | os.PathLike[str],
             task: TaskContext | None = None) -> CaseResult:
    """Run every step of ``pipeline`` on ``case``; write its outputs and, last, its ``case.json``.

    Never raises for a failing case (bad file, failing step): the error, with the step that failed, is
    recorded in the result and in ``case.json`` with status ``error``.  Only a cancel (``task``) or
    Ctrl-C propagates, leaving no ``case.json`` so the case runs again next time.
    """
    started = time.perf_counter()
    out = Path(os.path.abspath(os.fspath(out_dir)))
    folder = out / CASES_DIR / case.case_id
    folder.mkdir(parents=True, exist_ok=True)
    # an earlier case.json stays until the new one replaces it: it is "finished" only for the same pipeline and
    # status ok, and a case running twice at once (a worker thought lost) never leaves the case without one
    result = CaseResult(case.case_id, "ok", steps_total=len(pipeline.steps), target=case.target,
                        image=case.image, label=case.label, pipeline=pipeline.fingerprint(), pid=os.getpid())
    total = len(pipeline.steps)
    where = "loading the image"
    try:
        from medview.app.label_maps import label_map_warnings, open_label_map
        from medview.io.readers import open_image

        series = pipeline.steps[0].params.get("series") if pipeline.steps[0].name == "load" else None
        report(task, 0.0, f"{case.case_id}: loading", force=True)
        image = open_image(case.image, series=None if series is None else str(series))
        labels = None
        if case.label:
            where = "loading the label map"
            labels = open_label_map(case.label, reference=image)
        state = _CaseState(image, labels, warnings=[*image.warnings, *(label_map_warnings(labels) if labels else [])])
        for i, step in enumerate(pipeline.steps):
            where = f"step {i + 1} of {total} ({step.name})"
            check_cancel(task)
            report(task, (i + 1) / (total + 1), f"{case.case_id}: {step.name}")
            _run_step(i, step, state, pipeline, folder, out, result.outputs, task)
            result.steps_done = i + 1
        result.features = {k: _number(v) for k, v in state.features.items()}
        result.warnings = state.warnings
    except (CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # one case's failure is recorded, never raised: the cohort goes on
        result.status = "error"
        result.error = f"{where}: {_error_text(exc)}"
    result.seconds = time.perf_counter() - started
    write_case_record(out, result)
    report(task, 1.0, f"{case.case_id}: {result.status}", force=True)
    return result


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out
