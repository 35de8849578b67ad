"""The undo history: exact round trips over mixed edits, a memory budget, and persistence next to the labels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medview.algorithms.label_edit import (
    Edit,
    brush_region,
    combine_edits,
    diff_edit,
    erase,
    fill,
    paint,
    replace_array,
)
from medview.app.history import (
    STEP_OVERHEAD_BYTES,
    History,
    HistoryMismatchError,
    content_hash,
    history_path_for,
)
from medview.app.label_maps import open_label_map
from medview.core.errors import CorruptFileError, MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume
from medview.io.writers import write_image

GEOMETRY = Geometry((16, 40, 48), (0.8, 0.9, 2.0), (-20.0, -15.0, 30.0))


def _image() -> Volume:
    rng = np.random.default_rng(7)
    return Volume(rng.normal(0, 100, GEOMETRY.shape).astype(np.float32), GEOMETRY)


def _label_map() -> LabelMap:
    arr = np.zeros(GEOMETRY.shape, np.uint8)
    arr[4:12, 10:30, 10:35] = 1
    arr[6:9, 15:20, 15:20] = 3
    return LabelMap(arr, GEOMETRY, labels=[Label(1, "body"), Label(2, "tumour"), Label(3, "cord", locked=True)])


def _random_point(rng: np.random.Generator) -> np.ndarray:
    xyz = rng.uniform(0, 1, 3) * (np.array(GEOMETRY.size_xyz) - 1)
    return GEOMETRY.index_to_world(xyz)


def _random_edit(rng: np.random.Generator, lm: LabelMap, image: Volume, kind: int) -> Edit:
    """One edit of kind ``kind`` (0-7): disc, sphere, erase, threshold paint, 2D fill, 3D fill, morphology, stroke."""
    g = lm.geometry
    value = int(rng.integers(1, 3))  # 1 or 2 (3 is locked)
    if kind == 0:
        view = ("axial", "coronal", "sagittal")[int(rng.integers(3))]
        return paint(lm, brush_region(g, _random_point(rng), rng.uniform(1, 6), "disc", view), value)
    if kind == 1:
        return paint(lm, brush_region(g, _random_point(rng), rng.uniform(1, 5), "sphere"), value)
    if kind == 2:
        return erase(lm, brush_region(g, _random_point(rng), rng.uniform(2, 6), "sphere"))
    if kind == 3:
        return paint(lm, brush_region(g, _random_point(rng), 6.0, "sphere"), value, image=image, low=-50, high=60)
    if kind in (4, 5):
        try:
            return fill(lm, _random_point(rng), value, view="axial" if kind == 4 else None, image=image,
                        low=-150 if kind == 5 else None, high=150 if kind == 5 else None)
        except MedviewError:  # an empty fill (seed on the fill value or outside the range): try another kind
            return _random_edit(rng, lm, image, 0)
    if kind == 6:  # a whole-volume operation replacing the array, as a morphology command does
        grown = ndimage.binary_dilation(lm.array == value, iterations=1)
        result = lm.array.copy()
        result[grown & (lm.array == 0)] = value
        return replace_array(lm, result, f"Dilate label {value}")
    dabs = []  # a brush stroke: dabs drawn live, then one undo step for the whole stroke
    start = np.array([rng.uniform(0, 30), rng.uniform(0, 39), rng.uniform(0, 15)])  # x, y, z index
    for t in np.linspace(0, 1, 6):
        dab = paint(lm, brush_region(g, g.index_to_world(start + t * np.array([15.0, 0.0, 0.0])), 2.0), value)
        dab.apply(lm.array)
        dabs.append(dab)
    stroke = combine_edits(lm.array, dabs, "Brush stroke")
    stroke.revert(lm.array)  # perform() applies it again
    return stroke


def _run_edits(history: History, lm: LabelMap, image: Volume, count: int, seed: int) -> list[np.ndarray]:
    """Perform ``count`` non-empty random edits; returns the array before the first and after each one."""
    rng = np.random.default_rng(seed)
    states = [lm.array.copy()]
    while len(states) <= count:
        kind = len(states) % 8 if len(states) <= 80 else int(rng.integers(8))
        edit = _random_edit(rng, lm, image, kind)
        if edit.is_empty:
            continue
        change = history.perform("labels", edit)
        assert change is not None and change.kind == "do"
        assert np.array_equal(lm.array == 3, states[0] == 3)  # the locked cord is never touched
        states.append(lm.array.copy())
    return states


def test_undo_redo_round_trip_exactly_over_100_mixed_edits() -> None:
    lm, image = _label_map(), _image()
    cord = lm.array == 3
    history = History()
    history.register("labels", lm)
    states = _run_edits(history, lm, image, 100, seed=11)
    assert len(history) == 100 and history.can_undo and not history.can_redo
    assert {d.split(" ")[0] for d in history.undo_descriptions()} >= {"Paint", "Erase", "Fill", "Dilate", "Brush"}
    for i in range(100, 0, -1):
        description = history.undo_description
        change = history.undo()
        assert change.kind == "undo" and change.description == description
        assert np.array_equal(lm.array, states[i - 1]), f"undo of step {i} ({description})"
        outside = np.ones(lm.array.shape, bool)
        outside[change.bbox] = False
        assert np.array_equal(states[i][outside], states[i - 1][outside])  # the bbox holds the whole change
        assert lm.voxel_counts() == {v: int((lm.array == v).sum()) for v in (1, 2, 3) if (lm.array == v).any()}
    assert not history.can_undo and history.undo_description is None
    with pytest.raises(MedviewError, match="Nothing to undo"):
        history.undo()
    for i in range(1, 101):
        assert history.redo().kind == "redo"
        assert np.array_equal(lm.array, states[i]), f"redo of step {i}"
    assert np.array_equal(lm.array == 3, cord)
    with pytest.raises(MedviewError, match="Nothing to redo"):
        history.redo()
    for _ in range(30):
        history.undo()
    assert history.can_redo and len(history.redo_descriptions()) == 30
    history.perform("labels", paint(lm, brush_region(GEOMETRY, _random_point(np.random.default_rng(0)), 3.0), 2))
    assert not history.can_redo and len(history) == 71  # a new change ends the redo branch


def test_steps_are_small_compressed_diffs() -> None:
    g = Geometry((300, 512, 512), (0.7, 0.7, 1.0))
    lm = LabelMap(np.zeros(g.shape, np.uint8), g, labels=[Label(1, "a")])
    history = History()
    history.register("labels", lm)
    change = history.perform("labels", paint(lm, brush_region(lm.geometry, (100.0, 100.0, 150.0), 5.0), 1))
    assert change is not None and change.bbox[0] == slice(150, 151)
    assert history.memory_bytes < 400  # a whole copy would be 78,643,200 bytes
    assert history.record("labels", paint(lm, brush_region(lm.geometry, (100.0, 100.0, 150.0), 5.0), 1)) is None


def test_memory_stays_under_a_small_budget_by_dropping_the_oldest_steps() -> None:
    lm, image = _label_map(), _image()
    budget = 40_000
    history = History(budget_bytes=budget)
    history.register("labels", lm)
    rng = np.random.default_rng(5)
    states = [lm.array.copy()]
    while len(states) <= 150:
        edit = _random_edit(rng, lm, image, int(rng.integers(8)))
        if edit.is_empty:
            continue
        history.perform("labels", edit)
        states.append(lm.array.copy())
        assert 0 < history.memory_bytes <= budget
    kept = len(history)
    assert history.dropped_steps == 150 - kept > 0 and kept >= 5
    for i in range(kept):  # what is kept still undoes exactly, back to the oldest kept step
        history.undo()
        assert np.array_equal(lm.array, states[150 - i - 1])
    assert not history.can_undo
    assert history.memory_bytes <= budget  # the redo steps are counted too


def test_a_step_larger_than_the_budget_is_applied_but_not_kept() -> None:
    lm = LabelMap(np.zeros((20, 50, 50), np.uint8), Geometry((20, 50, 50)))
    history = History(budget_bytes=STEP_OVERHEAD_BYTES + 64)
    history.register("labels", lm)
    noisy = np.random.default_rng(0).integers(0, 4, lm.array.shape).astype(np.uint8)
    change = history.perform("labels", replace_array(lm, noisy, "Random"))
    assert change is not None and not change.undoable
    assert np.array_equal(lm.array, noisy) and len(history) == 0 and history.memory_bytes == 0


def test_one_history_for_label_maps_and_volumes() -> None:
    lm, image = _label_map(), _image()
    original = image.array.copy()
    history = History()
    history.register("labels", lm)
    history.register("ct", image)
    history.perform("labels", paint(lm, brush_region(GEOMETRY, _random_point(np.random.default_rng(1)), 4.0), 2))
    smoothed = image.array.copy()
    smoothed[5:8] = ndimage.uniform_filter(image.array[5:8], 3)
    history.perform("ct", diff_edit(image.array, smoothed, "Smooth slices 5-7"))
    assert np.array_equal(image.array, smoothed)
    change = history.undo()
    assert change.target_id == "ct" and change.bbox[0] == slice(5, 8)
    assert np.array_equal(image.array, original)  # float32 bit-exact
    assert history.undo().target_id == "labels" and lm.array.max() == 3
    history.forget("ct")
    assert history.redo_descriptions() == ["Paint label 2"]


def test_undo_refuses_when_the_array_changed_outside_the_history() -> None:
    lm = _label_map()
    history = History()
    history.register("labels", lm)
    change = history.perform("labels", paint(lm, brush_region(GEOMETRY, GEOMETRY.index_to_world([5, 5, 2]), 2.0), 2))
    assert change is not None
    lm.array[change.bbox] = 0  # edited behind the history's back
    with pytest.raises(MedviewError, match="changed outside the undo history"):
        history.undo()
    assert history.can_undo  # nothing was lost or half-applied


def _saved_session(tmp_path, count: int = 40, undone: int = 5):
    lm, image = _label_map(), _image()
    history = History()
    history.register("labels", lm)
    states = _run_edits(history, lm, image, count, seed=3)
    for _ in range(undone):
        history.undo()
    path = tmp_path / "seg.nii.gz"
    write_image(lm, path)
    history.save(history_path_for(path), "labels")
    return path, states


def test_history_survives_saving_and_reopening(tmp_path) -> None:
    path, states = _saved_session(tmp_path, count=40, undone=5)
    assert history_path_for(path).name == "seg.nii.gz.medview-history"
    reopened = open_label_map(path)
    assert np.array_equal(reopened.array, states[35])
    history = History.load(history_path_for(path), "seg", reopened)
    assert history.can_redo and len(history.redo_descriptions()) == 5
    for i in range(35, 0, -1):
        assert history.undo().target_id == "seg"
        assert np.array_equal(reopened.array, states[i - 1])
    for i in range(1, 41):
        history.redo()
        assert np.array_equal(reopened.array, states[i])


def test_a_history_whose_labels_changed_outside_medview_is_refused(tmp_path) -> None:
    path, _ = _saved_session(tmp_path, count=6, undone=0)
    edited = open_label_map(path)
    edited.array[0, 0, 0] = 2
    write_image(edited, path)  # another program changed the labels
    reopened = open_label_map(path)
    with pytest.raises(HistoryMismatchError, match=r"seg\.nii\.gz was changed outside medview"):
        History.load(history_path_for(path), "seg", reopened)
    history, message = History.load_or_empty(history_path_for(path), "seg", reopened)
    assert not history.can_undo and message is not None and "empty history" in message
    other_grid = LabelMap(np.zeros((16, 40, 47), np.uint8), Geometry((16, 40, 47)))
    with pytest.raises(HistoryMismatchError, match="grid"):
        History.load(history_path_for(path), "seg", other_grid)
    shifted = LabelMap(reopened.array, Geometry(GEOMETRY.shape, GEOMETRY.spacing, (0.0, 0.0, 0.0)))
    with pytest.raises(HistoryMismatchError, match="another image grid"):
        History.load(history_path_for(path), "seg", shifted)
    fresh, message = History.load_or_empty(tmp_path / "none.medview-history", "seg", reopened)
    assert message is None and not fresh.can_undo


def test_a_damaged_history_file_is_reported(tmp_path) -> None:
    path, _ = _saved_session(tmp_path, count=6, undone=0)
    hist = history_path_for(path)
    data = bytearray(hist.read_bytes())
    data[-10] ^= 0xFF
    hist.write_bytes(bytes(data))
    reopened = open_label_map(path)
    with pytest.raises(CorruptFileError, match="damaged"):
        History.load(hist, "seg", reopened)
    hist.write_bytes(b"not a history")
    with pytest.raises(CorruptFileError, match="not a medview undo history"):
        History.load(hist, "seg", reopened)


def test_content_hash_ignores_the_integer_type_but_not_the_values() -> None:
    a = np.random.default_rng(0).integers(0, 200, (5, 6, 7)).astype(np.uint8)
    assert content_hash(a) == content_hash(a.astype(np.uint16)) == content_hash(a.astype(np.int64))
    b = a.copy()
    b[4, 5, 6] ^= 1
    assert content_hash(a) != content_hash(b)
    assert content_hash(a) != content_hash(a.reshape(7, 6, 5))


def test_budget_must_be_positive() -> None:
    with pytest.raises(MedviewError, match="budget"):
        History(budget_bytes=0)


def test_undo_after_reopening_widens_a_label_map_read_back_narrower(tmp_path) -> None:
    """A uint16 map whose label 300 was erased comes back from disk as uint8; undoing the erase needs uint16."""
    g = Geometry((2, 10, 10))
    lm = LabelMap(np.zeros(g.shape, np.uint16), g, labels=[Label(300, "vessel")])
    history = History()
    history.register("seg", lm)
    region = brush_region(g, (5.0, 5.0, 1.0), 2.0)
    history.perform("seg", paint(lm, region, 300))
    history.perform("seg", erase(lm, region))
    path = tmp_path / "seg.nii.gz"
    write_image(lm, path)
    history.save(history_path_for(path), "seg")
    reopened = open_label_map(path)
    assert reopened.array.dtype == np.uint8
    restored = History.load(history_path_for(path), "seg", reopened)
    restored.undo()
    assert reopened.array.dtype == np.uint16 and reopened.voxel_count(300) == region.mask.sum()


def test_record_needs_an_applied_edit() -> None:
    lm = _label_map()
    history = History()
    history.register("labels", lm)
    edit = paint(lm, brush_region(GEOMETRY, GEOMETRY.index_to_world([5, 5, 2]), 2.0), 2)
    with pytest.raises(ValueError, match="needs an applied edit"):
        history.record("labels", edit)
    with pytest.raises(KeyError, match="register it first"):
        history.perform("other", edit)
    edit.apply(lm.array)
    assert history.record("labels", edit) is not None
