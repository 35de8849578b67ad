"""Virtual radiographs: a sphere projects to the disc and path lengths geometry predicts, in world mm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medview.algorithms.drr import MU_WATER_PER_MM, drr, lps_aligned_grid
from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext
from medview.core.volume import Volume
from tests.conftest import SPHERE_CENTRE_LPS, SPHERE_RADIUS_MM

MU = MU_WATER_PER_MM
R = 20.0
# In-plane world axes (LPS index) of each view's detector.
IN_PLANE = {"ap": [0, 2], "lateral": [1, 2]}


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _water_ball(geometry: Geometry, centre, radius: float = R) -> Volume:
    """Water ball in air with a one-voxel partial-volume edge (1 mm voxels).

    Each voxel's water fraction falls linearly from 1 to 0 as its centre goes from 0.5 mm inside to
    0.5 mm outside the sphere, so a ray through voxel centres along a diameter meets exactly 2r of water.
    """
    zz, yy, xx = np.indices(geometry.shape)
    world = geometry.index_to_world(np.stack([xx, yy, zz], axis=-1))
    distance = np.linalg.norm(world - np.asarray(centre), axis=-1)
    water = np.clip(radius - distance + 0.5, 0.0, 1.0)
    return Volume((-1000.0 + 1000.0 * water).astype(np.float32), geometry)


def _disc(radiograph: Volume, mu: float = MU) -> dict:
    """Measure the projected disc: water path (mm), support radius, moment radius and centre in world mm."""
    g = radiograph.geometry
    path = radiograph.array[0].astype(float) / mu
    rows, cols = np.indices(path.shape)
    world = g.index_to_world(np.stack([cols, rows, np.zeros_like(rows)], axis=-1))
    pixel_area = g.spacing[0] * g.spacing[1]
    weights = path / path.sum()
    centre = np.einsum("ij,ijk->k", weights, world)
    rho2 = float(np.einsum("ij,ij->", weights, np.sum((world - centre) ** 2, axis=-1)))
    return {
        "path": path,
        # Rays with > 1 mm of water: their chord 2*sqrt(r^2 - rho^2) > 1 mm puts them within 0.01 mm of r.
        "radius_support": math.sqrt(np.count_nonzero(path > 1.0) * pixel_area / math.pi),
        # For a ball, sum(rho^2 * path) / sum(path) = 2 r^2 / 5.
        "radius_moment": math.sqrt(2.5 * rho2),
        "centre": centre,
        "peak": float(path.max()),
        "total_mm3": float(path.sum() * pixel_area),
        "pixel_mm": max(g.spacing[0], g.spacing[1]),
    }


def _analytic_geometry(direction: np.ndarray | None = None) -> tuple[Geometry, np.ndarray]:
    """64^3 grid of 1 mm voxels around a world centre that lies on a voxel centre (identity case)."""
    origin = np.array([-40.0, -20.0, 5.0])
    centre = origin + [33.0, 30.0, 28.0]
    direction = np.eye(3) if direction is None else np.asarray(direction)
    return Geometry((64, 64, 64), (1.0, 1.0, 1.0), tuple(origin), tuple(direction.ravel())), centre


@pytest.fixture(scope="module")
def water_ball():
    geometry, centre = _analytic_geometry()
    return _water_ball(geometry, centre), centre


def _check_sphere(m: dict, centre, view: str, radius: float = R, centre_tol: float = 0.1) -> None:
    print(f"{view}: support radius {m['radius_support']:.3f} mm, moment radius {m['radius_moment']:.3f} mm, "
          f"peak path {m['peak']:.3f} mm, centre {np.round(m['centre'], 3)}")
    assert abs(m["radius_support"] - radius) < m["pixel_mm"]
    assert abs(m["radius_moment"] - radius) < m["pixel_mm"]
    axes = IN_PLANE[view]
    np.testing.assert_allclose(m["centre"][axes], np.asarray(centre)[axes], atol=centre_tol)


# -- analytic sphere --------------------------------------------------------------------------------------
@pytest.mark.parametrize("view", ["ap", "lateral"])
def test_water_ball_projects_to_a_disc_of_its_radius_and_diameter_deep(water_ball, view):
    volume, centre = water_ball
    m = _disc(drr(volume, view))
    _check_sphere(m, centre, view)
    # The ray through the centre crosses 2r of water; the projection integrates the whole ball.
    assert m["peak"] == pytest.approx(2 * R, abs=0.01)
    assert m["total_mm3"] == pytest.approx(4 / 3 * math.pi * R**3, rel=0.005)


@pytest.mark.parametrize("view", ["ap", "lateral"])
def test_detector_geometry_is_physical(water_ball, view):
    volume, _ = water_ball
    g = drr(volume, view).geometry
    assert g.shape == (1, 64, 64)
    u, v = g.direction_matrix[:, 0], g.direction_matrix[:, 1]
    np.testing.assert_allclose(v, [0, 0, -1])  # rows go from superior to inferior
    np.testing.assert_allclose(u, [1, 0, 0] if view == "ap" else [0, 1, 0])
    assert np.linalg.det(g.direction_matrix) == pytest.approx(1.0)
    # Top-left pixel: the patient's right (AP) or anterior (lateral) edge, at the top slice.
    top_left = g.index_to_world([0, 0, 0])
    vg = volume.geometry
    assert top_left[2] == pytest.approx(vg.origin[2] + 63)
    assert top_left[0 if view == "ap" else 1] == pytest.approx(vg.origin[0 if view == "ap" else 1])


def test_radiological_orientation_of_a_marker():
    """A dense cube at the patient's left, anterior and superior shows where films show it."""
    geometry = Geometry((40, 50, 60), (1.0, 1.0, 1.0), (-30.0, -25.0, -20.0))
    array = np.full(geometry.shape, -1000.0, dtype=np.float32)
    array[30:35, 5:10, 45:50] = 1000.0  # high z (superior), low y (anterior), high x (patient left)
    volume = Volume(array, geometry)
    ap = drr(volume, "ap").array[0]
    rows, cols = np.nonzero(ap > 0)
    assert rows.max() < ap.shape[0] / 2  # superior at the top
    assert cols.min() > ap.shape[1] / 2  # patient's left on the viewer's right
    lateral = drr(volume, "lateral").array[0]
    rows, cols = np.nonzero(lateral > 0)
    assert rows.max() < lateral.shape[0] / 2
    assert cols.max() < lateral.shape[1] / 2  # anterior on the viewer's left
    # Bone (+1000 HU) attenuates twice as much as water: 5 mm of it is 10 mm of water.
    assert ap.max() / MU == pytest.approx(10.0, rel=1e-5)


def test_flipped_and_permuted_axes_give_the_same_radiograph(water_ball):
    volume, _ = water_ball
    g = volume.geometry
    references = {view: drr(volume, view) for view in ("ap", "lateral")}
    n = g.shape[0] - 1
    # Same voxels, y axis stored from posterior to anterior (direction diag(1, -1, 1)).
    flipped_geometry = Geometry(g.shape, g.spacing, (g.origin[0], g.origin[1] + n, g.origin[2]),
                                (1, 0, 0, 0, -1, 0, 0, 0, 1))
    flipped = Volume(volume.array[:, ::-1, :].copy(), flipped_geometry)
    # Same voxels stored as sagittal slices: index x -> world y, index y -> world -z, index z -> world x.
    sagittal_geometry = Geometry(g.shape, g.spacing, (g.origin[0], g.origin[1], g.origin[2] + n),
                                 (0, 0, 1, 1, 0, 0, 0, -1, 0))
    sagittal_array = np.transpose(volume.array, (2, 0, 1))[:, ::-1, :].copy()  # [x, z, y] -> (z', y', x')
    sagittal = Volume(sagittal_array, sagittal_geometry)
    for other in (flipped, sagittal):
        assert lps_aligned_grid(other.geometry).is_same_grid(g)
        for view, reference in references.items():
            result = drr(other, view)
            assert "Resampled" not in " ".join(result.metadata.warnings)  # re-indexed, not interpolated
            np.testing.assert_allclose(result.array, reference.array, rtol=1e-5, atol=1e-6)
            assert result.geometry.is_same_grid(reference.geometry)


@pytest.mark.parametrize("view", ["ap", "lateral"])
def test_oblique_volume_is_resampled_onto_patient_axes(view):
    direction = _rotation("z", 25) @ _rotation("x", 35)
    geometry, centre = _analytic_geometry(direction)
    # Rotate about the centre of the grid so the ball stays well inside it.
    middle = geometry.index_to_world([31.5, 31.5, 31.5])
    origin = np.array(geometry.origin) + (centre - middle) + [0.3, -0.4, 0.2]
    geometry = Geometry(geometry.shape, geometry.spacing, tuple(origin), geometry.direction)
    result = drr(_water_ball(geometry, centre), view)
    assert "Resampled from an oblique grid (linear)" in result.metadata.warnings
    assert np.allclose(np.abs(result.geometry.direction_matrix), np.round(np.abs(result.geometry.direction_matrix)))
    m = _disc(result)
    _check_sphere(m, centre, view, centre_tol=0.2)
    assert m["peak"] == pytest.approx(2 * R, abs=0.5)  # linear resampling blurs the edges slightly
    assert m["total_mm3"] == pytest.approx(4 / 3 * math.pi * R**3, rel=0.01)


# -- the plastimatch phantom (DICOM, 0.8 x 0.8 x 1.25 mm) ------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_volume(sphere_phantom):
    from medview.io.readers import open_image

    return open_image(sphere_phantom)


@pytest.mark.parametrize("view", ["ap", "lateral"])
def test_plastimatch_sphere_projects_to_a_20_mm_disc(phantom_volume, view):
    result = drr(phantom_volume, view)
    assert result.geometry.spacing[:2] == pytest.approx((0.8, 1.25))
    # Foreground is 100 HU: mu = 1.1 mu_water, so the path is scaled back to geometric length.
    m = _disc(result, mu=1.1 * MU)
    _check_sphere(m, SPHERE_CENTRE_LPS, view, radius=SPHERE_RADIUS_MM, centre_tol=0.8)
    # The binary sphere is sampled every 0.8 mm along the ray: the chord is known to one step.
    assert m["peak"] == pytest.approx(2 * SPHERE_RADIUS_MM, abs=0.8)


# -- outputs, progress, cancellation -----------------------------------------------------------------------
def test_intensity_output_is_the_absorbed_fraction(water_ball):
    volume, _ = water_ball
    integral = drr(volume, "ap").array
    absorbed = drr(volume, "ap", output="intensity").array
    np.testing.assert_allclose(absorbed, 1.0 - np.exp(-integral.astype(float)), rtol=1e-5, atol=1e-7)
    assert absorbed.min() >= 0.0 and absorbed.max() < 1.0
    doubled = drr(volume, "ap", mu_water_per_mm=2 * MU).array
    np.testing.assert_allclose(doubled, 2 * integral, rtol=1e-5)


def test_progress_is_reported_and_cancel_stops_it(water_ball, monkeypatch):
    import medview.algorithms.drr as drr_module

    volume, _ = water_ball
    monkeypatch.setattr(drr_module, "_CHUNK_VOXELS", 64 * 64 * 8)  # 8 chunks
    fractions: list[float] = []
    task = TaskContext(on_progress=lambda f, _m: fractions.append(f), min_interval_s=0.0)
    drr(volume, "lateral", task=task)
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) >= 8

    cancelled = TaskContext()

    def cancel_midway(fraction: float, _message: str) -> None:
        if fraction >= 0.5:
            cancelled.token.cancel()

    cancelled.on_progress = cancel_midway
    cancelled.min_interval_s = 0.0
    with pytest.raises(CancelledError):
        drr(volume, "ap", task=cancelled)


# -- bad input ----------------------------------------------------------------------------------------------
def test_bad_input_is_a_clear_error(water_ball):
    volume, _ = water_ball
    with pytest.raises(MedviewError, match=r"Unknown radiograph view 'oblique'.*ap, lateral"):
        drr(volume, "oblique")
    with pytest.raises(MedviewError, match="output"):
        drr(volume, "ap", output="film")
    with pytest.raises(MedviewError, match="water"):
        drr(volume, "ap", mu_water_per_mm=0.0)
    flat = Volume(np.zeros((1, 32, 32), dtype=np.float32), Geometry((1, 32, 32)))
    with pytest.raises(MedviewError, match=r"3D CT volume.*2D"):
        drr(flat, "ap")
    colour = Volume(np.zeros((4, 8, 8, 3), dtype=np.uint8), Geometry((4, 8, 8)))
    with pytest.raises(MedviewError, match="colour"):
        drr(colour, "lateral")
