"""Burned-in text (issue 19): which images are at risk, and masking by the user's rectangles (the masked pixels
black, all others unchanged, also for a JPEG-compressed colour image that is stored uncompressed after)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

from medview.io.deid.pixels import Rect, apply_masks, burned_in_reason, masks_for


def _us(burned: str | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = UltrasoundImageStorage, generate_uid(), "US"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 32, 48, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(32 * 48) % 251 + 1).astype(np.uint8).tobytes()
    if burned is not None:
        ds.BurnedInAnnotation = burned
    return ds


def test_which_images_are_at_risk() -> None:
    assert "US image" in burned_in_reason(_us())
    assert burned_in_reason(_us("YES")) == "Burned In Annotation is YES"
    assert burned_in_reason(_us("NO")) is None
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert "BurnedInAnnotation" not in ct and burned_in_reason(ct) is None
    sc = _us()
    sc.Modality, sc.SOPClassUID = "OT", "1.2.840.10008.5.1.4.1.1.7.4"  # multi-frame true colour SC
    assert "secondary capture" in burned_in_reason(sc)
    no_pixels = _us()
    del no_pixels.PixelData
    assert burned_in_reason(no_pixels) is None


def test_masks_blank_only_the_rectangles() -> None:
    ds = _us()
    before = ds.pixel_array.copy()
    rects = masks_for(ds, {("US", 48, 32): [Rect(0, 0, 48, 4), Rect(40, 28, 20, 20)]})
    assert rects is not None and masks_for(ds, {("US", 640, 480): []}) is None
    apply_masks(ds, rects)
    after = ds.pixel_array
    expected = before.copy()
    expected[0:4, :] = 0
    expected[28:32, 40:48] = 0  # clipped at the image's edge
    assert np.array_equal(after, expected) and before[0, 0] != 0
    assert ds.BurnedInAnnotation == "NO"


def test_a_compressed_colour_image_is_masked_and_stored_uncompressed(tmp_path) -> None:
    pytest.importorskip("PIL")
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    before = ds.pixel_array.copy()
    apply_masks(ds, [Rect(10, 5, 20, 10)])
    ds.save_as(tmp_path / "masked.dcm", enforce_file_format=True)
    back = pydicom.dcmread(tmp_path / "masked.dcm")
    assert back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and back.PhotometricInterpretation == "RGB"
    pixels = back.pixel_array
    assert np.all(pixels[5:15, 10:30] == 0)
    outside = np.ones(pixels.shape[:2], bool)
    outside[5:15, 10:30] = False
    assert np.array_equal(pixels[outside], before[outside])
