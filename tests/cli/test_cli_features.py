"""``medview features IMAGE MASK --out CSV`` as a user runs it: the CSV holds PyRadiomics' own values (called
directly on the same files), cohorts concatenate, and bad input is one line on stderr with exit code 3."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.cli.main import main


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> tuple[Path, Path]:
    """A small textured image and a two-label mask (values 1 and 4) written with SimpleITK."""
    folder = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(7)
    image = sitk.GetImageFromArray(rng.normal(40, 30, (10, 24, 24)).round().astype(np.int16))
    mask_array = np.zeros((10, 24, 24), np.uint8)
    mask_array[2:8, 4:18, 5:19] = 1
    mask_array[3:5, 20:23, 20:23] = 4
    mask = sitk.GetImageFromArray(mask_array)
    for img in (image, mask):
        img.SetSpacing((0.9, 0.9, 2.5))
        img.SetOrigin((12.0, -30.0, 100.0))
    sitk.WriteImage(image, str(folder / "case7_image.nrrd"))
    sitk.WriteImage(mask, str(folder / "case7_label.nrrd"))
    return folder / "case7_image.nrrd", folder / "case7_label.nrrd"


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_features_writes_one_row_with_pyradiomics_values(case, tmp_path: Path, capsys) -> None:
    from radiomics import featureextractor

    from medview.analysis.features import default_params_path

    image, mask = case
    out = tmp_path / "features.csv"
    assert main(["features", str(image), str(mask), "--label", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "features of label 4" in printed and "MeshVolume" in printed
    rows = _read(out)
    assert len(rows) == 1
    row = rows[0]
    assert list(row)[:2] == ["case_id", "label"] and row["case_id"] == "case7_image" and row["label"] == "4"
    extractor = featureextractor.RadiomicsFeatureExtractor(str(default_params_path()))
    direct = {k: float(v) for k, v in extractor.execute(str(image), str(mask), label=4).items()
              if not k.startswith("diagnostics_")}
    assert list(row)[2:] == list(direct)
    for name, value in direct.items():
        assert float(row[name]) == value, name  # written with repr: exact


def test_cohort_files_concatenate(case, tmp_path: Path, capsys) -> None:
    image, mask = case
    params = tmp_path / "params.yaml"
    params.write_text("featureClass:\n  firstorder: [Mean, Maximum]\n  shape: [VoxelVolume]\nsetting:\n  binWidth: 5\n")
    outs = []
    for label in (1, 4):
        out = tmp_path / f"f{label}.csv"
        assert main(["features", str(image), str(mask), "--params", str(params), "--label", str(label),
                     "--out", str(out)]) == 0
        outs.append(out.read_text().splitlines())
    assert outs[0][0] == outs[1][0] == ("case_id,label,original_shape_VoxelVolume,original_firstorder_Mean,"
                                        "original_firstorder_Maximum")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(image))).astype(float)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(mask)))
    for label, lines in zip((1, 4), outs, strict=True):
        values = [float(v) for v in lines[1].split(",")[2:]]
        voxels = array[labels == label]
        assert values == pytest.approx([voxels.size * 0.9 * 0.9 * 2.5, voxels.mean(), voxels.max()], rel=1e-12)
    capsys.readouterr()


def test_mask_on_another_grid_is_resampled_with_a_warning(case, tmp_path: Path, capsys) -> None:
    image, mask = case
    coarse = sitk.Resample(sitk.ReadImage(str(mask)), [12, 12, 10], sitk.Transform(), sitk.sitkNearestNeighbor,
                           (12.45, -29.55, 100.0), (1.8, 1.8, 2.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), 0)
    coarse_path = tmp_path / "coarse_label.nrrd"
    sitk.WriteImage(coarse, str(coarse_path))
    out = tmp_path / "f.csv"
    assert main(["features", str(image), str(coarse_path), "--label", "1", "--out", str(out)]) == 0
    assert "resampled" in capsys.readouterr().out
    assert len(_read(out)) == 1


def _fails(argv: list[str], capsys) -> str:
    assert main(argv) == 3
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    return lines[0]


def test_bad_input_is_one_line_and_exit_3(case, tmp_path: Path, capsys) -> None:
    image, mask = case
    out = tmp_path / "f.csv"
    message = _fails(["features", str(tmp_path / "missing.nrrd"), str(mask), "--out", str(out)], capsys)
    assert "No such file" in message and "missing.nrrd" in message
    message = _fails(["features", str(image), str(mask), "--label", "2", "--out", str(out)], capsys)
    assert "Label 2 is not in the label map; the labels present are 1, 4" in message
    message = _fails(["features", str(image), str(mask), "--out", str(out)], capsys)
    assert "several labels (1, 4)" in message
    bad = tmp_path / "bad.yaml"
    bad.write_text("featureClass:\n  textures: ~\n")
    message = _fails(["features", str(image), str(mask), "--params", str(bad), "--label", "1", "--out", str(out)],
                     capsys)
    assert "unknown feature class(es) textures" in message
    message = _fails(["features", str(image), str(mask), "--label", "1", "--out", str(tmp_path / "no" / "f.csv")],
                     capsys)
    assert "does not exist" in message
    assert not out.exists()


def test_label_from_the_parameter_file(case, tmp_path: Path, capsys) -> None:
    image, mask = case
    params = tmp_path / "p.json"
    params.write_text('{"featureClass": {"shape": ["VoxelVolume"]}, "setting": {"label": 4}}')
    out = tmp_path / "f.csv"
    assert main(["features", str(image), str(mask), "--params", str(params), "--out", str(out)]) == 0
    row = _read(out)[0]
    assert row["label"] == "4"
    assert float(row["original_shape_VoxelVolume"]) == pytest.approx(2 * 3 * 3 * 0.9 * 0.9 * 2.5)  # 2x3x3 voxels
    capsys.readouterr()
