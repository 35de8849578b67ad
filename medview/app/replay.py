"""The replay log: what was applied to the open study, as pipeline steps, following undo and redo.

Every result the workstation applies (a filter, a segmentation, a label refinement, a model, a feature
computation) is recorded here with its validated parameters in the pipeline schema of
:mod:`medview.app.pipeline` (``{"filter": {"name": "median", "params": {...}}}``), so the steps tuned on one
case can be exported as a pipeline file and run unchanged on a cohort (``medview batch``).

The log follows the undo history: a step that changed the image or the label map is recorded in the
:class:`~medview.app.history.History` with its log entry as the tag, so an undone step is left out of the
export and is dropped for good once a new change ends the redo branch (exactly as the history does).
Hand edits (brush, eraser, fill) are recorded as *manual* entries: they cannot be replayed on other
cases, so an export that contains them says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.core.errors import MedviewError

PIPELINE_VERSION = 1
STEP_KINDS = ("load", "filter", "segment", "refine", "infer", "features", "export")


def plain(value: Any) -> Any:
    """``value`` as YAML/JSON-friendly built-ins (tuples to lists, numpy scalars to numbers)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def filter_step(name: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"filter": {"name": name, "params": plain(params)}}


def segment_step(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"segment": {"method": method, "params": plain(params)}}


def refine_step(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"refine": {"operation": operation, "params": plain(params)}}


def infer_step(model: str, device: str = "auto", allow_modality_mismatch: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model, "device": device}
    if allow_modality_mismatch:  # the user confirmed a model of another modality: a replay needs the same word
        params["allow_modality_mismatch"] = True
    return {"infer": params}


def features_step(label: int, params: Any = None) -> dict[str, Any]:
    return {"features": {"label": int(label), "params": plain(params)}}


def step_kind(step: dict[str, Any]) -> str:
    if not isinstance(step, dict) or len(step) != 1:
        raise MedviewError(f"A pipeline step is a one-key mapping like {{'filter': {{...}}}}, got {step!r}")
    kind = next(iter(step))
    if kind not in STEP_KINDS:
        raise MedviewError(f"Unknown pipeline step {kind!r}; steps are {', '.join(STEP_KINDS)}")
    return kind


@dataclass(eq=False)  # identity matters: an entry is the history tag of the change it made
class Entry:
    description: str
    step: dict[str, Any] | None  # None: a manual edit, which cannot be replayed


@dataclass
class StepLog:
    """The steps applied to the current study, oldest first."""

    entries: list[Entry] = field(default_factory=list)

    def clear(self) -> None:
        self.entries.clear()

    def prune(self, history: Any) -> None:
        """Forget entries whose change is undone: call before a new change ends the redo branch."""
        self.entries = [e for e in self.entries if not history.is_undone(e)]

    def begin(self, step: dict[str, Any] | None, description: str, history: Any, ends_redo: bool = True) -> Entry:
        """A new entry (pass it as the history tag of the change it makes, if any).

        ``ends_redo``: the entry comes with a new change, which ends the history's redo branch; a step
        that changes no data (features) leaves undone entries where they are, as redo may bring them back."""
        if step is not None:
            step_kind(step)
        if ends_redo:
            self.prune(history)
        entry = Entry(description, step)
        self.entries.append(entry)
        return entry

    def redone(self, tag: Any) -> None:
        """A redone step is applied again *now*: it moves after the steps recorded while it was undone
        (features computed in between saw the data without it, and a replay must too)."""
        if tag in self.entries:
            self.entries.remove(tag)
            self.entries.append(tag)

    def applied(self, history: Any) -> list[Entry]:
        """Entries in effect now (undone ones left out)."""
        return [e for e in self.entries if not history.is_undone(e)]

    def manual_edits(self, history: Any) -> list[str]:
        return [e.description for e in self.applied(history) if e.step is None]

    def pipeline(self, history: Any, description: str = "") -> dict[str, Any]:
        """The pipeline document (``medview_pipeline: 1``) of the steps in effect, manual edits left out."""
        steps = [e.step for e in self.applied(history) if e.step is not None]
        if not steps:
            raise MedviewError("Nothing to export: no filter, segmentation, refinement, model or features "
                               "has been applied to this study")
        doc: dict[str, Any] = {"medview_pipeline": PIPELINE_VERSION}
        manual = self.manual_edits(history)
        text = description
        if manual:
            text = (f"{description} " if description else "") + (
                f"Recorded with {len(manual)} manual edit(s) that a pipeline cannot replay: {'; '.join(manual[:5])}")
        if text:
            doc["description"] = text
        doc["steps"] = steps
        return doc

    def save(self, path: str | os.PathLike[str], history: Any, description: str = "") -> list[str]:
        """Write the pipeline as YAML (atomically); returns warnings (manual edits left out)."""
        import yaml

        from medview.io.atomic import atomic_path

        doc = self.pipeline(history, description)
        path = os.fspath(path)
        if not path.lower().endswith((".yaml", ".yml")):
            raise MedviewError(f"A pipeline file ends in .yaml or .yml: {path}")
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        manual = self.manual_edits(history)
        return [f"{len(manual)} manual edit(s) are not in the pipeline (they cannot be replayed on other cases)"
                ] if manual else []


def step_of(result: Any) -> dict[str, Any] | None:
    """The pipeline step that made ``result`` (a Volume or LabelMap from an app command), if recorded."""
    if result is None:
        return None
    provenance = getattr(result, "provenance", None)
    if isinstance(provenance, dict) and provenance.get("step"):
        return provenance["step"]
    metadata = getattr(result, "metadata", None)
    extra = getattr(metadata, "extra", None) or {}
    return extra.get("replay_step")
