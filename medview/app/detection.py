"""Detection commands shared by the GUI, the CLI and batch pipelines.

``detect_volume`` runs a detector from :data:`medview.algorithms.detect.DETECTORS` on an open volume with
validated parameters; ``detect_file`` reads an image, optionally a mask, and writes the detections as
JSON (LPS mm, see :mod:`medview.core.detections`).  A detection model will plug in as another entry of
the catalogue and return the same :class:`~medview.core.detections.DetectionSet`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from medview.algorithms.detect import get_detector, log_layer, serial_layers
from medview.core.detections import DetectionSet
from medview.core.errors import MedviewError, WriteError
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume
from medview.io.dicom import parallel
from medview.io.readers import open_image

__all__ = ["detect_file", "detect_volume"]


def _parameters(method: str, diameter: Sequence[float] | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    raw = dict(params or {})
    if diameter is not None:
        values = list(diameter)
        if len(values) != 2:
            raise MedviewError(f"The diameter range needs two values (smallest, largest) in mm, got {values}")
        raw.setdefault("min_diameter", values[0])
        raw.setdefault("max_diameter", values[1])
    return get_detector(method).parse(raw)


def _layer_to_file(image_path: str, sigma: np.ndarray, out_path: str) -> str:
    """In a worker process: one scale-space layer of the image saved at ``image_path``, saved to ``out_path``."""
    np.save(out_path, log_layer(np.load(image_path, mmap_mode="r"), sigma))
    return out_path


def _wait(future: Future, task: TaskContext | None) -> Any:
    while True:
        try:
            return future.result(timeout=0.1)
        except TimeoutError:
            if task is not None:
                task.check()


def pool_layers(image: np.ndarray, sigmas: np.ndarray, task: TaskContext | None = None) -> Iterator[np.ndarray]:
    """The LoG scale-space layers of ``image``, computed in the worker processes, as many at once as there
    are workers, and handed over in order through files in a temporary folder (the image is written once,
    each layer once; a layer of a chest CT at 1 mm is 80 MB; at most all of them wait on disk).  scipy's
    filters hold the GIL, so in this process (a GUI worker thread) they would take turns with the event
    loop and use one core.  Without a
    usable pool (one CPU, inside a Dask worker, ``MEDVIEW_WORKERS=1``) the layers are computed here."""
    if not parallel.pool_available():
        yield from serial_layers(image, sigmas, task)
        return
    with tempfile.TemporaryDirectory(prefix="medview-scale-space-") as folder:
        source = os.path.join(folder, "image.npy")
        np.save(source, np.ascontiguousarray(image, dtype=np.float32))
        try:
            pool = parallel.process_pool()
            # largest scale first (its kernels are the longest): the last jobs are the short ones, so no
            # worker waits long for another at the end; the layers are still handed over in order
            futures: list[Future | None] = [None] * len(sigmas)
            for i in sorted(range(len(sigmas)), key=lambda j: -float(sigmas[j][0])):
                futures[i] = pool.submit(_layer_to_file, source, sigmas[i], os.path.join(folder, f"layer{i}.npy"))
        except parallel.PoolFailure as exc:
            parallel.disable_pool(exc)
            yield from serial_layers(image, sigmas, task)
            return
        done = 0
        try:
            for future in futures:
                try:
                    path = _wait(future, task)
                except parallel.PoolFailure as exc:  # a worker died: the rest here
                    parallel.disable_pool(exc)
                    break
                layer = np.load(path)
                os.remove(path)
                done += 1
                yield layer
        finally:
            for future in futures:
                future.cancel()
        if done < len(sigmas):
            yield from serial_layers(image, sigmas[done:], task)


def detect_volume(volume: Volume, method: str = "blob", diameter: Sequence[float] | None = (4.0, 30.0),
                  params: Mapping[str, Any] | None = None, mask: np.ndarray | LabelMap | None = None,
                  task: TaskContext | None = None) -> DetectionSet:
    """Run the detector ``method`` on ``volume``.

    Parameters
    ----------
    volume
        The open image (HU for CT).
    method
        A name in :data:`~medview.algorithms.detect.DETECTORS` (``"blob"``).
    diameter
        ``(smallest, largest)`` diameter in mm; ``min_diameter`` / ``max_diameter`` in ``params`` win.
    params
        Further parameters (strings or values), validated by the detector's parameter specs.
    mask
        Optional region (boolean array or label map on the volume's grid) to search.
    task
        Progress and cancellation.

    Returns
    -------
    DetectionSet
        Strongest first; ``params`` records every parameter used.
    """
    detector = get_detector(method)
    parsed = _parameters(method, diameter, params)
    if volume.is_color:
        raise MedviewError(f"The {detector.name} detector works on grey-scale images; this one is colour")
    extra = {"layers": pool_layers} if detector.name == "blob" else {}
    result = detector.function(volume, task=task, mask=mask, **parsed, **extra)
    if not result.source:
        result.source = volume.metadata.series_uid or volume.metadata.series_description
    return result


def _check_json_output(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.is_dir():
        raise WriteError(f"{out} is a folder; give the detections file's name, e.g. {out / 'detections.json'}")
    if not out.parent.resolve().is_dir():
        raise WriteError(f"The output folder {out.parent} does not exist", path=str(out))
    if out.suffix.lower() != ".json":
        raise WriteError(f"Detections are written as JSON; name the output file *.json, got {out.name}")
    return out


def detect_file(input_path: str | os.PathLike[str], output_json: str | os.PathLike[str], method: str = "blob",
                diameter: Sequence[float] | None = (4.0, 30.0), params: Mapping[str, Any] | None = None,
                mask_path: str | os.PathLike[str] | None = None, series: str | None = None,
                task: TaskContext | None = None) -> DetectionSet:
    """``medview detect``: read an image (and a mask label map), detect, write the JSON; returns the set.

    Parameters and the output path are checked before anything is read, so a typo costs no load.  A mask
    file is read onto the image's grid (resampled with a warning if it was saved on another); every
    non-zero voxel is searched.
    """
    parsed = _parameters(method, diameter, params)
    out = _check_json_output(output_json)
    volume = open_image(os.fspath(input_path), series=series, task=task)
    mask = None
    if mask_path is not None:
        from medview.app.label_maps import open_label_map

        mask = open_label_map(mask_path, reference=volume, task=task).array != 0
    result = detect_volume(volume, method, None, parsed, mask=mask, task=task)
    result.source = os.fspath(input_path) if not series else f"{os.fspath(input_path)} (series {series})"
    report(task, 1.0, f"Writing {out.name}", force=True)
    result.to_json(out)
    return result
