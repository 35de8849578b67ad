"""The medview command as a user runs it: real processes, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

import medview


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def test_info_json(chest_ct_sample: Path) -> None:
    r = run("info", str(chest_ct_sample), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (series,) = out["series"]
    assert series["modality"] == "CT" and series["size"] == [512, 512, 48]
    assert series["spacing_mm"] == [0.570312, 0.570312, 5.0]


def test_info_text_names_warnings(chest_ct_sample: Path, tmp_path: Path) -> None:
    import shutil

    gap = tmp_path / "gap"
    shutil.copytree(chest_ct_sample, gap)
    sorted(gap.glob("image*.dcm"))[10].unlink()
    r = run("info", str(gap))
    assert r.returncode == 0
    assert "warning:" in r.stdout and "missing slice" in r.stdout
    assert "JPEG-LS Lossless Image Compression" in r.stdout
    assert "rtss.dcm: RTSTRUCT object, not an image" in r.stdout  # skipped files are named


def test_convert_writes_exact_geometry(chest_ct_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "ct.nii.gz"
    r = run("convert", str(chest_ct_sample), str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote" in r.stdout
    volume = medview.open_image(chest_ct_sample)
    img = nib.load(str(out))
    np.testing.assert_allclose(img.affine, volume.geometry.ras_affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), np.transpose(volume.array, (2, 1, 0)))


def test_bad_input_exits_3_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "junk.txt").write_text("hello")
    for args in (("info", str(tmp_path / "missing")), ("info", str(tmp_path)),
                 ("convert", str(tmp_path), str(tmp_path / "o.nii.gz")),
                 ("convert", str(tmp_path), str(tmp_path / "o.xyz"))):
        r = run(*args)
        assert r.returncode == 3, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("medview: error:"), r.stderr
        assert "Traceback" not in r.stderr


def test_usage_errors_exit_2() -> None:
    assert run("info").returncode == 2
    assert run("convert", "only-one-arg").returncode == 2


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and medview.__version__ in r.stdout
