"""Undo and redo restore the label table (names, colours, locks, visibility, opacity) with the voxels it
describes: threshold, k-means and model results on the sample's tumour label, table edits, the saved
history file and autosave recovery.  Exports then name the labels the voxels hold."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from medview.algorithms.label_stats import label_statistics, to_csv
from medview.app.autosave import ENV_RECOVERY_DIR, AutosaveSession, open_recovery, pending_recoveries
from medview.app.history import History, history_path_for
from medview.app.label_maps import open_label_map, open_label_map_with_history
from medview.app.processing import run_segmentation
from medview.app.samples import sample_path
from medview.app.viewer import ViewerState
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume, VolumeMetadata
from medview.io.readers import open_image

TUMOUR_VOXELS = 837  # the bundled sample's tumour label (1.36 mL)


@pytest.fixture(scope="module")
def sample_ct() -> Volume:
    return open_image(sample_path("chest_ct"))


def _state(volume: Volume) -> ViewerState:
    state = ViewerState()
    state.set_volume(volume)
    state.set_labels(open_label_map(sample_path("chest_ct_label"), reference=volume))
    return state


def _table(state: ViewerState) -> list[tuple[int, str]]:
    return [(e.value, e.name) for e in state.labels.labels]


def test_threshold_then_undo_restores_the_tumour_name_and_redo_the_threshold_name(sample_ct: Volume) -> None:
    state = _state(sample_ct)
    tumour = state.labels.array.copy()
    assert _table(state) == [(1, "Tumour")] and state.labels.voxel_count(1) == TUMOUR_VOXELS
    result = run_segmentation(sample_ct, "threshold", {"lower": 300, "upper": 3000})
    state.apply_label_result(result, "threshold")
    assert _table(state) == [(1, "Threshold 300 .. 3000 HU")]
    state.undo()
    np.testing.assert_array_equal(state.labels.array, tumour)
    assert _table(state) == [(1, "Tumour")]
    assert state.labels.voxel_count(1) == TUMOUR_VOXELS
    assert state.labels.volume_ml(1) == pytest.approx(1.36, abs=0.005)
    state.redo()
    assert _table(state) == [(1, "Threshold 300 .. 3000 HU")]
    np.testing.assert_array_equal(state.labels.array, result.array)


def test_statistics_export_after_undo_names_the_tumour(sample_ct: Volume, tmp_path: Path) -> None:
    state = _state(sample_ct)
    state.apply_label_result(run_segmentation(sample_ct, "threshold", {"lower": 300, "upper": 3000}), "threshold")
    state.undo()
    to_csv(label_statistics(state.labels, sample_ct), tmp_path / "stats.csv")
    with open(tmp_path / "stats.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["value"], r["name"], r["voxels"]) for r in rows] == [("1", "Tumour", str(TUMOUR_VOXELS))]


def test_a_model_result_with_more_labels_is_undone_without_leftover_rows(sample_ct: Volume) -> None:
    state = _state(sample_ct)
    tumour = state.labels.array.copy()
    body = (sample_ct.array > -500).astype(np.uint8)
    body[(sample_ct.array < -900) & (body == 0)] = 2
    model = LabelMap(body, sample_ct.geometry, labels=[Label(1, "Body", (177, 122, 101)),
                                                       Label(2, "Lungs", (197, 165, 145))], source="Model ct-demo")
    state.apply_label_result(model, "Model ct-demo")
    assert _table(state) == [(1, "Body"), (2, "Lungs")]
    state.undo()
    np.testing.assert_array_equal(state.labels.array, tumour)
    assert _table(state) == [(1, "Tumour")]
    assert state.labels.label(1).color == (230, 25, 75)
    state.redo()
    assert _table(state) == [(1, "Body"), (2, "Lungs")]
    assert state.labels.label(2).color == (197, 165, 145)


def test_kmeans_names_are_undone_with_the_clusters() -> None:
    rng = np.random.default_rng(3)
    array = np.where(rng.random((8, 40, 40)) < 0.5, -950.0, 40.0) + rng.normal(0, 5, (8, 40, 40))
    volume = Volume(array.astype(np.float32), Geometry((8, 40, 40), (1.0, 1.0, 2.0)),
                    VolumeMetadata(modality="CT", units="HU"))
    state = ViewerState()
    state.set_volume(volume)
    drawn = np.zeros(volume.geometry.shape, np.uint8)
    drawn[2:4, 5:10, 5:10] = 1
    state.set_labels(LabelMap(drawn.copy(), volume.geometry, labels=[Label(1, "Tumour", (230, 25, 75))]))
    result = run_segmentation(volume, "kmeans", {"clusters": 2})
    state.apply_label_result(result, "kmeans")
    names = [e.name for e in state.labels.labels]
    assert any(n.startswith("Cluster") for n in names), names
    state.undo()
    assert _table(state) == [(1, "Tumour")]
    np.testing.assert_array_equal(state.labels.array, drawn)


def test_table_edits_are_undo_steps_and_a_later_visibility_change_survives_an_undo(sample_ct: Volume) -> None:
    state = _state(sample_ct)
    state.rename_label(1, "Nodule")
    state.set_label_color(1, (1, 2, 3))
    state.set_label_locked(1, True)
    added = state.add_label("Vessel")
    assert state.history.undo_descriptions()[:4] == ["Add label Vessel", "Lock Nodule", "Colour of Nodule",
                                                     "Rename Tumour to Nodule"]
    state.set_label_visible(1, False)  # display only: not a step, and no undo brings it back
    state.set_label_opacity(1, 0.8)
    for _ in range(4):
        state.undo()
    entry = state.labels.label(1)
    assert (entry.name, entry.color, entry.locked, entry.visible, entry.opacity) == (
        "Tumour", (230, 25, 75), False, False, 0.8)
    assert [e.value for e in state.labels.labels] == [1] and state.active_label == 1
    for _ in range(4):
        state.redo()
    entry = state.labels.label(1)
    assert (entry.name, entry.color, entry.locked) == ("Nodule", (1, 2, 3), True)
    assert state.labels.label(added.value).name == "Vessel"


def test_a_step_that_hid_a_label_shows_it_again_on_undo(sample_ct: Volume) -> None:
    state = _state(sample_ct)
    result = run_segmentation(sample_ct, "threshold", {"lower": 300, "upper": 3000})
    state.labels.label(1).visible = False  # what the result brings: hidden, half opaque
    result.labels = [Label(1, "Bone", (255, 255, 255), visible=False, opacity=0.2)]
    state.labels.label(1).visible = True
    state.apply_label_result(result, "threshold")
    assert state.labels.label(1).name == "Bone"
    state.undo()
    assert state.labels.label(1).name == "Tumour" and state.labels.label(1).visible


def test_brush_stroke_adds_its_entry_in_the_same_step(sample_ct: Volume) -> None:
    from medview.app.editing import BrushSettings, Stroke

    state = _state(sample_ct)
    state.active_label = 1
    state.labels.labels.clear()  # a map whose table lacks the value being painted gets "Label 1" with the stroke
    state.labels.labels.append(Label(1, "Tumour"))
    stroke = Stroke(state, BrushSettings(radius_mm=3.0), "axial")
    stroke.add(state.cursor)
    stroke.finish()
    state.undo()
    assert _table(state) == [(1, "Tumour")]


def test_saved_history_file_keeps_the_table_with_the_voxels(sample_ct: Volume, tmp_path: Path) -> None:
    from medview.io.writers import write_image

    state = _state(sample_ct)
    state.apply_label_result(run_segmentation(sample_ct, "threshold", {"lower": 300, "upper": 3000}), "threshold")
    path = tmp_path / "seg.nii.gz"
    write_image(state.labels, path)  # no table file beside it: the names live in the history file only
    state.history.save(history_path_for(path), "labels")
    labels, history, message = open_label_map_with_history(path, reference=sample_ct)
    assert message is None and history is not None
    assert [(e.value, e.name) for e in labels.labels] == [(1, "Threshold 300 .. 3000 HU")]
    reopened = ViewerState()
    reopened.set_volume(sample_ct)
    reopened.set_labels(labels, history)
    reopened.undo()
    assert _table(reopened) == [(1, "Tumour")] and reopened.labels.voxel_count(1) == TUMOUR_VOXELS
    reopened.redo()
    assert _table(reopened) == [(1, "Threshold 300 .. 3000 HU")]


def test_autosave_recovery_keeps_the_table_with_the_voxels(sample_ct: Volume, tmp_path: Path,
                                                           monkeypatch) -> None:
    monkeypatch.setenv(ENV_RECOVERY_DIR, str(tmp_path / "recovery"))
    state = _state(sample_ct)
    state.apply_label_result(run_segmentation(sample_ct, "threshold", {"lower": 300, "upper": 3000}), "threshold")
    state.rename_label(1, "Bone")
    session = AutosaveSession()
    session.save(state.labels, "labels", study=str(sample_path("chest_ct")), history=state.history)
    monkeypatch.setattr("medview.app.autosave._session_alive", lambda _manifest: False)  # as if it was killed
    (recovery,) = pending_recoveries()
    labels, history, message = open_recovery(recovery, reference=sample_ct)
    assert message is None
    recovered = ViewerState()
    recovered.set_volume(sample_ct)
    recovered.set_labels(labels, history)
    assert _table(recovered) == [(1, "Bone")]
    recovered.undo()
    assert _table(recovered) == [(1, "Threshold 300 .. 3000 HU")]
    recovered.undo()
    assert _table(recovered) == [(1, "Tumour")] and recovered.labels.voxel_count(1) == TUMOUR_VOXELS


def test_history_file_records_the_table_its_steps_end_at(tmp_path: Path) -> None:
    g = Geometry((2, 4, 4), (1.0, 1.0, 1.0))
    lm = LabelMap(np.zeros(g.shape, np.uint8), g, labels=[Label(1, "a")])
    history = History()
    history.register("labels", lm)
    from medview.algorithms.label_edit import diff_edit

    after = lm.array.copy()
    after[0, 0, 0] = 1
    history.perform("labels", diff_edit(lm.array, after))
    path = tmp_path / "x.medview-history"
    history.save(path, "labels")
    loaded = History.load(path, "labels", lm)
    assert loaded.saved_table == (Label(1, "a"),)
    loaded.undo()
    assert lm.array.max() == 0 and [e.name for e in lm.labels] == ["a"]
