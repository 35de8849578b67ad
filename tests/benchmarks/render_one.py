"""One volume-rendering measurement in a fresh process; prints one JSON line on stdout.

``python render_one.py DATA.npz MODE [--shade on|off] [--camera JSON] [--frames N]``

DATA.npz holds ``array`` (a CT, z, y, x, HU) and its geometry (``spacing``, ``origin``, ``direction``),
made by ``test_render_benchmark.py``.  The window is an offscreen 512 x 512 ``vtkRenderWindow`` (OSMesa
where there is no display: software GL on a machine without GPU).  Modes:

medview
    ``VolumeScene.set_volume`` + the first full-quality frame (timed together: "first render"), then
    ``FRAMES`` frames rotating the camera (``Azimuth`` steps) at full quality, then the same between
    ``begin_interaction`` / ``end_interaction`` (LOD); the first LOD frame (which computes the LOD
    mapper's gradients when shading) is timed apart and not counted in the fps; finally the frame that
    returns to full quality.  The ``ct-bone`` preset, shading as ``--shade`` says.
medview-progressive
    ``set_volume(progressive=True)``: time to the first (LOD) frame, then to the first full-quality frame
    after ``end_interaction``.
peer
    Plain VTK, as an application without LOD would do it: ``vtkSmartVolumeMapper`` (default render mode,
    full quality all the time) on the same ``vtkImageData`` with the same transfer functions, lighting and
    camera (``--camera`` from the medview run); first render and rotating fps.
peer-raycast
    The same with ``SetRequestedRenderModeToRayCast`` (the smart mapper's CPU path), for the mapper choice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SIZE = (512, 512)
STEP_DEG = 3.0


def load(path: str):
    import numpy as np

    from medview.core.geometry import Geometry
    from medview.core.volume import Volume, VolumeMetadata

    data = np.load(path)
    array = np.ascontiguousarray(data["array"])
    g = Geometry(array.shape, tuple(data["spacing"]), tuple(data["origin"]), tuple(data["direction"]))
    return Volume(array, g, VolumeMetadata(modality="CT"))


def rotate(render_window, camera, frames: int) -> dict:
    times = []
    for _ in range(frames):
        camera.Azimuth(STEP_DEG)
        t0 = time.perf_counter()
        render_window.Render()
        times.append(time.perf_counter() - t0)
    total = sum(times)
    return {"frames": frames, "fps": frames / total, "p50_ms": statistics.median(times) * 1000,
            "max_ms": max(times) * 1000}


def camera_state(camera) -> dict:
    return {"position": camera.GetPosition(), "focal_point": camera.GetFocalPoint(), "view_up": camera.GetViewUp(),
            "view_angle": camera.GetViewAngle()}


def run_medview(volume, shade: bool, frames: int) -> dict:
    from medview.render.volume_scene import VolumeScene

    scene = VolumeScene(size=SIZE)
    t0 = time.perf_counter()
    scene.set_volume(volume, preset="ct-bone")
    scene.set_shading(shade)
    t_set = time.perf_counter()
    scene.render()
    t_first = time.perf_counter()
    camera = scene.renderer.GetActiveCamera()
    start = camera_state(camera)
    full = rotate(scene.render_window, camera, frames)
    scene.begin_interaction()
    camera.Azimuth(STEP_DEG)
    t1 = time.perf_counter()
    scene.render()
    first_lod = time.perf_counter() - t1
    lod_mapper = scene.mapper
    interactive = rotate(scene.render_window, camera, frames * 3)
    scene.end_interaction()
    t2 = time.perf_counter()
    scene.render()
    restore = time.perf_counter() - t2
    result = {"mode": "medview", "shade": shade, "mapper": scene.mapper.GetClassName(), "backend": scene.backend,
              "set_volume_s": t_set - t0, "first_render_s": t_first - t0, "full": full,
              "first_lod_frame_s": first_lod, "interactive": interactive, "restore_full_s": restore,
              "lod_dims": lod_mapper.GetInput().GetDimensions(),
              "lod_image_sample_distance": lod_mapper.GetImageSampleDistance(),
              "lod_sample_distance": lod_mapper.GetSampleDistance(),
              "full_sample_distance": scene.mapper.GetSampleDistance(), "camera": start}
    scene.close()
    return result


def run_progressive(volume, shade: bool) -> dict:
    from medview.render.volume_scene import VolumeScene

    scene = VolumeScene(size=SIZE)
    t0 = time.perf_counter()
    scene.set_volume(volume, preset="ct-bone", progressive=True)
    scene.set_shading(shade)
    scene.render()
    t_first = time.perf_counter()
    scene.end_interaction()
    scene.render()
    t_full = time.perf_counter()
    scene.close()
    return {"mode": "medview-progressive", "shade": shade, "first_frame_s": t_first - t0,
            "first_full_frame_s": t_full - t0}


def run_peer(volume, shade: bool, frames: int, camera_json: str, raycast: bool) -> dict:
    import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPiecewiseFunction
    from vtkmodules.vtkCommonMath import vtkMatrix4x4
    from vtkmodules.vtkRenderingCore import (
        vtkColorTransferFunction,
        vtkRenderer,
        vtkRenderWindow,
        vtkVolume,
        vtkVolumeProperty,
    )
    from vtkmodules.vtkRenderingVolumeOpenGL2 import vtkSmartVolumeMapper

    import medview.render  # noqa: F401  (the same offscreen window class as medview)
    from medview.render.presets import get_preset

    preset = get_preset("ct-bone")
    g = volume.geometry
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*SIZE)
    renderer = vtkRenderer()
    window.AddRenderer(renderer)
    t0 = time.perf_counter()
    image = vtkImageData()
    image.SetDimensions(*g.size_xyz)
    image.SetSpacing(*g.spacing)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(volume.array.reshape(-1), deep=False))
    mapper = vtkSmartVolumeMapper()
    if raycast:
        mapper.SetRequestedRenderModeToRayCast()
    mapper.SetInputData(image)
    ctf, otf = vtkColorTransferFunction(), vtkPiecewiseFunction()
    for value, r, gg, b in preset.colour_points:
        ctf.AddRGBPoint(value, r, gg, b)
    for value, a in preset.opacity_points:
        otf.AddPoint(value, a)
    prop = vtkVolumeProperty()
    prop.SetColor(ctf)
    prop.SetScalarOpacity(otf)
    prop.SetInterpolationTypeToLinear()
    prop.SetShade(int(shade))
    prop.SetAmbient(preset.ambient)
    prop.SetDiffuse(preset.diffuse)
    prop.SetSpecular(preset.specular)
    prop.SetSpecularPower(preset.specular_power)
    actor = vtkVolume()
    actor.SetMapper(mapper)
    actor.SetProperty(prop)
    matrix = vtkMatrix4x4()
    for r in range(3):
        for c in range(3):
            matrix.SetElement(r, c, g.direction_matrix[r, c])
        matrix.SetElement(r, 3, g.origin[r])
    actor.SetUserMatrix(matrix)
    renderer.AddVolume(actor)
    cam = json.loads(camera_json)
    camera = renderer.GetActiveCamera()
    camera.SetPosition(*cam["position"])
    camera.SetFocalPoint(*cam["focal_point"])
    camera.SetViewUp(*cam["view_up"])
    camera.SetViewAngle(cam["view_angle"])
    renderer.ResetCameraClippingRange()
    window.Render()
    first = time.perf_counter() - t0
    rotating = rotate(window, camera, frames)
    result = {"mode": "peer-raycast" if raycast else "peer", "shade": shade, "first_render_s": first,
              "full": rotating, "render_mode": mapper.GetLastUsedRenderMode()}
    window.Finalize()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("mode", choices=["medview", "medview-progressive", "peer", "peer-raycast"])
    parser.add_argument("--shade", choices=["on", "off"], default="on")
    parser.add_argument("--camera", default=None, help="peer: the medview run's camera as JSON")
    parser.add_argument("--frames", type=int, default=10)
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # only the JSON line goes to stdout
        volume = load(args.data)
        shade = args.shade == "on"
        if args.mode == "medview":
            result = run_medview(volume, shade, args.frames)
        elif args.mode == "medview-progressive":
            result = run_progressive(volume, shade)
        else:
            result = run_peer(volume, shade, args.frames, args.camera, args.mode == "peer-raycast")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
