"""``medview filter``, ``segment``, ``labels stats|refine`` and ``export-seg`` as a user runs them, checked
with SimpleITK / pydicom / the direct library call (not with medview's own readers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.app.samples import sample_path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def ct_nrrd(tmp_path_factory) -> Path:
    """A small CT (a crop of the real lung1 case) as NRRD, made with SimpleITK."""
    out = tmp_path_factory.mktemp("cli") / "ct.nrrd"
    r = run("convert", str(sample_path("chest_ct")), str(out))
    assert r.returncode == 0, r.stderr
    image = sitk.ReadImage(str(out))
    sitk.WriteImage(image[150:350, 250:420, 20:30], str(out))
    return out


def test_filter_equals_the_library_call(ct_nrrd: Path, tmp_path: Path) -> None:
    out = tmp_path / "smooth.nii.gz"
    r = run("filter", "gaussian", str(ct_nrrd), str(out), "--param", "sigma=1.5")
    assert r.returncode == 0, r.stderr
    assert "gaussian(sigma=1.5 mm)" in r.stdout
    image = sitk.ReadImage(str(ct_nrrd))
    expected = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Cast(image, sitk.sitkFloat32), 1.5))
    got = sitk.ReadImage(str(out))
    np.testing.assert_allclose(sitk.GetArrayFromImage(got), expected, atol=1e-3)
    assert np.allclose(got.GetOrigin(), image.GetOrigin()) and np.allclose(got.GetDirection(), image.GetDirection())


def test_segment_with_a_seed_and_label_tools(ct_nrrd: Path, tmp_path: Path) -> None:
    image = sitk.ReadImage(str(ct_nrrd))
    array = sitk.GetArrayFromImage(image)
    z, y, x = np.argwhere(array > 200)[0]  # a bone voxel as the seed
    seed = image.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
    labels = tmp_path / "bone.nrrd"
    r = run("segment", "connected-threshold", str(ct_nrrd), str(labels), "--seed", ",".join(map(str, seed)),
            "--param", "lower=200", "--param", "upper=3000")
    assert r.returncode == 0, r.stderr
    expected = sitk.GetArrayFromImage(sitk.ConnectedThreshold(image, seedList=[(int(x), int(y), int(z))],
                                                              lower=200, upper=3000))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(labels))) > 0, expected > 0)
    stats = run("labels", "stats", str(ct_nrrd), str(labels), "--json", "--csv", str(tmp_path / "s.csv"))
    assert stats.returncode == 0, stats.stderr
    row = json.loads(stats.stdout)["labels"][0]
    assert row["voxels"] == int(expected.sum())
    assert row["mean"] == pytest.approx(float(array[expected > 0].mean()), abs=1e-3)
    spacing = image.GetSpacing()
    assert row["volume_ml"] == pytest.approx(expected.sum() * np.prod(spacing) / 1000.0)
    assert (tmp_path / "s.csv").read_text().startswith("value,name,voxels")
    grown = tmp_path / "grown.nrrd"
    r = run("labels", "refine", "dilate", str(labels), str(grown), "--param", "radius_mm=1")
    assert r.returncode == 0, r.stderr
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(grown))) > 0).sum() > expected.sum()


def test_export_seg_reads_back_with_pydicom(tmp_path: Path) -> None:
    import highdicom as hd

    out = tmp_path / "seg.dcm"
    r = run("export-seg", str(sample_path("chest_ct")), str(sample_path("chest_ct_label")), str(out))
    assert r.returncode == 0, r.stderr
    seg = hd.seg.segread(str(out))
    assert seg.Modality == "SEG" and seg.number_of_segments == 1
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_path("chest_ct_label"))))
    assert int(seg.NumberOfFrames) == int((label.reshape(label.shape[0], -1).max(axis=1) > 0).sum())


@pytest.mark.parametrize("args, message", [
    (["filter", "nosuch", "{ct}", "{tmp}/o.nrrd"], "Unknown filter 'nosuch'"),
    (["filter", "median", "{ct}", "{tmp}/o.nrrd", "--param", "radius=-1"], "radius (mm) must be"),
    (["filter", "median", "{ct}", "{tmp}/o.nrrd", "--param", "size=3"], "median has no parameter 'size'"),
    (["segment", "connected-threshold", "{ct}", "{tmp}/o.nrrd", "--seed", "9999,0,0", "--param", "lower=0",
      "--param", "upper=1"], "outside"),
    (["segment", "threshold", "{ct}", "{tmp}/o.nrrd", "--param", "lower=5000"], "no voxels"),
    (["labels", "refine", "erode", "{ct}", "{tmp}/o.nrrd", "--param", "radius_mm=0"], "radius_mm (mm) must be > 0"),
    (["export-seg", "{ct}", "{label}", "{tmp}/seg.dcm"], "DICOM"),
])
def test_bad_input_exits_3_without_traceback(args, message, ct_nrrd: Path, tmp_path: Path) -> None:
    argv = [a.format(ct=ct_nrrd, tmp=tmp_path, label=sample_path("chest_ct_label")) for a in args]
    r = run(*argv)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob("seg*"))


def test_detect_writes_candidates_in_lps_mm(tmp_path: Path) -> None:
    out = tmp_path / "found.json"
    r = run("detect", str(sample_path("chest_ct")), str(out), "--method", "blob", "--diameter", "8-30")
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["coordinates"] == "LPS mm" and data["detections"]
    label = sitk.ReadImage(str(sample_path("chest_ct_label")))
    idx = np.argwhere(sitk.GetArrayFromImage(label) > 0)[:, ::-1].astype(float)
    centroid = np.array(label.TransformContinuousIndexToPhysicalPoint(idx.mean(axis=0).tolist()))
    best = data["detections"][0]  # the highest score first
    assert np.linalg.norm(np.array(best["center_lps"]) - centroid) < 10.0
    bad = run("detect", str(sample_path("chest_ct")), str(out), "--diameter", "30-8")
    assert bad.returncode == 3 and "Traceback" not in bad.stderr
