"""Single 2D and multi-frame DICOM images from pydicom's and pydicom-data's test files.

The reference is always pydicom itself (``pixel_array`` with ``apply_modality_lut`` or
``apply_color_lut``, or the raw YCbCr samples put through the DICOM YBR_FULL -> RGB formula), never
medview.  Only files already on disk are used: ``get_testdata_file(..., download=False)`` never
touches the network, and a missing file skips its test.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import medview

EXPLICIT_LE = "1.2.840.10008.1.2.1"


# -- helpers ------------------------------------------------------------------------------------
def _file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not installed (pydicom-data?)")
    return str(path)


def _read(path: str):
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        # a bare dataset without file meta: tell pydicom the encoding it was read with
        implicit, little = ds.original_encoding
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def _frames(arr: np.ndarray, ds, colour: bool) -> np.ndarray:
    """Give single-frame arrays a leading frame axis, like medview's (z, y, x[, 3])."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if n_frames == 1 and arr.ndim == (3 if colour else 2):
        arr = arr[None]
    return arr


def _pixels(path: str) -> np.ndarray:
    """pydicom's decoded pixels (colour converted to RGB), with a frame axis."""
    ds = _read(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = ds.pixel_array
    return _frames(arr, ds, int(ds.SamplesPerPixel) > 1)


def _modality(path: str) -> np.ndarray:
    """pydicom's stored values through the modality LUT (rescale), float64, with a frame axis."""
    ds = _read(path)
    arr = np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)
    return _frames(arr, ds, False)


def _palette(path: str) -> np.ndarray:
    ds = _read(path)
    return _frames(apply_color_lut(ds.pixel_array, ds), ds, True)


def _ybr_full_to_rgb(ybr: np.ndarray) -> np.ndarray:
    """PS3.3 C.7.6.3.1.2 YBR_FULL -> RGB for 8-bit samples (independent of pydicom's converter)."""
    y, cb, cr = (ybr[..., i].astype(np.float64) for i in range(3))
    rgb = np.stack([y + 1.402 * (cr - 128),
                    y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                    y + 1.772 * (cb - 128)], axis=-1)
    return np.clip(np.rint(rgb), 0, 255)


def _only_series(path):
    found = medview.scan(path)
    assert len(found) == 1, [s.uid for s in found]
    return found[0]


def _presets(volume) -> list[tuple[float, float]]:
    return [(w.center, w.width) for w in volume.metadata.window_presets]


# -- enhanced multi-frame MR --------------------------------------------------------------------
def test_enhanced_mr_frames_become_slices():
    path = _file("emri_small.dcm")
    info = _only_series(path)
    assert info.n_slices == 10
    assert info.transfer_syntaxes == [EXPLICIT_LE]
    vol = medview.open_image(path)
    expected = _modality(path)  # no rescale in this file: the stored 12-bit values
    assert vol.array.shape == (10, 64, 64)
    # the file carries no plane positions, so the frames stay in file order
    np.testing.assert_array_equal(vol.array, expected)
    assert vol.metadata.modality == "MR"


@pytest.mark.parametrize(("name", "uid"), [
    ("emri_small_RLE.dcm", "1.2.840.10008.1.2.5"),
    ("emri_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80"),
    ("emri_small_jpeg_2k_lossless.dcm", "1.2.840.10008.1.2.4.90"),
    ("emri_small_big_endian.dcm", "1.2.840.10008.1.2.2"),
])
def test_enhanced_mr_encodings_equal_uncompressed(name, uid):
    plain = medview.open_image(_file("emri_small.dcm"))
    path = _file(name)
    assert _only_series(path).transfer_syntaxes == [uid]
    vol = medview.open_image(path)
    assert vol.array.dtype == plain.array.dtype
    np.testing.assert_array_equal(vol.array, plain.array)
    assert vol.geometry == plain.geometry
    np.testing.assert_array_equal(vol.array, _modality(path))


# Sagittal slices; the frames are stored out of order and each frame has its own rescale.
_ROW = (0.0, 1.0, 0.0)
_COL = (0.0, 0.0, -1.0)
_NORMAL = tuple(np.cross(_ROW, _COL))  # (-1, 0, 0)
_BASE = np.array([10.0, -20.0, 30.0])
_STEP = 1.5
_SLOT_OF_FRAME = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]  # frame i lies at slice index _SLOT_OF_FRAME[i]


def _frame_rescale(i: int) -> tuple[int, int]:
    return 1 + i % 2, -10 * (i % 3)  # slope, intercept


@pytest.fixture(scope="module")
def enhanced_with_groups(tmp_path_factory) -> Path:
    """emri_small's real pixels with per-frame / shared functional groups added by pydicom."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(_file("emri_small.dcm"))
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [0.9, 0.8]  # row spacing (y), column spacing (x)
    measures.SliceThickness = _STEP
    shared.PixelMeasuresSequence = Sequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [*_ROW, *_COL]
    shared.PlaneOrientationSequence = Sequence([orientation])
    voi = Dataset()
    voi.WindowCenter = 500
    voi.WindowWidth = 1000
    shared.FrameVOILUTSequence = Sequence([voi])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for i, slot in enumerate(_SLOT_OF_FRAME):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [float(v) for v in _BASE + np.array(_NORMAL) * _STEP * slot]
        item.PlanePositionSequence = Sequence([pos])
        transform = Dataset()
        slope, intercept = _frame_rescale(i)
        transform.RescaleSlope = slope
        transform.RescaleIntercept = intercept
        transform.RescaleType = "US"
        item.PixelValueTransformationSequence = Sequence([transform])
        content = Dataset()
        content.StackID = "1"
        content.InStackPositionNumber = slot + 1
        item.FrameContentSequence = Sequence([content])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    out = tmp_path_factory.mktemp("enhanced") / "emri_groups.dcm"
    ds.save_as(out)
    return out


def test_enhanced_geometry_from_functional_groups(enhanced_with_groups):
    path = str(enhanced_with_groups)
    stored = pydicom.dcmread(path).pixel_array.astype(np.int64)
    expected = np.empty_like(stored)
    for i, slot in enumerate(_SLOT_OF_FRAME):
        slope, intercept = _frame_rescale(i)
        expected[slot] = stored[i] * slope + intercept

    info = _only_series(path)
    assert info.kind == "volume"
    vol = medview.open_image(path)
    assert vol.array.shape == (10, 64, 64)
    np.testing.assert_array_equal(vol.array, expected)  # sorted along the normal, per-frame rescale
    g = vol.geometry
    np.testing.assert_allclose(g.spacing, (0.8, 0.9, _STEP), atol=1e-6)
    np.testing.assert_allclose(g.origin, _BASE, atol=1e-6)
    np.testing.assert_allclose(g.direction_matrix, np.column_stack([_ROW, _COL, _NORMAL]), atol=1e-6)
    assert _presets(vol) == [(500.0, 1000.0)]


def test_enhanced_ct_real_functional_groups():
    """eCT_Supplemental: enhanced CT, 2 frames, geometry and rescale only in functional groups.

    It also carries a *supplemental* palette (PixelPresentation COLOR on a MONOCHROME2 image), which
    is for optional pseudo-colour display: the pixels are grey values and must load as such.
    """
    path = _file("eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "MONOCHROME2"
    stored = ds.pixel_array.astype(np.int64)  # (2, 512, 512)
    shared = ds.SharedFunctionalGroupsSequence[0]
    intercept = float(shared.PixelValueTransformationSequence[0].RescaleIntercept)
    slope = float(shared.PixelValueTransformationSequence[0].RescaleSlope)
    row_spacing, col_spacing = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    positions = [np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient])
                 for f in ds.PerFrameFunctionalGroupsSequence]
    normal = np.cross(iop[:3], iop[3:])
    order = sorted(range(2), key=lambda i: float(positions[i] @ normal))
    assert order == [1, 0]  # the file stores the frames against the normal's direction

    vol = medview.open_image(path)
    assert vol.array.shape == (2, 512, 512)
    np.testing.assert_array_equal(vol.array, stored[order] * slope + intercept)
    g = vol.geometry
    np.testing.assert_allclose(g.spacing, (col_spacing, row_spacing, 10.0), atol=1e-5)
    np.testing.assert_allclose(g.origin, positions[order[0]], atol=1e-5)
    np.testing.assert_allclose(g.direction_matrix, np.column_stack([iop[:3], iop[3:], normal]), atol=1e-6)
    assert _presets(vol) == [(49.0, 102.0)]


# -- CT -----------------------------------------------------------------------------------------
def test_ct_small_is_in_hounsfield_units():
    path = _file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    vol = medview.open_image(path)
    assert vol.array.shape == (1, 128, 128)
    np.testing.assert_array_equal(vol.array, _modality(path))
    # a known voxel: stored 1928, slope 1, intercept -1024
    assert int(ds.pixel_array[64, 64]) == 1928
    assert vol.array[0, 64, 64] == 904
    assert vol.metadata.modality == "CT"
    assert vol.metadata.units == "HU"
    g = vol.geometry
    np.testing.assert_allclose(g.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-5)
    np.testing.assert_allclose(g.spacing[:2], [float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])], atol=1e-6)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    np.testing.assert_allclose(g.direction_matrix[:, :2], np.column_stack([iop[:3], iop[3:]]), atol=1e-6)


def test_head_ct_14bit_signed_and_j2k_equal():
    plain_path, j2k_path = _file("693_UNCR.dcm"), _file("693_J2KR.dcm")
    plain = medview.open_image(plain_path)
    np.testing.assert_array_equal(plain.array, _modality(plain_path))
    assert _only_series(j2k_path).transfer_syntaxes == ["1.2.840.10008.1.2.4.90"]
    j2k = medview.open_image(j2k_path)
    assert j2k.array.dtype == plain.array.dtype
    np.testing.assert_array_equal(j2k.array, plain.array)
    assert j2k.geometry == plain.geometry


def test_oblique_mr_with_float_rescale():
    """MR2: oblique orientation, rescale slope 3.774114 (float output), and its J2K twin."""
    path = _file("MR2_UNCR.dcm")
    ds = pydicom.dcmread(path)
    vol = medview.open_image(path)
    assert np.issubdtype(vol.array.dtype, np.floating)
    np.testing.assert_allclose(vol.array, _modality(path), rtol=1e-6, atol=1e-4)
    iop = [float(v) for v in ds.ImageOrientationPatient]
    np.testing.assert_allclose(vol.geometry.direction_matrix[:, :2], np.column_stack([iop[:3], iop[3:]]),
                               atol=1e-6)
    np.testing.assert_allclose(vol.geometry.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-5)
    j2k = medview.open_image(_file("MR2_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.array, vol.array)


def test_jpeg_extended_12bit_nm():
    path = _file("JPGExtended.dcm")
    assert _only_series(path).transfer_syntaxes == ["1.2.840.10008.1.2.4.51"]
    vol = medview.open_image(path)
    np.testing.assert_array_equal(vol.array, _modality(path))


# -- MONOCHROME1 --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG3_UNCR.dcm"])
def test_monochrome1_is_inverted(name):
    path = _file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert "RescaleSlope" not in ds and ds.PixelRepresentation == 0  # stored values are the values
    info = _only_series(path)
    assert info.kind == "image2d"
    values = _modality(path)
    vol = medview.open_image(path)
    assert vol.array.shape == values.shape
    # the standard's mirror of the stored range (2^BitsStored - 1) - v, not of the values that occur
    np.testing.assert_array_equal(vol.array, (2 ** ds.BitsStored - 1) - values)


def test_monochrome1_lossless_j2k_equals_uncompressed():
    plain = medview.open_image(_file("RG1_UNCR.dcm"))
    j2k = medview.open_image(_file("RG1_J2KR.dcm"))
    np.testing.assert_array_equal(j2k.array, plain.array)


def test_monochrome1_window_is_mirrored():
    """The file's window (15000/30000) applies to the stored values; after inversion the same
    display needs the centre mirrored as the values are: c -> (2^BitsStored - 1) - c."""
    path = _file("RG1_UNCR.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    vol = medview.open_image(path)
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    assert _presets(vol) == [((2 ** ds.BitsStored - 1) - centre, width)]


# -- colour -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "SC_rgb.dcm", "SC_rgb_expb.dcm", "SC_rgb_small_odd.dcm", "examples_rgb_color.dcm", "US1_UNCR.dcm",
    "color-pl.dcm",  # PlanarConfiguration 1 (RRR...GGG...BBB)
    "color-px.dcm",  # PlanarConfiguration 0
    "SC_rgb_16bit.dcm",
])
def test_rgb_single_frame(name):
    path = _file(name)
    expected = _pixels(path)
    vol = medview.open_image(path)
    assert vol.array.shape == expected.shape
    assert vol.array.shape[0] == 1 and vol.array.shape[-1] == 3
    assert vol.array.dtype == expected.dtype
    np.testing.assert_array_equal(vol.array, expected)


def test_planar_configurations_agree():
    a = medview.open_image(_file("color-pl.dcm")).array
    b = medview.open_image(_file("color-px.dcm")).array
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "SC_rgb_2frame.dcm", "SC_rgb_expb_2frame.dcm",
                                  "SC_rgb_rle_16bit_2frame.dcm"])
def test_rgb_multi_frame(name):
    path = _file(name)
    expected = _pixels(path)
    vol = medview.open_image(path)
    assert vol.array.shape == (2, 100, 100, 3)
    assert vol.array.dtype == expected.dtype
    np.testing.assert_array_equal(vol.array, expected)


def test_rgb_rle_2frame_equals_uncompressed():
    rle = medview.open_image(_file("SC_rgb_rle_2frame.dcm"))
    plain = medview.open_image(_file("SC_rgb_2frame.dcm"))
    np.testing.assert_array_equal(rle.array, plain.array)


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_uncompressed.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_becomes_rgb(name):
    """YBR_FULL (JPEG baseline and uncompressed) and YBR_FULL_422 load as RGB.

    Checked three ways: against the PS3.3 formula applied to pydicom's raw YCbCr samples (rounding:
    at most 1 apart), against pydicom's own RGB, and against SC_rgb.dcm, the same picture stored as
    RGB.  Measured against SC_rgb (YBR_FULL JPEG and uncompressed): max 6, mean 0.57; YBR data
    shown unconverted would be off by tens on average.
    """
    path = _file(name)
    assert "YBR" in pydicom.dcmread(path, stop_before_pixels=True).PhotometricInterpretation
    vol = medview.open_image(path)
    assert vol.array.shape == (1, 100, 100, 3)
    raw = _frames(pixel_array(path, raw=True), pydicom.dcmread(path, stop_before_pixels=True), True)
    assert np.abs(vol.array.astype(np.int64) - _ybr_full_to_rgb(raw)).max() <= 1
    np.testing.assert_array_equal(vol.array, _pixels(path))
    rgb = medview.open_image(_file("SC_rgb.dcm")).array.astype(np.int64)
    diff = np.abs(vol.array.astype(np.int64) - rgb)
    assert diff.mean() <= 1.0
    assert diff.max() <= 8


def test_ybr_422_jpeg_multi_frame():
    """examples_ybr_color: 30 frames of YBR_FULL_422 JPEG baseline ultrasound -> (30, 240, 320, 3) RGB."""
    path = _file("examples_ybr_color.dcm")
    assert _only_series(path).transfer_syntaxes == ["1.2.840.10008.1.2.4.50"]
    vol = medview.open_image(path)
    assert vol.array.shape == (30, 240, 320, 3)
    raw = pixel_array(path, raw=True)
    assert np.abs(vol.array.astype(np.int64) - _ybr_full_to_rgb(raw)).max() <= 1
    np.testing.assert_array_equal(vol.array, _pixels(path))


def test_ybr_rct_j2k_equals_rgb():
    """US1_J2KR: lossless JPEG 2000 with the reversible colour transform equals the RGB original."""
    j2k = medview.open_image(_file("US1_J2KR.dcm"))
    plain = medview.open_image(_file("US1_UNCR.dcm"))
    assert j2k.array.shape == (1, 480, 640, 3)
    np.testing.assert_array_equal(j2k.array, plain.array)


@pytest.mark.parametrize(("name", "frames"), [
    ("examples_palette.dcm", 1),
    ("OBXXXX1A_2frame.dcm", 2),
    ("OT-PAL-8-face.dcm", 1),  # a bare dataset: no file meta, implicit VR little endian
])
def test_palette_colour(name, frames):
    path = _file(name)
    expected = _palette(path)
    vol = medview.open_image(path)
    assert vol.array.shape == expected.shape
    assert vol.array.shape[0] == frames and vol.array.shape[-1] == 3
    np.testing.assert_array_equal(vol.array, expected)


# -- window presets -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["MR_small.dcm", "693_UNCR.dcm", "MR2_UNCR.dcm",
                                  "MR-SIEMENS-DICOM-WithOverlays.dcm"])
def test_window_presets_from_file(name):
    path = _file(name)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    centres = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
    widths = ds.WindowWidth if ds["WindowWidth"].VM > 1 else [ds.WindowWidth]
    expected = [(float(c), float(w)) for c, w in zip(centres, widths, strict=True)]
    vol = medview.open_image(path)
    assert _presets(vol) == expected
    if "WindowCenterWidthExplanation" in ds:
        names = ds.WindowCenterWidthExplanation
        names = list(names) if ds["WindowCenterWidthExplanation"].VM > 1 else [names]
        assert [w.name for w in vol.metadata.window_presets] == [str(n) for n in names]
