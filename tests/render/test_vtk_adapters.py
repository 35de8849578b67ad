"""The VTK adapters place voxels exactly where core Geometry says they are."""

import numpy as np

from medview.core.geometry import Geometry
from medview.render.vtk_adapters import from_vtk_matrix, image_to_array, index_frame_matrix, vtk_image


def _oblique_geometry() -> Geometry:
    a = np.deg2rad(25)
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, -1.0]])
    return Geometry(shape=(4, 5, 6), spacing=(0.7, 0.9, 2.5), origin=(-10.0, 20.0, 35.0), direction=d.ravel())


def test_vtk_image_shares_memory_and_layout():
    g = _oblique_geometry()
    arr = np.arange(np.prod(g.shape), dtype=np.int16).reshape(g.shape)
    image = vtk_image(arr, g)
    assert image.GetDimensions() == (6, 5, 4)
    assert image.GetSpacing() == g.spacing
    # VTK point (x=2, y=3, z=1) is numpy [1, 3, 2]
    assert image.GetScalarComponentAsDouble(2, 3, 1, 0) == arr[1, 3, 2]
    back = image_to_array(image)
    assert np.shares_memory(back, arr)
    np.testing.assert_array_equal(back, arr)


def test_index_frame_matrix_maps_scaled_index_to_world():
    g = _oblique_geometry()
    m = from_vtk_matrix(index_frame_matrix(g))
    rng = np.random.default_rng(0)
    idx = rng.uniform(0, 4, size=(20, 3))
    scaled = idx * np.array(g.spacing)
    world = (m @ np.c_[scaled, np.ones(len(idx))].T).T[:, :3]
    np.testing.assert_allclose(world, g.index_to_world(idx), atol=1e-9)
