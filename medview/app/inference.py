"""Model commands shared by the GUI and the CLI: list and show models, run one on a file, estimate its time.

Validation comes first (the model's card and weights, the output path) so a mistake is reported before
minutes are spent reading a study or running a network.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.app import replay
from medview.core.errors import MedviewError, WriteError
from medview.core.labels import LabelMap
from medview.core.modality import check_modality
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume
from medview.inference import backends, cards, pipeline
from medview.io.readers import open_image
from medview.io.writers import check_output_path, write_image


def list_models() -> list[dict[str, Any]]:
    """One row per model medview can see (name, version, task, modality, folder, status)."""
    return [entry.summary() for entry in cards.list_models()]


def show_model(name: str) -> dict[str, Any]:
    """Everything the card says about a model (by name or folder path), weights checked against its SHA-256."""
    card = cards.find_model(name, verify_weights=True)
    return {**card.summary(), "weights_verified": True}


def label_table_path(output: str | os.PathLike[str]) -> Path:
    """``<stem>_labels.json`` beside a label file: the table :func:`medview.app.label_maps.open_label_map`
    reads back (names and colours), here with the model's provenance too."""
    path = Path(output)
    return path.parent / f"{path.name.split('.')[0]}_labels.json"


def _write_label_table(labels: LabelMap, output: str, provenance: dict[str, Any]) -> str:
    table: dict[str, Any] = {str(e.value): {"name": e.name, "color": list(e.color)} for e in labels.labels}
    table["model"] = provenance
    path = label_table_path(output)
    from medview.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(table, indent=2))  # a failure is a WriteError naming the file
    return str(path)


def input_problems(model: str, volume: Volume) -> dict[str, str | None]:
    """What running ``model`` on ``volume`` would need the user's word for, before any weights load (the AI
    panel asks about it): ``{"modality": sentence or None, "intensity": sentence or None, "task": the card's}``."""
    card = cards.find_model(model, verify_weights=False)
    modality, intensity = pipeline.input_problems(card, volume)
    return {"modality": modality, "intensity": intensity, "task": card.task}


def check_model_input(card: cards.ModelCard, volume: Volume, allow_modality_mismatch: bool = False) -> list[str]:
    """Refuse a study of another (or an unknown) modality than the card's unless ``allow_modality_mismatch``
    (:class:`~medview.core.modality.ModalityMismatchError`, nothing run); the warnings to report otherwise."""
    modality = check_modality(card.modality, volume.modality, f"The model {card.name}",
                              allow_mismatch=allow_modality_mismatch)
    return [w for w in (modality, pipeline.intensity_warning(card, volume)) if w]


@dataclass
class InferenceResult:
    """What ``medview infer`` reports: files written, the model's provenance and the time taken."""

    output: str
    result: Any  # LabelMap, Volume, class probabilities (dict) or DetectionSet
    model: dict[str, Any]
    seconds: float
    label_table: str | None = None
    warnings: list[str] = field(default_factory=list)


def infer_file(model: str, input: str, output: str, device: str = "auto", task: TaskContext | None = None,
               series: str | None = None, batch_size: int | None = None,
               memory_budget_mb: float | None = None, allow_modality_mismatch: bool = False) -> InferenceResult:
    """Run ``model`` (name or folder) on the image at ``input`` and write the result to ``output``.

    A segmentation is written as a label image with ``<stem>_labels.json`` beside it (label names,
    colours and the model's name, version and card hash); an image-to-image model writes a float32 image.
    An image of another modality than the card's (or of unknown modality) is refused unless
    ``allow_modality_mismatch``; that and values far outside the card's intensity range are in ``warnings``.
    """
    card = cards.find_model(model, verify_weights=True)
    backends.device_for(card, device)
    if card.task in ("classification", "detection"):
        return _json_result_file(card, input, output, device, task, series, allow_modality_mismatch)
    check_output_path(output)
    volume = open_image(input, series=series, task=task)
    warnings = check_model_input(card, volume, allow_modality_mismatch)
    start = time.perf_counter()
    result = pipeline.run_model(card, volume, device=device, task=task, batch_size=batch_size,
                                memory_budget_mb=memory_budget_mb)
    seconds = time.perf_counter() - start
    report(task, 1.0, f"Writing {os.path.basename(output)}", force=True)
    write_image(result, output)
    provenance = pipeline.provenance(card)
    table = _write_label_table(result, output, provenance) if isinstance(result, LabelMap) else None
    return InferenceResult(output, result, provenance, seconds, table, [*volume.warnings, *warnings])


def _json_result_file(card, input: str, output: str, device: str, task: TaskContext | None,
                      series: str | None, allow_modality_mismatch: bool = False) -> InferenceResult:
    """Classification (class probabilities) and detection models (medview-detections, LPS mm) write JSON."""
    from medview.io.atomic import atomic_write_text

    if not output.lower().endswith(".json"):
        raise MedviewError(f"{card.name} is a {card.task} model: its output is a .json file, got "
                           f"{os.path.basename(output)}")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise WriteError(f"The output folder {parent} does not exist")
    volume = open_image(input, series=series, task=task)
    warnings = check_model_input(card, volume, allow_modality_mismatch)
    start = time.perf_counter()
    if card.task == "classification":
        result = pipeline.classify(card, volume, device=device, task=task)
        document = {"input": os.path.abspath(input), **result}
    else:
        result = pipeline.detect(card, volume, device=device, task=task)
        document = result.to_dict()
    seconds = time.perf_counter() - start
    atomic_write_text(output, json.dumps(document, indent=2))
    return InferenceResult(output, result, pipeline.provenance(card), seconds, None, [*volume.warnings, *warnings])


def _check_device(device: str) -> None:
    if device not in backends.DEVICES:
        raise MedviewError(f"Device must be one of {', '.join(backends.DEVICES)}, got {device!r}")


def _estimate(card: cards.ModelCard, volume: Volume, device: str) -> dict[str, Any]:
    """Windows x the time per window (recorded by an earlier run here: a file read; else one window timed)
    plus what this process still pays once (MONAI's import)."""
    grid = pipeline.model_grid(volume.geometry, card.spacing_mm)
    windows = pipeline.count_windows(grid.shape, card.patch_size)
    per_window, basis = pipeline.seconds_per_window(card, device)
    startup = pipeline.startup_seconds()
    return {"model": card.name, "version": card.version, "seconds": per_window * windows + startup,
            "windows": windows, "seconds_per_window": per_window, "startup_seconds": startup, "basis": basis,
            "model_grid_shape": list(grid.shape), "spacing_mm": list(card.spacing_mm)}


def estimate_time(model: str, input: str, device: str = "auto", series: str | None = None,
                  task: TaskContext | None = None) -> dict[str, Any]:
    """How long ``model`` would take on ``input`` here (see :func:`estimate_volume`)."""
    card = cards.find_model(model, verify_weights=True)
    _check_device(device)
    volume = open_image(input, series=series, task=task)
    return _estimate(card, volume, device)


def model_card(name: str) -> dict[str, Any]:
    """A model's card as a dict (weights checked), for the AI panel's details."""
    return cards.find_model(name, verify_weights=True).summary()


def estimate_volume(model: str, volume: Volume, device: str = "auto", task: TaskContext | None = None
                    ) -> dict[str, Any]:
    """Estimated run time of ``model`` on an open study: the number of windows times the time per window
    that the last run of this model here took (a file read, no network loaded), or, before any run here,
    one window of the network timed; plus MONAI's import when this process has not done it yet.
    ``basis`` says which."""
    card = cards.find_model(model, verify_weights=True)
    _check_device(device)
    return _estimate(card, volume, device)


def infer_volume(model: str, volume: Volume, device: str = "auto", task: TaskContext | None = None,
                 allow_modality_mismatch: bool = False) -> LabelMap | Volume:
    """Run ``model`` on an open study (the AI panel's job): a LabelMap or, for image-to-image, a Volume.

    A study of another modality than the card's (or of unknown modality) is refused
    (:class:`~medview.core.modality.ModalityMismatchError`) unless ``allow_modality_mismatch``.
    """
    card = cards.find_model(model, verify_weights=True)
    backends.device_for(card, device)
    check_model_input(card, volume, allow_modality_mismatch)
    if card.task == "classification":
        return pipeline.classify(card, volume, device=device, task=task)
    if card.task == "detection":
        return pipeline.detect(card, volume, device=device, task=task)
    result = pipeline.run_model(card, volume, device=device, task=task)
    step = replay.infer_step(model, device, allow_modality_mismatch)
    if isinstance(result, LabelMap):
        result.provenance["step"] = step
    else:
        result.metadata.extra["replay_step"] = step
    return result


def cuda_available() -> bool:
    """True when torch sees a CUDA device (imports torch)."""
    return backends.cuda_available()
