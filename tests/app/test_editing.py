"""Brush strokes and fills through the ViewerState: one undo step per stroke, exact undo, locked labels."""

from __future__ import annotations

import numpy as np
import pytest

from medview.app.editing import BrushSettings, Stroke, fill_at
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata


@pytest.fixture
def state() -> ViewerState:
    _zz, yy, xx = np.mgrid[:20, :40, :40]
    image = np.where((xx - 20) ** 2 + (yy - 20) ** 2 < 100, 100, -900).astype(np.int16)
    s = ViewerState()
    s.set_volume(Volume(image, Geometry(image.shape, (0.5, 0.5, 2.0), (10.0, -5.0, 30.0)),
                        VolumeMetadata(modality="CT")))
    return s


def test_a_stroke_is_one_undo_step_and_round_trips(state: ViewerState) -> None:
    g = state.volume.geometry
    stroke = Stroke(state, BrushSettings(radius_mm=1.5), "axial")
    for x in range(8, 30, 2):
        stroke.add(g.index_to_world([x, 20, 10]))
    painted = state.labels.array.copy()
    assert painted[10].sum() > 0 and painted[9].sum() == 0 and painted[11].sum() == 0  # a disc: one slice
    # the dabs are 1 mm apart along x at r = 1.5 mm: a continuous band 3 voxels (1.5 mm) either side
    assert np.all(painted[10, 20, 8:31] == 1)
    change = stroke.finish()
    assert change is not None and state.history.can_undo and len(state.history.undo_descriptions()) == 1
    state.undo()
    assert not state.labels.array.any() and state.labels.voxel_counts() == {}
    state.redo()
    np.testing.assert_array_equal(state.labels.array, painted)
    assert state.labels.voxel_counts() == {1: int(painted.sum())}


def test_threshold_limited_paint_and_fill(state: ViewerState) -> None:
    g = state.volume.geometry
    stroke = Stroke(state, BrushSettings(radius_mm=20.0, shape="sphere", limit=True, low=0, high=200), "axial")
    stroke.add(g.index_to_world([20, 20, 10]))
    stroke.finish()
    inside = state.volume.array > 0
    reach = state.labels.array > 0
    assert reach.any() and not (reach & ~inside).any()  # never outside the intensity range
    state.add_label("Second")
    change = fill_at(state, g.index_to_world([2, 2, 3]), "axial", BrushSettings())
    assert change is not None
    second = state.labels.array == 2
    assert second[3].sum() == (state.labels.array[3] != 1).sum() and not second[4].any()  # 2D fill of slice 3


def test_locked_labels_are_never_painted_over(state: ViewerState) -> None:
    g = state.volume.geometry
    Stroke(state, BrushSettings(radius_mm=2.0), "axial").add(g.index_to_world([20, 20, 10]))
    first = state.labels.array.copy()
    state.set_label_locked(1, True)
    state.add_label("Other")
    stroke = Stroke(state, BrushSettings(radius_mm=4.0), "axial")
    stroke.add(g.index_to_world([20, 20, 10]))
    stroke.finish()
    assert np.all(state.labels.array[first == 1] == 1)
    assert (state.labels.array == 2).any()
    with pytest.raises(MedviewError, match="empty"):
        Stroke(state, BrushSettings(limit=True, low=5, high=1), "axial")
