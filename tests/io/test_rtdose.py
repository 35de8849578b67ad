"""RT Dose grids: multi-frame files whose frames sit at ImagePositionPatient + GridFrameOffsetVector.

References, never medview's own output: pydicom's decode times DoseGridScaling, the frame positions the
standard defines (PS3.3 C.8.8.3.2: offsets along the slice normal when the first is 0, patient z
coordinates when it equals ImagePositionPatient's z), and dicompyler-core's ``DoseGrid`` (its dose in
Gy and its z axis).  Files: pydicom's ``rtdose.dcm`` (15 frames of 5 mm), RT Dose files written here
with known values and offsets, and dicompyler-core's real example (98 frames of 3 mm) when a local copy
is present (``MEDVIEW_DICOMPYLER_EXAMPLES`` or ``../shared/data/dicompyler-core/example_data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import medview

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
EXAMPLES = Path(os.environ.get("MEDVIEW_DICOMPYLER_EXAMPLES", "")) if os.environ.get(
    "MEDVIEW_DICOMPYLER_EXAMPLES") else Path(__file__).resolve().parents[3] / "shared" / "data" / \
    "dicompyler-core" / "example_data"


def _dicompyler_dose_grid(path: str):
    """dicompyler-core's reading of an RT Dose file (the independent oracle), or skip when it is absent.

    dicompyler-core 0.5.6 (its latest release) imports ``pydicom.dicomio.read_file``, which pydicom 3
    renamed ``dcmread``; the alias is all it lacks."""
    import pydicom
    import pydicom.dicomio

    if not hasattr(pydicom.dicomio, "read_file"):
        pydicom.dicomio.read_file = pydicom.dcmread
    dose = pytest.importorskip("dicompylercore.dose")
    return dose.DoseGrid(path)


def _write_dose(path: Path, stored: np.ndarray, offsets: list[float], *, position=(-60.0, -40.0, -100.0),
                orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), scaling: float = 2.5e-5, units: str = "GY") -> Path:
    """An RT Dose file as treatment planning systems write it: implicit VR, 32-bit unsigned, one file."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RT_DOSE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = RT_DOSE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTDOSE"
    ds.PatientName, ds.PatientID = "Test^Dose", "DOSE01"  # invented
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SeriesNumber = 7
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = list(orientation)
    ds.PixelSpacing = [2.5, 2.5]
    ds.NumberOfFrames = stored.shape[0]
    ds.FrameIncrementPointer = 0x3004000C
    ds.GridFrameOffsetVector = offsets
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit, ds.PixelRepresentation = 31, 0
    ds.DoseUnits, ds.DoseType, ds.DoseSummationType = units, "PHYSICAL", "PLAN"
    ds.DoseGridScaling = f"{scaling:.6g}"
    ds.PixelData = stored.astype("<u4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored(n_frames: int, rows: int = 12, cols: int = 17) -> np.ndarray:
    """Known stored values: every frame different, values up to ~6e5 (15 Gy at 2.5e-5 Gy per unit)."""
    z, y, x = np.meshgrid(np.arange(n_frames), np.arange(rows), np.arange(cols), indexing="ij")
    return (z * 6000 + y * 300 + x * 7).astype(np.uint32)


def _assert_frames_at(volume, stored: np.ndarray, scaling: float, positions: np.ndarray) -> None:
    """Frame i of the file holds stored[i] x scaling Gy and lies at positions[i] (LPS mm)."""
    g = volume.geometry
    assert volume.array.dtype == np.float32
    assert volume.array.shape == stored.shape
    slice_origins = g.index_to_world(np.array([[0.0, 0.0, k] for k in range(g.shape[0])]))
    for i, where in enumerate(positions):
        k = int(np.argmin(np.linalg.norm(slice_origins - where, axis=1)))
        np.testing.assert_allclose(slice_origins[k], where, atol=1e-3, err_msg=f"frame {i}")
        np.testing.assert_allclose(volume.array[k], stored[i] * scaling, rtol=1e-6, err_msg=f"frame {i}")
    assert not any("duplicate" in w for w in volume.metadata.warnings), volume.metadata.warnings


# -- pydicom's rtdose.dcm -----------------------------------------------------------------------
def test_pydicom_rtdose_is_a_15_slice_grid_in_dose_units():
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    vol = medview.open_image(path)
    assert vol.array.shape == (15, 10, 10)
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    _assert_frames_at(vol, ds.pixel_array, float(ds.DoseGridScaling), ipp + offsets[:, None] * [0, 0, 1])
    assert vol.geometry.spacing == pytest.approx((10.0, 10.0, 5.0))
    assert float(vol.array.min()) == pytest.approx(0.795) and float(vol.array.max()) == pytest.approx(1.254)
    assert vol.metadata.units == "relative dose"  # this file's DoseUnits is RELATIVE, not GY


def test_pydicom_rtdose_matches_dicompyler_core():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtdose.dcm")
    grid = _dicompyler_dose_grid(path)
    vol = medview.open_image(path)
    np.testing.assert_allclose(vol.array, np.transpose(grid.dose_grid, (2, 1, 0)), rtol=1e-6)
    z = vol.geometry.index_to_world(np.array([[0.0, 0.0, k] for k in range(vol.geometry.shape[0])]))[:, 2]
    np.testing.assert_allclose(z, grid.axes[2], atol=1e-4)


# -- written grids: both forms of the offsets ---------------------------------------------------
def test_98_frame_grid_relative_offsets(tmp_path):
    stored = _stored(98)
    offsets = [3.0 * i for i in range(98)]
    path = _write_dose(tmp_path / "dose.dcm", stored, offsets)
    vol = medview.open_image(path)
    positions = np.array([(-60.0, -40.0, -100.0 + o) for o in offsets])
    _assert_frames_at(vol, stored, 2.5e-5, positions)
    assert vol.geometry.spacing == pytest.approx((2.5, 2.5, 3.0))
    assert vol.metadata.units == "Gy"

    grid = _dicompyler_dose_grid(str(path))
    np.testing.assert_allclose(vol.array, np.transpose(grid.dose_grid, (2, 1, 0)), rtol=1e-6)
    np.testing.assert_allclose(positions[:, 2], grid.axes[2], atol=1e-6)  # the oracle agrees on z


def test_absolute_offsets_give_the_same_grid(tmp_path):
    """The second form: the first offset equals ImagePositionPatient's z, the offsets are z coordinates."""
    stored = _stored(20)
    relative = medview.open_image(_write_dose(tmp_path / "rel.dcm", stored, [3.0 * i for i in range(20)]))
    absolute = medview.open_image(_write_dose(tmp_path / "abs.dcm", stored, [-100.0 + 3.0 * i for i in range(20)]))
    assert absolute.geometry == relative.geometry
    np.testing.assert_array_equal(absolute.array, relative.array)
    assert absolute.metadata.warnings == []


def test_offsets_follow_the_slice_normal(tmp_path):
    """Relative offsets are along row x column: a feet-first axial grid ([-1,0,0, 0,1,0], normal -z) and a
    coronal one ([1,0,0, 0,0,-1], normal +y); decreasing offsets too."""
    cases = [((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), [2.5 * i for i in range(9)]),
             ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), [-4.0 * i for i in range(9)])]
    for n, (orientation, offsets) in enumerate(cases):
        stored = _stored(9)
        path = _write_dose(tmp_path / f"d{n}.dcm", stored, offsets, orientation=orientation)
        vol = medview.open_image(path)
        normal = np.cross(orientation[:3], orientation[3:])
        positions = np.array([-60.0, -40.0, -100.0]) + np.array(offsets)[:, None] * normal
        _assert_frames_at(vol, stored, 2.5e-5, positions)
        assert abs(vol.geometry.spacing[2] - abs(offsets[1])) < 1e-6


def test_offset_vector_of_the_wrong_length_is_reported(tmp_path):
    stored = _stored(6)
    path = _write_dose(tmp_path / "short.dcm", stored, [0.0, 3.0, 6.0])
    info = medview.scan(path)[0]
    assert any("GridFrameOffsetVector has 3 value(s)" in w for w in info.warnings), info.warnings


# -- dicompyler-core's real example -------------------------------------------------------------
def test_dicompyler_core_example_dose():
    path = EXAMPLES / "rtdose.dcm"
    if not path.is_file():
        pytest.skip(f"dicompyler-core example data not found: {path} (pip download --no-deps --no-binary :all: "
                    "dicompyler-core; set MEDVIEW_DICOMPYLER_EXAMPLES to its tests/testdata/example_data)")
    import pydicom

    ds = pydicom.dcmread(path)
    vol = medview.open_image(path)
    assert vol.array.shape == (98, 129, 194)
    offsets = np.array([float(v) for v in ds.GridFrameOffsetVector])
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    _assert_frames_at(vol, ds.pixel_array, float(ds.DoseGridScaling), ipp + offsets[:, None] * [0, 0, 1])
    assert vol.geometry.spacing == pytest.approx((2.5, 2.5, 3.0))
    assert vol.metadata.units == "Gy"
    grid = _dicompyler_dose_grid(str(path))
    np.testing.assert_allclose(vol.array, np.transpose(grid.dose_grid, (2, 1, 0)), rtol=1e-6)
    assert float(vol.array.max()) == pytest.approx(float(grid.dose_grid.max()), rel=1e-6)
