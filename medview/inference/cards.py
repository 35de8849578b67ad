"""Model cards (``model.json``) and the model registry.

A model lives in a folder holding ``model.json`` (the card) and its weights.  The card says what the
model expects (modality, voxel spacing, patch size, intensity preprocessing, optionally ``intensity_range``:
the ``[low, high]`` values it was trained on, in the modality's units), what it outputs (label
table), where it came from (licence, training data, metrics) and how its weights are stored (TorchScript,
ONNX or a MONAI bundle) with their SHA-256 so a damaged or swapped file is refused.

Models are found in three places, first match wins for a name:

1. ``resources/models/*/model.json`` shipped with medview;
2. the user's models folder: ``$MEDVIEW_MODELS_DIR``, else ``models`` in medview's data folder (``$MEDVIEW_DATA_DIR``);
3. an explicit folder (or ``model.json``) path given by the user (``--model PATH``).

TotalSegmentator is listed when its package is installed (its weights are never downloaded here).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.labels import Label, default_color
from medview.core.resources import data_dir, resources_dir

CARD_FILE = "model.json"
TASKS = ("segmentation", "classification", "detection", "image-to-image")
WEIGHT_FORMATS = ("torchscript", "onnx", "monai_bundle")
NORMALIZATIONS = ("zscore", "minmax", "none")
OUTPUTS = ("logits", "probabilities")
ORIENTATIONS = ("LPS",)
REQUIRED = ("name", "version", "task", "modality", "spacing_mm", "orientation", "preprocessing", "patch_size",
            "labels", "license", "provenance", "weights")


@dataclass(frozen=True)
class Preprocessing:
    """Intensity preprocessing applied on the model's grid before inference."""

    normalize: str = "none"
    clip: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None


@dataclass(frozen=True)
class Weights:
    """Where the weights are and how to check them."""

    format: str
    path: Path
    sha256: str


@dataclass
class ModelCard:
    """A validated ``model.json``.

    ``spacing_mm`` is ``(x, y, z)`` mm; ``patch_size`` is ``(z, y, x)`` voxels on that spacing.  For a
    segmentation model, output channel 0 is background and channel ``i`` (1-based) is ``labels[i - 1]``.
    """

    name: str
    version: str
    task: str
    modality: str
    spacing_mm: tuple[float, float, float]
    orientation: str
    preprocessing: Preprocessing
    patch_size: tuple[int, int, int]
    labels: list[Label]
    license: str
    provenance: dict[str, Any]
    weights: Weights
    card_path: Path
    card_hash: str
    in_channels: int = 1
    output: str = "logits"
    largest_component: bool = False
    disclaimer: str = ""
    intensity_range: tuple[float, float] | None = None  # the values (units of the modality) it was trained on
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def folder(self) -> Path:
        return self.card_path.parent

    @property
    def num_classes(self) -> int:
        """Output channels expected from the network: background plus one per label (segmentation)."""
        return len(self.labels) + 1

    def label_table(self) -> list[Label]:
        """Fresh copies of the card's labels (a LabelMap may edit its own table)."""
        return [Label(e.value, e.name, e.color) for e in self.labels]

    def provenance_text(self) -> str:
        """One line naming the model exactly: name, version and card hash."""
        return f"model {self.name} {self.version} (card sha256 {self.card_hash[:12]})"

    def summary(self) -> dict[str, Any]:
        """What ``medview models show`` prints."""
        return {
            "name": self.name, "version": self.version, "task": self.task, "modality": self.modality,
            "spacing_mm": list(self.spacing_mm), "orientation": self.orientation,
            "patch_size": list(self.patch_size), "in_channels": self.in_channels, "output": self.output,
            "preprocessing": {"normalize": self.preprocessing.normalize,
                              "clip": list(self.preprocessing.clip) if self.preprocessing.clip else None,
                              "mean": self.preprocessing.mean, "std": self.preprocessing.std},
            "labels": [{"value": e.value, "name": e.name, "color": list(e.color)} for e in self.labels],
            "intensity_range": list(self.intensity_range) if self.intensity_range else None,
            "largest_component": self.largest_component, "license": self.license,
            "provenance": self.provenance,
            "weights": {"format": self.weights.format, "file": str(self.weights.path), "sha256": self.weights.sha256},
            "card": str(self.card_path), "card_hash": self.card_hash, "disclaimer": self.disclaimer,
        }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Validator:
    """Checks one card's fields, every message naming the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, field_name: str, problem: str) -> MedviewError:
        return MedviewError(f"Model card {self.path}: field '{field_name}' {problem}", path=str(self.path))

    def text(self, data: dict, key: str, choices: tuple[str, ...] | None = None, prefix: str = "") -> str:
        value = data.get(key)
        name = prefix + key
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def numbers(self, data: dict, key: str, n: int, *, integer: bool = False, positive: bool = True,
                prefix: str = "") -> tuple:
        value = data.get(key)
        name = prefix + key
        kind = "whole numbers" if integer else "numbers"
        if not isinstance(value, list) or len(value) != n or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.fail(name, f"must be a list of {n} {kind}, got {value!r}")
        if integer and not all(float(v).is_integer() for v in value):
            raise self.fail(name, f"must be a list of {n} {kind}, got {value!r}")
        if positive and not all(v > 0 for v in value):
            raise self.fail(name, f"must be positive, got {value!r}")
        return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)

    def mapping(self, data: dict, key: str, prefix: str = "") -> dict:
        value = data.get(key)
        if not isinstance(value, dict):
            raise self.fail(prefix + key, f"must be an object, got {value!r}")
        return value

    def preprocessing(self, data: dict) -> Preprocessing:
        pre = self.mapping(data, "preprocessing")
        normalize = self.text(pre, "normalize", NORMALIZATIONS, prefix="preprocessing.") \
            if "normalize" in pre else "none"
        clip = None
        if pre.get("clip") is not None:
            clip = self.numbers(pre, "clip", 2, positive=False, prefix="preprocessing.")
            if clip[0] >= clip[1]:
                raise self.fail("preprocessing.clip", f"must be [low, high] with low < high, got {list(clip)}")
        stats = {}
        for key in ("mean", "std"):
            value = pre.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise self.fail(f"preprocessing.{key}", f"must be a number, got {value!r}")
            stats[key] = None if value is None else float(value)
        if stats["std"] is not None and stats["std"] <= 0:
            raise self.fail("preprocessing.std", f"must be positive, got {stats['std']}")
        return Preprocessing(normalize, clip, stats["mean"], stats["std"])  # type: ignore[arg-type]

    def labels(self, data: dict) -> list[Label]:
        entries = data.get("labels")
        if not isinstance(entries, list):
            raise self.fail("labels", f"must be a list of {{value, name, color}}, got {entries!r}")
        out: list[Label] = []
        for i, entry in enumerate(entries):
            where = f"labels[{i}]"
            if not isinstance(entry, dict):
                raise self.fail(where, f"must be an object, got {entry!r}")
            value = entry.get("value")
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
                raise self.fail(f"{where}.value", f"must be a whole number 1..65535, got {value!r}")
            name = self.text(entry, "name", prefix=f"{where}.")
            color = entry.get("color", list(default_color(value)))
            if (not isinstance(color, list) or len(color) != 3
                    or not all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
                raise self.fail(f"{where}.color", f"must be [r, g, b] with 0..255 each, got {color!r}")
            out.append(Label(value, name, tuple(color)))  # type: ignore[arg-type]
        values = [e.value for e in out]
        if len(set(values)) != len(values):
            raise self.fail("labels", f"has repeated values {values}")
        return out

    def weights(self, data: dict, verify: bool) -> Weights:
        w = self.mapping(data, "weights")
        fmt = self.text(w, "format", WEIGHT_FORMATS, prefix="weights.")
        file_name = self.text(w, "file", prefix="weights.")
        sha = w.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower()):
            raise self.fail("weights.sha256", f"must be 64 hexadecimal digits, got {sha!r}")
        path = (self.path.parent / file_name).resolve()
        if not path.exists():
            raise self.fail("weights.file", f"names {file_name}, which is not in {self.path.parent}")
        weights = Weights(fmt, path, sha.lower())
        if verify:
            actual = sha256_of(weights_file(weights))
            if actual != weights.sha256:
                raise self.fail("weights.sha256", f"does not match {file_name} (file has {actual}): the weights "
                                "are damaged or were replaced; reinstall the model")
        return weights


def weights_file(weights: Weights) -> Path:
    """The file whose SHA-256 the card gives: the weights file, or a MONAI bundle's model file."""
    if weights.format != "monai_bundle" or weights.path.is_file():
        return weights.path
    for candidate in ("models/model.ts", "models/model.pt"):
        if (weights.path / candidate).is_file():
            return weights.path / candidate
    raise MedviewError(f"MONAI bundle {weights.path} has neither models/model.ts nor models/model.pt",
                       path=str(weights.path))


def load_card(path: str | os.PathLike[str], *, verify_weights: bool = True) -> ModelCard:
    """Read and validate a model card (a ``model.json`` or the folder holding one).

    ``verify_weights`` checks the weights' SHA-256 against the card (reads the whole file).  Raises
    :class:`MedviewError` naming the file and the field at fault.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise InputNotFoundError(f"No model card at {path}: a model folder must hold {CARD_FILE}", path=str(path))
    raw_bytes = path.read_bytes()
    try:
        data = json.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedviewError(f"Model card {path} is not valid JSON: {exc}", path=str(path)) from None
    check = _Validator(path)
    if not isinstance(data, dict):
        raise MedviewError(f"Model card {path} must hold a JSON object", path=str(path))
    for key in REQUIRED:
        if key not in data:
            raise check.fail(key, "is missing")
    in_channels = data.get("in_channels", 1)
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise check.fail("in_channels", f"must be a positive whole number, got {in_channels!r}")
    postprocess = data.get("postprocess", {})
    if not isinstance(postprocess, dict):
        raise check.fail("postprocess", f"must be an object, got {postprocess!r}")
    largest = postprocess.get("largest_component", False)
    if not isinstance(largest, bool):
        raise check.fail("postprocess.largest_component", f"must be true or false, got {largest!r}")
    disclaimer = data.get("disclaimer", "")
    if not isinstance(disclaimer, str):
        raise check.fail("disclaimer", f"must be a string, got {disclaimer!r}")
    provenance = check.mapping(data, "provenance")
    intensity_range = None
    if data.get("intensity_range") is not None:
        intensity_range = check.numbers(data, "intensity_range", 2, positive=False)
        if intensity_range[0] >= intensity_range[1]:
            raise check.fail("intensity_range", f"must be [low, high] with low < high, got {list(intensity_range)}")
    task = check.text(data, "task", TASKS)
    labels = check.labels(data)
    if task == "segmentation" and not labels:
        raise check.fail("labels", "must name at least one label for a segmentation model")
    return ModelCard(
        name=check.text(data, "name"), version=check.text(data, "version"), task=task,
        modality=check.text(data, "modality"), spacing_mm=check.numbers(data, "spacing_mm", 3),  # type: ignore[arg-type]
        orientation=check.text(data, "orientation", ORIENTATIONS), preprocessing=check.preprocessing(data),
        patch_size=check.numbers(data, "patch_size", 3, integer=True),  # type: ignore[arg-type]
        labels=labels, license=check.text(data, "license"), provenance=provenance,
        weights=check.weights(data, verify_weights), card_path=path.resolve(),
        card_hash=hashlib.sha256(raw_bytes).hexdigest(), in_channels=in_channels,
        output=check.text(data, "output", OUTPUTS) if "output" in data else "logits",
        largest_component=largest, disclaimer=disclaimer, intensity_range=intensity_range, raw=data,
    )


# -- registry ---------------------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One row of the model list: a card, or a model medview knows of but cannot run itself yet."""

    name: str
    source: str  # "resources", "user", "path" or "totalsegmentator"
    card: ModelCard | None = None
    status: str = "ready"  # "ready", "invalid", "weights missing", "external"
    message: str = ""

    def summary(self) -> dict[str, Any]:
        row: dict[str, Any] = {"name": self.name, "source": self.source, "status": self.status}
        if self.card is not None:
            row.update(version=self.card.version, task=self.card.task, modality=self.card.modality,
                       folder=str(self.card.folder), license=self.card.license)
        if self.message:
            row["message"] = self.message
        return row


def user_models_dir() -> Path:
    """``$MEDVIEW_MODELS_DIR``, else ``models`` in medview's data folder (``$MEDVIEW_DATA_DIR``)."""
    configured = os.environ.get("MEDVIEW_MODELS_DIR")
    if configured:
        return Path(configured)
    return data_dir() / "models"


def model_dirs() -> list[tuple[str, Path]]:
    """The folders searched for models, in order, with their source names."""
    return [("resources", resources_dir() / "models"), ("user", user_models_dir())]


def _scan(source: str, folder: Path) -> list[ModelEntry]:
    entries = []
    if not folder.is_dir():
        return entries
    for card_path in sorted(folder.glob(f"*/{CARD_FILE}")):
        try:
            card = load_card(card_path, verify_weights=False)
            entries.append(ModelEntry(card.name, source, card))
        except MedviewError as exc:
            entries.append(ModelEntry(card_path.parent.name, source, status="invalid", message=str(exc)))
    return entries


def _totalsegmentator_entry() -> ModelEntry | None:
    """TotalSegmentator, if its package is installed; its weights are never downloaded by medview."""
    import importlib.util

    if importlib.util.find_spec("totalsegmentator") is None:
        return None
    home = Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))
    weights = home / "nnunet" / "results"
    if weights.is_dir() and any(weights.iterdir()):
        return ModelEntry("totalsegmentator", "totalsegmentator", status="external",
                          message=f"Installed with weights in {weights}; run it with the TotalSegmentator command "
                                  "(medview does not drive it yet)")
    return ModelEntry("totalsegmentator", "totalsegmentator", status="weights missing",
                      message=f"The TotalSegmentator package is installed but its weights are not in {weights}. "
                              "Install them yourself with `totalseg_download_weights -t total` (needs the "
                              "network) or set TOTALSEG_HOME_DIR; medview never downloads weights")


def list_models() -> list[ModelEntry]:
    """Every model medview can see: shipped, the user's, and TotalSegmentator if installed."""
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for source, folder in model_dirs():
        for entry in _scan(source, folder):
            if entry.name not in seen:
                seen.add(entry.name)
                entries.append(entry)
    extra = _totalsegmentator_entry()
    if extra is not None and extra.name not in seen:
        entries.append(extra)
    return entries


def find_model(name_or_path: str | os.PathLike[str], *, verify_weights: bool = True) -> ModelCard:
    """The card of a model by name (registry) or by folder / ``model.json`` path.

    Raises :class:`MedviewError` naming the known models when nothing matches.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.exists() or os.sep in text or text.endswith(CARD_FILE):
        return load_card(path, verify_weights=verify_weights)
    entries = list_models()
    for entry in entries:
        if entry.name == text:
            if entry.card is not None:
                return load_card(entry.card.card_path, verify_weights=verify_weights)
            raise MedviewError(f"Model {text} cannot be run by medview: {entry.message}")
    known = ", ".join(e.name for e in entries) or "none installed"
    folders = ", ".join(str(f) for _, f in model_dirs())
    raise InputNotFoundError(f"No model named {text!r}; known models: {known}. Models are looked for in {folders} "
                             "(set MEDVIEW_MODELS_DIR), or pass a model folder path")
