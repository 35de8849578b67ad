"""The GUI-free viewer state: everything the views draw is decided here, testable without Qt."""

from __future__ import annotations

import numpy as np
import pytest

from medview.app.measurements import Measurement
from medview.app.viewer import VIEWS, ViewerState
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume, VolumeMetadata, WindowPreset


def _volume(modality: str = "CT", presets=()) -> Volume:
    rng = np.random.default_rng(0)
    g = Geometry((20, 40, 50), (0.8, 0.8, 2.5), (-20.0, -16.0, 10.0))
    arr = rng.normal(40, 20, g.shape).astype(np.int16)
    return Volume(arr, g, VolumeMetadata(modality=modality, window_presets=list(presets),
                                         units="HU" if modality == "CT" else ""))


def test_initial_window_file_preset_then_ct_default_then_percentiles() -> None:
    s = ViewerState()
    s.set_volume(_volume(presets=[WindowPreset(-600, 1500, "LUNG")]))
    assert s.window.name == "LUNG" and s.window_choices()[0].name == "LUNG"
    s.set_volume(_volume())
    assert (s.window.center, s.window.width) == (50, 350)  # mediastinum
    mr = _volume("MR")
    s.set_volume(mr)
    lo, hi = np.percentile(mr.array, [1, 99])
    assert s.window.low == pytest.approx(lo) and s.window.high == pytest.approx(hi)
    assert [p.name for p in s.window_choices()][:1] == ["Auto 1-99%"]


def test_events_and_cursor_clamping() -> None:
    s = ViewerState()
    seen: list[str] = []
    for event in ("volume", "cursor", "window"):
        s.subscribe(event, lambda e=event: seen.append(e))
    v = _volume()
    s.set_volume(v)
    assert seen == ["volume"]
    s.set_cursor([1e6, 0, 0])  # far outside: clamped to the last voxel centre
    assert s.cursor[0] == pytest.approx(v.geometry.index_to_world([49, 0, 0])[0])
    s.adjust_window(10, 20)
    assert seen[-2:] == ["cursor", "window"]


def test_scroll_moves_one_slice_along_each_view() -> None:
    s = ViewerState()
    v = _volume()
    s.set_volume(v)
    before = v.geometry.world_to_index(s.cursor)
    s.scroll("axial", 2)
    s.scroll("coronal", -1)
    after = v.geometry.world_to_index(s.cursor)
    np.testing.assert_allclose(after - before, [0, -1, 2], atol=1e-9)  # coronal normal = u x v points posterior


def test_rotation_keeps_the_three_planes_perpendicular() -> None:
    s = ViewerState()
    s.set_volume(_volume())
    s.rotate("axial", 20)
    s.rotate("coronal", -35)
    normals = [s.plane(v).normal() for v in VIEWS]
    np.testing.assert_allclose(np.array(normals) @ np.array(normals).T, np.eye(3), atol=1e-9)
    assert s.is_oblique
    s.reset_rotation()
    assert not s.is_oblique


def test_bad_parameters_are_refused_with_a_message() -> None:
    s = ViewerState()
    with pytest.raises(MedviewError, match="No image"):
        s.apply_window("Bone")
    s.set_volume(_volume())
    with pytest.raises(MedviewError, match="negative"):
        s.set_slab(-1)
    with pytest.raises(MedviewError, match="Slab mode"):
        s.set_slab(5, "average")
    with pytest.raises(MedviewError, match="colormap"):
        s.set_colormap("rainbow")
    other = LabelMap(np.zeros((2, 2, 2), np.uint8), Geometry((2, 2, 2)))
    with pytest.raises(MedviewError, match="grid"):
        s.set_labels(other)


def test_ellipse_measurement_matches_numpy() -> None:
    s = ViewerState()
    v = _volume()
    s.set_volume(v)
    plane = s.plane("axial")
    z = round(float(v.geometry.world_to_index(s.cursor)[2]))
    centre = plane.pixel_to_world(25, 20)
    corner = plane.pixel_to_world(25 + 10, 20 + 6)
    m = s.add_measurement(Measurement("ellipse", [centre, corner], view="axial", plane=plane))
    rows, cols = np.mgrid[0:40, 0:50]
    inside = ((cols - 25) / 10.0) ** 2 + ((rows - 20) / 6.0) ** 2 <= 1.0
    expected = v.array[z][inside].astype(float)
    assert m.results["n_pixels"] == inside.sum()
    assert m.results["mean"] == pytest.approx(expected.mean())
    assert m.results["std"] == pytest.approx(expected.std())
    d = s.add_measurement(Measurement("distance", [centre, corner]))
    assert d.results["value"] == pytest.approx(np.hypot(10 * 0.8, 6 * 0.8))
    with pytest.raises(MedviewError, match="needs 3"):
        Measurement("angle", [centre, corner])


def test_image_layers_sit_beside_the_study_on_its_grid() -> None:
    s = ViewerState()
    study = _volume()
    s.set_volume(study)
    labels = LabelMap(np.ones(study.geometry.shape, np.uint8), study.geometry)
    s.set_labels(labels)
    events = []
    s.subscribe("layers", lambda: events.append(s.current_layer))
    denoised = study.with_array(study.array.astype(np.float32) * 0.5)
    name = s.add_layer("denoise output", denoised)
    assert s.volume is denoised and s.labels is labels and name == "denoise output"
    assert s.add_layer("denoise output", study.with_array(study.array), show=False) == "denoise output (2)"
    assert list(s.layers)[1:] == ["denoise output", "denoise output (2)"] and s.volume is denoised
    first = next(iter(s.layers))
    s.show_layer(first)
    assert s.volume is study and s.labels is labels and events[-1] == first
    with pytest.raises(MedviewError, match="No image layer"):
        s.show_layer("missing")
    other = Volume(np.zeros((4, 4, 4), np.int16), Geometry((4, 4, 4)), VolumeMetadata(modality="CT"))
    with pytest.raises(MedviewError, match="study's grid"):
        s.add_layer("elsewhere", other)
    s.set_volume(_volume())  # a new study: its own layers only
    assert len(s.layers) == 1


def test_planes_across_x_are_read_from_a_kept_x_major_copy_until_the_array_changes(monkeypatch) -> None:
    """The state hands out the x-major copy for planes across x only, and only while the array it was made
    from is shown and no event has changed it since; a copy made before a change is refused."""
    import medview.app.viewer as viewer
    from medview.algorithms.reslice import x_major

    s = ViewerState()
    v = _volume()
    s.set_volume(v)
    s.set_labels(LabelMap((v.array > 40).astype(np.uint8), v.geometry))
    planes = {name: s.plane(name) for name in VIEWS}
    for kind, shown in (("volume", lambda: s.volume.array), ("labels", lambda: s.labels.array)):
        wanted = s.x_major_wanted(kind)
        assert wanted is not None and wanted[0] is shown()
        source, serial = wanted
        copy = x_major(source)
        assert s.set_x_major(kind, source, serial, copy)
        assert s.x_major_wanted(kind) is None  # kept: nothing more to make
        assert s.slice_array(kind, planes["sagittal"]) is copy
        assert s.slice_array(kind, planes["axial"]) is shown() and s.slice_array(kind, planes["coronal"]) is shown()
        s.rotate("axial", 20.0)  # turns the sagittal plane: an oblique plane is sampled from the array
        assert s.plane("sagittal") != planes["sagittal"]
        assert s.slice_array(kind, s.plane("sagittal")) is shown()
        s.rotate("axial", -20.0)
        s.emit(kind)  # e.g. an edit in place: the copy is stale
        assert s.slice_array(kind, planes["sagittal"]) is shown()
        assert not s.set_x_major(kind, source, serial, copy)  # made before the change
        source, serial = s.x_major_wanted(kind)
        assert s.set_x_major(kind, source, serial, x_major(source))
    old = s.volume.array
    s.set_volume(_volume())  # another study: the copy of the old array is not kept nor taken
    assert s.slice_array("volume", s.plane("sagittal")) is s.volume.array
    assert not s.set_x_major("volume", old, s.x_major_wanted("volume")[1], x_major(old))
    s.loading = True
    assert s.x_major_wanted("volume") is None  # slices still arriving
    s.loading = False
    flat = _volume()
    s.set_volume(Volume(flat.array[:1].copy(), Geometry((1, 40, 50), (0.8, 0.8, 2.5), (-20.0, -16.0, 10.0)),
                        flat.metadata))
    assert s.x_major_wanted("volume") is None  # a single slice: its sagittal cut is one row anyway
    s.set_volume(_volume())
    assert s.x_major_wanted("volume") is not None
    monkeypatch.setenv("MEDVIEW_MEMORY_BUDGET_MB", str(4 * s.volume.array.nbytes / 2**20))
    assert s.x_major_wanted("volume") is not None  # a quarter of the budget: just room for it
    monkeypatch.setenv("MEDVIEW_MEMORY_BUDGET_MB", str(3 * s.volume.array.nbytes / 2**20))
    assert s.x_major_wanted("volume") is None  # the user's memory budget leaves no room for a copy
    monkeypatch.delenv("MEDVIEW_MEMORY_BUDGET_MB")
    monkeypatch.setattr(viewer, "X_MAJOR_MEMORY_SHARE", 0.0)
    assert s.x_major_wanted("volume") is None  # no room for a copy
    with pytest.raises(ValueError):
        s.slice_array("mask", planes["axial"])
