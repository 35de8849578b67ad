"""NIfTI headers against nibabel: scl_slope/scl_inter, sform/qform choice, 2D offsets, shear, writing;
modality of research formats; one-line read errors.  nibabel is the reference throughout (RAS -> LPS)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import medview
from medview.core.errors import CorruptFileError, MedviewError, UnsupportedFormatError
from medview.core.geometry import Geometry, ras_to_lps_affine
from medview.core.volume import Volume
from tests.conftest import require_tool

nib = pytest.importorskip("nibabel")

ROTATED = np.array([[0.0, -0.8, 0.6, -90.0], [0.9, 0.0, 0.0, 40.0], [0.0, 0.6, 0.8, -71.0], [0, 0, 0, 1]])


def _nibabel_lps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's scaled voxels in medview's (z, y, x) order and its affine in LPS."""
    img = nib.load(str(path))
    data = np.asarray(img.get_fdata(dtype=np.float64))
    data = data.reshape(data.shape[:3] if data.ndim >= 3 else (*data.shape, 1))
    return np.transpose(data, (2, 1, 0)), ras_to_lps_affine(img.affine)


def _assert_same_as_nibabel(path: Path, tol_mm: float = 1e-4) -> Volume:
    volume = medview.open_image(path)
    data, affine = _nibabel_lps(path)
    np.testing.assert_allclose(volume.geometry.affine, affine, atol=tol_mm)
    assert volume.array.shape == data.shape
    np.testing.assert_array_equal(volume.array.astype(np.float64), data)
    return volume


# -- scl_slope / scl_inter --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dcm2niix_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dcm2niix's NIfTI of the bundled sample CT (JPEG-LS: decoded with DCMTK's dcmdjpls first, since
    Debian's dcm2niix has no JPEG-LS decoder).  dcm2niix stores int16 with scl_inter -1024."""
    from medview.app.samples import sample_path

    dcmdjpls = require_tool("dcmdjpls")
    require_tool("dcm2niix")
    root = tmp_path_factory.mktemp("d2n")
    (root / "raw").mkdir()
    for f in sorted(Path(sample_path("chest_ct")).glob("image*.dcm")):
        subprocess.run([dcmdjpls, str(f), str(root / "raw" / f.name)], check=True, capture_output=True)
    subprocess.run(["dcm2niix", "-o", str(root), "-f", "ct", "-z", "y", "-b", "n", str(root / "raw")],
                   check=True, capture_output=True)
    return root / "ct.nii.gz"


def test_dcm2niix_ct_with_scl_inter_equals_nibabel(dcm2niix_sample: Path) -> None:
    img = nib.load(str(dcm2niix_sample))
    assert (img.dataobj.slope, img.dataobj.inter) == (1.0, -1024.0)  # the case that used to be refused
    volume = _assert_same_as_nibabel(dcm2niix_sample)
    assert volume.array.dtype == np.int16  # integral slope/intercept, range fits: integer HU
    assert volume.array.min() == -1024 and volume.array.max() == 3071
    assert volume.modality == "unknown"  # NIfTI does not say it is a CT


@pytest.mark.parametrize("name", ["scaled.nii", "scaled.nii.gz"])
def test_nibabel_int16_with_slope_and_intercept(tmp_path: Path, name: str) -> None:
    raw = (np.arange(30 * 40 * 20) % 4000).astype(np.int16).reshape(30, 40, 20)
    img = nib.Nifti1Image(raw, ROTATED)
    img.header.set_slope_inter(2.5, -1024.0)
    nib.save(img, tmp_path / name)
    volume = _assert_same_as_nibabel(tmp_path / name)
    assert volume.array.dtype == np.float32
    assert volume.array[0, 0, 1] == raw[1, 0, 0] * 2.5 - 1024.0  # (z, y, x) = (0, 0, 1) is nibabel's [1, 0, 0]
    assert float(volume.array.min()) == -1024.0 and float(volume.array.max()) == 3999 * 2.5 - 1024.0


def test_integral_scaling_keeps_integers_or_widens(tmp_path: Path) -> None:
    raw = np.arange(6 * 7 * 8, dtype=np.uint8).reshape(6, 7, 8)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(2.0, -100.0)  # 0..335 * 2 - 100 does not fit uint8: int16
    nib.save(img, tmp_path / "u8.nii.gz")
    volume = _assert_same_as_nibabel(tmp_path / "u8.nii.gz")
    assert volume.array.dtype == np.int16


def test_truncated_scaled_nifti_is_still_refused(tmp_path: Path) -> None:
    raw = np.ones((40, 40, 40), np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "whole.nii")
    data = (tmp_path / "whole.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(data[: len(data) - 100])
    with pytest.raises(CorruptFileError, match="truncated"):
        medview.open_image(tmp_path / "cut.nii")


def test_nifti2_and_4d(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).integers(-500, 500, (9, 8, 7, 3)).astype(np.int32)
    img = nib.Nifti2Image(raw, ROTATED)
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, tmp_path / "four.nii")
    volume = medview.open_image(tmp_path / "four.nii")
    np.testing.assert_allclose(volume.geometry.affine, ras_to_lps_affine(img.affine), atol=1e-6)
    np.testing.assert_array_equal(volume.array, (raw[..., 0] * 0.5 + 10.0).transpose(2, 1, 0))
    assert any("4D image with 3 volumes" in w for w in volume.warnings)


# -- orientation ------------------------------------------------------------------------------------
def test_sform_code_2_is_used_over_qform_code_1_with_a_warning(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    qform = np.diag([2.0, 2.0, 3.0, 1.0])
    sform = qform.copy()
    sform[:3, 3] = [10.0, 20.0, 30.0]
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, tmp_path / "both.nii.gz")
    assert np.allclose(nib.load(str(tmp_path / "both.nii.gz")).affine, sform)  # nibabel: the sform
    volume = _assert_same_as_nibabel(tmp_path / "both.nii.gz")
    (warning,) = [w for w in volume.warnings if "disagree" in w]
    assert "37.4 mm" in warning and "sform" in warning  # |(10, 20, 30)| = 37.4 mm


def test_qform_only(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.float32), np.eye(4))
    img.set_qform(ROTATED, code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "q.nii")
    assert not _assert_same_as_nibabel(tmp_path / "q.nii").warnings


def test_no_transform_uses_nibabels_base_affine_and_warns(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.zeros((5, 6, 7), np.uint8), None)
    img.header.set_zooms((1.5, 2.0, 3.0))
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "bare.nii")
    volume = _assert_same_as_nibabel(tmp_path / "bare.nii")
    assert any("states no orientation" in w for w in volume.warnings)


def test_2d_nifti_keeps_its_z_offset(tmp_path: Path) -> None:
    affine = np.array([[0.7, 0, 0, -120.0], [0, 0.7, 0, -100.0], [0, 0, 1.0, -71.0], [0, 0, 0, 1]])
    raw = np.arange(30 * 20, dtype=np.int16).reshape(30, 20)
    nib.save(nib.Nifti1Image(raw, affine), tmp_path / "slice.nii.gz")
    assert nib.load(str(tmp_path / "slice.nii.gz")).header["dim"][0] == 2
    volume = _assert_same_as_nibabel(tmp_path / "slice.nii.gz")
    assert volume.geometry.shape == (1, 20, 30)
    assert volume.geometry.origin[2] == pytest.approx(-71.0)  # it came out as 0


def test_sheared_sform_uses_the_qform_and_says_how_far(tmp_path: Path) -> None:
    sheared = np.array([[1.0, 0.3, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), sheared)
    img.set_qform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    img.set_sform(sheared, code=2)
    nib.save(img, tmp_path / "shear.nii.gz")
    volume = medview.open_image(tmp_path / "shear.nii.gz")
    qform = ras_to_lps_affine(nib.load(str(tmp_path / "shear.nii.gz")).get_qform())
    np.testing.assert_allclose(volume.geometry.affine, qform, atol=1e-5)
    (warning,) = [w for w in volume.warnings if "sheared" in w]
    assert "qform is used" in warning and "2.7 mm" in warning  # the 0.3 shear over 9 voxels


def test_sheared_sform_without_qform_is_refused(tmp_path: Path) -> None:
    sheared = np.array([[1.0, 0.3, 0, 0], [0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.zeros((10, 10, 10), np.int16), sheared)
    img.set_qform(None, code=0)
    img.set_sform(sheared, code=2)
    nib.save(img, tmp_path / "shear.nii")
    with pytest.raises(UnsupportedFormatError, match="sheared"):
        medview.open_image(tmp_path / "shear.nii")


def test_written_nifti_has_consistent_sform_and_qform(tmp_path: Path) -> None:
    d = ROTATED[:3, :3] / np.linalg.norm(ROTATED[:3, :3], axis=0)
    geometry = Geometry((4, 5, 6), (0.5, 0.7, 2.5), (12.0, -30.0, 71.0), tuple(d.reshape(-1)))
    medview.write_image(Volume(np.zeros((4, 5, 6), np.int16), geometry), tmp_path / "out.nii.gz")
    header = nib.load(str(tmp_path / "out.nii.gz")).header
    assert header["sform_code"] > 0 and header["qform_code"] > 0
    np.testing.assert_allclose(header.get_sform(), header.get_qform(), atol=1e-4)
    np.testing.assert_allclose(ras_to_lps_affine(header.get_sform()), geometry.affine, atol=1e-4)
    assert not medview.open_image(tmp_path / "out.nii.gz").warnings


# -- modality ---------------------------------------------------------------------------------------
def test_research_formats_state_their_modality_or_unknown(tmp_path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    sitk.WriteImage(image, str(tmp_path / "plain.nrrd"))
    image.SetMetaData("modality", "CT")
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4)), tmp_path / "n.nii.gz")
    assert medview.open_image(tmp_path / "plain.nrrd").modality == "unknown"  # was "" (the browser: "NRRD")
    assert medview.open_image(tmp_path / "ct.nrrd").modality == "CT"
    assert medview.open_image(tmp_path / "n.nii.gz").modality == "unknown"
    assert medview.scan(tmp_path / "plain.nrrd")[0].summary()["modality"] == "unknown"


# -- one-line errors --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bad.nii", "bad.nii.gz", "bad.mha", "bad.nrrd"])
def test_read_errors_are_one_line_without_library_paths(tmp_path: Path, name: str) -> None:
    content = {"bad.nrrd": b"NRRD0004\ntype: short\ndimension: 3\nsizes: 10 10 abc\nencoding: raw\n\n",
               "bad.nii.gz": b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4}.get(name, bytes(range(256)) * 4)
    (tmp_path / name).write_bytes(content)
    with pytest.raises(MedviewError) as err:
        medview.open_image(tmp_path / name)
    text = str(err.value)
    assert "\n" not in text and ".cxx" not in text and "sitk::" not in text and "0x" not in text, text
    assert name in text
