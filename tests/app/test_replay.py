"""The replay log: steps applied to a study become a pipeline file, following undo and redo."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from medview.algorithms.label_edit import Region, paint
from medview.app.processing import run_filter, run_label_operation, run_segmentation
from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata


def _volume() -> Volume:
    rng = np.random.default_rng(1)
    g = Geometry((16, 32, 32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    arr = rng.normal(0, 30, g.shape).astype(np.int16)
    arr[4:12, 8:24, 8:24] += 300
    return Volume(arr, g, VolumeMetadata(modality="CT", units="HU"))


def _state() -> ViewerState:
    s = ViewerState()
    s.set_volume(_volume())
    return s


def _apply_filter(s: ViewerState, name: str, params: dict) -> None:
    s.replace_volume(run_filter(s.volume, name, params), name)


def _apply_segmentation(s: ViewerState, method: str, params: dict) -> None:
    labels = run_segmentation(s.volume, method, params)
    if s.labels is None:
        from medview.app.replay import step_of

        s.set_labels(labels, step=step_of(labels), description=method)
    else:
        from medview.app.replay import step_of

        s.replace_label_array(labels.array, method, step=step_of(labels))


def _apply_refine(s: ViewerState, op: str, params: dict) -> None:
    from medview.app.replay import step_of

    result = run_label_operation(s.labels, op, params)
    s.replace_label_array(result.array, op, step=step_of(result))


def _kinds(s: ViewerState) -> list[str]:
    return [next(iter(step)) for step in s.steps.pipeline(s.history)["steps"]]


def test_filter_segment_refine_features_are_recorded_with_their_validated_parameters(tmp_path) -> None:
    s = _state()
    _apply_filter(s, "median", {"radius": 1.0})
    _apply_segmentation(s, "threshold", {"lower": 150, "upper": 3000})
    _apply_refine(s, "remove-islands", {"min_size_mm3": 20})
    s.record_features(1, {"binWidth": 25})
    doc = s.steps.pipeline(s.history)
    assert doc["medview_pipeline"] == 1
    assert doc["steps"] == [
        {"filter": {"name": "median", "params": {"radius": 1.0}}},
        {"segment": {"method": "threshold", "params": {"lower": 150.0, "upper": 3000.0}}},
        {"refine": {"operation": "remove-islands", "params": {"min_size_mm3": 20.0, "label": 0, "connectivity": 1}}},
        {"features": {"label": 1, "params": {"binWidth": 25}}},
    ]
    out = tmp_path / "tuned.yaml"
    assert s.export_pipeline(str(out)) == []
    assert yaml.safe_load(out.read_text()) == doc


def test_undone_steps_are_left_out_and_redo_brings_them_back() -> None:
    s = _state()
    _apply_segmentation(s, "threshold", {"lower": 150, "upper": 3000})
    _apply_refine(s, "dilate", {"radius_mm": 1.0})
    assert _kinds(s) == ["segment", "refine"]
    s.undo()
    assert _kinds(s) == ["segment"]
    s.record_features(1)  # changes no data: the redo branch survives, and so does its log entry
    s.redo()  # ... which moves after the features: they were computed without it, and a replay must be too
    assert _kinds(s) == ["segment", "features", "refine"]
    s.undo()  # the refinement again
    _apply_refine(s, "erode", {"radius_mm": 1.0})  # a new change ends the redo branch for good
    assert [next(iter(st.values())).get("operation") for st in s.steps.pipeline(s.history)["steps"]] == [
        None, None, "erode"]
    assert not any(step.get("refine", {}).get("operation") == "dilate"
                   for step in s.steps.pipeline(s.history)["steps"])


def test_filter_undo_on_the_image_follows_the_history() -> None:
    s = _state()
    _apply_filter(s, "gaussian", {"sigma": 1.0})
    _apply_filter(s, "median", {"radius": 1.0})
    s.undo()
    assert [st["filter"]["name"] for st in s.steps.pipeline(s.history)["steps"]] == ["gaussian"]


def test_a_grid_changing_filter_stays_in_the_log_and_a_new_study_clears_it() -> None:
    s = _state()
    _apply_filter(s, "resample", {"spacing": (2.0, 2.0, 2.0)})
    assert s.volume.geometry.spacing == (2.0, 2.0, 2.0)
    assert _kinds(s) == ["filter"]
    s.set_volume(_volume())
    with pytest.raises(MedviewError, match="Nothing to export"):
        s.steps.pipeline(s.history)


def test_manual_edits_are_not_exported_but_reported(tmp_path) -> None:
    s = _state()
    _apply_segmentation(s, "threshold", {"lower": 150, "upper": 3000})
    edit = paint(s.labels, Region((slice(0, 1), slice(0, 4), slice(0, 4)), np.ones((1, 4, 4), bool)), 2)
    s.edit_labels(edit, "Paint label 2")
    warnings = s.export_pipeline(str(tmp_path / "p.yml"))
    assert warnings and "1 manual edit" in warnings[0]
    doc = yaml.safe_load((tmp_path / "p.yml").read_text())
    assert [next(iter(st)) for st in doc["steps"]] == ["segment"]
    assert "Paint label 2" in doc["description"]
    with pytest.raises(MedviewError, match=r"\.yaml"):
        s.export_pipeline(str(tmp_path / "p.txt"))
