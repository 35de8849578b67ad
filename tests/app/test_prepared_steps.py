"""Undo steps prepared in a panel's job process (issue 17): applying one is a copy on the GUI thread, and undo /
redo restore exactly what the ordinary (diff on the GUI thread) step restores."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medview.algorithms.label_edit import diff_edit
from medview.app.history import History, prepare_step
from medview.app.processing import segment_panel_job
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume


def _ct(shape=(12, 40, 36)) -> Volume:
    rng = np.random.default_rng(3)
    array = rng.normal(0, 200, shape).astype(np.int16)
    array[4:8, 10:30, 10:26] += 900
    return Volume(array, Geometry(shape, (0.8, 0.8, 2.5), (-10.0, 5.0, 30.0), tuple(np.eye(3).ravel())))


def test_a_prepared_volume_step_undoes_and_redoes_exactly() -> None:
    volume = _ct()
    original = volume.array.copy()
    result = ndimage.median_filter(original, size=3)  # the reference, computed by SciPy
    history = History()
    history.register("volume", volume)
    step = prepare_step(diff_edit(volume.array, result, "median"))
    change = history.perform_prepared("volume", step, "median")
    assert change is not None and change.undoable
    np.testing.assert_array_equal(volume.array, result)
    history.undo()
    np.testing.assert_array_equal(volume.array, original)
    history.redo()
    np.testing.assert_array_equal(volume.array, result)


def test_a_prepared_label_step_carries_counts_and_the_table() -> None:
    volume = _ct()
    labels = LabelMap(np.zeros(volume.geometry.shape, np.uint8), volume.geometry,
                      labels=[Label(1, "Tumour", (255, 0, 0))])
    labels.array[5, 20, 20] = 1
    before = labels.array.copy()
    history = History()
    history.register("labels", labels)
    out = segment_panel_job(volume, "threshold", {"lower": 500.0, "upper": 3000.0}, labels)
    expected = (volume.array >= 500) & (volume.array <= 3000)
    assert out.step is not None and out.step.counts == {1: int(expected.sum())}
    table_before = labels.table_snapshot()
    labels.labels[0].name = "Threshold"
    history.perform_prepared("labels", out.step, "threshold", table_before=table_before)
    np.testing.assert_array_equal(labels.array > 0, expected)
    assert labels.voxel_counts() == {1: int(np.bincount(labels.array.ravel())[1])}
    history.undo()
    np.testing.assert_array_equal(labels.array, before)
    assert labels.labels[0].name == "Tumour" and labels.voxel_counts() == {1: 1}


def test_the_job_refuses_to_overwrite_a_locked_label() -> None:
    """The lock check of a whole-map result runs in the job (with the step), before anything is applied."""
    volume = _ct()
    labels = LabelMap(np.zeros(volume.geometry.shape, np.uint8), volume.geometry,
                      labels=[Label(2, "Tumour", (255, 0, 0), locked=True)])
    labels.array[0, 0, 0] = 2  # dark: the threshold result puts background here
    with pytest.raises(MedviewError, match=r"Tumour.* is locked"):
        segment_panel_job(volume, "threshold", {"lower": 500.0, "upper": 3000.0}, labels)
    assert labels.array[0, 0, 0] == 2
