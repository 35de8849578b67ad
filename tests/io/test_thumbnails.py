"""Series thumbnails: middle slice only, windowed, physical aspect, bright = dense."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medview.app.samples import sample_path
from medview.core.errors import CancelledError
from medview.core.tasks import TaskContext
from medview.io.readers import open_image, scan
from medview.io.thumbnails import thumbnail, thumbnails


def sample_files() -> list[Path]:
    return sorted(p for p in sample_path("chest_ct").iterdir() if p.name.startswith("image"))


def windowed_reference(array2d: np.ndarray, low: float, high: float, shape: tuple[int, int]) -> np.ndarray:
    """An independent reference: window at full resolution, then sample pixel centres (nearest)."""
    img = np.clip((array2d.astype(float) - low) / (high - low) * 255.0, 0, 255)
    rows = ((np.arange(shape[0]) + 0.5) * img.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * img.shape[1] / shape[1]).astype(int)
    return img[rows][:, cols]


def assert_matches(thumb: np.ndarray, reference: np.ndarray) -> None:
    assert abs(float(thumb.mean()) - float(reference.mean())) < 2.0  # grey levels
    assert np.corrcoef(thumb.ravel().astype(float), reference.ravel())[0, 1] > 0.95


def middle_reference(path, series: str | None, shape: tuple[int, int]) -> np.ndarray:
    volume = open_image(path, series=series)
    window = volume.default_window()
    return windowed_reference(volume.array[volume.shape[0] // 2], window.low, window.high, shape)


@pytest.fixture(scope="module")
def two_series(tmp_path_factory) -> Path:
    """The sample CT plus slices 10..30 of it as a second series, whose middle slice (image0020) is missing."""
    root = tmp_path_factory.mktemp("two_series")
    shutil.copytree(sample_path("chest_ct"), root / "full")
    (root / "part").mkdir()
    uid = generate_uid()
    for f in sample_files()[10:31]:
        if f.name == "image0020.dcm":
            continue
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = 7
        ds.save_as(root / "part" / f.name)
    return root


def test_chest_ct_thumbnail():
    info = scan(sample_path("chest_ct"))[0]
    thumb = thumbnail(info)
    assert thumb.dtype == np.uint8 and thumb.shape == (96, 96)  # 512x512 at 0.57 mm: square
    assert thumb.std() > 10
    body, air = thumb[40:56, 40:56].mean(), thumb[:8, :8].mean()
    assert body > air + 80  # mediastinum/chest wall brighter than the air outside the patient
    assert thumb[70:90, 40:56].max() > 240  # the spine: bone is white
    assert_matches(thumb, middle_reference(sample_path("chest_ct"), None, thumb.shape))
    assert thumbnail(info, size=48).shape == (48, 48)


def test_nifti_reads_only_the_middle_slice_with_aspect():
    info = scan(sample_path("brain_mr"))[0]  # 181 x 217 x 181 at 1 mm
    thumb = thumbnail(info)
    assert thumb.dtype == np.uint8 and thumb.shape == (96, round(96 * 181 / 217))
    assert thumb.std() > 10
    volume = open_image(sample_path("brain_mr"))
    middle = volume.array[volume.shape[0] // 2]
    low, high = np.percentile(middle, [1, 99])
    assert_matches(thumb, windowed_reference(middle, low, high, thumb.shape))


def test_anisotropic_nrrd_aspect_and_slice(tmp_path):
    import SimpleITK as sitk

    array = np.zeros((11, 80, 50), np.int16)  # z, y, x
    array[5, :40, :25] = 1000  # only the middle slice is bright top-left
    array[:5, 40:, 25:] = 1000
    array[6:, 40:, 25:] = 1000
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((2.0, 1.0, 3.0))  # 100 mm wide, 80 mm high
    path = str(tmp_path / "aniso.nrrd")
    sitk.WriteImage(image, path)
    thumb = thumbnail(scan(path)[0])
    assert thumb.shape == (77, 96)
    assert thumb[:30, :40].min() == 255 and thumb[45:, 55:].max() == 0


def test_non_square_dicom_pixels(tmp_path):
    ds = pydicom.dcmread(sample_files()[24])
    ds.PixelSpacing = [0.5, 1.0]  # rows 0.5 mm apart, columns 1.0 mm: twice as wide as high
    ds.save_as(tmp_path / "wide.dcm")
    thumb = thumbnail(scan(str(tmp_path))[0])
    assert thumb.shape == (48, 96)
    assert thumb.std() > 10


def test_each_series_of_a_folder_gets_its_own_middle_slice(two_series):
    found = scan(two_series)
    assert len(found) == 2
    full, part = sorted(found, key=lambda s: -len(s.frames))
    assert part.slots[part.n_slices // 2] is None and any("missing slice" in w for w in part.warnings)
    thumb_full, thumb_part = thumbnail(full), thumbnail(part)
    assert thumb_full.shape == thumb_part.shape == (96, 96)
    assert not np.array_equal(thumb_full, thumb_part)
    assert_matches(thumb_full, middle_reference(two_series, full.uid, thumb_full.shape))
    # the middle slot is a gap: the nearest present slice (image0019 or image0021) is shown
    neighbour = thumbnail(scan(two_series / "part" / "image0019.dcm")[0])
    assert np.array_equal(thumb_part, neighbour)


def test_monochrome1_is_bright_where_dense():
    path = pydicom.data.get_testdata_file("RG1_UNCR.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data is not installed")
    thumb = thumbnail(scan(path)[0])
    assert thumb.dtype == np.uint8 and max(thumb.shape) == 96 and thumb.std() > 10
    assert_matches(thumb, middle_reference(path, None, thumb.shape))
    raw = pydicom.dcmread(path).pixel_array  # stored values: MONOCHROME1, so high = dark
    stored = windowed_reference(raw, float(raw.min()), float(raw.max()), thumb.shape)
    assert np.corrcoef(thumb.ravel().astype(float), stored.ravel())[0, 1] < -0.9


def test_colour_images_stay_rgb():
    path = pydicom.data.get_testdata_file("US1_UNCR.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data is not installed")
    thumb = thumbnail(scan(path)[0])
    assert thumb.dtype == np.uint8 and thumb.ndim == 3 and thumb.shape[2] == 3 and max(thumb.shape[:2]) == 96


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_batch_reports_each_and_survives_a_broken_file(tmp_path):
    folder = tmp_path / "ct"
    shutil.copytree(sample_path("chest_ct"), folder)
    found = list(scan(folder)) + list(scan(sample_path("brain_mr")))
    middle = found[0].slots[found[0].n_slices // 2]
    with open(middle.path, "r+b") as fh:  # broken after the scan: pixels cut off
        fh.truncate(os.path.getsize(middle.path) // 2)
    seen = []
    results = thumbnails(found, 64, on_thumbnail=lambda image, i: seen.append((i, type(image))))
    assert seen == [(0, str), (1, np.ndarray)]
    assert isinstance(results[0], str) and middle.path in results[0] and "\n" not in results[0].strip()
    assert results[1].shape == (64, round(64 * 181 / 217))


def test_cancelled_task_stops():
    task = TaskContext()
    task.token.cancel()
    with pytest.raises(CancelledError):
        thumbnails(scan(sample_path("chest_ct")), task=task)
