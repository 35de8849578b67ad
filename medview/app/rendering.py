"""3D commands shared by the GUI and the CLI: offscreen volume renders, surface export, radiographs.

VTK is imported inside the functions (through ``medview.render``), so ``import medview.app`` stays
light and the headless verbs that do not render never load it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medview.algorithms.display import window_to_uint8
from medview.algorithms.drr import DRR_MODALITY, drr
from medview.app.label_maps import open_label_map
from medview.core.errors import MedviewError
from medview.core.labels import LabelMap
from medview.core.modality import check_modality
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume
from medview.io.readers import open_image
from medview.io.writers import check_picture_path, write_picture

MAX_RENDER_SIDE = 8192


def parse_size(text: str) -> tuple[int, int]:
    """``'800x600'`` -> ``(800, 600)`` pixels, with a clear message for anything else."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise MedviewError(f"Size must look like 800x800 (width x height in pixels), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    if not (16 <= w <= MAX_RENDER_SIDE and 16 <= h <= MAX_RENDER_SIDE):
        raise MedviewError(f"Size {w}x{h} is out of range: each side must be 16 to {MAX_RENDER_SIDE} pixels")
    return w, h


@dataclass
class RenderResult:
    output: str
    preset: str
    size: tuple[int, int]
    surfaces: list[int] = field(default_factory=list)


def render_snapshot(input_path: str, output: str, preset: str | None = None, labels_path: str | None = None,
                    size: tuple[int, int] = (800, 800), view: str = "anterior", shading: bool | None = None,
                    task: TaskContext | None = None) -> RenderResult:
    """Volume-render ``input_path`` offscreen (with label surfaces from ``labels_path``) to a PNG."""
    from medview.render.presets import list_presets
    from medview.render.surfaces import label_actor, label_surfaces
    from medview.render.volume_scene import VIEW_DIRECTIONS, VolumeScene

    check_picture_path(output)
    if preset is not None and preset not in list_presets():
        raise MedviewError(f"Unknown preset {preset!r}; presets: {', '.join(list_presets())}")
    if view not in VIEW_DIRECTIONS:
        raise MedviewError(f"Unknown view {view!r}; choose one of {', '.join(VIEW_DIRECTIONS)}")
    volume = open_image(input_path, task=task)
    labels = open_label_map(labels_path, reference=volume) if labels_path else None
    check_cancel(task)
    report(task, 0.8, "Rendering", force=True)
    scene = VolumeScene(size=size)
    try:
        scene.set_volume(volume, preset=preset)
        if shading is not None:
            scene.set_shading(shading)
        shown: list[int] = []
        if labels is not None:
            for value, surface in label_surfaces(labels, task=task).items():
                scene.add_actor(f"label-{value}", label_actor(surface, labels.label(value)))
                shown.append(value)
        scene.reset_camera(view)
        pixels = scene.snapshot(size)
        name = scene.preset.key if scene.preset is not None else str(preset)
    finally:
        scene.close()
    write_picture(pixels, output)
    return RenderResult(output, name, size, shown)


@dataclass
class MeshResult:
    outputs: list[str]
    properties: dict[int, dict]


def mesh_output_names(output: str, values: list[int], labels: LabelMap) -> dict[int, str]:
    """One file per label: ``OUT`` for a single label, ``OUT-<value>-<name>.ext`` for several."""
    if len(values) == 1:
        return {values[0]: output}
    path = Path(output)
    suffix = "".join(path.suffixes[-1:])
    stem = path.name[: -len(suffix)] if suffix else path.name
    out = {}
    for v in values:
        name = re.sub(r"[^A-Za-z0-9]+", "_", labels.label(v).name).strip("_") or f"label{v}"
        out[v] = str(path.with_name(f"{stem}-{v}-{name}{suffix}"))
    return out


def export_label_meshes(labels: LabelMap, output: str, values: list[int] | None = None,
                        convention: str = "LPS", smoothing_iterations: int | None = None,
                        task: TaskContext | None = None) -> MeshResult:
    """Surface meshes of ``values`` (default: every label present) written as STL/OBJ/PLY."""
    from medview.render.surfaces import (
        DEFAULT_SMOOTHING_ITERATIONS,
        MESH_SUFFIXES,
        label_surface,
        mesh_properties,
        write_mesh,
    )

    if not output.lower().endswith(MESH_SUFFIXES):
        raise MedviewError(f"Cannot write {os.path.basename(output)}: meshes are written as "
                           f"{', '.join(MESH_SUFFIXES)}")
    if convention.upper() not in ("LPS", "RAS"):
        raise MedviewError(f"Coordinate convention must be LPS or RAS, got {convention!r}")
    present = labels.present_values()
    if values is None:
        values = present
        if not values:
            raise MedviewError("The label map is empty: there is no surface to export")
    missing = [v for v in values if v not in present]
    if missing:
        raise MedviewError(f"Label value(s) {', '.join(map(str, missing))} not found; the label map holds "
                           f"{', '.join(map(str, present)) or 'no labels'}")
    iterations = DEFAULT_SMOOTHING_ITERATIONS if smoothing_iterations is None else int(smoothing_iterations)
    if iterations < 0:
        raise MedviewError(f"Smoothing iterations must be 0 or more, got {iterations}")
    names = mesh_output_names(output, values, labels)
    written, props = [], {}
    for i, v in enumerate(values):
        check_cancel(task)
        report(task, i / len(values), f"Surface of {labels.label(v).name}")
        surface = label_surface(labels, v, smoothing_iterations=iterations)
        props[v] = mesh_properties(surface)
        written.append(str(write_mesh(surface, names[v], convention=convention.upper())))
    report(task, 1.0, "Surfaces written", force=True)
    return MeshResult(written, props)


def export_meshes_from_file(labels_path: str, output: str, values: list[int] | None = None,
                            convention: str = "LPS", smoothing_iterations: int | None = None,
                            task: TaskContext | None = None) -> MeshResult:
    """:func:`export_label_meshes` for a label file (NIfTI, NRRD, MHA, DICOM)."""
    return export_label_meshes(open_label_map(labels_path, task=task), output, values, convention,
                               smoothing_iterations, task)


@dataclass
class RadiographResult:
    output: str
    image: Volume
    warnings: list[str] = field(default_factory=list)


def check_radiograph_input(volume: Volume, allow_modality_mismatch: bool = False) -> list[str]:
    """Refuse an image that is not (or not known to be) a CT unless ``allow_modality_mismatch``
    (:class:`~medview.core.modality.ModalityMismatchError`); the warning to report when it is allowed."""
    problem = check_modality(DRR_MODALITY, volume.modality, "A virtual radiograph",
                             allow_mismatch=allow_modality_mismatch)
    return [problem] if problem else []


def radiograph_picture(image: Volume, window: tuple[float, float] | None = None) -> np.ndarray:
    """A DRR as an 8-bit picture with square pixels (the detector's pixels may be rectangular).

    ``window`` ``(low, high)`` in the radiograph's values; default 0 (air) to its 99.9th percentile.
    """
    data = image.array[0].astype(np.float32)
    if window is None:
        high = float(np.percentile(data, 99.9)) if data.size else 1.0
        window = (0.0, max(high, 1e-6))
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise MedviewError(f"The window must have high > low, got {low:g} to {high:g}")
    grey = window_to_uint8(data, low, high)
    su, sv = image.geometry.spacing[:2]
    if abs(su - sv) > 1e-6 * max(su, sv):
        from scipy import ndimage

        s = min(su, sv)
        grey = ndimage.zoom(grey, (sv / s, su / s), order=1)
    return grey


def virtual_radiograph(input_path: str, output: str, view: str = "ap", task: TaskContext | None = None,
                       allow_modality_mismatch: bool = False) -> RadiographResult:
    """AP or lateral ray-sum radiograph of a CT: a PNG (square pixels) or an image file with its geometry.

    An image that is not (or not known to be) a CT is refused unless ``allow_modality_mismatch``."""
    from medview.io.writers import WRITE_EXTENSIONS, write_image

    lower = output.lower()
    picture = lower.endswith(".png")
    if not picture and not lower.endswith(WRITE_EXTENSIONS):
        raise MedviewError(f"Cannot write {os.path.basename(output)}: a radiograph is written as .png or as "
                           f"an image ({', '.join(WRITE_EXTENSIONS)})")
    if picture:
        check_picture_path(output)
    volume = open_image(input_path, task=task)
    warnings = check_radiograph_input(volume, allow_modality_mismatch)
    image = drr(volume, view=view, task=task)
    if picture:
        write_picture(radiograph_picture(image), output)
    else:
        write_image(image, output)
    return RadiographResult(output, image, warnings)
