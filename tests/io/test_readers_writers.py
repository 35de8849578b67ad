"""Research formats through SimpleITK, checked against nibabel and dcm2niix; writers keep exact geometry."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

import medview
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume
from medview.io.dicom.scan import scan_dicom
from tests.conftest import shared_case
from tests.io.oracle import compare_with_nifti, dcm2niix


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(3)
    a = np.radians(25)
    d = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    g = Geometry((7, 9, 11), (0.7, 0.9, 2.5), (-120.25, 33.5, -8.125), tuple(d.reshape(-1)))
    return Volume(rng.integers(-1000, 3000, size=g.shape).astype(np.int16), g)


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_then_read_keeps_geometry_and_voxels(tmp_path: Path, ext: str) -> None:
    v = _oblique_volume()
    out = medview.write_image(v, tmp_path / f"v{ext}")
    back = medview.open_image(out)
    np.testing.assert_array_equal(back.array, v.array)
    assert back.geometry.is_same_grid(v.geometry, tol_mm=1e-4)


def test_nifti_affine_is_ras_for_nibabel(tmp_path: Path) -> None:
    """NIfTI stores RAS: nibabel (independent of SimpleITK) must see the LPS geometry flipped."""
    import nibabel as nib

    v = _oblique_volume()
    medview.write_image(v, tmp_path / "v.nii.gz")
    img = nib.load(str(tmp_path / "v.nii.gz"))
    np.testing.assert_allclose(img.affine, v.geometry.ras_affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), np.transpose(v.array, (2, 1, 0)))


def test_nibabel_written_nifti_opens_in_lps(tmp_path: Path) -> None:
    import nibabel as nib

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # (i, j, k)
    affine = np.array([[-2.0, 0, 0, 90], [0, 1.5, 0, -100], [0, 0, 3.0, -50], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "n.nii.gz")
    v = medview.open_image(tmp_path / "n.nii.gz")
    np.testing.assert_allclose(v.geometry.ras_affine, affine, atol=1e-5)
    assert v.array[2, 1, 3] == data[3, 1, 2]


def test_label_map_written_as_uint8(tmp_path: Path) -> None:
    v = _oblique_volume()
    labels = LabelMap((v.array > 1000).astype(np.uint8), v.geometry)
    medview.write_image(labels, tmp_path / "l.nrrd")
    back = medview.open_image(tmp_path / "l.nrrd")
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labels.array)


def test_real_nrrd_with_flipped_y() -> None:
    import SimpleITK as sitk

    path = shared_case("brain1_image.nrrd")
    v = medview.open_image(path)
    ref = sitk.ReadImage(str(path))
    assert v.geometry.direction_matrix[1, 1] == pytest.approx(-1.0)
    assert v.geometry.size_xyz == ref.GetSize()
    np.testing.assert_allclose(v.geometry.origin, ref.GetOrigin())


def test_png_and_rgb_pictures(tmp_path: Path) -> None:
    import SimpleITK as sitk

    grey = (np.arange(30 * 40) % 256).astype(np.uint8).reshape(30, 40)
    sitk.WriteImage(sitk.GetImageFromArray(grey), str(tmp_path / "g.png"))
    v = medview.open_image(tmp_path / "g.png")
    assert v.array.shape == (1, 30, 40) and v.is_2d
    np.testing.assert_array_equal(v.array[0], grey)
    rgb = np.stack([grey, 255 - grey, grey // 2], axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(tmp_path / "c.png"))
    c = medview.open_image(tmp_path / "c.png")
    assert c.array.shape == (1, 30, 40, 3) and c.is_color
    np.testing.assert_array_equal(c.array[0], rgb)


def test_convert_dicom_to_nifti_matches_dcm2niix(lung1_series: Path, tmp_path: Path) -> None:
    from medview.app.commands import convert_image

    result = convert_image(str(lung1_series), str(tmp_path / "ct.nii.gz"))
    (reference,) = dcm2niix(lung1_series, tmp_path / "ref")
    # our NIfTI read back by medview must sit on dcm2niix's grid with the same voxels
    compare_with_nifti(medview.open_image(result.output), reference)


def test_zip_archive_equals_folder(lung1_series: Path, tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(lung1_series.iterdir()):
            zf.write(f, f"export/CT/{f.name}")
    folder = medview.open_image(lung1_series)
    zipped = medview.open_image(archive)
    np.testing.assert_array_equal(zipped.array, folder.array)
    assert zipped.geometry.is_same_grid(folder.geometry)


def test_parallel_and_serial_scan_agree(lung1_series: Path) -> None:
    serial = scan_dicom(str(lung1_series), parallel=False)
    parallel = scan_dicom(str(lung1_series), parallel=True)
    assert [s.uid for s in serial] == [s.uid for s in parallel]
    assert [r.path if r else None for r in serial[0].slots] == [r.path if r else None for r in parallel[0].slots]
    assert serial[0].geometry == parallel[0].geometry


def test_middle_slice_is_delivered_first(lung1_series: Path) -> None:
    seen: list[tuple[int, bool]] = []

    def on_middle(volume: Volume, z: int) -> None:
        # the middle slice is complete (equal to the final data, checked below) when this fires
        seen.append((z, True))
        seen.append((-1, volume.array[z].copy()))  # type: ignore[arg-type]

    v = medview.open_image(lung1_series, on_middle_slice=on_middle)
    assert seen[0][0] == 24
    np.testing.assert_array_equal(seen[1][1], v.array[24])


def test_cancel_stops_a_load_within_a_slice(lung1_series: Path) -> None:
    from medview.core.errors import CancelledError
    from medview.core.tasks import TaskContext

    task = TaskContext()
    calls: list[float] = []
    task.on_progress = lambda f, m: calls.append(f)
    with pytest.raises(CancelledError):
        medview.open_image(lung1_series, task=task, on_middle_slice=lambda v, z: task.token.cancel())
    assert not calls or max(calls) < 1.0
