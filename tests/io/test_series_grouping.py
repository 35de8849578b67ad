"""Splitting one SeriesInstanceUID into the images it really holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom

import medview
from tests.conftest import dicom_files


def test_localizer_is_separated(lung1_series: Path, tmp_path: Path) -> None:
    study = tmp_path / "with_localizer"
    shutil.copytree(lung1_series, study)
    ds = pydicom.dcmread(dicom_files(lung1_series)[0])
    # a coronal scout in the same series: other orientation, other size, ImageType LOCALIZER
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.Rows = 256
    ds.PixelData = ds.PixelData[: 256 * 512 * 2]
    ds.save_as(study / "scout.dcm")
    found = medview.scan(study)
    assert len(found) == 2
    main, scout = sorted(found, key=lambda s: -s.n_slices)
    assert main.n_slices == 48 and main.warnings == []
    assert "localizer" in scout.description and scout.n_slices == 1
    assert medview.open_image(study, series=main.uid).array.shape == (48, 512, 512)
    assert medview.open_image(study, series=scout.uid).array.shape == (1, 256, 512)


def test_repeated_acquisitions_are_separated(lung1_series: Path, tmp_path: Path) -> None:
    """A pre- and post-contrast pair sharing one series UID and the same positions."""
    study = tmp_path / "two_phases"
    study.mkdir()
    for f in dicom_files(lung1_series):
        for acq, offset in ((1, 0), (2, 100)):
            ds = pydicom.dcmread(f)
            ds.AcquisitionNumber = acq
            ds.SOPInstanceUID = pydicom.uid.generate_uid()
            arr = ds.pixel_array.astype(np.int16) + offset
            ds.PixelData = arr.tobytes()
            ds.save_as(study / f"{acq}_{f.name}")
    found = medview.scan(study)
    assert len(found) == 2 and all(s.n_slices == 48 and not s.warnings for s in found)
    first, second = (medview.open_image(study, series=s.uid) for s in found)
    assert int(second.array.astype(np.int32).sum() - first.array.astype(np.int32).sum()) == 100 * first.array.size


def test_info_summary_lists_what_a_reader_needs(lung1_series: Path) -> None:
    (info,) = medview.scan(lung1_series)
    s = info.summary()
    assert s["modality"] == "CT" and s["size"] == [512, 512, 48]
    assert s["spacing_mm"][2] == 5.0 and s["orientation"] == "LPS" and s["files"] == 48
    assert s["transfer_syntaxes"] == ["1.2.840.10008.1.2.1"]


def test_patient_and_series_text_fields() -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    (info,) = medview.scan(path)
    ds = pydicom.dcmread(path)
    assert info.patient_name == str(ds.PatientName) == "CompressedSamples^CT1"
    assert info.patient_id == ds.PatientID
    v = medview.open_image(path)
    assert v.metadata.patient_name == "CompressedSamples^CT1"
