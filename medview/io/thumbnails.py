"""Thumbnails of scanned series: the middle slice, windowed, at its physical aspect ratio.

Only the middle slice is read: for DICOM, :func:`~medview.io.dicom.load.load_series` on a copy of
the series that holds just the middle record (so rescale, bit fixing and MONOCHROME1 inversion are
exactly those of a full load); for NIfTI/NRRD/MHA, SimpleITK's streaming extract of one slice.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np

from medview.core.errors import CancelledError, CorruptFileError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, VolumeMetadata
from medview.io.dicom.load import load_series
from medview.io.dicom.scan import SeriesInfo
from medview.io.readers import FileImageInfo, _itk_reason

log = logging.getLogger(__name__)
ThumbnailCallback = Callable[[np.ndarray | str, int], None]


def thumbnail(info: SeriesInfo | FileImageInfo, size: int = 96, task: TaskContext | None = None) -> np.ndarray:
    """The middle slice of a scanned series as a small 8-bit image.

    Parameters
    ----------
    info
        A series from :func:`medview.io.readers.scan`.
    size
        Length in pixels of the longest side; the other side follows the physical (mm) aspect.
    task
        Cancellation only: no progress is reported for a single slice.

    Returns
    -------
    numpy.ndarray
        ``uint8`` of shape ``(h, w)`` (grey, bright = dense, windowed with the file's first window
        preset or the slice's 1st-99th percentile) or ``(h, w, 3)`` for colour images.
    """
    check_cancel(task)
    quiet = TaskContext(token=task.token) if task is not None else None  # cancel, but no progress noise
    slice_volume = _middle_dicom(info, quiet) if isinstance(info, SeriesInfo) else _middle_itk(info)
    check_cancel(task)
    image = _display_values(slice_volume)
    sx, sy = slice_volume.geometry.spacing[:2]
    return _resample(image, _output_shape(image.shape[0], image.shape[1], sx, sy, size))


def thumbnails(series: Sequence[SeriesInfo | FileImageInfo], size: int = 96,
               on_thumbnail: ThumbnailCallback | None = None,
               task: TaskContext | None = None,
               make: Callable[..., np.ndarray] | None = None) -> list[np.ndarray | str]:
    """Thumbnails of several series, one at a time, each handed to ``on_thumbnail(image, index)``.

    A series that cannot be read gives its error message (a ``str``) instead of an image, so that one
    broken file does not stop the others.  ``make(info, size, task)`` makes one (default
    :func:`thumbnail`; the GUI passes one that runs it in a worker process).
    """
    make = make or thumbnail
    results: list[np.ndarray | str] = []
    for i, info in enumerate(series):
        check_cancel(task)
        result: np.ndarray | str
        try:
            result = make(info, size, task)
        except CancelledError:
            raise
        except MedviewError as exc:
            result = str(exc)
        except Exception as exc:  # a decoder bug must not stop the other thumbnails
            log.exception("thumbnail of %s failed", info.uid)
            result = f"Unexpected error ({type(exc).__name__}): {exc}"
        if on_thumbnail is not None:
            on_thumbnail(result, i)
        results.append(result)
        report(task, (i + 1) / len(series), f"Thumbnail {i + 1} of {len(series)}")
    return results


def middle_slice_series(info: SeriesInfo) -> SeriesInfo:
    """A copy of ``info`` holding only the present slice nearest the middle, on its own one-slice grid
    (what a thumbnail reads; small to send to a worker process, where the full list of slices is not)."""
    middle = info.n_slices // 2
    z = min((i for i, rec in enumerate(info.slots) if rec is not None), key=lambda i: (abs(i - middle), i))
    g = info.geometry
    origin = g.index_to_world([0, 0, z])
    return dataclasses.replace(
        info, slots=[info.slots[z]], warnings=list(info.warnings),
        geometry=Geometry((1, g.shape[1], g.shape[2]), g.spacing, tuple(origin), g.direction))


def _middle_dicom(info: SeriesInfo, task: TaskContext | None) -> Volume:
    """Load only the present slice nearest the middle, through the normal loader."""
    return load_series(middle_slice_series(info), task=task, parallel=False)


def _middle_itk(info: FileImageInfo) -> Volume:
    """Read only the middle slice of a NIfTI/NRRD/MHA file (first volume of a 4D file)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(info.path)
    try:
        reader.ReadImageInformation()
        dim = reader.GetDimension()
        if dim >= 3:
            full = list(reader.GetSize())
            index = [0] * dim
            extract = [full[0], full[1]] + [0] * (dim - 2)  # size 0 collapses the axis
            index[2] = full[2] // 2
            reader.SetExtractIndex(index)
            reader.SetExtractSize(extract)
        image = reader.Execute()
    except RuntimeError as exc:
        raise CorruptFileError(f"Cannot read {info.path}: {_itk_reason(exc)}") from None
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 3 and array.shape[-1] == 4:
        array = array[..., :3]  # drop alpha
    g = info.geometry
    geometry = Geometry((1, array.shape[0], array.shape[1]), g.spacing, g.origin, g.direction)
    meta = VolumeMetadata(source=info.path, photometric="RGB" if array.ndim == 3 else "MONOCHROME2",
                          series_description=os.path.basename(info.path))
    return Volume(np.ascontiguousarray(array)[None], geometry, meta)


def _display_values(volume: Volume) -> np.ndarray:
    """Grey: 0..255 float through the default window; colour: 0..255 float per channel."""
    data = volume.array[0]
    if volume.is_color:
        data = data[..., :3]
        top = 255.0 if data.dtype == np.uint8 else float(max(int(data.max()), 255))
        return data.astype(np.float32) * np.float32(255.0 / top)
    window = volume.default_window()  # the file's first preset, else the 1st-99th percentile
    low, width = window.low, max(window.width, 1e-6)
    out = (data.astype(np.float32) - np.float32(low)) * np.float32(255.0 / width)
    return np.clip(out, 0.0, 255.0, out=out)


def _output_shape(rows: int, cols: int, sx: float, sy: float, size: int) -> tuple[int, int]:
    """(h, w) with the longest physical side mapped to ``size`` pixels."""
    width_mm, height_mm = cols * sx, rows * sy
    longest = max(width_mm, height_mm)
    return max(1, round(size * height_mm / longest)), max(1, round(size * width_mm / longest))


def _box_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Average runs of input pixels onto ``n_out`` output pixels (nearest when enlarging)."""
    n_in = a.shape[axis]
    starts = (np.arange(n_out) * n_in) // n_out
    counts = np.maximum(np.diff(np.append(starts, n_in)), 1)
    summed = np.add.reduceat(a, starts, axis=axis)
    shape = [1] * a.ndim
    shape[axis] = n_out
    return summed / counts.reshape(shape).astype(np.float32)


def _resample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area-average (box filter) resampling to ``shape``; returns uint8."""
    out = _box_axis(_box_axis(image, shape[0], 0), shape[1], 1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
