"""Run a model on a study: resample to the model's grid, sliding-window inference, back to the study's grid.

Steps of :func:`run_model`:

1. **Model grid.**  The card says which voxel spacing the model was trained on and that it sees
   patient-aligned (LPS) axes.  The study is resampled (SimpleITK, linear) onto an axis-aligned LPS grid
   of that spacing covering the study's whole physical extent, so an oblique or anisotropic study looks
   to the network like its training data.  Outside the study the grid takes the study's minimum value.
2. **Preprocessing** from the card: clip, then z-score (card mean/std, else the study's) or min-max.
3. **Sliding window** (MONAI ``sliding_window_inference``): patches of the card's ``patch_size`` with 25 %
   overlap, blended with Gaussian weights so patch borders leave no seams.  Segmentation logits are
   turned into probabilities (softmax, or sigmoid for a single channel) before blending.  Windows are
   batched to fit a memory budget; before every batch the task's cancel token is checked, and progress is
   reported after it, so a cancel takes effect within one batch (one window with ``batch_size=1``).
4. **Labels**: argmax (uint8; uint16 beyond 255 labels), mapped to the card's label values; optional
   largest connected component per label.  Probabilities (float32, never float64) only on request.
5. **Back to the study**: nearest neighbour for labels, linear for images and probabilities, onto the
   study's exact :class:`~medview.core.geometry.Geometry`; the input volume is never modified.

The result is a :class:`~medview.core.labels.LabelMap` with the card's label table, ``source`` naming the
model, version and card hash, and a ``provenance`` dict attribute (an image-to-image model gives a
:class:`~medview.core.volume.Volume` whose ``metadata.extra["provenance"]`` holds the same).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from medview.core.detections import Detection, DetectionSet, parabola_peak_offset
from medview.core.errors import MedviewError, ResourceLimitError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.modality import modality_mismatch
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, subsample
from medview.inference import throughput
from medview.inference.backends import Backend, TorchBackend, load_backend
from medview.inference.cards import ModelCard, find_model

OVERLAP = 0.25
DEFAULT_CPU_BUDGET_MB = 1024
MAX_BATCH = 16
# Network activations per window, as a multiple of the window's input + output size (a U-Net keeps many
# feature maps alive); deliberately generous so the chosen batch fits.
ACTIVATION_FACTOR = 32
MAX_MODEL_GRID_VOXELS = 400_000_000  # the output buffers alone would need several GB beyond this

PROGRESS_STEPS = 20  # progress reports per sliding-window run on the CPU, at least
_SPAN_RESAMPLE = (0.0, 0.05)
_SPAN_WINDOWS = (0.05, 0.9)


# -- geometry ---------------------------------------------------------------------------------------------
def model_grid(geometry: Geometry, spacing_mm: Sequence[float]) -> Geometry:
    """The axis-aligned LPS grid of ``spacing_mm`` (x, y, z) covering ``geometry``'s physical extent.

    The box is that of the study's voxel edges (all eight corners, so an oblique study is covered
    entirely); the new grid is centred on it and overshoots it by less than one new voxel per axis.
    """
    n = np.array(geometry.size_xyz, dtype=float)
    corners = np.array([[i, j, k] for i in (-0.5, n[0] - 0.5) for j in (-0.5, n[1] - 0.5)
                        for k in (-0.5, n[2] - 0.5)])
    world = geometry.index_to_world(corners)
    low, high = world.min(axis=0), world.max(axis=0)
    spacing = np.array(spacing_mm, dtype=float)
    size = np.maximum(np.ceil((high - low) / spacing - 1e-6), 1).astype(int)
    origin = (low + high) / 2 - spacing * (size - 1) / 2
    return Geometry((int(size[2]), int(size[1]), int(size[0])), tuple(spacing), tuple(origin))


def _sitk_image(array: np.ndarray, geometry: Geometry):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 4)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def resample_array(array: np.ndarray, source: Geometry, target: Geometry, *, nearest: bool,
                   default: float = 0.0) -> np.ndarray:
    """``array`` on ``source`` resampled onto ``target`` (SimpleITK; linear in float32 or nearest)."""
    import SimpleITK as sitk

    if not nearest and array.dtype != np.float32:
        array = array.astype(np.float32)
    image = _sitk_image(array, source)
    if nearest:
        pixel = image.GetPixelID()
        interpolator = sitk.sitkNearestNeighbor
    else:
        pixel = sitk.sitkVectorFloat32 if array.ndim == 4 else sitk.sitkFloat32
        interpolator = sitk.sitkLinear
    out = sitk.Resample(image, list(target.size_xyz), sitk.Transform(), interpolator, target.origin,
                        target.spacing, target.direction, float(default), pixel)
    return sitk.GetArrayFromImage(out)


# -- windows and batches ------------------------------------------------------------------------------------
def count_windows(shape: Sequence[int], patch_size: Sequence[int], overlap: float = OVERLAP) -> int:
    """How many windows MONAI's ``sliding_window_inference`` visits on a ``shape`` (z, y, x) grid.

    Same rule as MONAI: the image is padded up to the patch, steps are ``int(patch * (1 - overlap))``,
    and the last window on each axis touches the far edge.
    """
    total = 1
    for size, roi in zip(shape, patch_size, strict=True):
        size = max(int(size), int(roi))
        step = int(roi) if roi == size else max(int(roi * (1 - overlap)), 1)
        count = next(d for d in range(math.ceil(size / step) + 1) if d * step + roi >= size) + 1
        total *= count
    return total


def _output_channels(card: ModelCard) -> int:
    if card.task == "detection":
        return len(card.labels)
    return card.num_classes if card.task == "segmentation" else 1


def choose_batch_size(card: ModelCard, device: str, memory_budget_mb: float | None = None) -> int:
    """Windows per network call so that a batch stays within ``memory_budget_mb``.

    Default budget: 1 GB on the CPU; half of the free GPU memory on CUDA.
    """
    voxels = int(np.prod(card.patch_size))
    per_window = voxels * 4 * (card.in_channels + 2 * _output_channels(card)) * ACTIVATION_FACTOR
    if memory_budget_mb is None:
        if device == "cuda":
            import torch

            budget = torch.cuda.mem_get_info()[0] * 0.5
        else:
            budget = DEFAULT_CPU_BUDGET_MB * 2**20
    else:
        if memory_budget_mb <= 0:
            raise MedviewError(f"Memory budget must be positive, got {memory_budget_mb} MB")
        budget = memory_budget_mb * 2**20
    return int(min(max(budget // per_window, 1), MAX_BATCH))


# -- preprocessing -------------------------------------------------------------------------------------------
def _channels_first(array: np.ndarray, card: ModelCard) -> np.ndarray:
    if array.ndim == 4:
        if card.in_channels != 3:
            raise MedviewError(f"Model {card.name} takes {card.in_channels} channel(s) of grey values; this is a "
                               "colour image")
        return np.moveaxis(array[..., :3], -1, 0)
    if card.in_channels != 1:
        raise MedviewError(f"Model {card.name} needs {card.in_channels} input channels; this image has one")
    return array[None]


def preprocess(array: np.ndarray, card: ModelCard, reference: np.ndarray) -> np.ndarray:
    """Clip and normalise ``array`` (float32) as the card says; statistics not on the card come from
    ``reference`` (the study's own voxels, so padding outside the study does not skew them)."""
    pre = card.preprocessing
    out = array.astype(np.float32, copy=True)
    sample = subsample(reference).astype(np.float32)
    if pre.clip is not None:
        np.clip(out, pre.clip[0], pre.clip[1], out=out)
        sample = np.clip(sample, pre.clip[0], pre.clip[1])
    if pre.normalize == "zscore":
        mean = pre.mean if pre.mean is not None else float(sample.mean())
        std = pre.std if pre.std is not None else float(sample.std())
        out -= np.float32(mean)
        out /= np.float32(std if std > 0 else 1.0)
    elif pre.normalize == "minmax":
        low, high = (pre.clip if pre.clip is not None else (float(sample.min()), float(sample.max())))
        out -= np.float32(low)
        out /= np.float32(high - low if high > low else 1.0)
    return out


# -- does the study fit the card? -------------------------------------------------------------------------
#: values count as far outside the card's intensity range beyond this fraction of its width on either side ...
INTENSITY_MARGIN = 0.1
#: ... and the study is warned of when more than this fraction of its voxels lie there
INTENSITY_OUTSIDE_FRACTION = 0.25
_CHECK_VOXELS = 200_000  # a regular subsample: a few ms, so the GUI can check before it asks


def intensity_warning(card: ModelCard, volume: Volume) -> str | None:
    """A sentence when much of the study lies far outside the values the card says the model was trained on.

    Far outside: beyond ``intensity_range`` widened by :data:`INTENSITY_MARGIN` of its width on each side; a
    warning when more than :data:`INTENSITY_OUTSIDE_FRACTION` of the voxels (a regular subsample) lie there.
    (CT padding outside the scan's circle, often -2048 or -3024 HU, is usually below that fraction.)
    None when the card gives no range or the study fits it.
    """
    if card.intensity_range is None:
        return None
    low, high = card.intensity_range
    margin = INTENSITY_MARGIN * (high - low)
    sample = subsample(volume.array, _CHECK_VOXELS)
    if sample.size == 0:
        return None
    outside = float(np.count_nonzero((sample < low - margin) | (sample > high + margin))) / sample.size
    if outside <= INTENSITY_OUTSIDE_FRACTION:
        return None
    p1, p99 = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    units = f" {volume.metadata.units}" if volume.metadata.units else ""
    return (f"{outside:.0%} of the image's values lie far outside the range {card.name} was trained on "
            f"({low:g} to {high:g}; this image: {p1:g} to {p99:g}{units}, 1st to 99th percentile), so its result "
            "may be wrong")


def input_problems(card: ModelCard, volume: Volume) -> tuple[str | None, str | None]:
    """``(modality mismatch, intensity warning)`` of running ``card``'s model on ``volume``; None where it fits.

    A modality the file does not state ("" or "unknown", as for NRRD and NIfTI) is a mismatch.
    """
    return (modality_mismatch(card.modality, volume.modality, f"The model {card.name}"),
            intensity_warning(card, volume))


# -- the run --------------------------------------------------------------------------------------------------
def _card(model: ModelCard | str) -> ModelCard:
    return model if isinstance(model, ModelCard) else find_model(model)


def provenance(card: ModelCard) -> dict[str, Any]:
    """What is recorded with every result: which model, exactly."""
    return {"model": card.name, "version": card.version, "card_hash": card.card_hash,
            "weights_sha256": card.weights.sha256, "license": card.license, "disclaimer": card.disclaimer}


def _probability_fn(card: ModelCard, channels: int):
    """Turns the network's output into what is blended: probabilities for segmentation."""
    import torch

    if card.task not in ("segmentation", "detection") or card.output == "probabilities":
        return None
    if channels == 1 or card.task == "detection":  # a detection model: one independent heatmap per class
        return torch.sigmoid
    return lambda t: torch.softmax(t, dim=1)


def _check_channels(card: ModelCard, channels: int) -> None:
    if card.task == "detection" and channels != len(card.labels):
        raise MedviewError(f"Model {card.name} returned {channels} channels but its card lists {len(card.labels)} "
                           "object class(es), one heatmap each")
    if card.task == "segmentation":
        expected = card.num_classes
        if channels != expected and not (channels == 1 and len(card.labels) == 1):
            raise MedviewError(f"Model {card.name} returned {channels} channels but its card lists "
                               f"{len(card.labels)} label(s), so {expected} channels (background first) were "
                               "expected")


def _import_monai() -> float:
    """Import MONAI's sliding window; the seconds it took (0 when it was already imported)."""
    if "monai.inferers" in sys.modules:
        return 0.0
    start = time.perf_counter()
    import monai.inferers  # noqa: F401 - MONAI imports all its submodules: seconds in a fresh process

    return time.perf_counter() - start


def _remaining(elapsed: float, done: int, total: int) -> str:
    if done >= total or elapsed <= 0:
        return ""
    left = elapsed / done * (total - done)
    return f", ~{max(left, 1.0):.0f} s left"


def _sliding_window(inputs: np.ndarray, card: ModelCard, backend: Backend, batch_size: int,
                    task: TaskContext | None) -> np.ndarray:
    """MONAI's blended sliding window; progress after every window (or group of windows, at least
    :data:`PROGRESS_STEPS` times) on the CPU, after every batch on CUDA, with the time left estimated from
    the windows done so far."""
    import torch
    from monai.inferers import sliding_window_inference

    total = count_windows(inputs.shape[1:], card.patch_size)
    state = {"windows": 0, "post": None, "checked": False, "start": time.perf_counter()}
    # Windows go to the GPU only for torch on CUDA (ONNX Runtime takes numpy); blending stays on the CPU.
    sw_device = "cuda" if isinstance(backend, TorchBackend) and backend.device == "cuda" else "cpu"
    # MONAI hands the predictor whole batches; a study of few windows (the sample CT: 8) was one batch, so
    # progress sat at its start for the whole run.  On the CPU batches are split so that progress (and a
    # cancel) comes at least PROGRESS_STEPS times a run, after every window when there are fewer.
    step = batch_size if sw_device == "cuda" else max(1, min(batch_size, total // PROGRESS_STEPS))
    lo, hi = _SPAN_WINDOWS

    def predict(patches: Any) -> Any:
        check_cancel(task)  # before each call: a cancel costs at most the window (batch) in flight
        out = backend.predict_tensor(patches)
        if not state["checked"]:
            _check_channels(card, int(out.shape[1]))
            state["post"] = _probability_fn(card, int(out.shape[1]))
            state["checked"] = True
        if state["post"] is not None:
            out = state["post"](out)
        state["windows"] += int(patches.shape[0])
        done = min(state["windows"], total)
        left = _remaining(time.perf_counter() - state["start"], done, total)
        report(task, lo + (hi - lo) * done / total, f"Running {card.name}: window {done} of {total}{left}")
        return out

    def predictor(patches: Any) -> Any:
        if int(patches.shape[0]) <= step:
            return predict(patches)
        return torch.cat([predict(patches[i:i + step]) for i in range(0, int(patches.shape[0]), step)])

    tensor = torch.from_numpy(inputs[None])
    with torch.inference_mode():
        result = sliding_window_inference(tensor, list(card.patch_size), batch_size, predictor, overlap=OVERLAP,
                                          mode="gaussian", padding_mode="replicate", sw_device=sw_device,
                                          device="cpu")
    check_cancel(task)
    return result[0].float().numpy()


def _largest_components(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    import SimpleITK as sitk

    out = labels.copy()
    for value in values:
        mask = labels == value
        if not mask.any():
            continue
        components = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))),
                                           sortByObjectSize=True)
        keep = sitk.GetArrayFromImage(components) == 1
        out[mask & ~keep] = 0
    return out


def _to_labels(scores: np.ndarray, card: ModelCard) -> np.ndarray:
    values = [e.value for e in card.labels]
    dtype = np.uint8 if max(values, default=0) < 256 else np.uint16
    if scores.shape[0] == 1:
        index = (scores[0] >= 0.5).astype(np.uint8)
    else:
        index = np.argmax(scores, axis=0).astype(np.uint16 if scores.shape[0] > 256 else np.uint8)
    lut = np.array([0, *values], dtype=dtype)
    return lut[index]


def _scores_on_model_grid(card: ModelCard, volume: Volume, device: str, task: TaskContext | None,
                          batch_size: int | None, memory_budget_mb: float | None, backend: Backend | None,
                          stats: dict[str, Any] | None = None) -> tuple[np.ndarray, Geometry]:
    """Steps 1-3 of :func:`run_model`: the network's blended output on the model grid, and that grid.

    ``stats`` (when given) receives the requested device, the number of windows and MONAI's import time, for
    :func:`_record_throughput`."""
    check_cancel(task)
    grid = model_grid(volume.geometry, card.spacing_mm)
    if int(np.prod(grid.shape)) * _output_channels(card) > MAX_MODEL_GRID_VOXELS:
        raise ResourceLimitError(f"At {card.spacing_mm} mm this study becomes {grid.shape} voxels (z, y, x) for "
                                 f"{card.name}: too large to run in memory; crop the study first")
    backend = backend or load_backend(card, device)
    batch = batch_size or choose_batch_size(card, backend.device, memory_budget_mb)
    if batch < 1:
        raise MedviewError(f"Batch size must be at least 1, got {batch}")
    report(task, _SPAN_RESAMPLE[0], f"Resampling to {card.name}'s grid", force=True)
    channels = _channels_first(volume.array, card)
    low = float(np.min(volume.array))
    moved = np.stack([resample_array(c, volume.geometry, grid, nearest=False, default=low) for c in channels])
    check_cancel(task)
    inputs = preprocess(moved, card, volume.array)
    del moved
    report(task, _SPAN_RESAMPLE[1], f"Running {card.name}", force=True)
    import_s = _import_monai()
    if stats is not None:
        stats.update(device=device, windows=count_windows(inputs.shape[1:], card.patch_size),
                     import_s=import_s)
    scores = _sliding_window(inputs, card, backend, batch, task)
    return scores, grid


def _record_throughput(card: ModelCard, stats: dict[str, Any], started: float) -> None:
    """Store this run's time per window (without MONAI's import) for the next estimate here."""
    if "windows" in stats:
        seconds = time.perf_counter() - started - stats["import_s"]
        throughput.record(card.card_hash, stats["device"], stats["windows"], seconds,
                          stats["import_s"] or None)


def run_model(model: ModelCard | str, volume: Volume, device: str = "auto", task: TaskContext | None = None,
              batch_size: int | None = None, memory_budget_mb: float | None = None,
              probabilities: bool = False, backend: Backend | None = None) -> LabelMap | Volume:
    """Run a segmentation or image-to-image model on ``volume`` (see the module notes for each step).

    Parameters
    ----------
    model
        A :class:`ModelCard`, or a model name / folder path for :func:`find_model` (weights verified).
    device
        ``'auto'``, ``'cpu'`` or ``'cuda'`` (an error if CUDA is asked for and not there).
    batch_size
        Windows per network call; default chosen by :func:`choose_batch_size` for ``memory_budget_mb``.
    probabilities
        Also give the per-label probabilities (float32 Volumes on the study's grid) as the label map's
        ``probabilities`` attribute, a dict label value -> Volume.

    Returns
    -------
    LabelMap on ``volume.geometry`` (segmentation) or Volume (image-to-image).  Raises
    :class:`~medview.core.errors.CancelledError` when cancelled; ``volume`` is left unchanged either way.
    """
    card = _card(model)
    if card.task not in ("segmentation", "image-to-image"):
        raise MedviewError(f"Model {card.name} is a {card.task} model; run_model runs segmentation and "
                           "image-to-image models (classification: classify, detection: detect)")
    started, stats = time.perf_counter(), {}
    scores, grid = _scores_on_model_grid(card, volume, device, task, batch_size, memory_budget_mb, backend, stats)
    report(task, 0.92, "Resampling the result onto the study", force=True)
    info = provenance(card)
    if card.task == "image-to-image":
        image = np.stack([resample_array(c, grid, volume.geometry, nearest=False) for c in scores])
        array = image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1)
        metadata = replace(volume.metadata, warnings=list(volume.metadata.warnings),
                           extra={**volume.metadata.extra, "provenance": info},
                           series_description=f"{volume.metadata.series_description} ({card.name})".strip())
        out = Volume(array.astype(np.float32, copy=False), volume.geometry, metadata)
        _record_throughput(card, stats, started)
        report(task, 1.0, "Done", force=True)
        return out
    labels = _to_labels(scores, card)
    if card.largest_component:
        labels = _largest_components(labels, [e.value for e in card.labels])
    check_cancel(task)
    array = resample_array(labels, grid, volume.geometry, nearest=True)
    result = LabelMap(array, volume.geometry, labels=card.label_table(), source=card.provenance_text())
    result.provenance = info  # type: ignore[attr-defined]
    result.warnings = []  # type: ignore[attr-defined]
    if probabilities:
        result.probabilities = _probabilities(scores, card, grid, volume)  # type: ignore[attr-defined]
    _record_throughput(card, stats, started)
    report(task, 1.0, "Done", force=True)
    return result


DETECTION_DEFAULTS = {"threshold": 0.5, "min_distance_mm": 5.0, "max_detections": 100, "diameter_mm": None}


def detection_settings(card: ModelCard, **overrides: Any) -> dict[str, Any]:
    """The card's ``detection`` block (peak threshold, minimum distance between peaks in mm, how many at
    most, an optional fixed diameter), defaults filled in and checked; ``overrides`` that are not None win."""
    raw = card.raw.get("detection") or {}
    if not isinstance(raw, dict):
        raise MedviewError(f"{card.card_path}: 'detection' must be a mapping")
    unknown = sorted(set(raw) - set(DETECTION_DEFAULTS))
    if unknown:
        raise MedviewError(f"{card.card_path}: unknown detection setting(s) {', '.join(unknown)}; "
                           f"known: {', '.join(DETECTION_DEFAULTS)}")
    settings = {**DETECTION_DEFAULTS, **raw, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        settings["threshold"] = float(settings["threshold"])
        settings["min_distance_mm"] = float(settings["min_distance_mm"])
        settings["max_detections"] = int(settings["max_detections"])
        if settings["diameter_mm"] is not None:
            settings["diameter_mm"] = float(settings["diameter_mm"])
    except (TypeError, ValueError) as exc:
        raise MedviewError(f"{card.name}: bad detection setting ({exc})") from None
    if not 0.0 <= settings["threshold"] <= 1.0 or settings["min_distance_mm"] < 0 or settings["max_detections"] < 1:
        raise MedviewError(f"{card.name}: detection threshold must lie in 0..1, min_distance_mm >= 0 and "
                           "max_detections >= 1")
    return settings


def _refined_peak(heat: np.ndarray, peak: tuple[int, int, int]) -> np.ndarray:
    """Sub-voxel peak position (x, y, z index): along each axis, the vertex of the parabola through the
    peak voxel and its two neighbours (kept within half a voxel; the voxel itself at a border)."""
    zyx = np.array(peak, dtype=float)
    for axis in range(3):
        p = int(peak[axis])
        if p == 0 or p == heat.shape[axis] - 1:
            continue
        at = list(peak)
        values = []
        for q in (p - 1, p, p + 1):
            at[axis] = q
            values.append(float(heat[tuple(at)]))
        zyx[axis] += parabola_peak_offset(*values)
    return zyx[::-1]


def detect(model: ModelCard | str, volume: Volume, device: str = "auto", task: TaskContext | None = None,
           batch_size: int | None = None, memory_budget_mb: float | None = None, backend: Backend | None = None,
           threshold: float | None = None) -> DetectionSet:
    """Run a detection model: the same resampling, normalisation and blended sliding window as
    :func:`run_model`, giving one heatmap per object class (sigmoid of the logits, unless the card says
    ``output: probabilities``).  Each local maximum above the card's threshold, at least
    ``min_distance_mm`` from a stronger one, is a detection: its centre is the peak voxel of the model grid
    refined to sub-voxel precision by a parabola along each axis, mapped to LPS mm, its score the peak value.  Returns a
    :class:`~medview.core.detections.DetectionSet` (the classical blob detector's type), strongest first."""
    from skimage.feature import peak_local_max

    card = _card(model)
    if card.task != "detection":
        raise MedviewError(f"Model {card.name} is a {card.task} model, not a detection model")
    settings = detection_settings(card, threshold=threshold)
    started, stats = time.perf_counter(), {}
    scores, grid = _scores_on_model_grid(card, volume, device, task, batch_size, memory_budget_mb, backend, stats)
    report(task, 0.92, "Finding peaks", force=True)
    spacing_zyx = np.array(grid.spacing[::-1], dtype=float)
    min_distance = max(1, round(settings["min_distance_mm"] / float(spacing_zyx.min())))
    found: list[Detection] = []
    radius = settings["diameter_mm"] / 2.0 if settings["diameter_mm"] else None
    for entry, heat in zip(card.labels, scores, strict=True):
        peaks = peak_local_max(heat, min_distance=min_distance, threshold_abs=settings["threshold"],
                               exclude_border=False, num_peaks=settings["max_detections"])
        for z, y, x in peaks:
            centre = grid.index_to_world(_refined_peak(heat, (z, y, x)))
            box = None
            if radius is not None:
                box = (*(centre - radius), *(centre + radius))
            found.append(Detection(tuple(float(c) for c in centre), settings["diameter_mm"],
                                   float(heat[z, y, x]), entry.name, box))
        check_cancel(task)
    found.sort(key=lambda d: -d.score)
    result = DetectionSet(found[: settings["max_detections"]],
                          source=volume.metadata.series_uid or volume.metadata.series_description,
                          method=f"{card.name} {card.version}",
                          params={**settings, "card_hash": card.card_hash})
    _record_throughput(card, stats, started)
    report(task, 1.0, "Done", force=True)
    return result


def classify(model: ModelCard | str, volume: Volume, device: str = "auto", task: TaskContext | None = None,
             backend: Backend | None = None) -> dict[str, Any]:
    """Run a classification model: the study on the card's LPS grid, centre-cropped or padded to the card's
    patch, one forward pass, class probabilities (softmax of logits).

    Returns ``{"model", "version", "probabilities": {class name: p}, "label": most probable class,
    "provenance"}``; the study is not changed.
    """
    card = _card(model)
    if card.task != "classification":
        raise MedviewError(f"Model {card.name} is a {card.task} model, not a classification model")
    check_cancel(task)
    grid = model_grid(volume.geometry, card.spacing_mm)
    backend = backend or load_backend(card, device)
    report(task, 0.1, f"Resampling to {card.name}'s grid", force=True)
    channels = _channels_first(volume.array, card)
    low = float(np.min(volume.array))
    moved = np.stack([resample_array(c, volume.geometry, grid, nearest=False, default=low) for c in channels])
    inputs = preprocess(moved, card, volume.array)
    fill = float(inputs.min()) if inputs.size else 0.0
    patch = np.full((inputs.shape[0], *card.patch_size), fill, dtype=np.float32)
    src, dst = [], []
    for n, p in zip(inputs.shape[1:], card.patch_size, strict=True):
        take = min(n, p)
        s0, d0 = (n - take) // 2, (p - take) // 2
        src.append(slice(s0, s0 + take))
        dst.append(slice(d0, d0 + take))
    patch[(slice(None), *dst)] = inputs[(slice(None), *src)]
    check_cancel(task)
    report(task, 0.6, f"Running {card.name}", force=True)
    logits = backend.scores(patch[None])[0].astype(np.float64)
    if logits.size != len(card.labels):
        raise MedviewError(f"Model {card.name} gave {logits.size} class scores but its card names "
                           f"{len(card.labels)} classes")
    if card.output == "probabilities":
        probs = logits
    else:
        e = np.exp(logits - logits.max())
        probs = e / e.sum()
    names = [e.name for e in card.labels]
    report(task, 1.0, "Done", force=True)
    return {"model": card.name, "version": card.version,
            "probabilities": {n: float(p) for n, p in zip(names, probs, strict=True)},
            "label": names[int(np.argmax(probs))], "provenance": provenance(card)}


def _probabilities(scores: np.ndarray, card: ModelCard, grid: Geometry, volume: Volume) -> dict[int, Volume]:
    from medview.core.volume import VolumeMetadata

    out = {}
    for i, entry in enumerate(card.labels):
        channel = scores[0] if scores.shape[0] == 1 else scores[i + 1]
        array = resample_array(channel.astype(np.float32, copy=False), grid, volume.geometry, nearest=False)
        out[entry.value] = Volume(array.astype(np.float32, copy=False), volume.geometry,
                                  VolumeMetadata(series_description=f"P({entry.name}) from {card.name}",
                                                 extra={"provenance": provenance(card)}))
    return out


def time_one_window(card: ModelCard, backend: Backend) -> float:
    """Seconds for one window on this machine: one call, timed (the first call of a TorchScript model
    carries its one-time optimisation, which the run pays too)."""
    window = np.zeros((1, card.in_channels, *card.patch_size), dtype=np.float32)
    start = time.perf_counter()
    backend.predict(window)
    return max(time.perf_counter() - start, 1e-6)


def seconds_per_window(card: ModelCard, device: str = "auto", backend: Backend | None = None
                       ) -> tuple[float, str]:
    """``(seconds, basis)``: a whole run's time per window here as recorded by an earlier run
    (:mod:`~medview.inference.throughput`: costs a file read), else one window of the network timed now
    (loads the model; the network alone, so an underestimate of the first run)."""
    entry = throughput.lookup(card.card_hash, device)
    if entry is not None:
        return float(entry["seconds_per_window"]), "measured by an earlier run here"
    backend = backend or load_backend(card, device)
    return time_one_window(card, backend), "one window timed (no run here yet)"


def startup_seconds() -> float:
    """What a run in this process still pays once: MONAI's import (as last measured here), else 0."""
    return 0.0 if "monai.inferers" in sys.modules else throughput.import_seconds()


def estimate_seconds(model: ModelCard | str, volume: Volume, device: str = "auto",
                     backend: Backend | None = None) -> float:
    """Run time, without the one-time :func:`startup_seconds`: the number of windows the study needs
    times :func:`seconds_per_window`."""
    card = _card(model)
    grid = model_grid(volume.geometry, card.spacing_mm)
    return seconds_per_window(card, device, backend)[0] * count_windows(grid.shape, card.patch_size)
