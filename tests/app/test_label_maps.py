"""Opening label maps onto a loaded study: same grid, other grids (resampled with a warning), DICOM SEG."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medview.app.label_maps import label_map_warnings, open_label_map
from medview.app.samples import sample_path
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume, VolumeMetadata
from medview.io.readers import open_image, scan
from medview.io.seg import write_seg


@pytest.fixture(scope="module")
def ct() -> Volume:
    return open_image(sample_path("chest_ct"))


@pytest.fixture(scope="module")
def tumour(ct: Volume) -> LabelMap:
    return open_label_map(sample_path("chest_ct_label"), reference=ct)


def _iso_grid(ct: Volume, shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Geometry:
    """A 1 mm grid over the CT's extent, optionally moved in LPS."""
    size = [math.ceil(e) for e in ct.geometry.extent_mm]
    origin = np.array(ct.geometry.origin) + np.array(shift_mm)
    return Geometry((size[2], size[1], size[0]), (1.0, 1.0, 1.0), tuple(origin), ct.geometry.direction)


def _resample_with_sitk(array: np.ndarray, source: Geometry, target: Geometry) -> np.ndarray:
    """The test's own nearest-neighbour resampling (SimpleITK), independent of medview's."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(source.spacing)
    image.SetOrigin(source.origin)
    image.SetDirection(source.direction)
    out = sitk.Resample(image, list(target.size_xyz), sitk.Transform(), sitk.sitkNearestNeighbor, target.origin,
                        target.spacing, target.direction, 0)
    return sitk.GetArrayFromImage(out)


def _write_nifti(array: np.ndarray, geometry: Geometry, path: Path) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(path))
    return path


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float(np.count_nonzero(a & b)) / float(np.count_nonzero(a) + np.count_nonzero(b))


# -- label images -------------------------------------------------------------------------------
def test_label_on_the_same_grid_opens_unchanged_with_its_table(ct: Volume, tumour: LabelMap) -> None:
    raw = open_image(sample_path("chest_ct_label"))
    assert tumour.geometry == ct.geometry
    np.testing.assert_array_equal(tumour.array, raw.array)
    assert [(e.value, e.name) for e in tumour.labels] == [(1, "Tumour")]  # from label_table.json
    assert label_map_warnings(tumour) == []


def test_nifti_on_a_1mm_grid_is_resampled_onto_the_study_with_a_warning(tmp_path: Path, ct: Volume,
                                                                        tumour: LabelMap) -> None:
    grid = _iso_grid(ct)
    iso = _resample_with_sitk(tumour.array, ct.geometry, grid)
    assert np.count_nonzero(iso) > 0
    path = _write_nifti(iso, grid, tmp_path / "tumour_1mm.nii.gz")
    (tmp_path / "tumour_1mm_labels.json").write_text(json.dumps({"1": {"name": "GTV", "color": [10, 20, 30]}}))

    labels = open_label_map(path, reference=ct)
    assert labels.geometry == ct.geometry and labels.array.shape == ct.array.shape
    dice = _dice(labels.array, tumour.array)
    print(f"Dice after 0.57x0.57x5 mm -> 1 mm -> 0.57x0.57x5 mm: {dice:.4f}")
    assert dice >= 0.9
    assert [(e.value, e.name, e.color) for e in labels.labels] == [(1, "GTV", (10, 20, 30))]  # table kept
    warnings = label_map_warnings(labels)
    assert len(warnings) == 1
    assert "tumour_1mm.nii.gz was resampled (nearest neighbour)" in warnings[0]
    assert f"from {grid.size_xyz[0]}x{grid.size_xyz[1]}x{grid.size_xyz[2]} voxels of 1 x 1 x 1 mm" in warnings[0]
    assert "512x512x48 voxels of 0.57 x 0.57 x 5 mm" in warnings[0]


def test_label_partly_outside_the_study_says_how_much_was_dropped(tmp_path: Path, ct: Volume,
                                                                  tumour: LabelMap) -> None:
    zs = np.flatnonzero(tumour.array.reshape(48, -1).any(axis=1))
    # move the grid so that the tumour's last slice lands just beyond the study's last slice
    shift = (47 - zs[-1] + 1) * ct.geometry.spacing[2]
    moved = Geometry(ct.geometry.shape, ct.geometry.spacing,
                     tuple(np.array(ct.geometry.origin) + [0.0, 0.0, shift]), ct.geometry.direction)
    path = _write_nifti(tumour.array, moved, tmp_path / "moved.nrrd")
    labels = open_label_map(path, reference=ct)
    kept = labels.voxel_count(1) / tumour.voxel_count(1)
    assert 0.0 < kept < 1.0
    (warning,) = label_map_warnings(labels)
    assert f"{1 - kept:.0%} of the labelled volume lay outside the image and was dropped" in warning


def test_label_grid_that_does_not_overlap_the_study_is_refused(tmp_path: Path, ct: Volume,
                                                               tumour: LabelMap) -> None:
    far = _iso_grid(ct, shift_mm=(0.0, 0.0, 2000.0))
    path = _write_nifti(np.ones(far.shape, dtype=np.uint8), far, tmp_path / "elsewhere.nii.gz")
    with pytest.raises(MedviewError, match=r"elsewhere.nii.gz does not overlap the open image: .* z 1222\.\.1462 "
                                           r"mm, the image .* z -780\.\.-540 mm"):
        open_label_map(path, reference=ct)


def test_label_whose_voxels_all_fall_outside_the_study_is_refused(tmp_path: Path, ct: Volume,
                                                                  tumour: LabelMap) -> None:
    moved = Geometry(ct.geometry.shape, ct.geometry.spacing,
                     tuple(np.array(ct.geometry.origin) + [0.0, 0.0, 200.0]), ct.geometry.direction)
    path = _write_nifti(tumour.array, moved, tmp_path / "shifted.nii.gz")
    with pytest.raises(MedviewError, match=r"None of the labelled voxels of shifted\.nii\.gz fall inside"):
        open_label_map(path, reference=ct)


def test_images_that_are_not_label_maps_are_refused(tmp_path: Path, ct: Volume) -> None:
    probabilities = np.full(ct.geometry.shape, 0.25, dtype=np.float32)
    with pytest.raises(MedviewError, match=r"probability\.nii\.gz is not a label map: it holds non-integer values"):
        open_label_map(_write_nifti(probabilities, ct.geometry, tmp_path / "probability.nii.gz"), reference=ct)
    signed = np.zeros(ct.geometry.shape, dtype=np.int16)
    signed[0, 0, 0] = -1
    with pytest.raises(MedviewError, match=r"signed\.nrrd is not a label map: its values must lie between 0 and 65535"):
        open_label_map(_write_nifti(signed, ct.geometry, tmp_path / "signed.nrrd"), reference=ct)


# -- DICOM SEG ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_label_seg(tmp_path_factory, ct: Volume, tumour: LabelMap) -> tuple[Path, LabelMap]:
    array = tumour.array.copy()
    array[20:24, 200:260, 300:340] = 3
    labels = LabelMap(array, ct.geometry, labels=[Label(1, "Tumour", (230, 25, 75)),
                                                  Label(3, "Left lung", (60, 180, 75))])
    path = tmp_path_factory.mktemp("seg") / "two.dcm"
    write_seg(labels, scan(sample_path("chest_ct"))[0], path)
    return path, labels


def test_seg_opens_onto_its_study(ct: Volume, two_label_seg: tuple[Path, LabelMap]) -> None:
    path, written = two_label_seg
    labels = open_label_map(path, reference=ct)
    assert labels.geometry == ct.geometry and labels.source == str(path)
    np.testing.assert_array_equal(labels.array, written.array)
    assert [(e.value, e.name) for e in labels.labels] == [(1, "Tumour"), (3, "Left lung")]
    for a, b in zip(written.labels, labels.labels, strict=True):
        assert max(abs(x - y) for x, y in zip(a.color, b.color, strict=True)) <= 1
    assert label_map_warnings(labels) == []


def test_seg_onto_an_image_on_another_grid_is_resampled_with_a_warning(ct: Volume,
                                                                       two_label_seg: tuple[Path, LabelMap]) -> None:
    path, written = two_label_seg
    grid = _iso_grid(ct)
    other = Volume(np.zeros(grid.shape, dtype=np.int16), grid)
    labels = open_label_map(path, reference=other)
    assert labels.geometry == grid
    expected = _resample_with_sitk(written.array, ct.geometry, grid)
    for value in (1, 3):
        assert _dice(labels.array == value, expected == value) >= 0.99
    assert [e.name for e in labels.labels] == ["Tumour", "Left lung"]
    warnings = label_map_warnings(labels)
    assert len(warnings) == 2
    assert warnings[0].startswith("two.dcm (512x512 pixels of 0.57 x 0.57 mm) does not lie on the slices of the "
                                  "open image (292x292x240 voxels of 1 x 1 x 1 mm")
    assert "two.dcm was resampled (nearest neighbour)" in warnings[1]


def test_seg_of_another_study_that_does_not_overlap_is_refused(ct: Volume,
                                                               two_label_seg: tuple[Path, LabelMap]) -> None:
    far = _iso_grid(ct, shift_mm=(500.0, 0.0, 0.0))
    with pytest.raises(MedviewError, match=r"two\.dcm does not overlap the open image"):
        open_label_map(two_label_seg[0], reference=Volume(np.zeros(far.shape, dtype=np.int16), far))


def test_seg_without_reference_opens_on_its_own_grid(two_label_seg: tuple[Path, LabelMap]) -> None:
    path, written = two_label_seg
    labels = open_label_map(path)
    assert labels.voxel_counts() == written.voxel_counts()
    assert label_map_warnings(labels) == []


def test_seg_drawn_on_another_series_is_placed_by_position_with_a_warning(
        ct: Volume, two_label_seg: tuple[Path, LabelMap]) -> None:
    path, written = two_label_seg
    other_series = Volume(ct.array, ct.geometry, VolumeMetadata(modality="CT", series_uid="1.2.3.4"))
    labels = open_label_map(path, reference=other_series)
    np.testing.assert_array_equal(labels.array, written.array)
    (warning,) = label_map_warnings(labels)
    assert warning == (f"two.dcm was drawn on series {ct.metadata.series_uid}, not on the open series 1.2.3.4; "
                       "it was placed by patient position")
