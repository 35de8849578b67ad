"""Contrast enhancement: percentile stretch, histogram equalisation, CLAHE and unsharp masking.

Plain functions ``fn(volume, *, task=None, **params) -> Volume`` on the input's grid, registered in the
operation catalogue on import.  Sizes are in mm (converted per axis with the spacing).

The stretch, equalisation and CLAHE results are float32 values in 0..1: they no longer are HU or any
calibrated unit, so the result's ``units`` is cleared and its window presets are replaced by one
"0-1" window.  Unsharp masking keeps the units (float32).  The history line of each step is appended
to ``metadata.extra["history"]`` (see :mod:`medview.algorithms.filters`).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from skimage import exposure

from medview.algorithms import sitk_bridge
from medview.algorithms.filters import derived, grey_array, history_text, number, positive
from medview.algorithms.operations import Operation, Param, register
from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, WindowPreset

__all__ = ["clahe", "clahe_3d", "contrast_stretch", "equalize_histogram", "unsharp_mask"]

UNIT_WINDOW = [WindowPreset(center=0.5, width=1.0, name="0-1")]


def _unit_range(volume: Volume, array: np.ndarray, step: str) -> Volume:
    return derived(volume, array, step, units="", windows=list(UNIT_WINDOW))


def contrast_stretch(volume: Volume, *, low_percentile: float = 2.0, high_percentile: float = 98.0,
                     task: TaskContext | None = None) -> Volume:
    """Map the ``low_percentile``..``high_percentile`` intensity range linearly onto 0..1, clipping outside.

    Library: ``numpy.percentile`` (exact, over every voxel) and ``skimage.exposure.rescale_intensity``
    (the clip and linear map in one vectorised call; SimpleITK's ``IntensityWindowing`` does the same but
    would need the percentiles from numpy anyway).
    """
    array = grey_array(volume, "Contrast stretch")
    for value, label in ((low_percentile, "low"), (high_percentile, "high")):
        if not 0 <= number(value, f"Contrast stretch {label} percentile") <= 100:
            raise MedviewError(f"Contrast stretch {label} percentile must be between 0 and 100, got {value!r}")
    if low_percentile >= high_percentile:
        raise MedviewError(f"Contrast stretch low percentile ({low_percentile:g}) must be below the high one "
                           f"({high_percentile:g})")
    check_cancel(task)
    lo, hi = (float(v) for v in np.percentile(array, [low_percentile, high_percentile]))
    if hi <= lo:
        raise MedviewError(f"Nothing to stretch: the {low_percentile:g}th and {high_percentile:g}th percentiles "
                           f"are both {lo:g}")
    report(task, 0.5, "Contrast stretch")
    out = exposure.rescale_intensity(array.astype(np.float32), in_range=(lo, hi), out_range=(0.0, 1.0))
    report(task, 1.0, "Contrast stretch", force=True)
    return _unit_range(volume, out.astype(np.float32, copy=False), history_text(
        "contrast_stretch", low_percentile=f"{low_percentile:g}", high_percentile=f"{high_percentile:g}",
        range=f"{lo:g}..{hi:g}"))


def equalize_histogram(volume: Volume, *, bins: int = 256, task: TaskContext | None = None) -> Volume:
    """Global histogram equalisation onto 0..1 (float32).

    Library: ``skimage.exposure.equalize_hist`` over the whole volume (SimpleITK has no global
    histogram equalisation).  For integer volumes (CT) every
    value is its own bin and ``bins`` is not used (scikit-image's rule); float volumes use ``bins``.
    """
    array = grey_array(volume, "Histogram equalisation")
    if int(bins) != bins or bins < 2:
        raise MedviewError(f"Histogram equalisation needs at least 2 bins, got {bins!r}")
    check_cancel(task)
    out = exposure.equalize_hist(array, nbins=int(bins)).astype(np.float32, copy=False)
    report(task, 1.0, "Histogram equalisation", force=True)
    return _unit_range(volume, out, history_text("equalize_histogram", bins=int(bins)))


def _kernel(volume: Volume, kernel_size: float | None, axes: int) -> tuple[int, ...] | None:
    """CLAHE tile size in voxels for the last ``axes`` array axes, from mm (``None``: scikit-image's 1/8)."""
    if kernel_size is None:
        return None
    size = positive(kernel_size, "CLAHE kernel size (mm)")
    spacing_zyx = volume.geometry.spacing[::-1][-axes:]
    return tuple(max(2, round(size / s)) for s in spacing_zyx)


def _clahe_input(volume: Volume, name: str, clip_limit: float, bins: int) -> np.ndarray:
    array = grey_array(volume, name)
    if not 0 < number(clip_limit, f"{name} clip limit") <= 1:
        raise MedviewError(f"{name} clip limit must be above 0 and at most 1, got {clip_limit!r}")
    if int(bins) != bins or bins < 2:
        raise MedviewError(f"{name} needs at least 2 bins, got {bins!r}")
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        raise MedviewError(f"{name}: the volume is flat (every voxel is {lo:g})")
    # scikit-image takes floats in 0..1 (it rescales each call to its own min..max anyway)
    return ((array.astype(np.float32) - np.float32(lo)) / np.float32(hi - lo)).clip(0.0, 1.0)


def clahe(volume: Volume, *, kernel_size: float | None = None, clip_limit: float = 0.01, bins: int = 256,
          task: TaskContext | None = None) -> Volume:
    """Contrast-limited adaptive histogram equalisation, slice by slice (float32 0..1).

    Library: ``skimage.exposure.equalize_adapthist`` on each axial slice (cancellable between slices):
    the standard CLAHE (SimpleITK's ``AdaptiveHistogramEqualization`` is a different, much slower
    power-law method without a clip limit in the CLAHE sense).
    ``kernel_size`` is the contextual tile size in mm (default: 1/8 of the slice, scikit-image's);
    ``clip_limit`` (0..1) caps the histogram; each slice is rescaled to 0..1 on its own.
    """
    unit = _clahe_input(volume, "CLAHE", clip_limit, bins)
    kernel = _kernel(volume, kernel_size, 2)
    out = np.empty(unit.shape, np.float32)
    for k in range(unit.shape[0]):
        check_cancel(task)
        out[k] = exposure.equalize_adapthist(unit[k], kernel_size=kernel, clip_limit=clip_limit, nbins=int(bins))
        report(task, (k + 1) / unit.shape[0], "CLAHE")
    shown = "1/8 slice" if kernel_size is None else f"{kernel_size:g} mm"
    return _unit_range(volume, out, history_text("clahe", kernel_size=shown, clip_limit=f"{clip_limit:g}",
                                                 bins=int(bins)))


def clahe_3d(volume: Volume, *, kernel_size: float | None = None, clip_limit: float = 0.01, bins: int = 256,
             task: TaskContext | None = None) -> Volume:
    """Contrast-limited adaptive histogram equalisation with 3D tiles (float32 0..1).

    Library: ``skimage.exposure.equalize_adapthist`` on the whole volume; ``kernel_size`` in mm per axis
    (default 1/8 of each dimension).  One scikit-image call: it can be cancelled only before it starts.
    """
    unit = _clahe_input(volume, "3D CLAHE", clip_limit, bins)
    kernel = _kernel(volume, kernel_size, 3)
    if kernel is not None:
        kernel = tuple(min(k, n) for k, n in zip(kernel, unit.shape, strict=True))
    check_cancel(task)
    out = exposure.equalize_adapthist(unit, kernel_size=kernel, clip_limit=clip_limit, nbins=int(bins))
    report(task, 1.0, "3D CLAHE", force=True)
    shown = "1/8 volume" if kernel_size is None else f"{kernel_size:g} mm"
    return _unit_range(volume, out.astype(np.float32, copy=False), history_text(
        "clahe_3d", kernel_size=shown, clip_limit=f"{clip_limit:g}", bins=int(bins)))


def unsharp_mask(volume: Volume, *, sigma: float = 1.0, amount: float = 0.5, threshold: float = 0.0,
                 task: TaskContext | None = None) -> Volume:
    """Sharpen: ``x + amount * (x - gaussian(x))`` where the difference exceeds ``threshold`` (float32).

    Library: SimpleITK ``UnsharpMaskImageFilter`` (recursive Gaussian with ``sigma`` in mm on every
    axis, multi-threaded, abortable); scikit-image's ``unsharp_mask`` takes sigma in voxels and rescales
    the intensities, so it would need both undone.  ``threshold`` is in the volume's units.
    """
    grey_array(volume, "Unsharp mask")
    sigma = positive(sigma, "Unsharp mask sigma (mm)")
    if number(amount, "Unsharp mask amount") < 0:
        raise MedviewError(f"Unsharp mask amount must be 0 or more, got {amount!r}")
    if number(threshold, "Unsharp mask threshold") < 0:
        raise MedviewError(f"Unsharp mask threshold must be 0 or more, got {threshold!r}")
    image = sitk_bridge.to_sitk(volume.array, volume.geometry, dtype=np.float32, single_slice_as_2d=True)
    process = sitk.UnsharpMaskImageFilter()
    process.SetSigmas([sigma] * image.GetDimension())
    process.SetAmount(float(amount))
    process.SetThreshold(float(threshold))
    out = sitk_bridge.execute(process, image, task=task, message="Unsharp mask")
    report(task, 1.0, "Unsharp mask", force=True)
    return derived(volume, sitk_bridge.from_sitk(out, volume.geometry.shape), history_text(
        "unsharp_mask", sigma=f"{sigma:g} mm", amount=f"{amount:g}", threshold=f"{threshold:g}"))


_CLAHE = (
    Param("kernel_size", "float", None, minimum=0.0, exclusive_minimum=True, unit="mm",
          help="tile size; default 1/8 of the image"),
    Param("clip_limit", "float", 0.01, minimum=0.0, maximum=1.0, exclusive_minimum=True,
          help="contrast limit (higher: stronger)"),
    Param("bins", "int", 256, minimum=2, maximum=65536, help="histogram bins"),
)

register(Operation("contrast_stretch", "filter", contrast_stretch, (
    Param("low_percentile", "float", 2.0, minimum=0.0, maximum=100.0, unit="%", help="maps to 0"),
    Param("high_percentile", "float", 98.0, minimum=0.0, maximum=100.0, unit="%", help="maps to 1"),
), help="Stretch a percentile range onto 0..1", library="scikit-image", replaces_image="values from 0 to 1"))
register(Operation("equalize_histogram", "filter", equalize_histogram, (
    Param("bins", "int", 256, minimum=2, maximum=65536, help="histogram bins (float images)"),
), help="Global histogram equalisation onto 0..1", library="scikit-image", aliases=("equalize",),
                   replaces_image="values from 0 to 1"))
register(Operation("clahe", "filter", clahe, _CLAHE, help="Adaptive histogram equalisation per slice (CLAHE)",
                   library="scikit-image"))
register(Operation("clahe_3d", "filter", clahe_3d, _CLAHE, help="Adaptive histogram equalisation, 3D tiles",
                   library="scikit-image"))
register(Operation("unsharp_mask", "filter", unsharp_mask, (
    Param("sigma", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm", help="blur of the mask"),
    Param("amount", "float", 0.5, minimum=0.0, help="how much of the detail to add back"),
    Param("threshold", "float", 0.0, minimum=0.0, help="smallest detail (image units) that is sharpened"),
), help="Unsharp masking (float32)", library="SimpleITK", aliases=("unsharp",)))
