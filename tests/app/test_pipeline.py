"""Pipelines and cohorts without Dask: the YAML schema, validation before any case runs, one case run
against numpy and PyRadiomics references, the finished marker used for resume, and cohort loading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from medview.app.pipeline import (
    Case,
    Cohort,
    Pipeline,
    Step,
    is_case_done,
    read_case_record,
    run_case,
)
from medview.core.errors import MedviewError
from tests.analysis.cohort_data import broken_case, phantom_rows, sphere_case, write_csv

SMALL_RADIOMICS = {"featureClass": {"firstorder": None, "shape": None}}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("phantoms")
    phantom_rows(folder, 2, size=32, base_radius=7.0)
    broken_case(folder)
    return folder


def full_doc(params_file: str) -> dict:
    return {
        "medview_pipeline": 1,
        "description": "every step kind",
        "steps": [
            {"load": {"series": None}},
            {"filter": {"name": "median", "params": {"radius": 1.0}}},
            {"segment": {"method": "otsu", "params": {}}},
            {"refine": {"operation": "remove-islands", "params": {"min_size_mm3": 50}}},
            {"infer": {"model": "demo-body-lungs", "device": "cpu"}},
            {"features": {"label": 1, "params": params_file}},
            {"export": {"image": True, "labels": True, "format": "nii.gz"}},
        ],
    }


def test_schema_round_trip(tmp_path):
    params = tmp_path / "radiomics.yaml"
    params.write_text(yaml.safe_dump(SMALL_RADIOMICS))
    doc = full_doc(str(params))
    pipeline = Pipeline.from_dict(doc)
    assert [s.name for s in pipeline.steps] == ["load", "filter", "segment", "refine", "infer", "features", "export"]
    assert pipeline.to_dict() == doc
    path = pipeline.save(tmp_path / "p.yaml")
    assert yaml.safe_load(Path(path).read_text()) == doc
    again = Pipeline.load(path)
    assert again.steps == pipeline.steps and again.description == "every step kind"
    assert again.fingerprint() == pipeline.fingerprint()
    # a relative parameter file is read from the pipeline's folder and stored absolute
    (tmp_path / "sub").mkdir()
    rel = dict(doc, steps=[{"features": {"label": 1, "params": "../radiomics.yaml"}}])
    (tmp_path / "sub" / "rel.yaml").write_text(yaml.safe_dump(rel))
    assert Pipeline.load(tmp_path / "sub" / "rel.yaml").steps[0].params["params"] == str(params)
    # the parameter file's content is part of the fingerprint: edited settings are not "finished"
    before = Pipeline.from_dict(rel, base_dir=tmp_path / "sub").fingerprint()
    params.write_text(yaml.safe_dump({"featureClass": {"firstorder": None}}))
    assert Pipeline.from_dict(rel, base_dir=tmp_path / "sub").fingerprint() != before


def test_steps_recorded_by_the_gui_load():
    """The replay log's step builders produce documents this module accepts unchanged."""
    from medview.app import replay

    steps = [replay.filter_step("gaussian", {"sigma": 1.5}),
             replay.segment_step("connected-threshold", {"seeds": ((1.0, 2.0, 3.0),), "lower": 0.0, "upper": 1.0}),
             replay.refine_step("dilate", {"radius_mm": 1.0, "label": 0}),
             replay.infer_step("demo-body-lungs"), replay.features_step(1, SMALL_RADIOMICS)]
    doc = {"medview_pipeline": 1, "steps": steps}
    assert Pipeline.from_dict(yaml.safe_load(yaml.safe_dump(doc))).to_dict() == doc


@pytest.mark.parametrize(("steps", "message"), [
    ([{"filter": {"name": "median"}}, {"blur": {}}], r"step 2 of 2 \(blur\): unknown step 'blur'"),
    ([{"filter": {"name": "nosuch"}}], r"step 1 of 1 \(filter\): Unknown filter 'nosuch'"),
    ([{"filter": {"name": "median", "params": {"radius_mm": 1}}}], r"step 1 of 1 \(filter\).*no parameter 'radius_mm'"),
    ([{"filter": {"name": "gaussian", "params": {"sigma": -1}}}], r"step 1 of 1 \(filter\): sigma"),
    ([{"segment": {"method": "otsu", "params": {"bins": "many"}}}], r"step 1 of 1 \(segment\): bins"),
    ([{"segment": {"params": {}}}], r"step 1 of 1 \(segment\): 'method' is required"),
    ([{"refine": {"operation": "melt"}}], r"step 1 of 1 \(refine\): Unknown label operation 'melt'"),
    ([{"infer": {"model": "no-such-model"}}], r"step 1 of 1 \(infer\)"),
    ([{"infer": {"model": "demo-body-lungs", "device": "tpu"}}], r"step 1 of 1 \(infer\): 'device'"),
    ([{"features": {"label": 0}}], r"step 1 of 1 \(features\): 'label'"),
    ([{"features": {"params": "missing.yaml"}}], r"step 1 of 1 \(features\).*does not exist"),
    ([{"features": {"params": {"featureClass": {"nosuchclass": None}}}}], r"step 1 of 1 \(features\)"),
    ([{"export": {"format": "png"}}], r"step 1 of 1 \(export\): 'format'"),
    ([{"export": {"colour": True}}], r"step 1 of 1 \(export\): unknown key 'colour'"),
    ([{"filter": {"name": "median"}}, {"load": {}}], r"step 2 of 2 \(load\): 'load' can only be the first"),
    ([{"filter": {"name": "median"}, "segment": {"method": "otsu"}}], r"step 1 of 1 must be a one-key mapping"),
    ([], r"non-empty list of 'steps'"),
])
def test_bad_pipelines_fail_at_load_naming_the_step(steps, message):
    with pytest.raises(MedviewError, match=message):
        Pipeline.from_dict({"medview_pipeline": 1, "steps": steps})


def test_bad_documents(tmp_path):
    with pytest.raises(MedviewError, match="medview_pipeline: 1"):
        Pipeline.from_dict({"steps": [{"export": {}}]})
    with pytest.raises(MedviewError, match="unknown key 'step'"):
        Pipeline.from_dict({"medview_pipeline": 1, "step": []})
    bad = tmp_path / "bad.yaml"
    bad.write_text("medview_pipeline: 1\nsteps: [filter: {name: median\n")
    with pytest.raises(MedviewError, match="not valid YAML"):
        Pipeline.load(bad)
    with pytest.raises(MedviewError, match="No such pipeline"):
        Pipeline.load(tmp_path / "none.yaml")


def test_run_case_matches_numpy_and_pyradiomics(phantoms, tmp_path):
    """Threshold + export + features on a phantom: the label file equals numpy's threshold, the exported
    image the input, and the features those of compute_features and of numpy (mean, voxel volume)."""
    from medview.app.features import compute_features
    from medview.app.label_maps import open_label_map
    from medview.io.readers import open_image

    pipeline = Pipeline.from_dict({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "threshold", "params": {"lower": 100}}},
        {"features": {"label": 1, "params": SMALL_RADIOMICS}},
        {"export": {"image": True, "labels": True, "format": "nrrd"}},
    ]})
    case = Case("phantom1", str(phantoms / "phantom1_image.nii.gz"), None, "1")
    result = run_case(pipeline, case, tmp_path)
    assert result.status == "ok", result.error
    assert result.steps_done == 3 and result.outputs == ["cases/phantom1/image.nrrd", "cases/phantom1/labels.nrrd"]
    image = open_image(case.image)
    exported = open_image(tmp_path / "cases/phantom1/image.nrrd")
    np.testing.assert_array_equal(exported.array, image.array)
    labels = open_image(tmp_path / "cases/phantom1/labels.nrrd").array
    np.testing.assert_array_equal(labels, (image.array >= 100).astype(labels.dtype))
    mask = open_label_map(tmp_path / "cases/phantom1/labels.nrrd", reference=image)
    direct = compute_features(image, mask, label=1, params=SMALL_RADIOMICS)
    assert result.features.keys() == direct.keys()
    for name, value in direct.items():
        assert result.features[name] == pytest.approx(value, rel=1e-12, nan_ok=True), name
    inside = image.array[image.array >= 100].astype(np.float64)
    assert result.features["original_firstorder_Mean"] == pytest.approx(inside.mean(), rel=1e-6)
    assert result.features["original_shape_VoxelVolume"] == pytest.approx(inside.size * 1.0)
    record = read_case_record(tmp_path, "phantom1")
    assert record["status"] == "ok" and record["features"] == pytest.approx(result.features, nan_ok=True)
    assert record["target"] == "1" and record["pid"] == os.getpid()


def test_failures_are_recorded_with_their_step(phantoms, tmp_path):
    pipeline = Pipeline.from_dict({"medview_pipeline": 1, "steps": [
        {"filter": {"name": "gaussian", "params": {"sigma": 1.0}}},
        {"features": {"label": 1, "params": SMALL_RADIOMICS}},
    ]})
    # no label map for the features step: an error for this case only
    result = run_case(pipeline, Case("nolabel", str(phantoms / "phantom0_image.nii.gz")), tmp_path)
    assert result.status == "error" and result.steps_done == 1
    assert result.error.startswith("step 2 of 2 (features): there is no label map")
    # a truncated file: the load fails, the error says so
    broken = run_case(pipeline, Case("broken", str(phantoms / "broken_image.nrrd"),
                                     str(phantoms / "broken_label.nii.gz")), tmp_path)
    assert broken.status == "error" and broken.steps_done == 0
    assert broken.error.startswith("loading the image: Cannot read") and "broken_image.nrrd" in broken.error
    assert json.loads((tmp_path / "cases/broken/case.json").read_text())["status"] == "error"
    # a label value the map does not hold
    other = Pipeline.from_dict({"medview_pipeline": 1, "steps": [{"features": {"label": 7}}]})
    wrong = run_case(other, Case("p0", str(phantoms / "phantom0_image.nii.gz"),
                                 str(phantoms / "phantom0_label.nii.gz")), tmp_path)
    assert wrong.status == "error" and "Label 7 is not in the label map" in wrong.error


def test_finished_marker(phantoms, tmp_path):
    pipeline = Pipeline.from_dict({"medview_pipeline": 1, "steps": [{"segment": {"method": "otsu"}},
                                                                     {"export": {"image": False}}]})
    case = Case("p0", str(phantoms / "phantom0_image.nii.gz"))
    assert not is_case_done(tmp_path, "p0")
    assert run_case(pipeline, case, tmp_path).status == "ok"
    assert is_case_done(tmp_path, "p0") and is_case_done(tmp_path, "p0", pipeline.fingerprint())
    edited = Pipeline.from_dict({"medview_pipeline": 1, "steps": [{"segment": {"method": "otsu", "params": {
        "bins": 128}}}, {"export": {"image": False}}]})
    assert not is_case_done(tmp_path, "p0", edited.fingerprint())  # another pipeline's result is not "done"
    marker = tmp_path / "cases/p0/case.json"
    marker.write_text('{"status": "ok", "trunc')  # a half-written marker (cannot happen: it is atomic)
    assert not is_case_done(tmp_path, "p0")
    # a run that fails replaces the marker with an error marker: not done
    run_case(pipeline, Case("p0", str(phantoms / "broken_image.nrrd")), tmp_path)
    assert not is_case_done(tmp_path, "p0") and read_case_record(tmp_path, "p0")["status"] == "error"
    assert not list((tmp_path / "cases/p0").glob(".partial-*"))


def test_cohort_csv(phantoms, tmp_path):
    rows = [{"case_id": "a", "image": str(phantoms / "phantom0_image.nii.gz"), "label": "", "target": "x"},
            {"case_id": "b", "image": "../" + phantoms.name + "/phantom1_image.nii.gz",
             "label": "../" + phantoms.name + "/phantom1_label.nii.gz"}]
    sub = phantoms.parent / "csvdir"
    sub.mkdir(exist_ok=True)
    cohort = Cohort.load(write_csv(sub / "cohort.csv", rows))
    assert [c.case_id for c in cohort.cases] == ["a", "b"]
    assert cohort.cases[0] == Case("a", str(phantoms / "phantom0_image.nii.gz"), None, "x")
    assert cohort.cases[1].label == str(phantoms / "phantom1_label.nii.gz") and cohort.has_target
    # every problem is listed up front
    bad = [{"case_id": "a", "image": "missing.nii.gz"}, {"case_id": "a", "image": str(phantoms / "x.nii.gz")},
           {"case_id": "../evil", "image": str(phantoms / "phantom0_image.nii.gz")},
           {"case_id": "c", "image": str(phantoms / "phantom0_image.nii.gz"), "label": "nolabel.nii.gz"}]
    with pytest.raises(MedviewError) as info:
        Cohort.load(write_csv(tmp_path / "bad.csv", bad))
    text = str(info.value)
    assert "4 problem(s)" in text and "missing.nii.gz" in text and "repeats line 2" in text
    assert "'../evil'" in text and "nolabel.nii.gz" in text
    (tmp_path / "nocol.csv").write_text("id,path\na,b\n")
    with pytest.raises(MedviewError, match="no column case_id, image"):
        Cohort.load(tmp_path / "nocol.csv")
    with pytest.raises(MedviewError, match="No such cohort"):
        Cohort.load(tmp_path / "none.csv")


def test_cohort_folder(phantoms, tmp_path):
    """Files named <case>_image / <case>_label pair up; subfolders are cases (image files or DICOM)."""
    import shutil

    shutil.copy(phantoms / "phantom0_image.nii.gz", tmp_path / "p0_image.nii.gz")
    shutil.copy(phantoms / "phantom0_label.nii.gz", tmp_path / "p0_label.nii.gz")
    shutil.copy(phantoms / "phantom1_image.nii.gz", tmp_path / "solo.nii.gz")
    (tmp_path / "notes.txt").write_text("not a case")
    (tmp_path / "sub").mkdir()
    shutil.copy(phantoms / "phantom1_image.nii.gz", tmp_path / "sub" / "ct.nii.gz")
    shutil.copy(phantoms / "phantom1_label.nii.gz", tmp_path / "sub" / "mask.nii.gz")
    (tmp_path / "dicomstudy").mkdir()
    (tmp_path / "dicomstudy" / "IM0001").write_bytes(b"\0" * 128 + b"DICM")
    (tmp_path / "empty").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.nii.gz").write_bytes(b"")
    cohort = Cohort.load(tmp_path, exclude=(str(tmp_path / "out"),))
    assert {c.case_id: (Path(c.image).name, c.label and Path(c.label).name) for c in cohort.cases} == {
        "dicomstudy": ("dicomstudy", None), "p0": ("p0_image.nii.gz", "p0_label.nii.gz"),
        "solo": ("solo.nii.gz", None), "sub": ("ct.nii.gz", "mask.nii.gz")}
    (tmp_path / "sub" / "other.nii.gz").write_bytes(b"")
    with pytest.raises(MedviewError, match=r"cannot tell the image among ct\.nii\.gz, other\.nii\.gz"):
        Cohort.load(tmp_path)
    study = tmp_path / "onestudy"
    study.mkdir()
    (study / "IM1.dcm").write_bytes(b"\0" * 128 + b"DICM")
    with pytest.raises(MedviewError, match="looks like one DICOM study"):
        Cohort.load(study)


def test_shared_cases_as_a_folder_cohort():
    from tests.conftest import SHARED_DATA, shared_case

    shared_case("lung1_image.nrrd")
    cohort = Cohort.load(SHARED_DATA)
    assert [c.case_id for c in cohort.cases] == ["brain1", "brain2", "breast1", "lung1", "lung2"]
    assert all(c.label and c.label.endswith(f"{c.case_id}_label.nrrd") for c in cohort.cases)


def test_step_to_dict_is_plain():
    step = Step("filter", {"name": "median", "params": {"radius": 1.0}})
    assert step.to_dict() == {"filter": {"name": "median", "params": {"radius": 1.0}}}
    assert Pipeline.from_dict({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "connected-threshold", "params": {"seeds": [(1, 2, 3)], "lower": 0, "upper": 1}}}
    ]}).steps[0].params["params"]["seeds"] == [[1, 2, 3]]


def test_sphere_helper_is_what_it_says(tmp_path):
    from medview.io.readers import open_image

    image, label = sphere_case(tmp_path, "s", size=21, radius=5.0, noise=0.0)
    v, lab = open_image(image), open_image(label)
    z, y, x = np.mgrid[:21, :21, :21]
    expected = ((z - 10) ** 2 + (y - 10) ** 2 + (x - 10) ** 2) <= 25
    np.testing.assert_array_equal(lab.array.astype(bool), expected)
    assert v.array[10, 10, 10] == 200.0 and v.array[0, 0, 0] == 0.0
