"""Bad input: each case gives a clear medview error within a second and never allocates the claimed size."""

from __future__ import annotations

import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset

import medview
from medview.core.errors import (
    AmbiguousInputError,
    CorruptFileError,
    InputNotFoundError,
    MedviewError,
    ResourceLimitError,
    SeriesNotFoundError,
    UnsupportedFormatError,
)
from tests.conftest import dicom_files

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _fails_fast(path: Path | str, error: type[MedviewError], match: str | None = None, **kwargs) -> MedviewError:
    """open_image must raise ``error`` within 1 s and allocate < 64 MB."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error, match=match) as info:
            medview.open_image(path, **kwargs)
    finally:
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert peak < 64 * 1024 * 1024, f"allocated {peak / 1e6:.0f} MB"
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message
    return info.value


def test_missing_path(tmp_path: Path) -> None:
    _fails_fast(tmp_path / "nope", InputNotFoundError, "No such file or folder")


def test_empty_folder(tmp_path: Path) -> None:
    _fails_fast(tmp_path, InputNotFoundError, "empty")


def test_zero_byte_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.dcm"
    f.write_bytes(b"")
    _fails_fast(f, CorruptFileError, "empty")


def test_folder_of_only_non_dicom_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "zero.dcm").write_bytes(b"")
    err = _fails_fast(tmp_path, UnsupportedFormatError, "No DICOM images")
    assert "2 file(s) skipped" in str(err)


def test_non_dicom_file_with_unknown_extension(tmp_path: Path) -> None:
    f = tmp_path / "report.pdf"
    f.write_bytes(b"%PDF-1.4 " + b"x" * 500)
    _fails_fast(f, UnsupportedFormatError, "not a DICOM file")


def test_non_dicom_files_mixed_in_are_skipped(lung1_series: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(lung1_series, mixed)
    (mixed / "README.txt").write_text("scanner export notes")
    (mixed / "thumbs.db").write_bytes(b"\x00" * 1000)
    (mixed / "DICOMDIR.bak").write_bytes(b"")
    found = medview.scan(mixed)
    assert len(found) == 1 and found[0].n_slices == 48
    assert len(found.skipped) >= 3
    assert medview.open_image(mixed).array.shape == (48, 512, 512)


def test_truncated_slice_in_a_series(lung1_series: Path, tmp_path: Path) -> None:
    broken = tmp_path / "truncated"
    shutil.copytree(lung1_series, broken)
    victim = dicom_files(broken)[12]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100_000])
    err = _fails_fast(broken, CorruptFileError)
    assert victim.name in str(err)


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "no_meta.dcm", "badVR.dcm", "rtplan_truncated.dcm",
                                  "meta_missing_tsyntax.dcm", "UN_sequence.dcm", "reportsi.dcm",
                                  "nested_priv_SQ.dcm", "priv_SQ.dcm"])
def test_pydicom_malformed_test_files(name: str) -> None:
    """Every one of pydicom's awkward files either opens or gives a one-line medview error."""
    path = PYDICOM_FILES / name
    if not path.exists():
        pytest.skip(f"{name} not shipped with this pydicom")
    start = time.perf_counter()
    try:
        volume = medview.open_image(path)
    except MedviewError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert volume.array.size > 0 and np.isfinite(volume.array.astype(float)).all()
    assert time.perf_counter() - start < 1.0


def test_truncated_pixel_data_is_a_clear_error() -> None:
    _fails_fast(PYDICOM_FILES / "MR_truncated.dcm", CorruptFileError, "bytes")


def _huge_header(path: Path, rows: int, cols: int, frames: int) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = b"\0" * 1024  # a tiny file that claims 7.2 TB
    ds.save_as(path, enforce_file_format=True)
    return path


def test_header_claiming_60000_x_60000_x_1000(tmp_path: Path) -> None:
    f = _huge_header(tmp_path / "huge.dcm", 60000, 60000, 1000)
    (info,) = medview.scan(f)
    assert info.n_slices == 1000
    err = _fails_fast(f, CorruptFileError)
    assert "60000x60000" in str(err)


def test_memory_budget_is_enforced(lung1_series: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDVIEW_MEMORY_BUDGET_MB", "10")  # the series needs 24 MB as int16
    err = _fails_fast(lung1_series, ResourceLimitError, "MEDVIEW_MEMORY_BUDGET_MB")
    assert "MB" in str(err)


def test_gzip_bomb_nifti_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((400, 400, 200), np.int16), np.eye(4)), tmp_path / "big.nii.gz")
    monkeypatch.setenv("MEDVIEW_MEMORY_BUDGET_MB", "20")  # 64 MB of zeros compress to ~60 KB
    _fails_fast(tmp_path / "big.nii.gz", ResourceLimitError)


def test_corrupt_nifti(tmp_path: Path) -> None:
    f = tmp_path / "broken.nii.gz"
    f.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    _fails_fast(f, CorruptFileError)


@pytest.mark.parametrize("name", ["cut.nii", "cut.nii.gz"])
def test_truncated_nifti_is_refused_not_read_as_zeros(tmp_path: Path, name: str) -> None:
    import SimpleITK as sitk

    whole = tmp_path / ("whole" + name[3:])
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(40 * 50 * 60, dtype=np.int32).reshape(40, 50, 60)),
                    str(whole), name.endswith(".gz"))
    data = whole.read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    _fails_fast(tmp_path / name, CorruptFileError, "truncated")
    assert medview.open_image(whole).array[-1, -1, -1] == 40 * 50 * 60 - 1  # the whole file still opens


def test_unknown_series(lung1_series: Path) -> None:
    _fails_fast(lung1_series, SeriesNotFoundError, "is not in", series="1.2.3.4")


def test_several_series_need_a_choice(lung1_series: Path, brain1_series: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    shutil.copytree(lung1_series, both / "ct")
    shutil.copytree(brain1_series, both / "mr")
    err = _fails_fast(both, AmbiguousInputError, "holds 2 series")
    assert "series=" in str(err)


def test_file_removed_between_scan_and_load(lung1_series: Path, tmp_path: Path) -> None:
    """A slice deleted after the scan (a PACS clean-up, a USB stick pulled) is a clear error."""
    from medview.io.dicom.load import load_series

    folder = tmp_path / "vanishing"
    shutil.copytree(lung1_series, folder)
    (info,) = medview.scan(folder)
    dicom_files(folder)[5].unlink()
    with pytest.raises(CorruptFileError, match="Cannot read the pixels"):
        load_series(info)
