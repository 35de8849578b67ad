"""Reslicing: the fast path against plain indexing and voxel world positions, the interpolated path against
SimpleITK's resampler, thick slabs against numpy, and the orientation letters worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medview.algorithms.reslice import (
    VIEW_FRAMES,
    Plane,
    _reslice_sampled,
    aligned_normal_axis,
    is_index_aligned,
    orientation_letters,
    reslice,
    slice_index_for,
    step_mm,
    view_plane,
    x_major,
)
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from tests.conftest import shared_case

SHAPE = (7, 9, 11)  # (z, y, x): every axis a different length, so a transposition cannot go unnoticed
SPACING = (0.8, 0.9, 2.0)
ORIGIN = (-10.0, 20.0, 30.0)
DIRECTIONS = {
    "lps": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "y_flipped": (1, 0, 0, 0, -1, 0, 0, 0, 1),  # real brain MR NRRDs: rows run anterior
    # coronal stack: columns x -> (1,0,0), y -> (0,0,-1), z -> (0,1,0) (row-major here)
    "coronal_stack": (1, 0, 0, 0, 0, 1, 0, -1, 0),
    # sagittal stack stored right-to-left: x -> (0,1,0), y -> (0,0,-1), z -> (-1,0,0)
    "sagittal_stack": (0, 0, -1, 1, 0, 0, 0, -1, 0),
}


def geometry(kind: str, shape=SHAPE, spacing=SPACING) -> Geometry:
    return Geometry(shape, spacing, ORIGIN, DIRECTIONS[kind])


def center_of(g: Geometry) -> np.ndarray:
    return g.index_to_world((np.array(g.size_xyz) - 1) / 2.0 + 0.3)


def voxel_world_of_values(g: Geometry, image: np.ndarray) -> np.ndarray:
    """World position of the voxel whose (unique arange) value appears at each pixel."""
    z, y, x = np.unravel_index(image.astype(np.int64), g.shape)
    return g.index_to_world(np.stack([x, y, z], axis=-1))


# -- fast path ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(DIRECTIONS))
@pytest.mark.parametrize("view", list(VIEW_FRAMES))
def test_fast_path_pixels_sit_on_the_voxels_they_show(kind: str, view: str) -> None:
    g = geometry(kind)
    arr = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    plane = view_plane(g, view, center_of(g))
    assert is_index_aligned(g, plane)
    image = reslice(arr, g, plane)
    assert image.dtype == arr.dtype and np.shares_memory(image, arr) and not image.flags.writeable
    # The plane covers exactly one whole slice of voxels, each once.
    assert np.unique(image).size == image.size == np.prod(SHAPE) // g.shape[2 - _normal_axis(g, plane)]
    rows, cols = np.indices(plane.shape)
    np.testing.assert_allclose(plane.pixel_to_world(cols, rows), voxel_world_of_values(g, image), atol=1e-9)
    u, v = VIEW_FRAMES[view]
    np.testing.assert_allclose(plane.u, u, atol=1e-12)
    np.testing.assert_allclose(plane.v, v, atol=1e-12)


def _normal_axis(g: Geometry, plane: Plane) -> int:
    return int(np.argmax(np.abs(g.direction_matrix.T @ plane.normal())))


def test_fast_path_equals_plain_indexing() -> None:
    arr = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    lps, flipped, coronal = geometry("lps"), geometry("y_flipped"), geometry("coronal_stack")
    at = lps.index_to_world((4, 5, 3))  # x=4, y=5, z=3
    np.testing.assert_array_equal(reslice(arr, lps, view_plane(lps, "axial", at)), arr[3])
    np.testing.assert_array_equal(reslice(arr, lps, view_plane(lps, "coronal", at)), arr[::-1, 5, :])
    np.testing.assert_array_equal(reslice(arr, lps, view_plane(lps, "sagittal", at)), arr[::-1, :, 4])
    at = flipped.index_to_world((4, 5, 3))
    np.testing.assert_array_equal(reslice(arr, flipped, view_plane(flipped, "axial", at)), arr[3, ::-1, :])
    np.testing.assert_array_equal(reslice(arr, flipped, view_plane(flipped, "sagittal", at)), arr[::-1, ::-1, 4])
    at = coronal.index_to_world((4, 5, 3))
    np.testing.assert_array_equal(reslice(arr, coronal, view_plane(coronal, "coronal", at)), arr[3])
    np.testing.assert_array_equal(reslice(arr, coronal, view_plane(coronal, "axial", at)), arr[:, 5, :])


def test_view_plane_snaps_to_the_nearest_slice_and_reports_it() -> None:
    g = geometry("lps")
    point = g.index_to_world((2.2, 3.7, 4.4))
    axial, coronal, sagittal = (view_plane(g, v, point) for v in ("axial", "coronal", "sagittal"))
    assert (slice_index_for(g, axial), slice_index_for(g, coronal), slice_index_for(g, sagittal)) == (4, 4, 2)
    assert step_mm(g, axial) == 2.0 and step_mm(g, coronal) == 0.9 and step_mm(g, sagittal) == 0.8
    assert axial.spacing == (0.8, 0.9) and coronal.spacing == (0.8, 2.0) and sagittal.spacing == (0.9, 2.0)
    outside = view_plane(g, "axial", g.index_to_world((2, 3, 40)))
    assert slice_index_for(g, outside) is None
    arr = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) + 5
    assert np.all(reslice(arr, g, outside) == 5)  # fill defaults to the volume minimum
    assert np.all(reslice(arr, g, outside, fill=-3) == -3)


def test_radiological_convention() -> None:
    for kind in ("lps", "y_flipped", "sagittal_stack"):
        g = geometry(kind)
        arr = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
        c = center_of(g)
        axial = reslice(arr, g, view_plane(g, "axial", c))
        world = voxel_world_of_values(g, axial)
        assert np.all(np.diff(world[..., 0], axis=1) > 0)  # patient left (+x) towards screen right
        assert np.all(np.diff(world[..., 1], axis=0) > 0)  # posterior towards screen bottom
        coronal = reslice(arr, g, view_plane(g, "coronal", c))
        world = voxel_world_of_values(g, coronal)
        assert np.all(world[0, :, 2] == world[..., 2].max())  # superior at the top
        assert np.all(np.diff(world[..., 0], axis=1) > 0)
        sagittal = reslice(arr, g, view_plane(g, "sagittal", c))
        world = voxel_world_of_values(g, sagittal)
        assert np.all(np.diff(world[..., 1], axis=1) > 0)  # anterior on the left, posterior on the right
        assert np.all(world[0, :, 2] == world[..., 2].max())


def test_fast_path_fills_where_a_plane_overhangs_the_volume() -> None:
    g = geometry("lps")
    arr = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    base = view_plane(g, "axial", center_of(g))
    shifted = Plane(tuple(base.pixel_to_world(-2, 1)), base.u, base.v, base.spacing, (base.shape[0], 20))
    assert is_index_aligned(g, shifted)
    image = reslice(arr, g, shifted, fill=-7)
    k = slice_index_for(g, base)
    np.testing.assert_array_equal(image[:-1, 2:13], arr[k, 1:, :])
    assert np.all(image[:, :2] == -7) and np.all(image[:, 13:] == -7) and np.all(image[-1] == -7)


def test_colour_volume_fast_and_interpolated() -> None:
    g = geometry("y_flipped")
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(*SHAPE, 3), dtype=np.uint8)
    for view in VIEW_FRAMES:
        plane = view_plane(g, view, center_of(g))
        image = reslice(rgb, g, plane)
        assert image.shape == (*plane.shape, 3) and image.dtype == np.uint8
        for ch in range(3):
            np.testing.assert_array_equal(image[..., ch], reslice(np.ascontiguousarray(rgb[..., ch]), g, plane))
    oblique = view_plane(g, "axial", center_of(g), _rot_z(20))
    image = reslice(rgb, g, oblique, slab_mm=2.0, mode="mip", fill=0)
    assert image.shape == (*oblique.shape, 3) and image.dtype == np.float32
    for ch in range(3):
        gray = reslice(np.ascontiguousarray(rgb[..., ch]), g, oblique, slab_mm=2.0, mode="mip", fill=0)
        np.testing.assert_allclose(image[..., ch], gray, atol=1e-4)


# -- interpolated path ----------------------------------------------------------------------------------
def _rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_axis(axis: np.ndarray, deg: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def sitk_reslice(arr: np.ndarray, g: Geometry, plane: Plane, default: float) -> np.ndarray:
    """SimpleITK's linear resampler onto a one-slice image with axes u, v, normal."""
    image = sitk.GetImageFromArray(arr.astype(np.float32))
    image.SetSpacing(g.spacing)
    image.SetOrigin(g.origin)
    image.SetDirection(g.direction)
    frame = np.column_stack([plane.u, plane.v, plane.normal()])
    ref = sitk.Image([plane.shape[1], plane.shape[0], 1], sitk.sitkFloat32)
    ref.SetSpacing((*plane.spacing, 1.0))
    ref.SetOrigin(plane.origin)
    ref.SetDirection(tuple(frame.reshape(-1)))
    out = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, default, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)[0]


def smooth_volume(shape, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(0, 100, size=shape), 1.5).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "view", "rotation"),
    [
        ("lps", "axial", _rot_z(30)),
        ("y_flipped", "coronal", _rot_axis([1, 2, 3], 25)),
        ("coronal_stack", "sagittal", _rot_axis([0, 1, 1], -40)),
        ("tilted", "axial", None),  # oblique acquisition (tilted gantry) shown in world axes
    ],
)
def test_interpolated_path_matches_simpleitk(kind: str, view: str, rotation: np.ndarray | None) -> None:
    shape = (12, 17, 15)
    if kind == "tilted":
        g = Geometry(shape, (0.7, 0.8, 1.5), ORIGIN, tuple(_rot_axis([1, 0, 0], 12).reshape(-1)))
    else:
        g = geometry(kind, shape=shape, spacing=(0.7, 0.8, 1.5))
    arr = smooth_volume(shape)
    plane = view_plane(g, view, center_of(g), rotation)
    assert not is_index_aligned(g, plane)
    image = reslice(arr, g, plane, fill=-1000.0)
    assert image.dtype == np.float32 and image.shape == plane.shape
    expected = sitk_reslice(arr, g, plane, -1000.0)
    rows, cols = np.indices(plane.shape)
    idx = g.world_to_index(plane.pixel_to_world(cols, rows))
    interior = np.all((idx >= 1) & (idx <= np.array(g.size_xyz) - 2), axis=-1)
    assert interior.sum() > 50
    np.testing.assert_allclose(image[interior], expected[interior], atol=1e-3)
    # Border half-voxels and outside pixels follow ITK too: voxels are boxes, beyond them is the fill value.
    np.testing.assert_allclose(image, expected, atol=1e-3)


def test_oblique_plane_covers_the_whole_volume() -> None:
    g = geometry("y_flipped")
    plane = view_plane(g, "coronal", center_of(g), _rot_axis([1, 1, 0], 35))
    assert plane.spacing == (0.8, 0.8)  # u, v closest to the x and z axes: min(0.8, 2.0)
    corners = np.array(np.meshgrid([0, 10], [0, 8], [0, 6], indexing="ij")).reshape(3, -1).T
    col, row = plane.world_to_pixel(g.index_to_world(corners))
    assert np.all((col > -1e-9) & (col < plane.shape[1] - 1 + 1e-9))
    assert np.all((row > -1e-9) & (row < plane.shape[0] - 1 + 1e-9))
    assert step_mm(g, plane) == 0.8 and slice_index_for(g, plane) is None
    assert abs(plane.distance_to(center_of(g))) < 1e-9  # still through the crosshair


@pytest.mark.parametrize("kind", list(DIRECTIONS))
def test_forced_interpolation_of_an_aligned_plane_equals_the_fast_path(kind: str) -> None:
    g = geometry(kind)
    arr = smooth_volume(SHAPE, seed=1)
    for view in VIEW_FRAMES:
        plane = view_plane(g, view, center_of(g))
        np.testing.assert_allclose(_reslice_sampled(arr, g, plane), reslice(arr, g, plane), atol=1e-4)
    iso = geometry(kind, spacing=(1.2, 1.2, 1.2))  # slab steps coincide only for isotropic voxels
    plane = view_plane(iso, "sagittal", center_of(iso))
    for mode in ("mean", "mip", "minip"):
        fast = reslice(arr, iso, plane, slab_mm=3.0, mode=mode)
        np.testing.assert_allclose(_reslice_sampled(arr, iso, plane, slab_mm=3.0, mode=mode), fast, atol=1e-4)


# -- thick slabs ------------------------------------------------------------------------------------------
def test_mip_shows_a_bright_voxel_only_when_the_slab_reaches_it() -> None:
    g = geometry("lps")  # z spacing 2 mm
    arr = np.zeros(SHAPE, dtype=np.int16)
    arr[5, 4, 6] = 1000  # two slices (4 mm) above the plane at z index 3
    plane = view_plane(g, "axial", g.index_to_world((0, 0, 3)))
    assert reslice(arr, g, plane, slab_mm=8.0, mode="mip")[4, 6] == 1000
    assert reslice(arr, g, plane, slab_mm=7.9, mode="mip").max() == 0
    assert reslice(arr, g, plane, mode="mip").max() == 0
    assert reslice(arr, g, plane, slab_mm=8.0, mode="mip").dtype == np.int16
    # Interpolated path (rotated in plane, so the normal is still z): steps of the smallest spacing, 0.8 mm,
    # and trilinear weights reach the voxel from any sample less than one z spacing (2 mm) from its centre,
    # i.e. more than 2 mm above the plane.  Slab 4.8 mm samples +2.4 mm (3 steps); 4.7 mm stops at +1.6 mm.
    oblique = view_plane(g, "axial", g.index_to_world((0, 0, 3)), _rot_z(30))
    assert not is_index_aligned(g, oblique)
    assert reslice(arr, g, oblique, slab_mm=4.8, mode="mip").max() > 0
    assert reslice(arr, g, oblique, slab_mm=4.7, mode="mip").max() == 0


def test_slab_mean_and_minip_equal_numpy_over_the_index_range() -> None:
    g = geometry("lps")
    arr = np.random.default_rng(5).integers(-1000, 1000, size=SHAPE).astype(np.int16)
    at3 = view_plane(g, "axial", g.index_to_world((0, 0, 3)))
    np.testing.assert_allclose(reslice(arr, g, at3, slab_mm=4.0), arr[2:5].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(reslice(arr, g, at3, slab_mm=4.0, mode="minip"), arr[2:5].min(axis=0))
    at0 = view_plane(g, "axial", g.index_to_world((0, 0, 0)))
    np.testing.assert_allclose(reslice(arr, g, at0, slab_mm=4.0), arr[0:2].mean(axis=0), rtol=1e-6)
    assert reslice(arr, g, at0, slab_mm=1.0).dtype == np.float32  # a mean slab is float even when thin
    sag = view_plane(g, "sagittal", g.index_to_world((5, 0, 0)))  # x spacing 0.8 mm: 2.0 mm -> +/- 1 slice
    np.testing.assert_array_equal(reslice(arr, g, sag, slab_mm=2.0, mode="mip"), arr[::-1, :, 4:7].max(axis=2))


def test_bad_arguments_raise_medview_errors() -> None:
    g = geometry("lps")
    arr = np.zeros(SHAPE, dtype=np.int16)
    plane = view_plane(g, "axial", center_of(g))
    with pytest.raises(MedviewError, match="slab mode"):
        reslice(arr, g, plane, slab_mm=2.0, mode="average")
    with pytest.raises(MedviewError, match="does not match"):
        reslice(arr[:3], g, plane)
    with pytest.raises(MedviewError, match="Unknown view"):
        view_plane(g, "transverse", (0, 0, 0))
    with pytest.raises(MedviewError, match="perpendicular"):
        Plane((0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1), (2, 2))


# -- plane helpers ----------------------------------------------------------------------------------------
def test_plane_coordinate_round_trip() -> None:
    plane = Plane((1.0, 2.0, 3.0), (0.0, 2.0, 0.0), (0.0, 0.0, -1.0), (0.5, 0.25), (40, 30))
    assert plane.u == (0.0, 1.0, 0.0)  # normalised
    np.testing.assert_allclose(plane.normal(), (-1.0, 0.0, 0.0))  # sagittal frame: normal to patient right
    p = plane.pixel_to_world(4.0, 8.0)
    np.testing.assert_allclose(p, (1.0, 4.0, 1.0))
    assert plane.world_to_pixel(p + np.array([5.0, 0.0, 0.0])) == pytest.approx((4.0, 8.0))
    assert plane.distance_to(p + np.array([5.0, 0.0, 0.0])) == pytest.approx(-5.0)
    assert plane.extent_mm() == (15.0, 10.0)
    assert plane.translated(2.0).distance_to(p) == pytest.approx(-2.0)


# -- orientation letters ----------------------------------------------------------------------------------
def test_orientation_letters_of_standard_views() -> None:
    assert orientation_letters(*VIEW_FRAMES["axial"]) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    assert orientation_letters(*VIEW_FRAMES["coronal"]) == {"left": "R", "right": "L", "top": "S", "bottom": "I"}
    assert orientation_letters(*VIEW_FRAMES["sagittal"]) == {"left": "A", "right": "P", "top": "S", "bottom": "I"}


def test_orientation_letters_of_oblique_views() -> None:
    # Rotating the axial frame +30 degrees about +z (superior) turns u = +x (left) towards +y (posterior):
    # u = (cos 30, sin 30, 0) = 0.87 L + 0.5 P -> 'LP'; v = (-sin 30, cos 30, 0) = 0.87 P + 0.5 R -> 'PR'.
    u, v = _rot_z(30) @ VIEW_FRAMES["axial"][0], _rot_z(30) @ VIEW_FRAMES["axial"][1]
    assert orientation_letters(u, v) == {"left": "RA", "right": "LP", "top": "AL", "bottom": "PR"}
    # Below the 0.3 threshold (sin 10 = 0.17) only the dominant letter is shown.
    u, v = _rot_z(10) @ VIEW_FRAMES["axial"][0], _rot_z(10) @ VIEW_FRAMES["axial"][1]
    assert orientation_letters(u, v) == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # Coronal tilted 40 degrees about +x: v = R (0,0,-1) = (0, sin 40, -cos 40) = 0.77 I + 0.64 P.
    r = _rot_axis([1, 0, 0], 40)
    letters = orientation_letters(r @ VIEW_FRAMES["coronal"][0], r @ VIEW_FRAMES["coronal"][1])
    assert letters["bottom"] == "IP" and letters["top"] == "SA" and letters["right"] == "L"


# -- real data ---------------------------------------------------------------------------------------------
def test_real_brain_mr_with_flipped_rows_reslices_by_indexing() -> None:
    image = sitk.ReadImage(str(shared_case("brain1_image.nrrd")))
    arr = sitk.GetArrayFromImage(image)
    g = Geometry(arr.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    assert g.orientation_code() == "LAS"
    c = np.array(image.TransformContinuousIndexToPhysicalPoint([100.0, 140.0, 12.0]))
    for view in VIEW_FRAMES:
        plane = view_plane(g, view, c)
        assert is_index_aligned(g, plane)
        resliced = reslice(arr, g, plane)
        expected = sitk_reslice(arr, g, plane, 0.0)
        assert resliced.dtype == arr.dtype
        np.testing.assert_allclose(resliced, expected, atol=1e-3)


# -- x-major copies ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "dtype"), [((7, 9, 11), np.int16), ((5, 6, 13), np.uint8),
                                               ((4, 5, 6, 3), np.uint8), ((3, 4, 1), np.float32),
                                               ((1, 8, 5), np.uint16)])
def test_x_major_copy_holds_the_same_samples_with_x_slowest(shape, dtype) -> None:
    """Equal to the array everywhere, and a plane across x is one contiguous block of it."""
    a = (np.arange(np.prod(shape)) % 251).astype(dtype).reshape(shape)
    copy = x_major(a)
    assert copy.shape == a.shape and copy.dtype == a.dtype and np.array_equal(copy, a)
    assert not np.shares_memory(copy, a)
    for k in range(shape[2]):
        assert np.moveaxis(copy, 2, 0)[k].flags.c_contiguous  # the (z, y[, c]) plane at x = k
    assert copy.strides[2] == int(np.prod(shape[:2])) * int(np.prod(shape[3:])) * a.itemsize


def test_x_major_copy_can_be_cancelled_and_refuses_other_shapes() -> None:
    task = TaskContext()
    task.token.cancel()
    with pytest.raises(CancelledError):
        x_major(np.zeros((4, 4, 4), np.int16), task=task)
    with pytest.raises(MedviewError):
        x_major(np.zeros((4, 4), np.int16))


def test_planes_cut_from_the_x_major_copy_equal_those_from_the_array() -> None:
    """What the sagittal view reads from the copy is what it would read from the volume: single slices,
    thick slabs, and planes that are not index-aligned (sampled)."""
    rng = np.random.default_rng(3)
    g = Geometry((12, 20, 24), (0.7, 0.9, 2.0), (-10.0, 5.0, 30.0))
    a = rng.integers(-1000, 2000, g.shape).astype(np.int16)
    copy = x_major(a)
    centre = center_of(g)
    checked = {0: 0, None: 0}
    for view, rotation in (("sagittal", None), ("coronal", None), ("axial", None), ("sagittal", _rot_z(17))):
        plane = view_plane(g, view, centre, rotation)
        axis = aligned_normal_axis(g, plane)
        assert axis == {"sagittal": 0, "coronal": 1, "axial": 2}[view] if rotation is None else axis is None
        for slab_mm, mode in ((0.0, "mean"), (3.0, "mip"), (3.0, "mean"), (5.0, "minip")):
            expected = reslice(a, g, plane, slab_mm=slab_mm, mode=mode, fill=-1000)
            got = reslice(copy, g, plane, slab_mm=slab_mm, mode=mode, fill=-1000)
            assert got.dtype == expected.dtype and np.array_equal(got, expected), (view, rotation, slab_mm, mode)
        if axis in checked:
            checked[axis] += 1
    assert checked == {0: 1, None: 1}
