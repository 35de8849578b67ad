"""Surfaces land in world LPS mm, measure what the analytic shapes say, and survive a trip through files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from vtkmodules.util import numpy_support
from vtkmodules.vtkFiltersCore import vtkMassProperties, vtkTriangleFilter
from vtkmodules.vtkIOGeometry import vtkOBJReader, vtkSTLReader
from vtkmodules.vtkIOPLY import vtkPLYReader

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.render.surfaces import (
    label_actor,
    label_surface,
    label_surfaces,
    mesh_properties,
    threshold_surface,
    write_mesh,
)
from tests.conftest import SPHERE_CENTRE_LPS, SPHERE_RADIUS_MM, shared_case

R = SPHERE_RADIUS_MM
SPHERE_AREA = 4.0 * math.pi * R**2
SPHERE_VOLUME = 4.0 / 3.0 * math.pi * R**3


def _points(polydata) -> np.ndarray:
    return numpy_support.vtk_to_numpy(polydata.GetPoints().GetData()).astype(float)


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _world_ball(geometry: Geometry, centre: np.ndarray, radius: float) -> np.ndarray:
    """1 where a voxel centre lies within ``radius`` mm of the world point ``centre``."""
    zz, yy, xx = np.indices(geometry.shape)
    world = geometry.index_to_world(np.stack([xx, yy, zz], axis=-1))
    return (np.linalg.norm(world - centre, axis=-1) <= radius).astype(np.uint8)


@pytest.fixture(scope="module")
def phantom_volume(sphere_phantom):
    from medview.io.readers import open_image

    return open_image(sphere_phantom)


@pytest.fixture(scope="module")
def phantom_surface(phantom_volume):
    labels = LabelMap((phantom_volume.array > -450).astype(np.uint8), phantom_volume.geometry)
    return label_surface(labels, 1)


def _assert_sphere(props: dict, centre=SPHERE_CENTRE_LPS) -> None:
    assert props["closed"]
    area_err = props["area_mm2"] / SPHERE_AREA - 1.0
    volume_err = props["volume_mm3"] / SPHERE_VOLUME - 1.0
    centroid_err = float(np.linalg.norm(np.subtract(props["centroid_lps"], centre)))
    print(f"area {props['area_mm2']:.1f} mm2 ({area_err:+.2%}), volume {props['volume_mm3']:.0f} mm3 "
          f"({volume_err:+.2%}), centroid off by {centroid_err:.3f} mm")
    assert abs(area_err) < 0.02
    assert abs(volume_err) < 0.01
    assert centroid_err < 1.0


# -- the plastimatch sphere phantom (r = 20 mm at the LPS origin) -------------------------------------------
def test_label_surface_of_phantom_matches_the_analytic_sphere(phantom_surface):
    props = mesh_properties(phantom_surface)
    _assert_sphere(props)
    # Points lie on the sphere itself (world mm), not in index or image space.
    radii = np.linalg.norm(_points(phantom_surface) - np.array(SPHERE_CENTRE_LPS), axis=1)
    assert abs(float(np.median(radii)) - R) < 0.3
    # The divergence-theorem centroid is the solid's; the volume agrees with VTK's own measure.
    assert props["signed_volume_mm3"] == pytest.approx(props["volume_mm3"], rel=1e-6)


def test_threshold_surface_of_phantom_matches_the_analytic_sphere(phantom_volume):
    props = mesh_properties(threshold_surface(phantom_volume, -450.0))
    _assert_sphere(props)


def test_threshold_surface_subsampled_is_still_placed_correctly(phantom_volume):
    full = mesh_properties(threshold_surface(phantom_volume, -450.0))
    coarse = mesh_properties(threshold_surface(phantom_volume, -450.0, subsample=2))
    assert coarse["n_triangles"] < full["n_triangles"] / 2
    assert np.linalg.norm(np.subtract(coarse["centroid_lps"], SPHERE_CENTRE_LPS)) < 1.0
    assert abs(coarse["volume_mm3"] / SPHERE_VOLUME - 1.0) < 0.05  # coarser grid: only the placement is exact


def test_threshold_surface_with_a_triangle_budget_coarsens_until_it_fits(phantom_volume):
    full = mesh_properties(threshold_surface(phantom_volume, -450.0))
    budget = full["n_triangles"] // 3
    capped = mesh_properties(threshold_surface(phantom_volume, -450.0, max_triangles=budget))
    assert capped["n_triangles"] <= budget
    assert np.linalg.norm(np.subtract(capped["centroid_lps"], SPHERE_CENTRE_LPS)) < 1.0  # still in place
    assert abs(capped["volume_mm3"] / SPHERE_VOLUME - 1.0) < 0.05
    # a budget the full grid meets changes nothing
    same = mesh_properties(threshold_surface(phantom_volume, -450.0, max_triangles=full["n_triangles"]))
    assert same["n_triangles"] == full["n_triangles"]
    with pytest.raises(MedviewError):
        threshold_surface(phantom_volume, -450.0, max_triangles=0)


def test_normals_point_outward(phantom_surface):
    normals = numpy_support.vtk_to_numpy(phantom_surface.GetPointData().GetNormals())
    radial = _points(phantom_surface) - np.array(SPHERE_CENTRE_LPS)
    assert np.all(np.einsum("ij,ij->i", normals, radial) > 0)


def test_decimation_keeps_a_closed_surface_of_the_same_volume(phantom_volume):
    labels = LabelMap((phantom_volume.array > -450).astype(np.uint8), phantom_volume.geometry)
    full = mesh_properties(label_surface(labels, 1))
    light = mesh_properties(label_surface(labels, 1, decimate=0.75))
    assert light["closed"]
    assert light["n_triangles"] < 0.3 * full["n_triangles"]
    assert abs(light["volume_mm3"] / SPHERE_VOLUME - 1.0) < 0.01


# -- oblique, anisotropic and flipped grids ----------------------------------------------------------------
@pytest.mark.parametrize("handed", ["right", "left"])
def test_oblique_anisotropic_grid_puts_the_surface_at_the_world_centre(handed):
    direction = _rotation("z", 30) @ _rotation("x", 20)
    if handed == "left":
        direction = direction @ np.diag([1.0, -1.0, 1.0])  # a flipped index axis: mirrored grid
    centre, radius = np.array([12.3, -40.2, 85.0]), 15.0
    shape, spacing = (40, 70, 60), (0.7, 0.9, 1.5)
    # Place the grid so the ball sits off the grid's centre, at a known world point.
    probe = Geometry(shape, spacing, (0.0, 0.0, 0.0), direction.ravel())
    middle = probe.index_to_world((np.array(probe.size_xyz) - 1) / 2.0)
    geometry = Geometry(shape, spacing, tuple(centre - middle + [1.1, -0.7, 0.4]), direction.ravel())
    surface = label_surface(LabelMap(_world_ball(geometry, centre, radius), geometry), 1)
    props = mesh_properties(surface)
    print(f"{handed}-handed: centroid off by {np.linalg.norm(np.subtract(props['centroid_lps'], centre)):.4f} mm, "
          f"volume {props['volume_mm3'] / (4 / 3 * math.pi * radius**3) - 1:+.2%}")
    assert props["closed"]
    np.testing.assert_allclose(props["centroid_lps"], centre, atol=0.1)
    # Triangles face outward on both grids (positive enclosed volume, outward normals).
    assert props["signed_volume_mm3"] > 0
    normals = numpy_support.vtk_to_numpy(surface.GetPointData().GetNormals())
    assert np.all(np.einsum("ij,ij->i", normals, _points(surface) - centre) > 0)
    assert abs(props["volume_mm3"] / (4 / 3 * math.pi * radius**3) - 1.0) < 0.02


def test_label_touching_the_grid_edge_gives_a_closed_surface():
    array = np.zeros((6, 8, 8), dtype=np.uint8)
    array[:3, 2:6, 2:6] = 3  # touches slice 0
    surface = label_surface(LabelMap(array, Geometry(array.shape)), 3, smoothing_iterations=0)
    props = mesh_properties(surface)
    assert props["closed"]
    # Discrete contours cut halfway between voxel centres: a 3x4x4 block minus corner chamfers.
    assert 0 < props["volume_mm3"] <= 3 * 4 * 4


# -- lung1 tumour (real segmentation, 0.57 x 0.57 x 5 mm voxels) ---------------------------------------
def test_lung1_tumour_mesh_centroid_matches_the_voxel_centroid():
    sitk = pytest.importorskip("SimpleITK")
    path = shared_case("lung1_label.nrrd")
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    geometry = Geometry(array.shape, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    labels = LabelMap(array.astype(np.uint16), geometry)
    (value,) = labels.present_values()
    surfaces = label_surfaces(labels)
    assert set(surfaces) == {value}
    props = mesh_properties(surfaces[value])
    # Independent reference: SimpleITK's label centroid (LPS mm) of the same file.
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(image, sitk.sitkUInt16))
    reference = np.array(stats.GetCentroid(value))
    error = float(np.linalg.norm(np.subtract(props["centroid_lps"], reference)))
    print(f"lung1 tumour: centroid off by {error:.3f} mm; mesh {props['volume_mm3']:.0f} mm3 vs "
          f"voxels {labels.volume_ml(value) * 1000:.0f} mm3")
    assert props["closed"]
    assert error < 1.0


# -- files ---------------------------------------------------------------------------------------------------
def _read_back(path: Path):
    reader = {".stl": vtkSTLReader, ".obj": vtkOBJReader, ".ply": vtkPLYReader}[path.suffix]()
    reader.SetFileName(str(path))
    reader.Update()
    return reader.GetOutput()


def _area(polydata) -> float:
    triangles = vtkTriangleFilter()
    triangles.SetInputData(polydata)
    mass = vtkMassProperties()
    mass.SetInputConnection(triangles.GetOutputPort())
    mass.Update()
    return mass.GetSurfaceArea()


def _file_header(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".stl":
        return data[:80]
    if path.suffix == ".ply":
        return data[: data.index(b"end_header")]
    return data.split(b"\n", 1)[0]


@pytest.mark.parametrize("suffix", [".stl", ".obj", ".ply"])
def test_round_trip_keeps_area_names_the_convention_and_flips_for_ras(phantom_surface, tmp_path, suffix):
    lps_points = _points(phantom_surface)
    area = _area(phantom_surface)
    lps = write_mesh(phantom_surface, tmp_path / f"sphere_lps{suffix}")
    ras = write_mesh(phantom_surface, tmp_path / f"sphere_ras{suffix}", convention="RAS")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([lps.name, ras.name])  # no temp files left
    for path, convention in ((lps, b"LPS"), (ras, b"RAS")):
        assert convention in _file_header(path)
        back = _read_back(path)
        assert back.GetNumberOfCells() == phantom_surface.GetNumberOfCells()
        assert _area(back) == pytest.approx(area, rel=1e-5)
        # Outward winding survives (RAS is a 180-degree turn about z, not a mirror).
        props = mesh_properties(back)
        assert props["signed_volume_mm3"] > 0
    if suffix == ".stl":
        assert lps.read_bytes()[:5] != b"solid"  # binary STL
    # Same points in both files, x and y negated in RAS. STL repeats points per facet, so compare as sets.
    back_lps, back_ras = _points(_read_back(lps)), _points(_read_back(ras))
    expected_ras = back_lps * np.array([-1.0, -1.0, 1.0])
    if suffix == ".stl":
        key = np.round(np.unique(back_lps, axis=0), 3)
        np.testing.assert_allclose(key, np.round(np.unique(lps_points, axis=0), 3), atol=2e-3)
        np.testing.assert_allclose(np.sort(back_ras, axis=0), np.sort(expected_ras, axis=0), atol=1e-4)
    else:
        np.testing.assert_allclose(back_lps, lps_points, atol=1e-4)
        np.testing.assert_allclose(back_ras, expected_ras, atol=1e-4)


def test_ply_comment_is_read_by_vtk(phantom_surface, tmp_path):
    path = write_mesh(phantom_surface, tmp_path / "sphere.ply", convention="RAS")
    reader = vtkPLYReader()
    reader.SetFileName(str(path))
    reader.Update()
    comments = [reader.GetComments().GetValue(i) for i in range(reader.GetComments().GetNumberOfValues())]
    assert any("RAS" in c for c in comments)


def test_stl_header_is_read_by_vtk(phantom_surface, tmp_path):
    path = write_mesh(phantom_surface, tmp_path / "sphere.stl")
    reader = vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    assert "LPS" in reader.GetHeader()


# -- actors --------------------------------------------------------------------------------------------------
def test_label_actor_uses_the_label_table():
    array = np.zeros((8, 8, 8), dtype=np.uint8)
    array[2:6, 2:6, 2:6] = 2
    label = Label(2, "Liver", (0, 128, 255), visible=False, opacity=0.4)
    labels = LabelMap(array, Geometry(array.shape), labels=[label])
    actor = label_actor(label_surface(labels, 2), labels.label(2))
    prop = actor.GetProperty()
    np.testing.assert_allclose(prop.GetColor(), (0.0, 128 / 255, 1.0))
    assert prop.GetOpacity() == pytest.approx(0.4)
    assert not actor.GetVisibility()
    assert actor.GetMapper().GetInput().GetNumberOfCells() > 0


# -- bad input -----------------------------------------------------------------------------------------------
def test_empty_label_is_a_clear_error():
    array = np.zeros((4, 4, 4), dtype=np.uint8)
    array[1, 1, 1] = 1
    labels = LabelMap(array, Geometry(array.shape), labels=[Label(1, "Tumour"), Label(2, "Oedema")])
    with pytest.raises(MedviewError, match=r"Oedema.*no voxels"):
        label_surface(labels, 2)


def test_threshold_outside_the_range_is_a_clear_error(phantom_volume):
    with pytest.raises(MedviewError, match="No voxel is above 3000"):
        threshold_surface(phantom_volume, 3000.0)


def test_unknown_suffix_is_refused_and_writes_nothing(phantom_surface, tmp_path):
    with pytest.raises(MedviewError, match=r"\.vtp"):
        write_mesh(phantom_surface, tmp_path / "sphere.vtp")
    with pytest.raises(MedviewError, match="convention"):
        write_mesh(phantom_surface, tmp_path / "sphere.stl", convention="XYZ")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destinations_raise_and_leave_nothing_behind(phantom_surface, tmp_path):
    with pytest.raises(MedviewError):
        write_mesh(phantom_surface, tmp_path / "missing" / "sphere.stl")
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(MedviewError):
        write_mesh(phantom_surface, blocker / "sphere.obj")
    # The final rename fails (a folder is in the way): the temporary file must not stay behind.
    (tmp_path / "taken.ply").mkdir()
    with pytest.raises(MedviewError):
        write_mesh(phantom_surface, tmp_path / "taken.ply")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder", "taken.ply"]
    assert list((tmp_path / "taken.ply").iterdir()) == []
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            with pytest.raises(MedviewError):
                write_mesh(phantom_surface, locked / "sphere.stl")
            assert list(locked.iterdir()) == []
        finally:
            locked.chmod(0o700)


def test_empty_mesh_is_not_written(tmp_path):
    from vtkmodules.vtkCommonDataModel import vtkPolyData

    with pytest.raises(MedviewError, match="empty"):
        write_mesh(vtkPolyData(), tmp_path / "empty.stl")
    assert list(tmp_path.iterdir()) == []


def test_cancelled_task_stops_surface_work(phantom_volume):
    from medview.core.errors import CancelledError
    from medview.core.tasks import TaskContext

    task = TaskContext()
    task.token.cancel()
    with pytest.raises(CancelledError):
        threshold_surface(phantom_volume, -450.0, task=task)
    labels = LabelMap((phantom_volume.array > -450).astype(np.uint8), phantom_volume.geometry)
    with pytest.raises(CancelledError):
        label_surfaces(labels, task=task)
