"""The 3D panel's scene: volume rendering, MPR planes, clipping and picking, with no Qt.

A Qt widget (``QVTKRenderWindowInteractor``) passes its render window to :class:`VolumeScene` and forwards
the interactor's Start/EndInteractionEvent to :meth:`~VolumeScene.begin_interaction` /
:meth:`~VolumeScene.end_interaction`; tests and the CLI let the scene make its own offscreen window.  Every
prop carries the volume's index-frame matrix (:func:`~medview.render.vtk_adapters.index_frame_matrix`), so
all coordinates here (cursor, clipping, picking, camera) are LPS millimetres.

Mapper choice.  With a GPU, ``vtkSmartVolumeMapper`` (GPU ray casting).  On software OpenGL (OSMesa,
llvmpipe; told by the window class or GL renderer string), ``vtkFixedPointVolumeRayCastMapper``: measured on
2 cores, 256^3 CT, 512 x 512, the smart mapper (default or GPU mode, which it picks on llvmpipe) took 1.1 s to
the first frame and rotated at 0.75 fps unshaded, 0.24 fps shaded; in ray-cast mode 0.4 s and 4.7 fps; the
fixed-point mapper 0.4 s and 7 fps, 25 fps with the LOD below.  Ray-cast mode wraps that same CPU mapper but
hides its image sample distance, the setting that makes interaction fast (2 px: a quarter of the rays).
Shaded, the first CPU frame also computes every voxel's gradient (+0.6 s at 256^3);
``set_volume(progressive=True)`` shows a LOD frame first.  See ``tests/benchmarks/test_render_benchmark.py``.

Level of detail.  Two mappers share the property and the clipping planes, one on the full image, one on a
strided copy of at most ``lod_max_voxels`` with a coarser image sample distance; the interaction methods
swap them (one mapper with a changing input would recompute its cached gradients at every switch).
VTK's own time-adjusted distances are off (it shares a frame's time evenly among props, so with the MPR
planes shown the volume would get a quarter of it).  Instead :meth:`VolumeScene.render` times each
interactive frame and, when one takes longer than ``interactive_frame_budget_s`` (100 ms), coarsens the LOD
mapper's image sample distance (CPU) or ray step (GPU) for the next frames, up to 8 px; fast frames refine
it back to the starting value (:func:`adapt_lod_factor`).  Full-quality frames are never coarsened.

Interruptible frames.  A full-quality CPU frame takes 0.2-1.2 s on software GL.  The ray caster reports its
progress many times a frame (``VolumeMapperRenderProgressEvent``, every ~20 ms at 955 x 877; VTK's own
``AbortCheckEvent`` comes at most every 200 ms): :meth:`VolumeScene.set_render_progress` hands each report to
a callback on the rendering thread, which may let an event loop run and, by returning True, abort the frame.
An aborted frame is not shown (the window keeps the previous picture) and :attr:`VolumeScene.last_render_aborted`
says so, for the caller to render again.

Gradients in the background.  The CPU mapper's first shaded (or gradient-opacity) frame computes every voxel's
gradient first, with no progress report in between: 0.5 s on the 48 x 512 x 512 sample CT here, seconds on a
big CT.  With ``background_gradients=True`` (the Qt panel) the full-quality mapper is made in a thread of its
own, which renders it once into a private 2 x 2 OSMesa window with shading on (VTK releases the GIL, so the
caller's thread runs meanwhile); the mapper keeps the gradients it computed and draws the same pixels in the
real window afterwards.  Until :meth:`VolumeScene.take_full_quality` has put it in place (the caller polls
while :attr:`VolumeScene.full_quality_pending`), full-quality frames are drawn by the LOD mapper.  The thread
starts after the first frame (on 2 cores it slowed that frame from 0.18 to 0.34 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import numpy as np
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPlane, vtkPlaneCollection
from vtkmodules.vtkRenderingCore import (
    vtkImageProperty,
    vtkImageSlice,
    vtkProp,
    vtkRenderer,
    vtkRenderWindow,
    vtkVolume,
    vtkVolumeProperty,
    vtkWindowToImageFilter,
)
from vtkmodules.vtkRenderingImage import vtkImageResliceMapper
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper, vtkVolumePicker
from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.volume import Volume
from medview.render import presets as tf
from medview.render.presets import ColourPoint, OpacityPoint, TransferFunctionPreset
from medview.render.vtk_adapters import image_to_array, index_frame_matrix, vtk_image

__all__ = ["VIEW_DIRECTIONS", "VIEW_NORMALS", "Backend", "VolumeScene", "detect_backend", "gl_renderer_name",
           "lod_strides"]

Backend = Literal["gpu", "cpu"]
VolumeMapper = vtkFixedPointVolumeRayCastMapper | vtkSmartVolumeMapper

#: Plane normals (LPS) of the MPR views before rotation: ``u x v`` of the 2D views' screen axes.
VIEW_NORMALS: dict[str, np.ndarray] = {"axial": np.array([0.0, 0.0, 1.0]),  # superior
                                       "coronal": np.array([0.0, 1.0, 0.0]),  # posterior
                                       "sagittal": np.array([-1.0, 0.0, 0.0])}  # patient right

#: Camera presets, LPS: (direction of projection, view up).  ``anterior``: the camera in front of the
#: patient (on -Y) looking posterior, head up, so the patient's left is on screen right.
VIEW_DIRECTIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)), "posterior": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
    "left": ((-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)), "right": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, -1.0), (0.0, -1.0, 0.0)), "inferior": ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0)),
}

_SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software rasterizer", "swiftshader", "lavapipe",
                "microsoft basic render", "gdi generic")
_BLEND = {"composite": "SetBlendModeToComposite", "maximum": "SetBlendModeToMaximumIntensity",
          "minimum": "SetBlendModeToMinimumIntensity"}


def gl_renderer_name(render_window: vtkRenderWindow) -> str:
    """The OpenGL renderer string (``'llvmpipe (LLVM 15.0.6, 256 bits)'``); needs a window that has rendered."""
    report = render_window.ReportCapabilities() or ""
    line = next((ln for ln in report.splitlines() if "renderer string" in ln.lower()), "")
    return line.split(":", 1)[-1].strip()


def detect_backend(render_window: vtkRenderWindow, context_ready: bool = False) -> Backend | None:
    """``'cpu'`` on software OpenGL, ``'gpu'`` on hardware, None while that cannot be told yet.

    An OSMesa window is always software.  Others are asked for their GL renderer, which needs a context:
    after a first render, or during one (``context_ready``, from a renderer's StartEvent).
    """
    if render_window.GetClassName() == "vtkOSOpenGLRenderWindow":
        return "cpu"
    if not context_ready and render_window.GetNeverRendered():
        return None
    name = gl_renderer_name(render_window).lower()
    return "cpu" if any(soft in name for soft in _SOFTWARE_GL) else "gpu"


def lod_strides(shape_zyx: Sequence[int], spacing_xyz: Sequence[float], max_voxels: int) -> tuple[int, int, int]:
    """Strides ``(z, y, x)`` so that ``array[::sz, ::sy, ::sx]`` has at most ``max_voxels`` voxels.

    The axis with the finest effective spacing (mm) is coarsened first, so anisotropic CT (0.6 mm
    in-plane, 5 mm slices) keeps its slices and loses in-plane detail; no axis drops below 8 voxels.
    """
    strides = [1, 1, 1]
    spacing_zyx = (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))

    def sizes(s: list[int]) -> list[int]:
        return [-(-n // k) for n, k in zip(shape_zyx, s, strict=True)]

    while int(np.prod(sizes(strides))) > max_voxels:
        axes = [i for i, n in enumerate(sizes(strides)) if n > 8]
        if not axes:
            break
        strides[min(axes, key=lambda i: spacing_zyx[i] * strides[i])] += 1
    return strides[0], strides[1], strides[2]


MINIP_SLAB_HALF_MM = 10.0  # the slab a MinIP starts in when nothing is clipped (set_preset)
LOD_MAX_FACTOR = 4.0  # the LOD may get at most this much coarser than its starting sample distances


def adapt_lod_factor(factor: float, frame_s: float, budget_s: float, max_factor: float = LOD_MAX_FACTOR) -> float:
    """The next coarsening factor (>= 1) of the LOD's sample distances after an interactive frame.

    A frame over ``budget_s`` coarsens by the square root of the overshoot (the cost of a CPU ray cast
    falls with the square of the image sample distance), at least 1.25x; a frame under 40 % of the budget
    refines by 1.25x.  Bounded to ``1 .. max_factor``.
    """
    if not (np.isfinite(frame_s) and frame_s > 0 and budget_s > 0):
        return factor
    if frame_s > budget_s:
        factor *= max(1.25, float(np.sqrt(frame_s / budget_s)))
    elif frame_s < 0.4 * budget_s:
        factor /= 1.25
    return float(min(max(factor, 1.0), max_factor))


def _world_bounds(geometry: Geometry) -> np.ndarray:
    """LPS bounds (mm) of the voxel centres as a 3 x 2 array of (min, max) per axis."""
    n = np.array(geometry.size_xyz, dtype=float) - 1.0
    world = geometry.index_to_world(np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]))
    return np.c_[world.min(axis=0), world.max(axis=0)]


class VolumeScene:
    """A renderer with a volume, three MPR planes, clipping, picking and extra props.

    Parameters
    ----------
    render_window
        The window to draw in (the Qt widget's).  None: the scene makes an offscreen window of ``size``
        pixels ``(width, height)`` and finalises it in :meth:`close`.
    backend
        ``'auto'`` (GPU ray casting unless the OpenGL is software), ``'gpu'`` or ``'cpu'``.
    lod_max_voxels
        Voxel budget of the level-of-detail copy used while interacting.
    lod_image_sample_distance
        Pixels per ray side while interacting (CPU mapper; 2 = a quarter of the rays).
    """

    def __init__(self, render_window: vtkRenderWindow | None = None, size: tuple[int, int] = (512, 512),
                 backend: Literal["auto", "gpu", "cpu"] = "auto", lod_max_voxels: int = 128**3,
                 lod_image_sample_distance: float = 2.0, background_gradients: bool = False) -> None:
        if backend not in ("auto", "gpu", "cpu"):
            raise ValueError(f"backend must be 'auto', 'gpu' or 'cpu', not {backend!r}")
        self._owns_window = render_window is None
        if render_window is None:
            render_window = vtkRenderWindow()
            render_window.SetOffScreenRendering(1)
            render_window.SetSize(int(size[0]), int(size[1]))
        self.render_window: vtkRenderWindow | None = render_window
        self.renderer: vtkRenderer | None = vtkRenderer()
        render_window.AddRenderer(self.renderer)
        self._backend: Backend | None = None if backend == "auto" else backend
        self._start_tag = self.renderer.AddObserver(vtkCommand.StartEvent, self._on_render_start)
        self._end_tag = self.renderer.AddObserver(vtkCommand.EndEvent, self._on_render_end)
        self._frame_started: float | None = None
        self.lod_max_voxels = int(lod_max_voxels)
        self.lod_image_sample_distance = float(lod_image_sample_distance)
        self.interactive_frame_budget_s = 0.1
        self.lod_factor = 1.0  # how much coarser than the starting LOD distances the LOD draws now
        self.last_frame_s: float | None = None  # seconds the last render() took
        self.last_render_aborted = False  # the last frame was abandoned (set_render_progress)
        self._render_progress: Callable[[], bool] | None = None

        self.volume: Volume | None = None
        self.volume_property = vtkVolumeProperty()
        self.volume_property.SetInterpolationTypeToLinear()
        self.volume_prop = vtkVolume()
        self.volume_prop.SetProperty(self.volume_property)
        self.volume_prop.VisibilityOff()
        self.renderer.AddVolume(self.volume_prop)
        self._images: dict[str, vtkImageData] = {}  # "full", "lod"
        self._sample_mm: dict[str, float] = {}  # ray step: the finest voxel spacing of each image
        self._mappers: dict[str, VolumeMapper] = {}
        self.background_gradients = bool(background_gradients)
        self._pending_full: _GradientJob | None = None  # the full mapper being prepared in a thread
        self._pending_lod: _GradientJob | None = None  # the LOD mapper too, first: no frame computes gradients
        self._interacting = False
        self._blend_mode = "composite"
        self._preset: TransferFunctionPreset | None = None
        self._ranges: dict[tuple[float, float], tuple[float, float]] = {}  # percentiles -> intensity range
        self._bounds: np.ndarray | None = None
        self._clip_planes = vtkPlaneCollection()  # world LPS; shared by both mappers
        self._clip_box: tuple[float, ...] | None = None
        self._clip_plane: tuple[np.ndarray, np.ndarray] | None = None

        self._cursor = np.zeros(3)
        self._rotations = {name: np.eye(3) for name in VIEW_NORMALS}
        self._planes_visible = False
        self.plane_property = vtkImageProperty()
        self.plane_property.SetInterpolationTypeToLinear()
        self._slice_planes = {name: vtkPlane() for name in VIEW_NORMALS}
        self._slice_mappers: dict[str, vtkImageResliceMapper] = {}
        self.plane_props: dict[str, vtkImageSlice] = {}
        for name in VIEW_NORMALS:
            mapper = self._slice_mappers[name] = vtkImageResliceMapper()
            mapper.SetSlicePlane(self._slice_planes[name])
            mapper.SliceFacesCameraOff()
            mapper.SliceAtFocalPointOff()
            mapper.ResampleToScreenPixelsOff()  # reslice when the plane moves, not on every camera move
            prop = self.plane_props[name] = vtkImageSlice()
            prop.SetMapper(mapper)
            prop.SetProperty(self.plane_property)
            prop.VisibilityOff()
        self._actors: dict[str, vtkProp] = {}
        self._picker = vtkVolumePicker()
        self._picker.PickFromListOn()
        self._picker.AddPickList(self.volume_prop)
        self.pick_opacity: float | None = None  # see pick()

    # -- volume and level of detail -----------------------------------------------------------------------
    def set_volume(self, volume: Volume, preset: str | None = None, progressive: bool = False) -> None:
        """Show a grey-scale 3D volume: full-resolution and LOD inputs placed in LPS, MPR planes through
        its centre, the anterior camera and ``preset`` (None: the modality's default, ``ct-bone`` for CT).

        ``progressive`` starts in the interactive (LOD) state so that the first frame comes fast; the
        caller then calls :meth:`end_interaction` and renders again when idle.
        """
        self._check_open()
        if volume.is_color or min(volume.geometry.shape) < 2:
            raise MedviewError(f"3D rendering needs a grey-scale volume with at least 2 voxels along each axis, "
                               f"got {volume!r}")
        g = volume.geometry
        sz, sy, sx = lod_strides(g.shape, g.spacing, self.lod_max_voxels)
        lod_array = np.ascontiguousarray(volume.array[::sz, ::sy, ::sx])
        lod_geometry = Geometry(lod_array.shape, tuple(np.array(g.spacing) * (sx, sy, sz)), g.origin,
                                g.direction)  # voxel 0 stays put: the same index frame places both
        self.volume = volume
        self._images = {"full": vtk_image(volume.array, g), "lod": vtk_image(lod_array, lod_geometry)}
        self._sample_mm = {"full": min(g.spacing), "lod": min(lod_geometry.spacing)}
        self._ranges = {}
        self._bounds = _world_bounds(g)
        frame = index_frame_matrix(g)
        self.volume_prop.SetUserMatrix(frame)
        self._release_mappers()
        self._interacting = bool(progressive)
        self._build_mappers()
        self.volume_prop.SetVisibility(int(self._pending_lod is None))  # shown once its first mapper is ready
        for name, mapper in self._slice_mappers.items():
            mapper.SetInputData(self._images["full"])
            self.plane_props[name].SetUserMatrix(frame)
            if not self.renderer.HasViewProp(self.plane_props[name]):
                self.renderer.AddViewProp(self.plane_props[name])
        window = volume.default_window()
        self.set_plane_window(window.center, window.width)
        self.set_cursor(self._bounds.mean(axis=1))
        self.set_planes_visible(self._planes_visible)
        self.set_preset(preset or tf.default_preset_name(volume.modality))
        self.reset_camera("anterior")

    @property
    def backend(self) -> Backend | None:
        """The mapper family in use (``'cpu'`` / ``'gpu'``); None until the window's OpenGL is known."""
        return self._backend

    @property
    def mapper(self) -> VolumeMapper | None:
        """The volume mapper drawing now (full quality or LOD); None before a volume or a known backend."""
        return self._mappers.get("lod" if self._interacting or "full" not in self._mappers else "full")

    def _on_render_end(self, _obj: object, _event: str) -> None:
        if self._pending_lod is not None:  # the LOD's gradients first (the frame just drawn had no volume)
            self._pending_lod.start(self.volume_property)
        elif self._pending_full is not None:
            # after the first (LOD) frame, which it would slow down on a small machine
            self._pending_full.start(self.volume_property)
        # Timed here, not in render(): the interactor's rotation frames are drawn by VTK directly.
        if self._frame_started is None or self.last_render_aborted:
            self._frame_started = None
            return  # an abandoned frame's time says nothing about the next one
        self.last_frame_s = time.perf_counter() - self._frame_started
        self._frame_started = None
        if self._interacting and "lod" in self._mappers:
            factor = adapt_lod_factor(self.lod_factor, self.last_frame_s, self.interactive_frame_budget_s)
            if factor != self.lod_factor:
                self.lod_factor = factor
                self._apply_lod_factor()

    def _on_render_start(self, _obj: object, _event: str) -> None:
        self._frame_started = time.perf_counter()
        self.last_render_aborted = False
        # A window other than OSMesa tells its GL renderer only once it has a context: during a render.
        if self._backend is None and self.render_window is not None:
            self._backend = detect_backend(self.render_window, context_ready=True)
            if self.volume is not None and not self._mappers:
                self._build_mappers()

    def _build_mappers(self) -> None:
        if self._backend is None and self.render_window is not None:
            self._backend = detect_backend(self.render_window)
        if self._backend is None or not self._images:
            return  # built at the first render (_on_render_start)
        for level in ("full", "lod"):
            if self._backend == "cpu" and self.background_gradients:
                # both CPU mappers compute their gradients in a thread (the LOD's first), so that no frame on the
                # caller's thread does: that pass reports no progress and held the event loop 200-600 ms
                image = vtkImageData()
                image.ShallowCopy(self._images[level])  # the same voxels; a pipeline object of the thread's own
                mapper = self._new_mapper(image, self._sample_mm[level])
                if level == "full":
                    self._pending_full = _GradientJob(mapper, image)
                else:
                    self._pending_lod = _GradientJob(mapper, image)
                    self.volume_prop.VisibilityOff()  # until that mapper is ready
                continue
            mapper = self._new_mapper(self._images[level], self._sample_mm[level])
            self._add_mapper(level, mapper)
        self._apply_lod_factor()
        self.volume_prop.SetMapper(self.mapper)

    def _new_mapper(self, image: vtkImageData, sample_mm: float) -> VolumeMapper:
        mapper = vtkFixedPointVolumeRayCastMapper() if self._backend == "cpu" else vtkSmartVolumeMapper()
        mapper.SetInputData(image)
        mapper.SetAutoAdjustSampleDistances(0)
        mapper.SetSampleDistance(sample_mm)
        if isinstance(mapper, vtkFixedPointVolumeRayCastMapper):
            mapper.SetImageSampleDistance(1.0)
            mapper.IntermixIntersectingGeometryOn()  # rays stop at the MPR planes and at surfaces
        else:
            mapper.InteractiveAdjustSampleDistancesOff()
        return mapper

    def _add_mapper(self, level: str, mapper: VolumeMapper) -> None:
        mapper.SetClippingPlanes(self._clip_planes)
        getattr(mapper, _BLEND[self._blend_mode])()
        mapper.AddObserver(vtkCommand.VolumeMapperRenderProgressEvent, self._on_render_progress)
        self._mappers[level] = mapper

    @property
    def full_quality_pending(self) -> bool:
        """A mapper is still being prepared in the background: the LOD's (frames show no volume yet) or the
        full-quality one (frames come from the LOD)."""
        return self._pending_full is not None or self._pending_lod is not None

    def take_full_quality(self, wait_s: float = 0.0) -> bool:
        """Put the next mapper prepared in the background in place once it is ready (the LOD's, then the full
        one; waiting at most ``wait_s``); True when that happened now (the caller renders again)."""
        lod = self._pending_lod
        if lod is not None:
            lod.start(self.volume_property)
            if not lod.done.wait(wait_s):
                return False
            self._pending_lod = None
            self._images["lod"] = lod.image
            self._add_mapper("lod", lod.mapper)
            self._apply_lod_factor()
            self.volume_prop.SetMapper(self.mapper)
            self.volume_prop.VisibilityOn()
            if self._pending_full is not None:
                self._pending_full.start(self.volume_property)
            return True
        job = self._pending_full
        if job is None:
            return False
        job.start(self.volume_property)
        if not job.done.wait(wait_s):
            return False
        self._pending_full = None
        if job.error is not None:  # no private window here: the first shaded frame computes the gradients
            import warnings

            warnings.warn(f"3D gradients could not be prepared in the background ({job.error}); the first "
                          "shaded frame computes them", RuntimeWarning, stacklevel=2)
        self._images["full"] = job.image
        self._add_mapper("full", job.mapper)
        self.volume_prop.SetMapper(self.mapper)
        # the clipping range was fitted to the LOD's bounds (a strided grid ends short of the full one): the
        # rays would start at other depths and the picture differ slightly from a scene without the thread
        self.renderer.ResetCameraClippingRange()
        return True

    def _apply_lod_factor(self) -> None:
        mapper = self._mappers.get("lod")
        if mapper is None:
            return
        if isinstance(mapper, vtkFixedPointVolumeRayCastMapper):
            # rays per side fall with the image sample distance; the ray step stays the LOD's voxel size
            mapper.SetImageSampleDistance(min(8.0, self.lod_image_sample_distance * self.lod_factor))
        else:
            mapper.SetSampleDistance(self._sample_mm["lod"] * self.lod_factor)

    def _release_mappers(self) -> None:
        if self._pending_full is not None or self._pending_lod is not None:
            self._pending_full = self._pending_lod = None  # the threads finish on their own; their mappers unused
        for mapper in self._mappers.values():
            if self.render_window is not None:
                mapper.ReleaseGraphicsResources(self.render_window)
            mapper.RemoveAllInputs()
        self._mappers = {}
        self.volume_prop.SetMapper(None)

    def set_render_progress(self, callback: Callable[[], bool] | None) -> None:
        """Call ``callback()`` at each progress report of a volume frame (on the thread that renders, several
        times a frame on the CPU mapper); a True return abandons the frame.  None: no callback."""
        self._render_progress = callback

    def _on_render_progress(self, _obj: object, _event: str) -> None:
        callback = self._render_progress
        if callback is None or self.render_window is None or self.last_render_aborted:
            return
        if callback():
            self.last_render_aborted = True
            self.render_window.SetAbortRender(1)  # the ray caster's threads stop at their next row

    def begin_interaction(self) -> None:
        """Draw from the LOD input with coarse sampling (the interactor's StartInteractionEvent)."""
        self._interacting = True
        if "lod" in self._mappers:
            self.volume_prop.SetMapper(self._mappers["lod"])

    def end_interaction(self) -> None:
        """Back to full resolution and sampling (EndInteractionEvent); the caller renders."""
        self._interacting = False
        if self._mappers:
            self.volume_prop.SetMapper(self.mapper)

    @property
    def interacting(self) -> bool:
        return self._interacting

    # -- appearance ------------------------------------------------------------------------------------------
    def set_preset(self, name: str) -> TransferFunctionPreset:
        """Apply a transfer-function preset; returns it with absolute values (what an editor shows).

        Relative presets (MR, MIP) are mapped onto percentiles of the current volume's intensities.  A
        minimum-intensity preset with nothing clipped clips to a slab of +-:data:`MINIP_SLAB_HALF_MM` through
        the cursor facing the camera (:meth:`slab_box`; unclipped, every ray's minimum is the air around the
        patient).
        """
        preset = tf.get_preset(name)
        data_range = None
        if preset.relative:
            if self.volume is None:
                raise MedviewError(f"Preset {name!r} is relative to a volume's intensities: load a volume first")
            if preset.percentiles not in self._ranges:
                self._ranges[preset.percentiles] = tf.relative_range(preset, self.volume.array)
            data_range = self._ranges[preset.percentiles]
        self._preset = tf.apply_preset(preset, self.volume_property, data_range)
        self.set_blend_mode(preset.blend_mode)
        if (preset.blend_mode == "minimum" and self.volume is not None and self._clip_box is None
                and self._clip_plane is None):
            # A MinIP through a whole CT is the air around the patient on every ray: a black picture.  It is
            # a slab technique; unclipped, it starts as a slab through the cursor facing the camera.
            self.set_clip_box(self.slab_box(MINIP_SLAB_HALF_MM))
        return self._preset

    def slab_box(self, half_mm: float) -> tuple[float, ...]:
        """A clip box ``(xmin, xmax, ymin, ymax, zmin, zmax)`` (LPS mm): the whole volume, but only
        +-``half_mm`` around the cursor along the world axis closest to the camera's viewing direction."""
        if self._bounds is None:
            raise MedviewError("A slab needs a volume: load one first")
        camera = self.renderer.GetActiveCamera()
        axis = int(np.argmax(np.abs(np.asarray(camera.GetDirectionOfProjection(), dtype=float))))
        pad = max(self.volume.geometry.spacing) if self.volume is not None else 0.0
        box = self._bounds.astype(float) + np.array([-pad, pad])  # keep the outer voxels whole
        box[axis] = (self._cursor[axis] - half_mm, self._cursor[axis] + half_mm)
        return tuple(float(v) for v in box.reshape(-1))

    def set_transfer_function(self, colour_points: Sequence[ColourPoint], opacity_points: Sequence[OpacityPoint],
                              gradient_opacity_points: Sequence[OpacityPoint] | str | None = "keep") -> None:
        """Show edited transfer functions; lighting and blend mode stay.

        Points are absolute (HU for CT), sorted by value: colour ``(value, r, g, b)`` in 0..1, opacity
        ``(value, opacity)``, gradient opacity ``(magnitude per mm, opacity)`` or None (off) or ``'keep'``.
        """
        base = self._preset or tf.get_preset(tf.default_preset_name(""))
        keep = isinstance(gradient_opacity_points, str)
        if keep and gradient_opacity_points != "keep":
            raise MedviewError(f"Gradient opacity must be points, None or 'keep', not {gradient_opacity_points!r}")
        edited = TransferFunctionPreset(
            key="custom", name=base.name if base.key == "custom" else f"{base.name} (edited)",
            blend_mode=self._blend_mode, colour_points=tf.validate_colour_points(colour_points),
            opacity_points=tf.validate_opacity_points(opacity_points),
            gradient_opacity_points=base.gradient_opacity_points if keep else (
                None if gradient_opacity_points is None else tf.validate_opacity_points(gradient_opacity_points)),
            shading=self.shading, ambient=base.ambient, diffuse=base.diffuse, specular=base.specular,
            specular_power=base.specular_power)
        self._preset = tf.apply_preset(edited, self.volume_property)

    @property
    def preset(self) -> TransferFunctionPreset | None:
        """The transfer functions shown now, absolute (key ``'custom'`` after an edit)."""
        return self._preset

    @property
    def colour_points(self) -> tuple[ColourPoint, ...]:
        return self._preset.colour_points if self._preset else ()

    @property
    def opacity_points(self) -> tuple[OpacityPoint, ...]:
        return self._preset.opacity_points if self._preset else ()

    @property
    def gradient_opacity_points(self) -> tuple[OpacityPoint, ...] | None:
        return self._preset.gradient_opacity_points if self._preset else None

    def set_shading(self, on: bool) -> None:
        """Lighting on or off (on the CPU mapper the first shaded frame computes gradients)."""
        self.volume_property.SetShade(int(bool(on)))

    @property
    def shading(self) -> bool:
        return bool(self.volume_property.GetShade())

    def set_blend_mode(self, mode: str) -> None:
        """``'composite'``, ``'maximum'`` (MIP) or ``'minimum'`` (MinIP)."""
        if mode not in _BLEND:
            raise MedviewError(f"Unknown blend mode {mode!r}; choose one of {', '.join(_BLEND)}")
        self._blend_mode = mode
        for mapper in self._mappers.values():
            getattr(mapper, _BLEND[mode])()

    @property
    def blend_mode(self) -> str:
        return self._blend_mode

    def set_background(self, rgb: Sequence[float]) -> None:
        """Background colour, components in 0..1."""
        self._check_open()
        self.renderer.SetBackground(*(float(c) for c in rgb))

    # -- MPR planes ------------------------------------------------------------------------------------------
    def set_cursor(self, point_lps: Sequence[float] | np.ndarray) -> None:
        """Move the three MPR planes so that they pass through ``point_lps`` (mm)."""
        point = np.asarray(point_lps, dtype=float).reshape(-1)
        if point.size != 3 or not np.all(np.isfinite(point)):
            raise MedviewError(f"The cursor needs a finite 3D point in mm, got {point.tolist()}")
        self._cursor = point
        self._update_slice_planes()

    @property
    def cursor(self) -> np.ndarray:
        """The point (LPS, mm) the MPR planes pass through."""
        return self._cursor.copy()

    def set_plane_frames(self, rotations: Mapping[str, np.ndarray | None] | np.ndarray | None) -> None:
        """Rotate the MPR planes as the 2D views rotate their axes (oblique MPR).

        ``rotations``: one 3x3 world rotation for all planes, a mapping from ``'axial'``, ``'coronal'``,
        ``'sagittal'`` to one (None: unrotated), or None to reset.  Normal = rotation @ :data:`VIEW_NORMALS`.
        """
        if not isinstance(rotations, Mapping):
            rotations = dict.fromkeys(VIEW_NORMALS, rotations)
        for name, rotation in rotations.items():
            if name not in VIEW_NORMALS:
                raise MedviewError(f"Unknown view {name!r}; choose one of {', '.join(VIEW_NORMALS)}")
            r = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
            if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-4) or np.linalg.det(r) < 0:
                raise MedviewError(f"The {name} plane needs a 3x3 rotation matrix, got {r.tolist()}")
            self._rotations[name] = r
        self._update_slice_planes()

    def plane_normal(self, name: str) -> np.ndarray:
        """World normal (LPS, unit) of the ``'axial'``, ``'coronal'`` or ``'sagittal'`` plane."""
        return self._rotations[name] @ VIEW_NORMALS[name]

    def _update_slice_planes(self) -> None:
        for name, plane in self._slice_planes.items():
            plane.SetOrigin(*self._cursor)
            plane.SetNormal(*self.plane_normal(name))

    def set_planes_visible(self, visible: bool) -> None:
        """Show or hide the three MPR planes (hidden at first)."""
        self._planes_visible = bool(visible)
        for prop in self.plane_props.values():
            prop.SetVisibility(int(self._planes_visible and self.volume is not None))

    def set_plane_window(self, center: float, width: float) -> None:
        """Window/level of the MPR planes, in data units (HU for CT)."""
        if not width > 0:
            raise MedviewError(f"The window width must be positive, got {width:g}")
        self.plane_property.SetColorLevel(float(center))
        self.plane_property.SetColorWindow(float(width))

    # -- clipping --------------------------------------------------------------------------------------------
    def set_clip_box(self, bounds: Sequence[float] | None) -> None:
        """Keep only what is inside ``(xmin, xmax, ymin, ymax, zmin, zmax)`` (LPS mm); None: no box."""
        if bounds is not None:
            b = np.asarray(bounds, dtype=float).reshape(-1)
            if b.size != 6 or not np.all(np.isfinite(b)) or np.any(b[1::2] < b[0::2]):
                raise MedviewError(f"A clip box needs (xmin, xmax, ymin, ymax, zmin, zmax) with min <= max, "
                                   f"got {b.tolist()}")
            bounds = tuple(float(v) for v in b)
        self._clip_box = bounds
        self._update_clipping()

    def set_clip_plane(self, origin: Sequence[float] | None, normal: Sequence[float] | None = None) -> None:
        """Cut with a world plane through ``origin`` (LPS mm): the side ``normal`` points to stays.

        ``None`` for either removes the plane.
        """
        if origin is None or normal is None:
            self._clip_plane = None
        else:
            o, n = np.asarray(origin, dtype=float).reshape(-1), np.asarray(normal, dtype=float).reshape(-1)
            length = float(np.linalg.norm(n)) if n.size == 3 else 0.0
            if o.size != 3 or not np.all(np.isfinite(o)) or not length > 1e-9:
                raise MedviewError(f"A clip plane needs a 3D point and a non-zero normal, got {o.tolist()}, "
                                   f"{n.tolist()}")
            self._clip_plane = (o, n / length)
        self._update_clipping()

    @property
    def clip_box(self) -> tuple[float, ...] | None:
        return self._clip_box

    @property
    def clip_plane(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self._clip_plane is None else (self._clip_plane[0].copy(), self._clip_plane[1].copy())

    def _update_clipping(self) -> None:
        # VTK keeps the half-space a plane's normal points into.  The planes are in world coordinates: the
        # mappers and the picker take the prop's user matrix into account (tests/render checks both).
        planes: list[tuple[np.ndarray, np.ndarray]] = []
        if self._clip_box is not None:
            low, high = np.array(self._clip_box[0::2]), np.array(self._clip_box[1::2])
            planes += [(low, axis) for axis in np.eye(3)] + [(high, -axis) for axis in np.eye(3)]
        if self._clip_plane is not None:
            planes.append(self._clip_plane)
        self._clip_planes.RemoveAllItems()
        for origin, normal in planes:
            plane = vtkPlane()
            plane.SetOrigin(*origin)
            plane.SetNormal(*normal)
            self._clip_planes.AddItem(plane)
        for mapper in self._mappers.values():
            mapper.Modified()

    # -- camera, picking, extra props ------------------------------------------------------------------------
    def reset_camera(self, view: str = "anterior") -> None:
        """Look at the whole volume from a patient direction (``'anterior'``: face to face, head up).

        The distance is the smallest that keeps all eight corners of the grid in view (5 % margin).
        """
        self._check_open()
        if view not in VIEW_DIRECTIONS:
            raise MedviewError(f"Unknown view {view!r}; choose one of {', '.join(VIEW_DIRECTIONS)}")
        if self._bounds is None:
            self.renderer.ResetCamera()
            return
        b, centre = self._bounds, self._bounds.mean(axis=1)
        direction, up = (np.array(v) for v in VIEW_DIRECTIONS[view])
        corners = np.array([[x, y, z] for x in b[0] for y in b[1] for z in b[2]]) - centre
        camera = self.renderer.GetActiveCamera()
        width, height = self.renderer.GetSize()
        aspect = width / height if width > 0 and height > 0 else 1.0
        lateral = np.maximum(np.abs(corners @ np.cross(direction, up)) / aspect, np.abs(corners @ up)) * 1.05
        toward = -(corners @ direction)  # how far each corner lies in front of the centre, towards the camera
        distance = float(np.max(toward + lateral / np.tan(np.deg2rad(camera.GetViewAngle()) / 2.0)))
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre - direction * distance))
        camera.SetViewUp(*up)
        camera.SetParallelScale(float(np.max(lateral)))
        self.renderer.ResetCameraClippingRange()

    def pick(self, display_x: float, display_y: float) -> np.ndarray | None:
        """World point (LPS, mm) where the rendered volume is hit at a display position, or None.

        ``display_x, display_y`` are VTK display pixels (origin bottom left, as the interactor's
        ``GetEventPosition()``).  The ray stops at the first sample whose scalar opacity reaches
        ``pick_opacity`` (None: 0.1, or half the largest opacity if lower), skipping clipped parts; for MIP
        and MinIP that is the first visible voxel, not the extreme one.
        """
        self._check_open()
        if self.volume is not None and self._pending_lod is not None:
            self.take_full_quality(wait_s=30.0)  # a click before the first mapper is ready: wait for it
        if self.volume is None or self.volume_prop.GetMapper() is None:
            return None
        threshold = self.pick_opacity
        if threshold is None:
            top = max((a for _, a in self.opacity_points), default=1.0)
            threshold = min(0.1, 0.5 * top) if top > 0 else 1.0
        self._picker.SetVolumeOpacityIsovalue(threshold)
        if not self._picker.Pick(float(display_x), float(display_y), 0.0, self.renderer):
            return None
        return None if self._picker.GetVolume() is None else np.array(self._picker.GetPickPosition(), dtype=float)

    def add_actor(self, name: str, prop: vtkProp) -> None:
        """Add a prop (a surface, a marker) under a name, replacing an earlier one of that name.

        A prop built in the volume's index frame needs ``prop.SetUserMatrix(index_frame_matrix(geometry))``.
        """
        self._check_open()
        self.remove_actor(name)
        self._actors[name] = prop
        self.renderer.AddViewProp(prop)

    def remove_actor(self, name: str) -> bool:
        """Remove a named prop; False if there was none."""
        prop = self._actors.pop(name, None)
        if prop is None or self.renderer is None:
            return False
        if self.render_window is not None:
            prop.ReleaseGraphicsResources(self.render_window)
        self.renderer.RemoveViewProp(prop)
        return True

    @property
    def actors(self) -> dict[str, vtkProp]:
        return dict(self._actors)

    # -- output and lifetime -----------------------------------------------------------------------------------
    def render(self) -> None:
        """Render the window now (every frame, also those the interactor draws, is timed: module notes)."""
        self._check_open()
        self.render_window.Render()

    def snapshot(self, size: tuple[int, int] | None = None, render: bool = True) -> np.ndarray:
        """Render and read back the picture: ``(height, width, 3)`` uint8 RGB, top row first.

        ``size`` ``(width, height)`` in pixels resizes the window for the capture and restores it after.
        ``render=False`` reads the picture shown now (the front buffer) without rendering; ``size`` is ignored.
        """
        self._check_open()
        if render and self.full_quality_pending:
            self.wait_full_quality()  # a picture asked for is the full-quality one (the mappers being prepared)
        window = self.render_window
        old = tuple(window.GetSize())
        resize = render and size is not None and tuple(int(v) for v in size) != old
        if resize:
            window.SetSize(int(size[0]), int(size[1]))
        try:
            if render:
                window.Render()
            grab = vtkWindowToImageFilter()
            grab.SetInput(window)
            grab.SetInputBufferTypeToRGB()
            # the frame just rendered is in the back buffer; without a render, the one shown is in the front
            grab.SetReadFrontBuffer(0 if render else 1)
            grab.ShouldRerenderOff()
            grab.Update()
            pixels = image_to_array(grab.GetOutput())  # (1, h, w, 3), bottom row first
            return np.ascontiguousarray(pixels[0, ::-1]).astype(np.uint8, copy=False)
        finally:
            if resize:
                window.SetSize(*old)

    def close(self) -> None:
        """Release GL resources and every reference; finalise the window if the scene made it.

        A window passed in (the Qt widget's) stays usable: only this scene's renderer leaves it.
        """
        if self.renderer is None:
            return
        renderer, window = self.renderer, self.render_window
        renderer.RemoveObserver(self._start_tag)
        renderer.RemoveObserver(self._end_tag)
        window.RemoveRenderer(renderer)  # releases the props' textures and buffers in the window's context
        renderer.RemoveAllViewProps()
        self._release_mappers()
        for mapper in self._slice_mappers.values():
            mapper.RemoveAllInputs()
        self._picker.InitializePickList()
        self._actors.clear()
        self._images = {}
        self._clip_planes.RemoveAllItems()
        if self._owns_window:
            window.Finalize()
        self.volume = self.renderer = self.render_window = None

    def __enter__(self) -> VolumeScene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_full_quality(self, timeout_s: float = 60.0) -> bool:
        """Block until the background full-quality mapper is in place (for scripts and tests)."""
        deadline = time.perf_counter() + timeout_s
        while self.full_quality_pending:
            if not self.take_full_quality(max(deadline - time.perf_counter(), 0.0)):
                return False
        return True

    def _check_open(self) -> None:
        if self.renderer is None:
            raise RuntimeError("This VolumeScene is closed")


class _GradientJob:
    """A full-quality CPU mapper rendered once in a thread of its own, so that it computes its gradients there."""

    def __init__(self, mapper: vtkFixedPointVolumeRayCastMapper, image: vtkImageData) -> None:
        self.mapper, self.image = mapper, image
        self.error: str | None = None
        self.done = threading.Event()
        self.started = False
        self._property: vtkVolumeProperty | None = None

    def start(self, volume_property: vtkVolumeProperty) -> None:
        """Start the thread (once), with a copy of the scene's transfer functions made here: the CPU mapper
        scales the gradient magnitudes it keeps by the range of the functions it sees at that frame."""
        if not self.started:
            self.started = True
            self._property = vtkVolumeProperty()
            self._property.DeepCopy(volume_property)
            self._property.ShadeOn()  # shading needs the gradients: the mapper computes and keeps them
            threading.Thread(target=self._run, name="medview-3d-gradients", daemon=True).start()

    def _run(self) -> None:
        from vtkmodules.vtkRenderingOpenGL2 import vtkOSOpenGLRenderWindow

        window = vtkOSOpenGLRenderWindow()
        try:
            window.SetOffScreenRendering(1)
            window.SetSize(2, 2)
            renderer = vtkRenderer()
            window.AddRenderer(renderer)
            volume = vtkVolume()
            volume.SetMapper(self.mapper)
            volume.SetProperty(self._property)
            renderer.AddVolume(volume)
            renderer.ResetCamera()
            window.Render()
            renderer.RemoveAllViewProps()
            self.mapper.ReleaseGraphicsResources(window)
        except Exception as exc:  # reported by take_full_quality
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            window.Finalize()
            self.done.set()
