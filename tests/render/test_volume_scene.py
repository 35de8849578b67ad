"""The 3D scene renders offscreen (OSMesa) and places everything in LPS world millimetres.

Every test runs with VTK's output window redirected to a string buffer and fails if VTK printed an error
or a warning.  Phantoms sit on oblique (and left-handed) grids, so that a prop or a clipping plane that
forgot the index-frame matrix would land in the wrong place.
"""

from __future__ import annotations

import gc
import weakref
from collections import Counter

import numpy as np
import pytest
from scipy import ndimage
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper, vtkRenderWindow

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata
from medview.render.presets import list_presets
from medview.render.volume_scene import (
    LOD_MAX_FACTOR,
    VolumeScene,
    adapt_lod_factor,
    detect_backend,
    gl_renderer_name,
    lod_strides,
)


@pytest.fixture(autouse=True)
def _no_vtk_messages(vtk_messages):
    """Every test here fails if VTK prints an error or a warning (tests/conftest.py's vtk_messages)."""
    return vtk_messages


@pytest.fixture(scope="session")
def chest_ct() -> Volume:
    from medview.app.samples import sample_path
    from medview.io.readers import open_image

    return open_image(sample_path("chest_ct"))


MAPPERS = {"cpu": "vtkFixedPointVolumeRayCastMapper", "gpu": "vtkSmartVolumeMapper"}


def rotation(axis, degrees: float) -> np.ndarray:
    a = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(degrees)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def voxel_world(g: Geometry) -> np.ndarray:
    """World position (LPS mm) of every voxel centre, shaped (z, y, x, 3)."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in g.shape), indexing="ij")
    return g.index_to_world(np.stack([x, y, z], axis=-1))


def grid_centre(g: Geometry) -> np.ndarray:
    return g.index_to_world((np.array(g.size_xyz, dtype=float) - 1) / 2)


def project(scene: VolumeScene, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row from the top, column) pixel indices of LPS points in the scene's current camera."""
    w, h = scene.render_window.GetSize()
    camera = scene.renderer.GetActiveCamera()
    m = camera.GetCompositeProjectionTransformMatrix(w / h, -1, 1)
    proj = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    ndc = np.c_[points, np.ones(len(points))] @ proj.T
    ndc = ndc[:, :3] / ndc[:, 3:4]
    col = np.floor((ndc[:, 0] + 1) / 2 * w).astype(int)
    row = h - 1 - np.floor((ndc[:, 1] + 1) / 2 * h).astype(int)
    return row, col


def projected_mask(scene: VolumeScene, volume: Volume, inside: np.ndarray) -> np.ndarray:
    """Pixels covered by the projection of the voxels where ``inside`` is true (each voxel sampled along
    its slice thickness, so 5 mm slices leave no gaps)."""
    g = volume.geometry
    w, h = scene.render_window.GetSize()
    z, y, x = np.nonzero(inside & ~ndimage.binary_erosion(inside))  # a solid's surface casts its shadow
    mask = np.zeros((h, w), dtype=bool)
    steps = max(2, int(np.ceil(g.spacing[2] / min(g.spacing[:2]))))
    for dz in np.linspace(-0.5, 0.5, steps):
        world = g.index_to_world(np.stack([x, y, z + dz], axis=-1).astype(float))
        row, col = project(scene, world)
        ok = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        mask[row[ok], col[ok]] = True
    return mask


def luminance(picture: np.ndarray) -> np.ndarray:
    return picture.astype(float).mean(axis=2)


# -- the bundled CT ----------------------------------------------------------------------------------------
def test_chest_ct_bone_preset_is_bright_on_bone(chest_ct):
    with VolumeScene(size=(384, 384)) as scene:
        scene.set_volume(chest_ct)
        assert scene.preset.key == "ct-bone"
        assert scene.backend == detect_backend(scene.render_window)
        assert scene.mapper.GetClassName() == MAPPERS[scene.backend]
        lum = luminance(scene.snapshot())
        bone = projected_mask(scene, chest_ct, chest_ct.array > 250)
        body = projected_mask(scene, chest_ct, chest_ct.array > -300)
    soft_only = body & ~bone  # pixels where the ray meets tissue but no bone
    outside = ~body
    mean_bone, mean_soft, mean_out = lum[bone].mean(), lum[soft_only].mean(), lum[outside].mean()
    print(f"\nbone preset, anterior view: mean luminance on projected bone {mean_bone:.1f} "
          f"({bone.mean() * 100:.0f} % of pixels), tissue without bone {mean_soft:.1f} "
          f"({soft_only.mean() * 100:.0f} %), outside the body {mean_out:.1f}; "
          f"bright (>40) on bone {(lum[bone] > 40).mean() * 100:.0f} %")
    assert lum.max() > 150  # not blank
    assert bone.mean() > 0.1 and soft_only.mean() > 0.02  # the masks are meaningful
    assert mean_bone > 40
    assert mean_bone > 4 * mean_soft
    assert mean_out < 2
    assert (lum[bone] > 40).mean() > 0.6


def test_camera_starts_anterior_with_head_up(chest_ct):
    with VolumeScene(size=(160, 120)) as scene:
        scene.set_volume(chest_ct)
        camera = scene.renderer.GetActiveCamera()
        dop = np.array(camera.GetDirectionOfProjection())
        np.testing.assert_allclose(dop, [0, 1, 0], atol=1e-9)  # looking from anterior (-Y) to posterior
        np.testing.assert_allclose(camera.GetViewUp(), [0, 0, 1], atol=1e-9)  # superior up
        # patient left (+X) on screen right, superior (+Z) at the top
        c = grid_centre(chest_ct.geometry)
        row, col = project(scene, np.array([c, c + [50, 0, 0], c + [0, 0, 50]]))
        assert col[1] > col[0] and row[2] < row[0]
        # the whole volume is in view
        g = chest_ct.geometry
        n = np.array(g.size_xyz) - 1
        corners = g.index_to_world(np.array([[i, j, k] for i in (0, n[0]) for j in (0, n[1]) for k in (0, n[2])]))
        row, col = project(scene, corners)
        assert row.min() >= 0 and row.max() < 120 and col.min() >= 0 and col.max() < 160


def test_every_preset_renders(chest_ct):
    with VolumeScene(size=(96, 96)) as scene:
        scene.set_volume(chest_ct)
        for key in list_presets():
            applied = scene.set_preset(key)
            assert scene.blend_mode == applied.blend_mode
            assert not applied.relative
            assert scene.opacity_points == applied.opacity_points
            # a minimum-intensity projection through the whole CT meets the air around the patient on every
            # ray: it is used on a clipped region, here the central sixth of the box
            b = np.array(scene.volume_prop.GetBounds()).reshape(3, 2)
            mid, half = b.mean(axis=1), (b[:, 1] - b[:, 0]) / 12
            scene.set_clip_box(np.c_[mid - half, mid + half].ravel() if applied.blend_mode == "minimum" else None)
            assert luminance(scene.snapshot()).max() > 20, key
        scene.set_preset("mr-default")  # relative: fractions of the CT's own range
        values = [v for v, *_ in scene.colour_points]
        lo, hi = np.percentile(chest_ct.array, [1, 99.5])
        assert values[0] == pytest.approx(lo, abs=30) and values[-1] == pytest.approx(hi, abs=60)


# -- phantoms on oblique grids --------------------------------------------------------------------------------
def oblique_volume(shape=(40, 44, 48), spacing=(1.1, 0.9, 1.3), left_handed=False) -> Volume:
    """A bright box filling the grid but for a 3-voxel border, on a rotated grid (optionally left-handed)."""
    d = rotation((1, 2, 3), 25.0)
    if left_handed:
        d = d @ np.diag([1.0, 1.0, -1.0])
    g = Geometry(shape, spacing, (-20.0, 35.0, 110.0), tuple(d.ravel()))
    array = np.full(shape, -1000, dtype=np.int16)
    array[3:-3, 3:-3, 3:-3] = 1000
    return Volume(array, g, VolumeMetadata(modality="CT"))


def _halves(lum: np.ndarray, axis: int, margin: int = 6) -> tuple[float, float]:
    """Fraction of lit pixels before and after the centre line (columns if axis=1, rows if axis=0)."""
    n = lum.shape[axis]
    first = np.take(lum, np.arange(0, n // 2 - margin), axis=axis)
    second = np.take(lum, np.arange(n // 2 + margin, n), axis=axis)
    return float((first > 10).mean()), float((second > 10).mean())


@pytest.mark.parametrize("backend, left_handed", [("cpu", False), ("cpu", True), ("gpu", True)])
def test_clip_plane_and_box_cut_in_world_coordinates(backend, left_handed):
    # The camera sits on the world planes x = c and z = c through the phantom's centre, so those planes
    # project onto the screen's centre lines: a correct cut blanks one half and leaves the other as it was.
    volume = oblique_volume(left_handed=left_handed)
    c = grid_centre(volume.geometry)
    with VolumeScene(size=(160, 160), backend=backend) as scene:  # "gpu": the smart mapper, on any OpenGL
        scene.set_volume(volume)
        assert scene.mapper.GetClassName() == MAPPERS[backend]
        scene.set_shading(False)  # the cut faces of a flat phantom have no gradient to light
        lum = luminance(scene.snapshot())
        right, left = _halves(lum, axis=1)  # screen left = patient right
        top, bottom = _halves(lum, axis=0)
        assert min(right, left, top, bottom) > 0.2
        scene.set_clip_plane(c, (1.0, 0.0, 0.0))  # keep the patient's left (+X): screen right
        right_cut, left_cut = _halves(luminance(scene.snapshot()), axis=1)
        assert right_cut < 0.002 and left_cut == pytest.approx(left, abs=0.01)
        scene.set_clip_plane(None)
        b = scene.volume_prop.GetBounds()
        scene.set_clip_box((b[0] - 1, b[1] + 1, b[2] - 1, b[3] + 1, c[2], b[5] + 1))  # superior half only
        top_cut, bottom_cut = _halves(luminance(scene.snapshot()), axis=0)
        assert bottom_cut < 0.002 and top_cut == pytest.approx(top, abs=0.01)
        scene.begin_interaction()  # the LOD mapper is clipped the same way
        top_cut, bottom_cut = _halves(luminance(scene.snapshot()), axis=0)
        assert bottom_cut < 0.002 and top_cut > 0.2
        scene.end_interaction()
        scene.set_clip_box(None)
        assert _halves(luminance(scene.snapshot()), axis=0) == (top, bottom)
        with pytest.raises(MedviewError):
            scene.set_clip_box((1, 0, 0, 1, 0, 1))
        with pytest.raises(MedviewError):
            scene.set_clip_plane((0, 0, 0), (0, 0, 0))


def sphere_volume() -> tuple[Volume, np.ndarray, float]:
    g = Geometry((60, 70, 64), (0.9, 0.8, 1.1), (12.0, -30.0, 50.0), tuple(rotation((1, 1, 1), 35.0).ravel()))
    centre, radius = grid_centre(g) + np.array([3.0, -2.0, 4.0]), 18.0
    inside = np.linalg.norm(voxel_world(g) - centre, axis=-1) < radius
    return Volume(np.where(inside, 1000, -1000).astype(np.int16), g, VolumeMetadata(modality="CT")), centre, radius


def display_ray(scene: VolumeScene, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    ends = []
    for depth in (0.0, 1.0):
        scene.renderer.SetDisplayPoint(x, y, depth)
        scene.renderer.DisplayToWorld()
        p = np.array(scene.renderer.GetWorldPoint())
        ends.append(p[:3] / p[3])
    return ends[0], (ends[1] - ends[0]) / np.linalg.norm(ends[1] - ends[0])


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_pick_centre_pixel_hits_the_front_of_a_sphere(backend):
    volume, centre, radius = sphere_volume()
    with VolumeScene(size=(200, 200), backend=backend) as scene:
        scene.set_volume(volume)
        scene.render()
        x, y = 100, 100
        picked = scene.pick(x, y)
        assert picked is not None
        origin, direction = display_ray(scene, x, y)  # where the centre pixel's ray meets the sphere
        oc = origin - centre
        b = oc @ direction
        expected = origin + (-b - np.sqrt(b * b - (oc @ oc - radius**2))) * direction
        step = max(volume.geometry.spacing)
        print(f"\npicked {np.round(picked, 2)}, analytic {np.round(expected, 2)}: "
              f"{np.linalg.norm(picked - expected):.2f} mm apart")
        assert np.linalg.norm(picked - expected) < step
        assert abs(np.linalg.norm(picked - centre) - radius) < step
        camera = np.array(scene.renderer.GetActiveCamera().GetPosition())
        assert (picked - centre) @ (camera - centre) > 0.9 * radius * np.linalg.norm(camera - centre)
        assert scene.pick(2, 2) is None  # background
        scene.set_clip_plane(centre, (0.0, 1.0, 0.0))  # cut away the anterior half: the ray goes on to the cut
        picked = scene.pick(x, y)
        assert picked is not None and picked[1] == pytest.approx(centre[1], abs=step)


# -- level of detail ------------------------------------------------------------------------------------------
def test_lod_switch_and_restore(chest_ct):
    with VolumeScene(size=(128, 128), lod_max_voxels=64**3) as scene:
        scene.set_volume(chest_ct)
        full = scene.mapper
        full_dims = full.GetInput().GetDimensions()
        assert full_dims == chest_ct.geometry.size_xyz
        full_sample, full_image = full.GetSampleDistance(), full.GetImageSampleDistance()
        scene.render()
        scene.begin_interaction()
        assert scene.interacting
        lod = scene.volume_prop.GetMapper()
        assert lod is scene.mapper and lod is not full
        dims = lod.GetInput().GetDimensions()
        assert np.prod(dims) <= 64**3 and np.prod(dims) < np.prod(full_dims) / 8
        assert lod.GetSampleDistance() > full_sample and lod.GetImageSampleDistance() > full_image
        assert luminance(scene.snapshot()).max() > 100
        # same place in the world: the LOD grid keeps voxel 0 and the index frame
        np.testing.assert_allclose(lod.GetInput().GetSpacing()[:2], np.array(chest_ct.geometry.spacing[:2]) *
                                   lod_strides(chest_ct.geometry.shape, chest_ct.geometry.spacing, 64**3)[:0:-1])
        scene.end_interaction()
        assert not scene.interacting and scene.volume_prop.GetMapper() is full
        assert full.GetInput().GetDimensions() == full_dims
        assert (full.GetSampleDistance(), full.GetImageSampleDistance()) == (full_sample, full_image)
        scene.set_volume(chest_ct, progressive=True)  # a fast first frame from the LOD input
        assert scene.interacting and scene.mapper.GetInput().GetDimensions() == dims
        scene.end_interaction()
        assert scene.mapper.GetInput().GetDimensions() == full_dims


def test_adapt_lod_factor_coarsens_slow_frames_and_refines_fast_ones():
    assert adapt_lod_factor(1.0, 0.4, 0.1) == pytest.approx(2.0)  # 4x over budget: sqrt -> 2x coarser
    assert adapt_lod_factor(1.0, 0.11, 0.1) == pytest.approx(1.25)  # just over: at least 1.25x
    assert adapt_lod_factor(2.0, 0.07, 0.1) == 2.0  # inside the band: kept
    assert adapt_lod_factor(2.0, 0.02, 0.1) == pytest.approx(1.6)  # fast: refined
    assert adapt_lod_factor(1.1, 0.001, 0.1) == 1.0  # never finer than the starting LOD
    assert adapt_lod_factor(3.9, 10.0, 0.1) == LOD_MAX_FACTOR  # bounded
    assert adapt_lod_factor(1.5, float("nan"), 0.1) == 1.5


def test_interactive_frames_over_budget_coarsen_only_the_lod(chest_ct):
    with VolumeScene(size=(256, 256), lod_max_voxels=64**3, backend="cpu") as scene:
        scene.set_volume(chest_ct)
        scene.render()
        full = scene.mapper
        full_image = full.GetImageSampleDistance()
        scene.interactive_frame_budget_s = 1e-6  # every frame is "too slow"
        scene.render()  # full-quality frames never adapt
        assert scene.lod_factor == 1.0
        scene.begin_interaction()
        lod = scene.mapper
        base = lod.GetImageSampleDistance()
        for _ in range(3):
            scene.render()
            assert scene.last_frame_s is not None and scene.last_frame_s > 0
        assert scene.lod_factor > 1.0
        assert lod.GetImageSampleDistance() == pytest.approx(min(8.0, base * scene.lod_factor))
        assert luminance(scene.snapshot()).max() > 100  # still a picture
        scene.interactive_frame_budget_s = 1e6  # now every frame is fast: back to the starting LOD
        for _ in range(12):
            scene.render()
        assert scene.lod_factor == 1.0 and lod.GetImageSampleDistance() == pytest.approx(base)
        scene.end_interaction()
        assert scene.mapper is full and full.GetImageSampleDistance() == full_image


def test_minip_on_a_whole_ct_is_not_black(chest_ct):
    """Unclipped, every ray's minimum is the air around the patient (a black picture); a MinIP starts
    clipped to a slab through the cursor facing the camera, where the lungs show and the airways are black."""
    g = chest_ct.geometry
    with VolumeScene(size=(160, 160)) as scene:
        scene.set_volume(chest_ct)
        assert scene.clip_box is None
        scene.set_preset("ct-minip")
        box = np.array(scene.clip_box).reshape(3, 2)
        c = scene.cursor  # anterior camera: the slab is +-10 mm along y, the whole volume along x and z
        np.testing.assert_allclose(box[1], [c[1] - 10, c[1] + 10])
        corners = g.index_to_world(np.array([[0, 0, 0], np.array(g.size_xyz) - 1]))
        assert box[0, 0] <= corners[:, 0].min() and box[0, 1] >= corners[:, 0].max()
        assert box[2, 0] <= corners[:, 2].min() and box[2, 1] >= corners[:, 2].max()
        lum = luminance(scene.snapshot())
        lit = (lum > 40).mean()
        assert lit > 0.2, "the CT MinIP is black"
        assert ((lum > 10) & (lum < 200)).mean() > 0.1  # grey lungs beside the white soft tissue
        # the reason: the same preset with the slab taken away is black (air on every ray)
        scene.set_clip_box(None)
        assert (luminance(scene.snapshot()) > 40).mean() < 0.2 * lit
        # the generic MinIP gets the slab too; the slab follows the camera
        scene.set_preset("minip")
        scene.reset_camera("left")
        box = np.array(scene.slab_box(5.0)).reshape(3, 2)
        np.testing.assert_allclose(box[0], [c[0] - 5, c[0] + 5])
        # a clip the user chose is kept
        scene.set_clip_box(None)
        scene.set_clip_plane(c, (0, 1, 0))
        scene.set_preset("minip")
        assert scene.clip_box is None


def test_backend_follows_the_gl_renderer():
    with VolumeScene(size=(32, 32)) as scene:
        scene.set_volume(oblique_volume(shape=(12, 12, 12)))
        scene.render()
        name = gl_renderer_name(scene.render_window)
        assert name  # e.g. "llvmpipe (LLVM 15.0.6, 256 bits)"
        software = any(s in name.lower() for s in ("llvmpipe", "softpipe", "swrast", "software"))
        assert detect_backend(scene.render_window, context_ready=True) == ("cpu" if software else scene.backend)
        if scene.render_window.GetClassName() == "vtkOSOpenGLRenderWindow":
            assert software and scene.backend == "cpu"


def test_lod_strides_keep_thick_slices():
    assert lod_strides((48, 512, 512), (0.57, 0.57, 5.0), 128**3) == (1, 3, 3)
    assert lod_strides((256, 256, 256), (1.0, 1.0, 1.0), 128**3) == (2, 2, 2)
    assert lod_strides((20, 30, 40), (1.0, 1.0, 1.0), 128**3) == (1, 1, 1)


# -- MPR planes ---------------------------------------------------------------------------------------------
def test_mpr_plane_shows_the_slice_under_the_cursor():
    # slices of value 100 * k on a grid rotated about Z with the slice axis flipped: the axial plane
    # through a cursor must show exactly slice k = the cursor's z index
    d = rotation((0, 0, 1), 30.0) @ np.diag([1.0, 1.0, -1.0])
    g = Geometry((20, 50, 50), (1.0, 1.0, 2.0), (5.0, -8.0, 40.0), tuple(d.ravel()))
    array = np.broadcast_to((np.arange(20) * 100.0)[:, None, None], g.shape).astype(np.float32)
    volume = Volume(np.ascontiguousarray(array), g, VolumeMetadata(modality="OT"))
    with VolumeScene(size=(120, 120)) as scene:
        scene.set_volume(volume)
        scene.set_transfer_function([(0, 0, 0, 0), (2000, 0, 0, 0)], [(0, 0.0), (2000, 0.0)])  # volume invisible
        scene.set_planes_visible(True)
        for name in ("coronal", "sagittal"):
            scene.plane_props[name].VisibilityOff()
        scene.set_plane_window(1000.0, 2000.0)  # value v -> grey 255 * v / 2000
        scene.reset_camera("superior")
        for k in (4, 13):
            cursor = g.index_to_world([25.0, 25.0, k])
            scene.set_cursor(cursor)
            grey = scene.snapshot()[60, 60].astype(float).mean()
            assert grey == pytest.approx(255 * 100 * k / 2000, abs=4), k
        np.testing.assert_allclose(scene.cursor, cursor)
        assert scene.plane_props["axial"].GetVisibility()
        scene.set_planes_visible(False)
        assert not any(p.GetVisibility() for p in scene.plane_props.values())


def test_plane_frames_rotate_the_plane_normals():
    with VolumeScene(size=(64, 64)) as scene:
        scene.set_volume(oblique_volume())
        np.testing.assert_allclose(scene.plane_normal("axial"), [0, 0, 1])
        np.testing.assert_allclose(scene.plane_normal("coronal"), [0, 1, 0])
        np.testing.assert_allclose(scene.plane_normal("sagittal"), [-1, 0, 0])
        r = rotation((1, 0, 0), 20.0)
        scene.set_plane_frames({"axial": r})
        np.testing.assert_allclose(scene._slice_planes["axial"].GetNormal(), r @ [0, 0, 1], atol=1e-12)
        np.testing.assert_allclose(scene.plane_normal("coronal"), [0, 1, 0])
        scene.set_plane_frames(None)
        np.testing.assert_allclose(scene.plane_normal("axial"), [0, 0, 1])
        with pytest.raises(MedviewError):
            scene.set_plane_frames({"axial": np.diag([1.0, 2.0, 1.0])})


# -- editing, output, props, lifetime ----------------------------------------------------------------------
def test_transfer_function_editing_and_shading(chest_ct):
    with VolumeScene(size=(64, 64)) as scene:
        scene.set_volume(chest_ct)
        colour = [(-200.0, 0.0, 0.0, 0.0), (300.0, 1.0, 0.0, 0.0)]
        opacity = [(-200.0, 0.0), (300.0, 1.0)]
        scene.set_transfer_function(colour, opacity, None)
        assert scene.colour_points == tuple(colour) and scene.opacity_points == tuple(opacity)
        assert scene.volume_property.GetScalarOpacity(0).GetValue(50.0) == pytest.approx(0.5)
        assert scene.volume_property.GetRGBTransferFunction(0).GetColor(300.0) == (1.0, 0.0, 0.0)
        assert scene.preset.key == "custom"
        scene.set_shading(False)  # no white specular highlights
        picture = scene.snapshot()
        assert picture[..., 0].max() > 100 and picture[..., 1:].max() == 0  # red only
        assert not scene.shading and not scene.volume_property.GetShade()
        with pytest.raises(MedviewError, match="sorted"):
            scene.set_transfer_function([(10, 0, 0, 0), (0, 1, 1, 1)], opacity)


def test_snapshot_size_and_row_order():
    g = Geometry((30, 30, 30), (1.0, 1.0, 1.0))
    array = np.full(g.shape, -1000, dtype=np.int16)
    array[20:27, 10:20, 10:20] = 1000  # near the top (superior, high z)
    with VolumeScene(size=(100, 100)) as scene:
        scene.set_volume(Volume(array, g, VolumeMetadata(modality="CT")))
        picture = scene.snapshot(size=(160, 90))
        assert picture.shape == (90, 160, 3) and picture.dtype == np.uint8
        assert scene.render_window.GetSize() == (100, 100)
        lum = luminance(picture)
        assert lum[:45].sum() > 0 and lum[45:].sum() == 0  # top row first


def test_extra_actors():
    with VolumeScene(size=(64, 64)) as scene:
        scene.set_volume(oblique_volume())
        source = vtkSphereSource()
        source.SetCenter(*grid_centre(scene.volume.geometry))
        source.SetRadius(5)
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(source.GetOutputPort())
        actor = vtkActor()
        actor.SetMapper(mapper)
        scene.add_actor("ball", actor)
        assert scene.renderer.HasViewProp(actor) and set(scene.actors) == {"ball"}
        scene.render()
        replacement = vtkActor()
        scene.add_actor("ball", replacement)  # same name: replaced
        assert not scene.renderer.HasViewProp(actor) and scene.renderer.HasViewProp(replacement)
        assert scene.remove_actor("ball") and not scene.remove_actor("ball")
        assert not scene.renderer.HasViewProp(replacement)


def test_bad_input_and_closed_scene():
    scene = VolumeScene(size=(32, 32))
    colour = Volume(np.zeros((4, 5, 6, 3), np.uint8), Geometry((4, 5, 6)))
    with pytest.raises(MedviewError, match="grey-scale"):
        scene.set_volume(colour)
    with pytest.raises(MedviewError, match="at least 2"):
        scene.set_volume(Volume(np.zeros((1, 5, 6), np.int16), Geometry((1, 5, 6))))
    assert scene.pick(10, 10) is None  # nothing loaded
    scene.close()
    scene.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        scene.render()


def _watch(obj, deleted: list) -> weakref.ref:
    name = obj.GetClassName()
    obj.AddObserver(vtkCommand.DeleteEvent, lambda _o, _e: deleted.append(name))
    return weakref.ref(obj)


def test_twenty_scenes_do_not_leak(vtk_messages):
    volume = oblique_volume(shape=(16, 18, 20))
    created: list[str] = []
    deleted: list[str] = []
    refs = []
    gc.collect()
    for i in range(20):
        scene = VolumeScene(size=(48, 48), backend="gpu" if i % 4 == 3 else "auto")  # both mapper families
        scene.set_volume(volume)
        scene.set_planes_visible(i % 2 == 0)
        scene.set_clip_plane(grid_centre(volume.geometry), (0, 0, 1))
        scene.render()
        scene.begin_interaction()
        scene.render()
        scene.end_interaction()
        scene.pick(24, 24)  # exercise the picker
        watched = [scene.render_window, scene.renderer, scene.volume_prop, scene.mapper,
                   scene.volume_prop.GetProperty(), scene._mappers["lod"], *scene.plane_props.values()]
        created += [o.GetClassName() for o in watched]
        refs += [_watch(o, deleted) for o in watched]
        del watched
        scene.close()
        del scene
    gc.collect()
    assert "vtkOSOpenGLRenderWindow" in created
    windows = [c for c in created if "RenderWindow" in c]
    assert len(windows) == 20
    assert sorted(deleted) == sorted(created), f"still alive: {Counter(created) - Counter(deleted)}"
    assert all(r() is None for r in refs)


def test_close_leaves_a_borrowed_window_usable():
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(64, 64)
    scene = VolumeScene(render_window=window)
    scene.set_volume(oblique_volume(shape=(16, 18, 20)))
    picture = scene.snapshot()
    assert luminance(picture).max() > 10
    scene.close()
    assert window.GetRenderers().GetNumberOfItems() == 0
    window.Render()  # still works: the scene did not finalise it
    window.Finalize()


def test_background_gradients_free_the_caller_and_draw_the_same_pixels(chest_ct):
    """The full-quality CPU mapper computes its gradients in a thread: meanwhile frames come from the LOD and the
    caller's thread runs; once in place its shaded frame is pixel for pixel the one a scene without the thread
    draws (its first shaded frame computing the gradients in the caller's thread)."""
    import time

    with VolumeScene(size=(300, 300), backend="cpu") as reference:
        reference.set_volume(chest_ct, "ct-bone")
        reference.set_shading(True)
        expected = reference.snapshot()
    with VolumeScene(size=(300, 300), backend="cpu", background_gradients=True) as scene:
        scene.set_volume(chest_ct, "ct-bone")
        scene.set_shading(True)
        assert scene.full_quality_pending and scene.mapper is None  # both mappers are being prepared
        scene.render()  # the first frame: planes only; the LOD's thread starts after it, the full one after that
        gaps, last = [], time.perf_counter()
        while scene.full_quality_pending:
            if scene.take_full_quality() and scene.full_quality_pending:
                assert scene.mapper is scene._mappers["lod"]  # the LOD first, its gradients made in the thread
                scene.render()
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
            time.sleep(0.002)
        assert gaps and max(gaps) < 0.05, "the caller's thread was held while the gradients were computed"
        assert not scene.full_quality_pending and scene.mapper is scene._mappers["full"]
        np.testing.assert_array_equal(scene.snapshot(), expected)


def test_a_progress_callback_can_abandon_a_frame(chest_ct):
    calls = []

    def progress() -> bool:
        calls.append(1)
        return len(calls) >= 2  # abandon at the second report

    with VolumeScene(size=(400, 400), backend="cpu") as scene:
        scene.set_volume(chest_ct, "ct-bone")
        scene.render()
        assert not scene.last_render_aborted
        scene.set_render_progress(progress)
        scene.set_preset("ct-soft-tissue")
        scene.render()
        assert scene.last_render_aborted and len(calls) == 2  # no report after the abort was asked
        scene.set_render_progress(None)
        scene.render()
        assert not scene.last_render_aborted
