"""``medview render``, ``mesh`` and ``drr`` as a user runs them: real processes, files checked by readers
that are not medview's (SimpleITK for PNG/NRRD, VTK's own readers for meshes)."""

from __future__ import annotations

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


def _no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def test_render_bone_preset_with_label_surface(chest_ct_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "bone.png"
    r = run("render", str(chest_ct_sample), str(out), "--preset", "ct-bone", "--size", "240x200",
            "--labels", str(sample_path("chest_ct_label")))
    assert r.returncode == 0, r.stderr
    assert "preset ct-bone" in r.stdout and "surfaces of label(s) 1" in r.stdout
    pixels = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert pixels.shape[:2] == (200, 240)
    lit = pixels[..., :3].max(axis=-1) > 40
    assert 0.05 < lit.mean() < 0.8  # a chest in the middle, black around it
    assert not lit[:, :5].any() and not lit[:, -5:].any()


def test_mesh_writes_lps_and_ras_files(tmp_path: Path) -> None:
    from vtkmodules.vtkIOGeometry import vtkSTLReader
    from vtkmodules.vtkIOPLY import vtkPLYReader

    lps, ras = tmp_path / "tumour.stl", tmp_path / "tumour_ras.ply"
    label = str(sample_path("chest_ct_label"))
    r1 = run("mesh", label, str(lps), "--label", "1")
    r2 = run("mesh", label, str(ras), "--convention", "RAS")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "label 1" in r1.stdout and "LPS" in r1.stdout
    assert b"LPS" in lps.read_bytes()[:80]
    readers = []
    for path, cls in ((lps, vtkSTLReader), (ras, vtkPLYReader)):
        reader = cls()
        reader.SetFileName(str(path))
        reader.Update()
        readers.append(reader)
    from vtkmodules.util.numpy_support import vtk_to_numpy

    p_lps = vtk_to_numpy(readers[0].GetOutput().GetPoints().GetData())
    p_ras = vtk_to_numpy(readers[1].GetOutput().GetPoints().GetData())
    # same surface, x and y negated: compare the point clouds' centres and extents
    np.testing.assert_allclose(p_ras.mean(axis=0), p_lps.mean(axis=0) * [-1, -1, 1], atol=1e-3)
    # and it lies where the label is (voxel centroid from SimpleITK, LPS)
    img = sitk.ReadImage(label)
    idx = np.argwhere(sitk.GetArrayFromImage(img) > 0)[:, ::-1].astype(float)
    centroid = np.array(img.TransformContinuousIndexToPhysicalPoint(idx.mean(axis=0).tolist()))
    assert np.linalg.norm(p_lps.mean(axis=0) - centroid) < 3.0  # vertex mean, not the solid centroid


def test_drr_png_and_image(chest_ct_sample: Path, tmp_path: Path) -> None:
    png, nrrd = tmp_path / "ap.png", tmp_path / "lat.nrrd"
    r1 = run("drr", str(chest_ct_sample), str(png), "--view", "ap")
    r2 = run("drr", str(chest_ct_sample), str(nrrd), "--view", "lateral")
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    picture = sitk.GetArrayFromImage(sitk.ReadImage(str(png)))
    # 512 x 0.57 mm wide, 48 x 5 mm high: square pixels of 0.57 mm -> about 421 rows
    assert picture.shape[1] == 512 and abs(picture.shape[0] - round(48 * 5 / 0.570312)) <= 1
    assert picture.std() > 20  # an image, not a flat field
    lateral = sitk.ReadImage(str(nrrd))
    assert lateral.GetSize()[:2] == (512, 48)
    assert np.allclose(lateral.GetSpacing()[:2], (0.570312, 5.0), atol=1e-4)


@pytest.mark.parametrize("args, message", [
    (["render", "{ct}", "{tmp}/x.jpg"], "written as .png"),
    (["render", "{ct}", "{tmp}/x.png", "--size", "big"], "Size must look like"),
    (["render", "{ct}", "{tmp}/x.png", "--preset", "ct-nothing"], "Unknown preset"),
    (["mesh", "{label}", "{tmp}/x.stl", "--label", "7"], "not found"),
    (["mesh", "{label}", "{tmp}/x.vrml"], "meshes are written as"),
    (["mesh", "{tmp}/missing.nrrd", "{tmp}/x.stl"], "No such file"),
    (["drr", "{ct}", "{tmp}/no_folder/x.png"], "does not exist"),
])
def test_bad_input_exits_3_with_one_line(args, message, chest_ct_sample: Path, tmp_path: Path) -> None:
    argv = [a.format(ct=chest_ct_sample, tmp=tmp_path, label=sample_path("chest_ct_label")) for a in args]
    r = run(*argv)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert message in r.stderr and r.stderr.count("\n") == 1
    _no_traceback(r)
    assert not [p for p in tmp_path.iterdir() if p.is_file()]  # nothing half-written
