"""Label editing as diffs: brush regions in mm, paint/erase, threshold-limited paint, flood fill, locks."""

from __future__ import annotations

import numpy as np
import pytest

from medview.algorithms.label_edit import (
    Edit,
    brush_region,
    combine_edits,
    diff_edit,
    erase,
    fill,
    paint,
    replace_array,
)
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume

# an oblique, flipped, anisotropic grid: brushes must be round in mm whatever the direction
_C, _S = np.cos(0.3), np.sin(0.3)
OBLIQUE = Geometry((12, 30, 40), (0.7, 0.9, 2.5), (-10.0, 20.0, 5.0),
                   (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, -1.0))


def _labels(geometry: Geometry = OBLIQUE, labels: list[Label] | None = None) -> LabelMap:
    return LabelMap(np.zeros(geometry.shape, np.uint8), geometry, labels=labels or [Label(1, "a"), Label(2, "b")])


def _world_of_all_voxels(geometry: Geometry) -> np.ndarray:
    z, y, x = np.indices(geometry.shape)
    return geometry.index_to_world(np.stack([x, y, z], axis=-1).astype(float))


def _centre(geometry: Geometry, xyz: tuple[float, float, float]) -> np.ndarray:
    return geometry.index_to_world(np.array(xyz, dtype=float))


def test_sphere_brush_is_every_voxel_within_the_radius_in_world_mm() -> None:
    g = OBLIQUE
    centre = _centre(g, (20.3, 14.6, 5.2))
    bbox, mask = brush_region(g, centre, 4.0, "sphere")
    full = np.zeros(g.shape, bool)
    full[bbox] = mask
    expected = np.linalg.norm(_world_of_all_voxels(g) - centre, axis=-1) <= 4.0
    assert np.array_equal(full, expected)
    assert mask.shape == tuple(s.stop - s.start for s in bbox)
    assert expected.sum() > 50  # a real sphere, several slices thick at 2.5 mm
    assert len({int(z) for z in np.nonzero(full)[0]}) == 3


@pytest.mark.parametrize(("view", "axis"), [("axial", 0), ("coronal", 1), ("sagittal", 2)])
def test_disc_brush_lies_in_the_view_plane_and_uses_in_plane_spacing(view: str, axis: int) -> None:
    g = OBLIQUE
    index = (20.3, 14.6, 5.2)  # x, y, z
    centre = _centre(g, index)
    bbox, mask = brush_region(g, centre, 3.0, "disc", view)
    full = np.zeros(g.shape, bool)
    full[bbox] = mask
    # the slice through the centre's voxel, normal to the view's axis
    nearest = int(np.rint(index[2 - axis]))
    assert set(np.nonzero(full)[axis].tolist()) == {nearest}
    # in-plane distances in mm from the centre projected onto that slice
    zyx = np.array(index[::-1])
    zyx[axis] = nearest
    projected = g.index_to_world(zyx[::-1])
    dist = np.linalg.norm(_world_of_all_voxels(g) - projected, axis=-1)
    expected = np.zeros(g.shape, bool)
    sl = [slice(None)] * 3
    sl[axis] = slice(nearest, nearest + 1)
    expected[tuple(sl)] = (dist <= 3.0)[tuple(sl)]
    assert np.array_equal(full, expected)


def test_disc_area_matches_pi_r_squared_on_a_fine_grid() -> None:
    g = Geometry((3, 400, 400), (0.1, 0.2, 1.0))
    _, mask = brush_region(g, _centre(g, (200.0, 100.0, 1.0)), 8.0, "disc", "axial")
    area = mask.sum() * 0.1 * 0.2
    assert area == pytest.approx(np.pi * 64, rel=0.005)


def test_zero_radius_paints_the_voxel_under_the_point() -> None:
    g = OBLIQUE
    bbox, mask = brush_region(g, _centre(g, (7.4, 3.6, 2.2)), 0.0, "sphere")
    assert mask.sum() == 1 and bbox == (slice(2, 3), slice(4, 5), slice(7, 8))


def test_brush_parameters_are_validated() -> None:
    g = OBLIQUE
    centre = _centre(g, (5.0, 5.0, 5.0))
    with pytest.raises(MedviewError, match="radius must be zero or more"):
        brush_region(g, centre, -1.0)
    with pytest.raises(MedviewError, match="outside the volume"):
        brush_region(g, _centre(g, (-3.0, 5.0, 5.0)), 2.0)
    with pytest.raises(MedviewError, match="Unknown view"):
        brush_region(g, centre, 2.0, "disc", "oblique")
    with pytest.raises(MedviewError, match="Unknown brush shape"):
        brush_region(g, centre, 2.0, "cube")  # type: ignore[arg-type]


def test_brush_at_the_border_is_clipped_to_the_volume() -> None:
    g = Geometry((5, 20, 20))
    bbox, mask = brush_region(g, (0.0, 0.0, 2.0), 3.0, "disc")
    assert bbox == (slice(2, 3), slice(0, 4), slice(0, 4)) and mask[0, 0, 0] and mask.sum() == 11


def test_paint_returns_an_edit_and_does_not_touch_the_array() -> None:
    lm = _labels()
    region = brush_region(lm.geometry, _centre(lm.geometry, (20.0, 15.0, 6.0)), 3.0, "sphere")
    edit = paint(lm, region, 2)
    assert lm.array.max() == 0
    assert edit.changed_voxels == region.mask.sum() and edit.description == "Paint label 2"
    edit.apply(lm.array)
    full = np.zeros(lm.geometry.shape, bool)
    full[region.slices] = region.mask
    assert np.array_equal(lm.array == 2, full)
    edit.revert(lm.array)
    assert lm.array.max() == 0


def test_painting_again_over_the_same_voxels_is_an_empty_edit() -> None:
    lm = _labels()
    region = brush_region(lm.geometry, _centre(lm.geometry, (20.0, 15.0, 6.0)), 2.0)
    paint(lm, region, 1).apply(lm.array)
    again = paint(lm, region, 1)
    assert again.is_empty and again.changed_voxels == 0


def test_locked_labels_are_never_overwritten_or_edited() -> None:
    g = Geometry((4, 20, 20))
    lm = _labels(g, [Label(1, "liver", locked=True), Label(2, "tumour")])
    lm.array[:, :, :10] = 1
    region = brush_region(g, (10.0, 10.0, 2.0), 5.0, "disc")
    edit = paint(lm, region, 2)
    edit.apply(lm.array)
    assert np.all(lm.array[:, :, :10] == 1)  # the locked half kept
    assert (lm.array == 2).sum() == edit.changed_voxels > 0
    with pytest.raises(MedviewError, match=r"Label 'liver' \(1\) is locked"):
        paint(lm, region, 1)
    with pytest.raises(MedviewError, match="locked"):
        erase(lm, region, value=1)
    erase(lm, region).apply(lm.array)  # plain erase clears the tumour, never the liver
    assert (lm.array == 2).sum() == 0 and np.all(lm.array[:, :, :10] == 1)
    with pytest.raises(MedviewError, match="locked"):
        fill(lm, (2.0, 2.0, 1.0), 2)


def test_erase_of_one_label_and_paint_over_background_only() -> None:
    g = Geometry((1, 10, 10))
    lm = _labels(g)
    lm.array[0, :, :5] = 1
    lm.array[0, :, 5:] = 2
    region = brush_region(g, (5.0, 5.0, 0.0), 10.0, "disc")
    erase(lm, region, value=2).apply(lm.array)
    assert np.all(lm.array[0, :, :5] == 1) and np.all(lm.array[0, :, 5:] == 0)
    paint(lm, region, 2, paint_over=0).apply(lm.array)
    assert np.all(lm.array[0, :, :5] == 1) and np.all(lm.array[0, :, 5:] == 2)


def test_threshold_limited_paint_changes_only_voxels_in_range() -> None:
    g = Geometry((3, 30, 30), (0.5, 0.5, 2.0))
    rng = np.random.default_rng(1)
    image = Volume(rng.normal(0, 100, g.shape).astype(np.float32), g)
    lm = _labels(g)
    region = brush_region(g, (7.5, 7.5, 2.0), 5.0, "disc")
    edit = paint(lm, region, 1, image=image, low=-50, high=80)
    edit.apply(lm.array)
    full = np.zeros(g.shape, bool)
    full[region.slices] = region.mask
    expected = full & (image.array >= -50) & (image.array <= 80)
    assert np.array_equal(lm.array == 1, expected) and 0 < expected.sum() < full.sum()
    only_low = paint(_labels(g), region, 1, image=image.array, low=0)
    assert only_low.changed_voxels == (full & (image.array >= 0)).sum()
    with pytest.raises(MedviewError, match="intensity range is empty"):
        paint(lm, region, 1, image=image, low=10, high=-10)
    with pytest.raises(MedviewError, match="needs the image"):
        paint(lm, region, 1, low=10)
    with pytest.raises(MedviewError, match="not on the label map's grid"):
        paint(lm, region, 1, image=np.zeros((3, 30, 31)), low=0)


def test_label_value_must_fit_the_array() -> None:
    lm = _labels(Geometry((1, 5, 5)))
    with pytest.raises(MedviewError, match="between 0 and 255"):
        paint(lm, brush_region(lm.geometry, (2.0, 2.0, 0.0), 1.0), 300)


def _ring_map() -> LabelMap:
    """Two slices; slice 1 has a ring of label 1 around an empty centre."""
    g = Geometry((3, 20, 20))
    lm = _labels(g)
    yy, xx = np.mgrid[:20, :20]
    r = np.hypot(yy - 10, xx - 10)
    lm.array[1][(r >= 5) & (r < 7)] = 1
    return lm


def test_2d_fill_stays_inside_the_ring_and_the_slice() -> None:
    lm = _ring_map()
    edit = fill(lm, (10.0, 10.0, 1.0), 2, view="axial")
    edit.apply(lm.array)
    yy, xx = np.mgrid[:20, :20]
    inside = np.hypot(yy - 10, xx - 10) < 5
    assert np.array_equal(lm.array[1] == 2, inside)
    assert not (lm.array[0] == 2).any() and not (lm.array[2] == 2).any()
    assert edit.bbox[0] == slice(1, 2) and edit.description == "Fill label 2"


def test_3d_fill_leaks_through_other_slices_and_2d_outside_fill_stops_at_the_ring() -> None:
    lm = _ring_map()
    outside = fill(lm, (0.0, 0.0, 1.0), 2, view="axial")
    assert outside.changed_voxels == 400 - (lm.array[1] == 1).sum() - (np.hypot(*np.mgrid[-10:10, -10:10]) < 5).sum()
    everything = fill(lm, (0.0, 0.0, 1.0), 2, view=None)  # through slices 0 and 2 into the centre
    assert everything.changed_voxels == (lm.array == 0).sum()


def test_fill_bounded_by_an_intensity_range() -> None:
    g = Geometry((1, 10, 10))
    image = np.zeros(g.shape, np.int16)
    image[0, :, 6:] = 500  # bone on the right
    lm = _labels(g)
    edit = fill(lm, (1.0, 1.0, 0.0), 1, image=image, low=-100, high=100)
    assert edit.changed_voxels == 60 and edit.bbox[2] == slice(0, 6)
    with pytest.raises(MedviewError, match=r"image value at the point \(500\) is outside \[-100, 100\]"):
        fill(lm, (8.0, 1.0, 0.0), 1, image=image, low=-100, high=100)


def test_empty_fills_are_refused() -> None:
    lm = _ring_map()
    with pytest.raises(MedviewError, match="already belongs to Label 'a'"):
        fill(lm, (5.0, 10.0, 1.0), 1)
    with pytest.raises(MedviewError, match="already background"):
        fill(lm, (0.0, 0.0, 0.0), 0)
    with pytest.raises(MedviewError, match="outside the volume"):
        fill(lm, (0.0, 0.0, 9.0), 2)


def test_combined_stroke_equals_its_dabs() -> None:
    g = Geometry((2, 40, 40), (0.8, 0.8, 3.0))
    lm = _labels(g)
    lm.array[0, 10:30, 10:30] = 1
    start = lm.array.copy()
    dabs = []
    for x in np.linspace(5, 25, 8):
        dab = paint(lm, brush_region(g, (x, 12.0, 0.0), 3.0), 2 if x < 20 else 0)
        dab.apply(lm.array)
        dabs.append(dab)
    stroke = combine_edits(lm.array, dabs, "Stroke")
    assert stroke.description == "Stroke"
    assert np.array_equal(lm.array[stroke.bbox], stroke.after)
    stroke.revert(lm.array)
    assert np.array_equal(lm.array, start)


def test_whole_volume_replacement_is_a_bbox_diff() -> None:
    g = Geometry((10, 10, 10))
    lm = _labels(g, [Label(1, "a"), Label(2, "b", locked=True)])
    new = lm.array.copy()
    new[2:4, 3:8, 5] = 1
    edit = replace_array(lm, new.astype(np.int64), "Dilate")
    assert edit.bbox == (slice(2, 4), slice(3, 8), slice(5, 6)) and edit.after.dtype == np.uint8
    assert replace_array(lm, lm.array.copy()).is_empty
    lm.array[0, 0, 0] = 2
    touched = lm.array.copy()
    touched[0, 0, 0] = 0
    with pytest.raises(MedviewError, match=r"Label 'b' \(2\) is locked"):
        replace_array(lm, touched)
    with pytest.raises(MedviewError, match="shape"):
        diff_edit(lm.array, np.zeros((10, 10, 9), np.uint8))
    with pytest.raises(MedviewError, match="non-integer"):
        replace_array(lm, np.full(g.shape, 0.5))


def test_edit_checks_its_arrays() -> None:
    with pytest.raises(ValueError, match="do not match the bbox"):
        Edit((slice(0, 1), slice(0, 2), slice(0, 2)), np.zeros((1, 2, 2)), np.zeros((1, 2, 3)))
