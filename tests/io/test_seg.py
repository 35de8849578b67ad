"""Label maps as DICOM SEG: valid per dciodvfy, referencing the CT, and read back voxel for voxel."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medview.app.label_maps import open_label_map
from medview.app.samples import sample_path
from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume
from medview.io.dicom.scan import SeriesInfo
from medview.io.readers import open_image, scan
from medview.io.seg import SEG_SOP_CLASS_UIDS, is_seg_file, read_seg, write_seg


@pytest.fixture(scope="module")
def ct() -> Volume:
    return open_image(sample_path("chest_ct"))


@pytest.fixture(scope="module")
def ct_series() -> SeriesInfo:
    found = scan(sample_path("chest_ct"))
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def tumour(ct: Volume) -> LabelMap:
    return open_label_map(sample_path("chest_ct_label"), reference=ct)


@pytest.fixture(scope="module")
def tumour_seg(tmp_path_factory, tumour: LabelMap, ct_series: SeriesInfo) -> Path:
    path = tmp_path_factory.mktemp("seg") / "tumour_seg.dcm"
    assert write_seg(tumour, ct_series, path, description="Tumour (lung1)") == str(path)
    return path


def _three_labels(ct: Volume, tumour: LabelMap) -> LabelMap:
    """Tumour (1), a block of 'Left lung' (2) and a small 'Marker' (5): values with a gap, three colours."""
    array = tumour.array.copy()
    array[20:24, 200:260, 300:340] = 2
    array[30, 100:104, 100:104] = 5
    labels = [Label(1, "Tumour", (230, 25, 75)), Label(2, "Left lung", (60, 180, 75)),
              Label(5, "Marker ü", (0, 130, 200))]
    return LabelMap(array, ct.geometry, labels=labels)


def _dciodvfy(path: Path) -> list[str]:
    """dciodvfy's report; fails the test on any 'Error' line, prints the warnings."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    for ln in lines:
        if ln.startswith("Warning"):
            print(f"dciodvfy {path.name}: {ln}")
    assert not errors, "dciodvfy found errors:\n" + "\n".join(errors)
    return lines


def _frames_by_pydicom(path: Path, ct: Volume) -> np.ndarray:
    """Independent reader: pydicom's pixel_array placed by each frame's Image Position (Patient)."""
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    numbers = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    out = np.zeros(ct.geometry.shape, dtype=np.uint16)
    origin = np.array(ct.geometry.origin)
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        position = np.array([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient])
        z = (position - origin)[2] / ct.geometry.spacing[2]  # the sample is axial LPS, slices along +z
        assert abs(z - round(z)) < 1e-3 and np.allclose(position[:2], origin[:2], atol=1e-3)
        ident = group.get("SegmentIdentificationSequence") or \
            ds.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence  # shared when all frames agree
        number = int(ident[0].ReferencedSegmentNumber)
        value = int(str(numbers[number].SegmentDescription).rsplit(" ", 1)[1])
        assert not np.any(out[round(z)][frame > 0]), "frames of different segments overlap"
        out[round(z)][frame > 0] = value
    return out


# -- the sample study ---------------------------------------------------------------------------
def test_sample_seg_passes_dciodvfy(tumour_seg: Path) -> None:
    lines = _dciodvfy(tumour_seg)
    assert any("Segmentation" in ln for ln in lines), lines  # dciodvfy recognised the IOD it checked


def test_sample_seg_references_the_ct_and_omits_empty_frames(tumour_seg: Path, tumour: LabelMap,
                                                             ct_series: SeriesInfo) -> None:
    ds = pydicom.dcmread(tumour_seg)
    assert ds.SOPClassUID in SEG_SOP_CLASS_UIDS and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == ct_series.study_uid
    referenced = ds.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == ct_series.series_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced.ReferencedInstanceSequence} == \
        {r.sop_instance_uid for r in ct_series.frames}
    labelled_slices = int(np.count_nonzero(tumour.array.reshape(48, -1).any(axis=1)))
    assert 0 < labelled_slices < 48 and int(ds.NumberOfFrames) == labelled_slices
    segment = ds.SegmentSequence[0]
    assert len(ds.SegmentSequence) == 1 and segment.SegmentLabel == "Tumour"
    assert segment.SegmentAlgorithmType == "MANUAL"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    assert ds.ContentLabel == "TUMOUR_LUNG1" and ds.SeriesDescription == "Tumour (lung1)"


def test_sample_seg_reads_back_voxel_for_voxel(tumour_seg: Path, tumour: LabelMap, ct: Volume,
                                               ct_series: SeriesInfo) -> None:
    back = read_seg(tumour_seg, reference=ct)
    assert back.geometry == ct.geometry and back.warnings == []
    np.testing.assert_array_equal(back.array, tumour.array)
    assert [(e.value, e.name, e.color) for e in back.labels] == [(1, "Tumour", tumour.labels[0].color)]
    # independently: pydicom's decoding placed by plane position ...
    np.testing.assert_array_equal(_frames_by_pydicom(tumour_seg, ct), tumour.array)
    # ... and highdicom's own lookup by the referenced CT instances
    import highdicom as hd

    seg = hd.seg.segread(tumour_seg)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[r.sop_instance_uid for r in ct_series.slots], combine_segments=True)
    np.testing.assert_array_equal(pixels, tumour.array)


def test_sample_seg_without_reference_builds_its_grid_from_the_frames(tumour_seg: Path, tumour: LabelMap,
                                                                     ct: Volume) -> None:
    own = read_seg(tumour_seg)
    zs = np.flatnonzero(tumour.array.reshape(48, -1).any(axis=1))
    assert own.geometry.shape == (zs[-1] - zs[0] + 1, 512, 512)
    np.testing.assert_allclose(own.geometry.spacing, ct.geometry.spacing, atol=1e-5)
    np.testing.assert_allclose(own.geometry.origin, ct.geometry.index_to_world([0, 0, zs[0]]), atol=1e-4)
    np.testing.assert_array_equal(own.array, tumour.array[zs[0]:zs[-1] + 1])
    assert own.voxel_counts() == tumour.voxel_counts()


def test_seg_from_the_source_file_paths_matches_the_series(tmp_path: Path, tumour: LabelMap, ct: Volume,
                                                           ct_series: SeriesInfo) -> None:
    files = sorted(str(p) for p in sample_path("chest_ct").iterdir())
    path = Path(write_seg(tumour, files, tmp_path / "from_paths.dcm"))
    np.testing.assert_array_equal(read_seg(path, reference=ct).array, tumour.array)
    ds = pydicom.dcmread(path)
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_series.series_uid


# -- several labels -----------------------------------------------------------------------------
def test_multi_label_map_round_trips_values_names_and_colours(tmp_path: Path, ct: Volume, tumour: LabelMap,
                                                              ct_series: SeriesInfo) -> None:
    labels = _three_labels(ct, tumour)
    path = Path(write_seg(labels, ct_series, tmp_path / "three.dcm", algorithm_type="SEMIAUTOMATIC",
                          algorithm_name="Region growing", algorithm_version="1.0"))
    _dciodvfy(path)
    ds = pydicom.dcmread(path)
    assert [int(s.SegmentNumber) for s in ds.SegmentSequence] == [1, 2, 3]
    assert ds.SegmentSequence[1].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert ds.SegmentSequence[1].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "Region growing"
    back = read_seg(path, reference=ct)
    np.testing.assert_array_equal(back.array, labels.array)
    np.testing.assert_array_equal(_frames_by_pydicom(path, ct), labels.array)
    assert [(e.value, e.name) for e in back.labels] == [(1, "Tumour"), (2, "Left lung"), (5, "Marker ü")]
    for written, read in zip(labels.labels, back.labels, strict=True):
        # CIELab is stored as 16-bit integers: the RGB colour comes back within rounding
        assert max(abs(a - b) for a, b in zip(written.color, read.color, strict=True)) <= 1, (written, read)


def test_overlapping_segments_are_refused_naming_them(tmp_path: Path, ct: Volume, ct_series: SeriesInfo) -> None:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    stacked = np.zeros((*ct.geometry.shape, 2), dtype=np.uint8)
    stacked[10:12, 100:150, 100:150, 0] = 1
    stacked[11:13, 120:170, 120:170, 1] = 1  # overlaps segment 1 on slice 12 (index 11)
    descriptions = [hd.seg.SegmentDescription(i + 1, name, codes.SCT.Tissue, codes.SCT.Tissue, "MANUAL")
                    for i, name in enumerate(("Liver", "Kidney"))]
    sources = [pydicom.dcmread(r.path, stop_before_pixels=True) for r in ct_series.slots]
    seg = hd.seg.Segmentation(sources, stacked, "BINARY", descriptions, hd.UID(), 5, hd.UID(), 1, "test", "test",
                              "1", "1")
    path = tmp_path / "overlap.dcm"
    seg.save_as(path)
    with pytest.raises(MedviewError, match=r"'Liver' and 'Kidney' share 900 voxel\(s\) on slice\(s\) 12-12"):
        read_seg(path, reference=ct)


# -- bad input ----------------------------------------------------------------------------------
def test_empty_label_map_is_refused_and_nothing_is_written(tmp_path: Path, ct: Volume,
                                                           ct_series: SeriesInfo) -> None:
    empty = LabelMap(np.zeros(ct.geometry.shape, dtype=np.uint8), ct.geometry)
    with pytest.raises(MedviewError, match=r"empty \(no labelled voxel\): there is nothing to save"):
        write_seg(empty, ct_series, tmp_path / "empty.dcm")
    assert list(tmp_path.iterdir()) == []


def test_label_map_on_another_grid_is_refused(tmp_path: Path, ct_series: SeriesInfo) -> None:
    grid = Geometry((48, 256, 256), (1.140625, 1.140625, 5.0), (-146.0, -325.0, -777.5))
    array = np.zeros(grid.shape, dtype=np.uint8)
    array[20, 100:110, 100:110] = 1
    with pytest.raises(MedviewError, match=r"not on the grid of series .*256x256x48 voxels.*resample"):
        write_seg(LabelMap(array, grid), ct_series, tmp_path / "other.dcm")
    with pytest.raises(MedviewError, match="not on the grid of the source images"):
        write_seg(LabelMap(array, grid), sorted(sample_path("chest_ct").iterdir()), tmp_path / "other.dcm")
    assert list(tmp_path.iterdir()) == []


def test_missing_source_files_are_reported(tmp_path: Path, tumour: LabelMap) -> None:
    copy = tmp_path / "dicom"
    shutil.copytree(sample_path("chest_ct"), copy)
    info = scan(copy)[0]
    (copy / "image0007.dcm").unlink()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputNotFoundError, match=r"1 of 48 source file\(s\) .* missing .*image0007\.dcm"):
        write_seg(tumour, info, out / "seg.dcm")
    with pytest.raises(InputNotFoundError, match=r"1 of 2 source image file\(s\) are missing"):
        write_seg(tumour, [copy / "image0006.dcm", copy / "image0007.dcm"], out / "seg.dcm")
    assert list(out.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path: Path, tumour: LabelMap, ct_series: SeriesInfo) -> None:
    target = tmp_path / "seg.dcm"
    target.mkdir()  # the name is taken by a folder
    with pytest.raises(MedviewError, match="is a folder"):
        write_seg(tumour, ct_series, target)
    with pytest.raises(MedviewError, match="does not exist"):
        write_seg(tumour, ct_series, tmp_path / "no_such_folder" / "seg.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"] and list(target.iterdir()) == []


def test_write_interrupted_at_the_last_step_leaves_no_file(tmp_path: Path, tumour: LabelMap,
                                                           ct_series: SeriesInfo, monkeypatch) -> None:
    import os

    def disk_full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(MedviewError, match=r"Could not write .*seg\.dcm: No space left on device"):
        write_seg(tumour, ct_series, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_read_seg_refuses_what_is_not_a_seg(tmp_path: Path) -> None:
    ct_file = sample_path("chest_ct") / "image0000.dcm"
    assert not is_seg_file(ct_file)
    with pytest.raises(MedviewError, match=r"image0000\.dcm is CT Image Storage \(modality CT\), not a DICOM "
                                           r"Segmentation"):
        read_seg(ct_file)
    with pytest.raises(MedviewError, match=r"tumour_label\.nrrd is not a DICOM file"):
        read_seg(sample_path("chest_ct_label"))
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    with pytest.raises(MedviewError):
        read_seg(broken)
    with pytest.raises(InputNotFoundError):
        read_seg(tmp_path / "missing.dcm")


def test_segs_are_detected_by_their_header(tumour_seg: Path) -> None:
    assert is_seg_file(tumour_seg)
    assert not is_seg_file(sample_path("chest_ct_label"))
    assert not is_seg_file(sample_path("chest_ct"))  # a folder
