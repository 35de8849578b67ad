"""Atlas label names and colours from the tables atlases ship beside their label image (issue 17, item 14:
MRIcron's AAL atlas showed 'Label 114' for every region)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.app.label_maps import open_label_map
from medview.io.label_tables import find_label_table, parse_label_table

MRICRON = Path("/usr/share/mricron/templates")  # Debian mricron-data (make test installs it)


def _aal(tmp_path: Path) -> Path:
    if not (MRICRON / "aal.nii.gz").exists():
        pytest.skip("mricron-data is not installed (make test installs it)")
    for name in ("aal.nii.gz", "aal.nii.txt", "aal.nii.lut"):
        shutil.copy(MRICRON / name, tmp_path / name)
    return tmp_path / "aal.nii.gz"


def test_aal_atlas_opens_with_its_region_names_and_mricron_colours(tmp_path: Path) -> None:
    atlas = _aal(tmp_path)
    labels = open_label_map(atlas)
    # the reference: AAL's own text file read here by its documented layout (index, name, code per line)
    names = {int(f[0]): f[1] for f in (ln.split() for ln in (tmp_path / "aal.nii.txt").read_text().splitlines()) if f}
    lut = np.frombuffer((tmp_path / "aal.nii.lut").read_bytes(), np.uint8).reshape(3, 256)  # reds, greens, blues
    present = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(atlas))))) - {0}
    assert len(present) == 116
    shown = {e.value: e for e in labels.labels}
    assert set(shown) == present
    for value in present:
        assert shown[value].name == names[value], value
        assert tuple(shown[value].color) == tuple(int(c) for c in lut[:, value]), value
    assert shown[114].name == "Vermis_8"
    assert not any(e.name.startswith("Label ") for e in labels.labels)


def test_medviews_own_table_wins_over_the_atlas_text(tmp_path: Path) -> None:
    atlas = _aal(tmp_path)
    (tmp_path / "aal_labels.json").write_text('{"114": {"name": "Cerebellar vermis lobule VIII", "color": [1, 2, 3]}}')
    shown = {e.value: e for e in open_label_map(atlas).labels}
    assert shown[114].name == "Cerebellar vermis lobule VIII" and tuple(shown[114].color) == (1, 2, 3)


def _label_image(path: Path, values: list[int]) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.array(values, np.uint8).reshape(1, 1, -1)), str(path))
    return path


def test_freesurfer_lut_and_itksnap_descriptions_beside_a_label_image(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    fs.mkdir()
    image = _label_image(fs / "aseg.nii.gz", [0, 2, 17, 17])
    (fs / "FreeSurferColorLUT.txt").write_text(
        "#No. Label Name:                            R   G   B   A\n\n"
        "0   Unknown                                 0   0   0   0\n"
        "2   Left-Cerebral-White-Matter              245 245 245 0\n"
        "17  Left-Hippocampus                        220 216 20  0\n")
    shown = {e.value: (e.name, tuple(e.color)) for e in open_label_map(image).labels}
    assert shown == {2: ("Left-Cerebral-White-Matter", (245, 245, 245)), 17: ("Left-Hippocampus", (220, 216, 20))}

    snap = tmp_path / "snap"
    snap.mkdir()
    image = _label_image(snap / "seg.nii.gz", [0, 1, 3])
    (snap / "seg_labels.txt").write_text(
        '# ITK-SnAP Label Description File\n'
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "Left lung"\n'
        '    3     0    0  255        1  1  1    "Right upper lobe"\n')
    shown = {e.value: (e.name, tuple(e.color)) for e in open_label_map(image).labels}
    assert shown == {1: ("Left lung", (255, 0, 0)), 3: ("Right upper lobe", (0, 0, 255))}


def test_tables_that_fit_no_format_give_no_names(tmp_path: Path) -> None:
    assert parse_label_table("this is a readme\nwith words 1 2\n") == {}
    image = _label_image(tmp_path / "plain.nii.gz", [0, 5])
    assert find_label_table(image) == ({}, None)
    assert [e.name for e in open_label_map(image).labels] == ["Label 5"]
