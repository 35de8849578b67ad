"""``medview augment IMAGE [LABEL] OUT_DIR`` as a user runs it; outputs checked with SimpleITK."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def grid(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """An int16 CT-like image and a uint8 label map (two blobs) on an anisotropic, oblique grid."""
    folder = tmp_path_factory.mktemp("augment")
    z, y, x = np.mgrid[:24, :28, :30]
    labels = np.zeros((24, 28, 30), np.uint8)
    labels[(x - 10) ** 2 + (y - 14) ** 2 + ((z - 12) * 1.5) ** 2 < 36] = 1
    labels[5:12, 16:24, 18:26] = 4
    ct = np.where(labels > 0, 40, -1000).astype(np.int16)
    c, s = np.cos(0.3), np.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    for array, name in ((ct, "ct.nii.gz"), (labels, "labels.nrrd")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.2, 2.0))
        image.SetOrigin((-20.0, 15.0, 7.5))
        image.SetDirection(direction)
        sitk.WriteImage(image, str(folder / name))
    return folder / "ct.nii.gz", folder / "labels.nrrd"


def test_writes_n_aligned_pairs_and_a_record(pair, tmp_path):
    image_path, label_path = pair
    out = tmp_path / "aug"
    r = run("augment", str(image_path), str(label_path), str(out), "--n", "3", "--seed", "5", "--flip", "lr,ap",
            "--rotate", "15", "--resize", "0.2")
    assert r.returncode == 0, r.stderr
    record = json.loads((out / "augment.json").read_text())
    assert record["seed"] == 5 and record["n"] == 3 and len(record["samples"]) == 3
    assert record["spec"]["flip_axes"] == ["lr", "ap"] and record["spec"]["rotate_deg"] == [15.0, 15.0, 15.0]
    assert record["spec"]["resize_range"] == [0.8, 1.2]
    assert record["image"] == str(image_path.resolve()) and record["labels"] == str(label_path.resolve())
    assert record["medview_version"]
    source = sitk.ReadImage(str(image_path))
    extent = np.array(source.GetSize()) * np.array(source.GetSpacing())
    for i, sample in enumerate(record["samples"]):
        assert sample["image"] == f"ct_aug{i:03d}.nii.gz" and sample["labels"] == f"ct_aug{i:03d}_label.nii.gz"
        image = sitk.ReadImage(str(out / sample["image"]))
        labels = sitk.ReadImage(str(out / sample["labels"]))
        assert grid(image)[0] == grid(labels)[0]
        np.testing.assert_allclose(np.concatenate(grid(image)[1:]), np.concatenate(grid(labels)[1:]), atol=1e-4)
        np.testing.assert_allclose(np.array(image.GetSize()) * np.array(image.GetSpacing()), extent, rtol=1e-5)
        np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-5)
        assert image.GetPixelID() == sitk.sitkInt16  # integer CT stays integer
        values = set(np.unique(sitk.GetArrayFromImage(labels)).tolist())
        assert values <= {0, 1, 4} and {1, 4} <= values
        assert list(image.GetSize()[::-1]) == sample["params"]["shape"]
    assert json.loads((out / "label_table.json").read_text()).keys() == {"1", "4"}


def test_image_only_and_options_that_turn_everything_off(pair, tmp_path):
    image_path, _ = pair
    out = tmp_path / "plain"
    r = run("augment", str(image_path), str(out), "--n", "2", "--flip", "none", "--rotate", "0", "--resize", "0",
            "--no-elastic", "--no-intensity")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["augment.json", "ct_aug000.nii.gz", "ct_aug001.nii.gz"]
    source = sitk.ReadImage(str(image_path))
    for name in ("ct_aug000.nii.gz", "ct_aug001.nii.gz"):
        copy = sitk.ReadImage(str(out / name))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(copy), sitk.GetArrayFromImage(source))
        np.testing.assert_allclose(np.concatenate(grid(copy)[1:]), np.concatenate(grid(source)[1:]), atol=1e-4)


@pytest.mark.parametrize("case, says", [("missing", "does not exist"), ("out-is-file", "is a file"),
                                        ("n-zero", "at least 1"), ("bad-flip", "--flip"),
                                        ("labels-elsewhere", "does not overlap")])
def test_bad_input_exits_3_with_one_line(pair, tmp_path, case, says):
    image_path, label_path = pair
    args = [str(image_path), str(label_path), str(tmp_path / "out")]
    if case == "missing":
        args[0] = str(tmp_path / "nothere.nii.gz")
    elif case == "out-is-file":
        args[2] = str(image_path)
    elif case == "n-zero":
        args += ["--n", "0"]
    elif case == "bad-flip":
        args += ["--flip", "up"]
    else:  # a label map nowhere near the image
        far = sitk.ReadImage(str(label_path))
        far.SetOrigin((500.0, 500.0, 500.0))
        args[1] = str(tmp_path / "far.nrrd")
        sitk.WriteImage(far, args[1])
    r = run("augment", *args)
    assert r.returncode == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert says in r.stderr
    assert not any((tmp_path / "out").glob("*.nii.gz"))


def test_wrong_number_of_paths_is_a_usage_error(pair):
    r = run("augment", str(pair[0]))
    assert r.returncode == 2 and "IMAGE [LABEL] OUT_DIR" in r.stderr
