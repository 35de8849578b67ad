"""Each edge filter equals the direct library call it wraps; derivatives are per mm on anisotropic voxels."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medview.algorithms import edges
from medview.algorithms.operations import get_operation
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from medview.core.volume import Volume

from .test_filters import SPACING, phantom, reference_image


def ramp(shape=(16, 48, 40), spacing=SPACING, slope=(3.0, -2.0, 0.5)) -> Volume:
    """Values rising ``slope`` (x, y, z) units per mm: every derivative filter knows the answer."""
    z, y, x = np.indices(shape, dtype=float)
    values = slope[0] * x * spacing[0] + slope[1] * y * spacing[1] + slope[2] * z * spacing[2]
    return Volume(values.astype(np.float32), Geometry(shape, spacing))


def test_gradient_magnitude_is_simpleitk_recursive_gaussian() -> None:
    volume = phantom()
    result = edges.gradient_magnitude(volume, sigma=1.0)
    assert result.geometry == volume.geometry and result.array.dtype == np.float32
    direct = sitk.GradientMagnitudeRecursiveGaussian(reference_image(volume, np.float32), 1.0)
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct))
    assert result.metadata.units == "HU/mm" and result.metadata.window_presets == []
    assert result.metadata.extra["history"][-1] == "gradient_magnitude(sigma=1 mm)"


def test_gradient_of_a_ramp_is_its_slope_per_mm() -> None:
    result = edges.gradient_magnitude(ramp(), sigma=0.5)
    expected = np.sqrt(3.0**2 + 2.0**2 + 0.5**2)
    np.testing.assert_allclose(result.array[6:10, 15:30, 15:25], expected, rtol=1e-3)


def test_sobel_equals_scipy_sobel_scaled_by_the_spacing() -> None:
    volume = phantom()
    result = edges.sobel(volume)
    assert result.geometry == volume.geometry and result.array.dtype == np.float32
    x = volume.array.astype(np.float32)
    spacing_zyx = SPACING[::-1]
    parts = [ndimage.sobel(x, axis=a, mode="nearest") / np.float32(32 * spacing_zyx[a]) for a in range(3)]
    expected = np.sqrt(sum(p * p for p in parts))
    np.testing.assert_allclose(result.array, expected, rtol=2e-6, atol=1e-4)
    # on a ramp the Sobel gradient is the slope per mm, away from the replicated edges
    flat = edges.sobel(ramp())
    np.testing.assert_allclose(flat.array[1:-1, 1:-1, 1:-1], np.sqrt(3.0**2 + 2.0**2 + 0.5**2), rtol=1e-5)


def test_sobel_in_slabs_is_exact(monkeypatch) -> None:
    from medview.algorithms import filters

    volume = phantom()
    whole = edges.sobel(volume).array
    monkeypatch.setattr(filters, "SLAB_VOXELS", 1500)
    np.testing.assert_array_equal(edges.sobel(volume).array, whole)


def test_sobel_of_a_single_slice_is_the_2d_operator() -> None:
    volume = phantom(shape=(1, 48, 40))
    x = volume.array[0].astype(np.float32)
    gy = ndimage.sobel(x, axis=0, mode="nearest") / np.float32(8 * SPACING[1])
    gx = ndimage.sobel(x, axis=1, mode="nearest") / np.float32(8 * SPACING[0])
    np.testing.assert_allclose(edges.sobel(volume).array[0], np.sqrt(gx * gx + gy * gy), rtol=2e-6, atol=1e-4)


def test_canny_is_simpleitk_canny_as_uint8() -> None:
    volume = phantom()
    result = edges.canny(volume, sigma=1.0, lower=20.0, upper=60.0)
    assert result.geometry == volume.geometry and result.array.dtype == np.uint8
    direct = sitk.CannyEdgeDetection(reference_image(volume, np.float32), 20.0, 60.0, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct).astype(np.uint8))
    assert set(np.unique(result.array)) == {0, 1}
    default_lower = edges.canny(volume, upper=60.0)
    direct = sitk.CannyEdgeDetection(reference_image(volume, np.float32), 30.0, 60.0, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(default_lower.array, sitk.GetArrayFromImage(direct))


def test_laplacian_of_gaussian_is_simpleitk() -> None:
    volume = phantom()
    result = edges.laplacian_of_gaussian(volume, sigma=1.5)
    direct = sitk.LaplacianRecursiveGaussian(reference_image(volume, np.float32), 1.5)
    np.testing.assert_array_equal(result.array, sitk.GetArrayFromImage(direct))
    assert result.metadata.units == "HU/mm^2"
    # the bright insert is a blob: a strong negative response at its centre
    assert result.array[8, 24, 20] < -10


@pytest.mark.parametrize("call, message", [
    (lambda v: edges.gradient_magnitude(v, sigma=-1), r"Gradient sigma \(mm\) must be greater than 0"),
    (lambda v: edges.canny(v, upper=0), "Canny upper threshold must be greater than 0"),
    (lambda v: edges.canny(v, upper=10, lower=20), r"lower threshold must be between 0 and the upper threshold \(10\)"),
    (lambda v: edges.canny(v, upper=10, sigma=float("inf")), "Canny sigma"),
    (lambda v: edges.laplacian_of_gaussian(v, sigma=0), "must be greater than 0"),
    (lambda v: edges.sobel(Volume(np.zeros((2, 4, 4, 3), np.uint8), Geometry((2, 4, 4)))), "grey-level volumes"),
])
def test_bad_parameters_are_refused_with_a_useful_message(call, message) -> None:
    with pytest.raises(MedviewError, match=message):
        call(phantom())


def test_cancel_releases_the_caller_even_though_itk_canny_ignores_abort() -> None:
    volume = phantom(shape=(100, 256, 256), spacing=(1.0, 1.0, 1.0))  # 1-3 s of Canny on two cores
    task = TaskContext()
    threading.Timer(0.1, task.token.cancel).start()
    started = time.perf_counter()
    with pytest.raises(CancelledError):
        edges.canny(volume, upper=30.0, sigma=2.0, task=task)
    assert time.perf_counter() - started < 0.1 + 0.2


def test_exiting_while_a_cancelled_canny_still_runs_is_clean() -> None:
    # the abandoned ITK computation must finish before the interpreter exits, not crash it
    script = (
        "import threading\n"
        "from medview.algorithms import edges\n"
        "from medview.core.errors import CancelledError\n"
        "from medview.core.tasks import TaskContext\n"
        "from tests.algorithms.test_filters import phantom\n"
        "volume = phantom(shape=(100, 256, 256), spacing=(1.0, 1.0, 1.0))\n"
        "task = TaskContext()\n"
        "threading.Timer(0.1, task.token.cancel).start()\n"
        "try:\n"
        "    edges.canny(volume, upper=30.0, sigma=2.0, task=task)\n"
        "except CancelledError:\n"
        "    print('cancelled')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cancelled"
    assert "terminate" not in done.stderr


def test_sobel_is_cancelled_between_slabs() -> None:
    task = TaskContext(on_progress=lambda fraction, message: task.token.cancel(), min_interval_s=0)
    with pytest.raises(CancelledError):
        edges.sobel(phantom(), task=task)


def test_catalogue_entries() -> None:
    volume = phantom()
    canny = get_operation("filter", "canny")
    with pytest.raises(MedviewError, match="canny needs the parameter upper"):
        canny(volume)
    np.testing.assert_array_equal(canny(volume, upper="60").array, edges.canny(volume, upper=60.0).array)
    assert get_operation("filter", "log").function is edges.laplacian_of_gaussian
    assert get_operation("filter", "sobel").library == "scipy"
