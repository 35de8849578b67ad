"""Edge and derivative filters: gradient magnitude, Sobel, Canny and Laplacian of Gaussian.

Plain functions ``fn(volume, *, task=None, **params) -> Volume`` on the input's grid, registered in the
operation catalogue on import.  Sigmas are in mm and derivatives are per mm (ITK applies the spacing;
the Sobel filter divides by it), so results are comparable across scanners: a gradient of a CT is in
HU/mm, a Laplacian in HU/mm^2 (the result's ``units`` say so and the input's window presets are
dropped).  Canny returns a uint8 0/1 edge map.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from medview.algorithms import sitk_bridge
from medview.algorithms.filters import derived, grey_array, history_text, number, positive, separable_passes
from medview.algorithms.operations import Operation, Param, register
from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume, WindowPreset

__all__ = ["canny", "gradient_magnitude", "laplacian_of_gaussian", "sobel"]

SOBEL_DERIVATIVE = np.array([-1.0, 0.0, 1.0])  # scipy.ndimage.sobel's kernels
SOBEL_SMOOTHING = np.array([1.0, 2.0, 1.0])


def _per_mm(volume: Volume, power: int) -> str:
    units = volume.metadata.units
    suffix = "/mm" if power == 1 else f"/mm^{power}"
    return f"{units}{suffix}" if units else ""


def _recursive(volume: Volume, process: object, name: str, step: str, power: int,
               task: TaskContext | None) -> Volume:
    image = sitk_bridge.to_sitk(grey_array(volume, name), volume.geometry, dtype=np.float32,
                                single_slice_as_2d=True)
    out = sitk_bridge.execute(process, image, task=task, message=name)
    report(task, 1.0, name, force=True)
    return derived(volume, sitk_bridge.from_sitk(out, volume.geometry.shape), step,
                   units=_per_mm(volume, power), windows=[])


def gradient_magnitude(volume: Volume, *, sigma: float = 1.0, task: TaskContext | None = None) -> Volume:
    """Magnitude of the gradient of the volume smoothed with a Gaussian of ``sigma`` mm (units/mm, float32).

    Library: SimpleITK ``GradientMagnitudeRecursiveGaussianImageFilter`` (derivatives in mm, cost
    independent of sigma, abortable; scipy's ``gaussian_gradient_magnitude`` works in voxels).
    """
    sigma = positive(sigma, "Gradient sigma (mm)")
    process = sitk.GradientMagnitudeRecursiveGaussianImageFilter()
    process.SetSigma(sigma)
    return _recursive(volume, process, "Gradient magnitude",
                      history_text("gradient_magnitude", sigma=f"{sigma:g} mm"), 1, task)


def sobel(volume: Volume, *, task: TaskContext | None = None) -> Volume:
    """Sobel gradient magnitude in units/mm (float32).

    Along each axis the derivative is ``scipy.ndimage.sobel`` (edges replicated) divided by
    ``2 * spacing * 4^(dimensions-1)`` (the kernel's central difference and smoothing weights), so it
    is a gradient per mm even on anisotropic voxels; the result is the root sum of squares over the
    axes.  Library: scipy, run as the separable 1D passes ``ndimage.sobel`` itself makes (identical
    values) in slabs, so it can be cancelled.  SimpleITK's ``SobelEdgeDetection`` ignores the spacing
    and the kernel weights, which is why it is not used.
    """
    array = grey_array(volume, "Sobel")
    axes = [0, 1, 2] if array.shape[0] > 1 else [1, 2]  # a single slice: the in-plane 2D operator
    dims = len(axes)
    spacing_zyx = volume.geometry.spacing[::-1]
    total = np.zeros(array.shape, np.float32)
    for n, axis in enumerate(axes):
        derivative = array.astype(np.float32)  # a copy, filtered in place
        passes = [(axis, lambda view, ax: ndimage.correlate1d(view, SOBEL_DERIVATIVE, ax, mode="nearest",
                                                              output=view))]
        passes += [(other, lambda view, ax: ndimage.correlate1d(view, SOBEL_SMOOTHING, ax, mode="nearest",
                                                                output=view)) for other in axes if other != axis]
        separable_passes(derivative, passes, task, "Sobel", span=(n / dims, (n + 1) / dims))
        derivative /= np.float32(2.0 * spacing_zyx[axis] * 4.0 ** (dims - 1))
        total += derivative * derivative
    np.sqrt(total, out=total)
    report(task, 1.0, "Sobel", force=True)
    return derived(volume, total, history_text("sobel"), units=_per_mm(volume, 1), windows=[])


def canny(volume: Volume, *, upper: float, lower: float | None = None, sigma: float = 1.0,
          task: TaskContext | None = None) -> Volume:
    """Canny edges as a uint8 0/1 volume.

    Library: SimpleITK ``CannyEdgeDetectionImageFilter``, a true 3D Canny (scikit-image's ``canny`` is
    2D only): Gaussian smoothing with variance ``sigma**2``
    mm^2, non-maximum suppression, hysteresis between ``lower`` (default ``upper / 2``) and ``upper``.
    The thresholds apply to ITK's gradient magnitude, which is measured per voxel step (ITK does not
    divide this derivative by the spacing), in the volume's units.  ITK ignores ``Abort()`` here: a
    cancelled run releases the caller at once and finishes in the background.
    """
    name = "Canny"
    grey_array(volume, name)
    sigma = positive(sigma, "Canny sigma (mm)")
    upper = positive(upper, "Canny upper threshold")
    lower = upper / 2.0 if lower is None else number(lower, "Canny lower threshold")
    if lower < 0 or lower > upper:
        raise MedviewError(f"Canny lower threshold must be between 0 and the upper threshold ({upper:g}), "
                           f"got {lower:g}")
    image = sitk_bridge.to_sitk(volume.array, volume.geometry, dtype=np.float32, single_slice_as_2d=True)
    process = sitk.CannyEdgeDetectionImageFilter()
    process.SetVariance([sigma * sigma] * image.GetDimension())
    process.SetLowerThreshold(lower)
    process.SetUpperThreshold(upper)
    out = sitk_bridge.execute(process, image, task=task, message=name)
    edges = sitk_bridge.from_sitk(out, volume.geometry.shape).astype(np.uint8)
    report(task, 1.0, name, force=True)
    return derived(volume, edges, history_text("canny", sigma=f"{sigma:g} mm", lower=f"{lower:g}",
                                               upper=f"{upper:g}"),
                   units="", windows=[WindowPreset(center=0.5, width=1.0, name="Edges")])


def laplacian_of_gaussian(volume: Volume, *, sigma: float = 1.0, task: TaskContext | None = None) -> Volume:
    """Laplacian of the volume smoothed with a Gaussian of ``sigma`` mm (units/mm^2, float32).

    Library: SimpleITK ``LaplacianRecursiveGaussianImageFilter`` (not normalised across scales): sigma in
    mm, cost independent of sigma, abortable; ``scipy.ndimage.gaussian_laplace`` takes sigma in voxels
    and its kernels grow with sigma.
    Bright blobs of radius ~``sigma * sqrt(3)`` give strong negative responses.
    """
    sigma = positive(sigma, "Laplacian of Gaussian sigma (mm)")
    process = sitk.LaplacianRecursiveGaussianImageFilter()
    process.SetSigma(sigma)
    return _recursive(volume, process, "Laplacian of Gaussian",
                      history_text("laplacian_of_gaussian", sigma=f"{sigma:g} mm"), 2, task)


_SIGMA = Param("sigma", "float", 1.0, minimum=0.0, exclusive_minimum=True, unit="mm",
               help="Gaussian standard deviation")

register(Operation("gradient_magnitude", "filter", gradient_magnitude, (_SIGMA,),
                   help="Gradient magnitude of a Gaussian-smoothed volume (units/mm)", library="SimpleITK",
                   aliases=("gradient",), replaces_image="gradient magnitudes (image units per mm)"))
register(Operation("sobel", "filter", sobel, (), help="Sobel gradient magnitude (units/mm)", library="scipy",
                   replaces_image="gradient magnitudes (image units per mm)"))
register(Operation("canny", "filter", canny, (
    Param("upper", "float", None, minimum=0.0, exclusive_minimum=True, required=True,
          help="gradient (image units per voxel) that starts an edge"),
    Param("lower", "float", None, minimum=0.0, help="gradient that continues an edge; default upper/2"),
    _SIGMA,
), help="Canny edge detection (0/1 map)", library="SimpleITK", replaces_image="a 0/1 edge map"))
register(Operation("laplacian_of_gaussian", "filter", laplacian_of_gaussian, (_SIGMA,),
                   help="Laplacian of Gaussian (units/mm^2)", library="SimpleITK", aliases=("log",),
                   replaces_image="second derivatives (image units per mm^2)"))
