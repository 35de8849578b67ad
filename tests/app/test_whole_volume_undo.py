"""Issue 17 item 2: filters that change the data type or the grid (Gaussian on int16 -> float32, resample, ...)
are undo steps like any other: the image before (and the label map its grid carried) is kept in memory within a
share of the undo budget, else in a temporary .npy file in the data folder, removed when the step goes.

The sample CT is compared against SimpleITK's own reading of the DICOM series (voxels and geometry)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.app.history import History
from medview.app.kept_images import spill_dir
from medview.app.label_maps import open_label_map
from medview.app.processing import run_filter
from medview.app.samples import sample_path
from medview.app.viewer import ViewerState
from medview.core.resources import data_dir
from medview.core.volume import Volume
from medview.io.readers import open_image


@pytest.fixture(scope="module")
def reference() -> sitk.Image:
    """The sample series as SimpleITK (GDCM) reads it: the independent reference of voxels and geometry."""
    folder = sample_path("chest_ct")
    folder = folder / "dicom" if (folder / "dicom").is_dir() else folder
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _state(budget_bytes: int | None = None) -> ViewerState:
    state = ViewerState(history=History(budget_bytes) if budget_bytes else History())
    volume = open_image(sample_path("chest_ct"))
    state.set_volume(volume)
    state.set_labels(open_label_map(sample_path("chest_ct_label"), reference=volume))
    return state


def _assert_is_the_sample(volume: Volume, reference: sitk.Image) -> None:
    assert volume.array.dtype == np.int16
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    g = volume.geometry
    np.testing.assert_allclose(g.spacing, reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(g.origin, reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(np.ravel(g.direction), reference.GetDirection(), atol=1e-9)


def _spilled() -> list[Path]:
    folder = spill_dir()
    return sorted(folder.glob("*.npy")) if folder.is_dir() else []


def test_gaussian_then_undo_restores_the_int16_voxels_and_redo_the_float_result(reference: sitk.Image) -> None:
    state = _state()
    labels = state.labels
    result = run_filter(state.volume, "gaussian", {"sigma": 1.0})
    assert result.array.dtype == np.float32
    change = state.replace_volume(result, "gaussian")
    assert change is not None and change.undoable and state.history.can_undo
    assert state.volume is result and state.labels is labels  # same grid: the labels stay
    assert not _spilled()  # 25 MB: within a quarter of the 256 MB budget, kept in memory
    state.undo()
    _assert_is_the_sample(state.volume, reference)
    assert state.labels is labels
    state.redo()
    assert state.volume.array.dtype == np.float32
    np.testing.assert_array_equal(state.volume.array, result.array)
    state.undo()
    _assert_is_the_sample(state.volume, reference)


def test_resample_then_undo_restores_the_grid_and_the_labels(reference: sitk.Image) -> None:
    state = _state()
    labels = state.labels
    tumour, table = labels.array.copy(), [(e.value, e.name, e.color) for e in labels.labels]
    result = run_filter(state.volume, "resample", {"spacing": "1,1,2.5"})
    assert result.geometry.shape != state.volume.geometry.shape
    assert state.replace_volume(result, "resample") is not None
    assert state.labels is None  # not on the new grid
    state.undo()
    _assert_is_the_sample(state.volume, reference)
    assert state.labels is not None and state.labels.geometry.is_same_grid(state.volume.geometry)
    np.testing.assert_array_equal(state.labels.array, tumour)
    assert [(e.value, e.name, e.color) for e in state.labels.labels] == table
    state.redo()
    assert state.volume.geometry.shape == result.geometry.shape and state.labels is None
    state.undo()
    np.testing.assert_array_equal(state.labels.array, tumour)
    assert state.history.target("labels") is state.labels  # editable again through the history


def test_a_budget_too_small_keeps_the_image_in_a_file_and_still_undoes(reference: sitk.Image) -> None:
    state = _state(budget_bytes=40 * 2**20)  # a quarter: 10 MB < the 25 MB CT (+ 12.5 MB labels)
    state.replace_volume(run_filter(state.volume, "resample", {"spacing": "1,1,2.5"}), "resample")
    files = _spilled()
    assert files and all(f.parent == data_dir() / "undo" for f in files)
    tumour = open_label_map(sample_path("chest_ct_label"), reference=open_image(sample_path("chest_ct")))
    state.undo()
    _assert_is_the_sample(state.volume, reference)
    np.testing.assert_array_equal(state.labels.array, tumour.array)
    assert [e.name for e in state.labels.labels] == [e.name for e in tumour.labels]
    assert not (set(files) & set(_spilled())), "the files of the image now shown are removed"
    state.redo()  # the resampled image goes to a file in turn
    assert _spilled() and state.volume.geometry.shape != reference.GetSize()[::-1]
    state.set_volume(open_image(sample_path("chest_ct")))  # a new study: the steps and their files go
    assert not _spilled()


def test_neither_memory_nor_file_says_so_before_and_after(monkeypatch) -> None:
    """A full disk (and a budget too small for memory): said before running, and the result is not undoable."""
    import shutil

    state = _state(budget_bytes=8 * 2**20)
    monkeypatch.setattr("medview.app.kept_images.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10 * 2**30, 10 * 2**30, 2**20))
    problem = state.replace_problem()
    assert problem is not None and "1 MB free" in problem
    before = state.volume
    change = state.replace_volume(run_filter(state.volume, "gaussian", {"sigma": 1.0}), "gaussian")
    assert change is None and "cannot be undone" in state.last_replace_problem
    assert state.volume is not before and not state.history.can_undo
    assert not _spilled()


def test_kept_files_are_removed_at_exit(tmp_path: Path) -> None:
    code = """
import numpy as np
from medview.app.kept_images import KeptImage, spill_dir
from medview.core.geometry import Geometry
from medview.core.volume import Volume
v = Volume(np.ones((4, 64, 64), np.int16), Geometry((4, 64, 64), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))
kept = KeptImage(v, None, memory_limit=0)
print(len(list(spill_dir().glob('*.npy'))))
"""
    env = {**os.environ, "MEDVIEW_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    assert not list((tmp_path / "data" / "undo").glob("*.npy"))
