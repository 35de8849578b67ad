"""Volume <-> SimpleITK images with exact geometry, and SimpleITK filters run as cancellable tasks.

* :func:`to_sitk` builds an ``sitk.Image`` whose spacing, origin and direction are the volume's
  (both use ITK's ``(x, y, z)`` order and LPS millimetres, so nothing is converted, only copied);
  :func:`geometry_of` and :func:`from_sitk` go back.
* :func:`execute` runs a SimpleITK filter object with progress reports and co-operative cancellation.

Cancellation.  ITK filters poll an abort flag while they work; SimpleITK sets it with
``filter.Abort()``.  Progress events alone are too sparse to call it in time (a diffusion iteration or a
bilateral chunk can take seconds between events), so :func:`execute` runs ``Execute`` on a helper
thread (SimpleITK releases the GIL while a filter runs) and the calling thread polls the task's cancel
token every 20 ms and calls ``Abort()`` at once.  Filters that honour the flag (median, recursive
Gaussians, diffusion, bilateral, resample, ...) stop within a few tens of milliseconds.  A few ITK
filters ignore it (Canny edge detection, N4 bias correction): for those the caller still gets
:class:`~medview.core.errors.CancelledError` within ~100 ms, while the abandoned computation finishes on
its helper thread and its result is dropped (it keeps the CPU busy until then, and the interpreter
waits for it at exit).  A side benefit: Ctrl-C reaches a CLI run at once, because
the main thread never blocks inside C++.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext, check_cancel

__all__ = ["execute", "from_sitk", "geometry_of", "to_sitk"]

POLL_S = 0.02  # how often the calling thread looks at the cancel token while ITK works
GRACE_S = 0.08  # how long an aborted filter may take to stop before the caller is released anyway


def to_sitk(array: np.ndarray, geometry: Geometry | None = None, *, dtype: Any = None,
            single_slice_as_2d: bool = False) -> sitk.Image:
    """A SimpleITK image holding a copy of ``array`` (``(z, y, x)`` or ``(z, y, x, c)``) on ``geometry``.

    Parameters
    ----------
    array
        Voxel values; a 4D array becomes a vector (colour) image.
    geometry
        Spacing (mm), origin (LPS mm) and direction copied onto the image; ``None`` leaves ITK's
        defaults (1 mm, origin 0, identity).
    dtype
        Convert the values first (e.g. ``np.float32`` for filters that need real pixels).
    single_slice_as_2d
        For neighbourhood filters whose result goes back onto the input grid: a single-slice volume
        becomes a 2D image with the in-plane spacing (ITK's recursive Gaussians need at least four
        voxels along every axis, and a 2D image is what the slice is).  Its origin and direction are
        left out: a neighbourhood filter uses only the spacing.
    """
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    vector = array.ndim == 4
    if single_slice_as_2d and array.shape[0] == 1:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[0]), isVector=vector)
        if geometry is not None:
            image.SetSpacing(geometry.spacing[:2])
        return image
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=vector)
    if geometry is not None:
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(geometry.origin)
        image.SetDirection(geometry.direction)
    return image


def geometry_of(image: sitk.Image) -> Geometry:
    """The :class:`Geometry` of a 3D SimpleITK image (shape in ``(z, y, x)`` order)."""
    if image.GetDimension() != 3:
        raise ValueError(f"geometry_of needs a 3D image, got {image.GetDimension()}D")
    x, y, z = image.GetSize()
    return Geometry((z, y, x), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def from_sitk(image: sitk.Image, shape: Sequence[int] | None = None) -> np.ndarray:
    """A numpy copy of ``image``'s voxels, ``(z, y, x)``; a 2D image made by ``single_slice_as_2d`` is given
    back its slice axis when ``shape`` (the volume's 3D shape) is passed."""
    array = sitk.GetArrayFromImage(image)
    if shape is not None and image.GetDimension() == 2:
        array = array.reshape(tuple(shape[:3]) + array.shape[2:])
    return array


def _library_message(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    text = text.removeprefix("sitk::ERROR:").strip()
    return re.sub(r"^ITK ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", text)  # drop the class name and address


class _Progress:
    """The progress observer: reports ``span`` of the task's progress, never raises into ITK."""

    def __init__(self, process: Any, task: TaskContext, message: str, span: tuple[float, float],
                 progress_of: Callable[[], float] | None) -> None:
        self.process = process
        self.progress_of = progress_of or (lambda: float(process.GetProgress()))
        self.task = task
        self.message = message
        self.span = span
        self.active = True
        self.error: BaseException | None = None

    def __call__(self) -> None:
        # An exception escaping into SimpleITK is printed through sys.excepthook and turned into a
        # RuntimeError: keep them here and re-raise on the calling thread instead.
        if not self.active:
            return
        try:
            fraction = self.span[0] + (self.span[1] - self.span[0]) * self.progress_of()
            self.task.progress(fraction, self.message)
        except CancelledError:
            self.process.Abort()
        except Exception as exc:  # a broken progress callback must not leave ITK running unseen
            self.error = exc
            self.active = False
            self.process.Abort()


def execute(process: Any, *inputs: sitk.Image, task: TaskContext | None = None, message: str = "",
            span: tuple[float, float] = (0.0, 1.0), progress_of: Callable[[], float] | None = None) -> sitk.Image:
    """Run ``process.Execute(*inputs)`` (a SimpleITK filter object) as part of a task.

    Progress is reported as ``span[0]..span[1]`` of the task with ``message``, on ITK's progress and
    iteration events; ``progress_of()`` gives the fraction of this step done (default: the filter's
    ``GetProgress()``; some filters, like N4, only count iterations).  When the task's token is
    cancelled the filter is aborted and :class:`CancelledError` raised within about 100 ms (see the
    module notes).  A failure inside ITK caused by the input (too few voxels for the filter, ...)
    becomes a :class:`MedviewError` naming ``message``.
    """
    if task is None:
        try:
            return process.Execute(*inputs)
        except RuntimeError as exc:
            raise MedviewError(f"{message or 'The filter'} failed: {_library_message(exc)}") from None
    check_cancel(task)
    observer = _Progress(process, task, message, span, progress_of)
    process.AddCommand(sitk.sitkProgressEvent, observer)
    process.AddCommand(sitk.sitkIterationEvent, observer)
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["image"] = process.Execute(*inputs)
        except BaseException as exc:  # handed to the calling thread
            outcome["error"] = exc
        finally:
            done.set()

    # Not a daemon: an abandoned filter (one that ignores Abort) must end before the interpreter tears
    # down, or ITK's thread pool dies under it and the process aborts at exit.
    worker = threading.Thread(target=work, name=f"medview-sitk-{type(process).__name__}", daemon=False)
    worker.start()
    try:
        while not done.wait(POLL_S):
            if task.token.cancelled:
                process.Abort()
                # Filters that ignore Abort keep running on the worker; stop waiting for them.
                if not done.wait(GRACE_S):
                    raise CancelledError("Cancelled by the user")
                break
    except BaseException:  # cancelled, or Ctrl-C / SystemExit on this thread: stop ITK too
        observer.active = False
        process.Abort()
        raise
    observer.active = False
    process.RemoveAllCommands()
    if observer.error is not None:
        raise observer.error
    check_cancel(task)  # an abort surfaces as a RuntimeError: report it as the cancellation it is
    error = outcome.get("error")
    if isinstance(error, RuntimeError):
        raise MedviewError(f"{message or 'The filter'} failed: {_library_message(error)}") from None
    if error is not None:
        raise error
    return outcome["image"]
