"""Projection radiographs: MONOCHROME1 inverted by the standard's rule, and what the viewer is told about them.

References: pydicom's stored values (``pixel_array``) and its modality LUT, never medview's output.  Real
files from pydicom-data (a chest CR, MONOCHROME1, 1955x1841, 15 bits stored; skipped when not installed)
and small files written here with known values.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import medview

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def _file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pydicom-data?)")
    return str(path)


def write_radiograph(path, stored: np.ndarray, *, bits_stored: int = 12, signed: bool = False,
                     photometric: str = "MONOCHROME1", orientation: tuple[str, str] | None = ("L", "F"),
                     modality: str = "CR", slope: float | None = None, intercept: float | None = None):
    """A CR image as a digitiser writes it: no ImagePositionPatient/ImageOrientationPatient, PatientOrientation."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CR_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName, ds.PatientID = "Test^Chest", "CR0001"  # invented
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber = 1
    ds.ViewPosition = "PA"
    if orientation is not None:
        ds.PatientOrientation = list(orientation)
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept or 0, "US"
    ds.WindowCenter, ds.WindowWidth = 1000, 2000
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# -- MONOCHROME1 --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
def test_real_cr_is_inverted_over_its_stored_range(name):
    """RG1 stores 15 bits; its values span 874..26479, so mirroring those (the old rule) shifted every
    value by 32767 - 27353 = 5414 against the standard's (2^15 - 1) - v."""
    path = _file(name)
    ds = pydicom.dcmread(path)
    assert (ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation) == ("MONOCHROME1", 15, 0)
    stored = ds.pixel_array.astype(np.int64)
    vol = medview.open_image(path)
    assert vol.array.shape == (1, 1955, 1841)
    np.testing.assert_array_equal(vol.array[0], (2**15 - 1) - stored)
    assert [(w.center, w.width) for w in vol.metadata.window_presets] == [((2**15 - 1) - 15000.0, 30000.0)]
    assert vol.metadata.photometric == "MONOCHROME2" and vol.metadata.extra["file_photometric"] == "MONOCHROME1"


def test_written_cr_inverted_over_12_bits(tmp_path):
    stored = np.array([[3, 10, 100], [2000, 3000, 3500]], dtype=np.uint16)  # not the ends of the 12-bit range
    vol = medview.open_image(write_radiograph(tmp_path / "cr.dcm", stored))
    np.testing.assert_array_equal(vol.array[0], 4095 - stored.astype(np.int64))
    assert [(w.center, w.width) for w in vol.metadata.window_presets] == [(4095 - 1000.0, 2000.0)]


def test_inversion_then_rescale(tmp_path):
    """With a rescale, the stored values are mirrored and then rescaled: pydicom's modality LUT of the
    mirrored stored values."""
    stored = np.array([[7, 10, 500], [1000, 3000, 3900]], dtype=np.uint16)
    path = write_radiograph(tmp_path / "cr.dcm", stored, slope=0.5, intercept=-20)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut((4095 - ds.pixel_array.astype(np.int64)), ds)
    vol = medview.open_image(path)
    np.testing.assert_allclose(vol.array[0], expected, rtol=1e-6)


def test_signed_monochrome1_mirrors_the_signed_range(tmp_path):
    """Signed stored values (12 bits: -2048..2047) are mirrored about the middle of their range: -1 - v,
    so the lowest possible value becomes the highest (whatever values occur: here -1500..1800)."""
    stored = np.array([[-1500, -1, 0], [1, 1000, 1800]], dtype=np.int16)
    path = write_radiograph(tmp_path / "cr.dcm", stored, signed=True)
    np.testing.assert_array_equal(pydicom.dcmread(path).pixel_array, stored)  # the file holds what we meant
    vol = medview.open_image(path)
    np.testing.assert_array_equal(vol.array[0], -1 - stored.astype(np.int64))


def test_monochrome2_is_not_inverted(tmp_path):
    stored = np.array([[0, 7], [300, 4095]], dtype=np.uint16)
    vol = medview.open_image(write_radiograph(tmp_path / "cr.dcm", stored, photometric="MONOCHROME2"))
    np.testing.assert_array_equal(vol.array[0], stored)


# -- what the viewer is told ------------------------------------------------------------------------
def test_cr_is_described_as_a_projection_with_its_patient_orientation(tmp_path):
    path = _file("RG1_UNCR.dcm")
    md = medview.open_image(path).metadata
    assert md.extra["view_label"] == "CR"
    assert md.extra["patient_frame"] is False  # no ImageOrientationPatient: its grid's axes are made up
    assert md.extra["patient_orientation"] == [str(v) for v in pydicom.dcmread(path, stop_before_pixels=True)
                                               .PatientOrientation] == ["L", "F"]

    written = medview.open_image(write_radiograph(tmp_path / "dx.dcm", np.zeros((4, 5), np.uint16),
                                                  modality="DX", orientation=("A", "FR")))
    assert written.metadata.extra["view_label"] == "DX"
    assert written.metadata.extra["patient_orientation"] == ["A", "FR"]


def test_a_ct_slice_is_not_a_projection(chest_ct_sample):
    md = medview.open_image(chest_ct_sample).metadata
    assert "view_label" not in md.extra and "patient_frame" not in md.extra


def test_info_names_a_radiographs_patient_orientation_not_made_up_axes(tmp_path):
    """``medview info`` said 'orientation LPS' for a CR: the placeholder grid's axes."""
    summary = medview.scan(_file("RG1_UNCR.dcm"))[0].summary()
    assert summary["orientation"].startswith("L\\F (PatientOrientation")
    bare = medview.scan(write_radiograph(tmp_path / "cr.dcm", np.zeros((4, 4), np.uint16), orientation=None))[0]
    assert bare.summary()["orientation"].startswith("unknown")
