"""Editing through the real window: brush strokes with the mouse, undo/redo, threshold preview and
segmentation from the panel, a filter with undo, the label table, statistics export, autosave recovery."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest

from medview.qt.main_window import MainWindow


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # the sample's tumour label
    return blocker.args[0]


def _pos(view, world) -> QPoint:
    return view.world_to_widget(np.asarray(world, dtype=float)).toPoint()


def test_paint_stroke_with_the_mouse_then_undo_and_redo(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    before = window.state.labels.array.copy()
    window.state.add_label("Drawn")
    value = window.state.active_label
    window.set_tool("paint")
    window.brush.radius_mm = 3.0
    axial = window.grid.views["axial"]
    z = int(np.rint(g.world_to_index(window.state.cursor))[2])
    vp = axial.graphics.viewport()
    start = _pos(axial, g.index_to_world([150, 250, z]))
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start)
    for dx in range(5, 80, 5):
        QTest.mouseMove(vp, start + QPoint(dx, 0))
        qtbot.wait(15)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, start + QPoint(80, 0))
    painted = window.state.labels.array == value
    assert painted[z].sum() > 100 and painted.sum() == painted[z].sum()  # a disc brush: this slice only
    assert window.editing.undo_action.isEnabled() and "Paint Drawn" in window.editing.undo_action.text()
    after = window.state.labels.array.copy()
    window.editing.undo()
    np.testing.assert_array_equal(window.state.labels.array, before)
    window.editing.redo()
    np.testing.assert_array_equal(window.state.labels.array, after)
    assert (axial.shown_labels()[..., 3] > 0).sum() >= painted[z].sum()  # drawn on screen


def test_threshold_preview_then_segmentation_is_one_undo_step(qtbot, window: MainWindow,
                                                               chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    dock = window.editing.docks["Segmentation"]
    window.modes.show_panel("Segmentation")  # dock.show() + raise_() left it behind the Measurements tab
    panel = window.editing.segmentation
    form = panel.select("threshold")
    form.set_value("lower", 300.0)
    form.set_value("upper", 3000.0)
    qtbot.waitUntil(lambda: window.state.threshold_preview == (300.0, 3000.0), timeout=2_000)
    axial = window.grid.views["axial"]
    shown = axial.shown_labels()
    expected = (axial.image_data >= 300) & (axial.image_data <= 3000)
    assert shown is not None and np.array_equal(shown[..., 3] > 0, expected)
    before = window.state.labels.array.copy()
    with qtbot.waitSignal(panel.finished, timeout=30_000):
        panel.run()
    bone = window.state.labels.array > 0
    np.testing.assert_array_equal(bone, (window.state.volume.array >= 300) & (window.state.volume.array <= 3000))
    window.editing.undo()
    np.testing.assert_array_equal(window.state.labels.array, before)
    dock.hide()
    assert window.state.threshold_preview is None  # the preview ends with the panel


def test_threshold_preview_shows_only_while_the_segmentation_tab_is_in_front(qtbot, window: MainWindow,
                                                                           chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    window.modes.set_mode("Segment")
    window.modes.show_panel("Segmentation")
    panel = window.editing.segmentation
    form = panel.select("threshold")
    form.set_value("lower", 300.0)
    form.set_value("upper", 3000.0)
    qtbot.waitUntil(lambda: window.state.threshold_preview == (300.0, 3000.0), timeout=2_000)
    window.modes.show_panel("Filters")  # another tab of the same group in front: the mask would hide the CT
    qtbot.waitUntil(lambda: window.state.threshold_preview is None, timeout=2_000)  # stayed on
    assert panel.isVisible()  # what the panel used to ask (a tabbed dock behind another one says True)
    window.modes.show_panel("Segmentation")
    qtbot.waitUntil(lambda: window.state.threshold_preview == (300.0, 3000.0), timeout=2_000)


def test_filter_from_the_panel_and_undo(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    original = volume.array.copy()
    panel = window.editing.filters
    form = panel.select("median")
    form.set_value("radius", 1.0)
    with qtbot.waitSignal(panel.finished, timeout=60_000):
        panel.run()
    shown = window.state.volume
    assert not np.array_equal(shown.array, original)
    if window.editing.undo_action.isEnabled():  # same data type and grid: undoable
        window.editing.undo()
        np.testing.assert_array_equal(window.state.volume.array, original)
    else:
        assert "not undoable" in window.statusBar().currentMessage()


def test_label_table_and_statistics_export(qtbot, window: MainWindow, chest_ct_sample: Path, tmp_path: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    state = window.state
    entry = state.add_label("Nodule 2", (10, 200, 30))
    state.rename_label(entry.value, "Nodule B")
    state.set_label_locked(1, True)
    items = [window.labels_panel.tree.topLevelItem(i) for i in range(window.labels_panel.tree.topLevelItemCount())]
    assert [i.text(0) for i in items] == ["Tumour", "Nodule B"]
    assert items[0].checkState(3) == Qt.CheckState.Checked
    stats_panel = window.editing.stats
    worker = stats_panel.update_stats()
    assert worker is not None
    qtbot.waitUntil(lambda: worker.done and bool(stats_panel.stats), timeout=30_000)
    assert stats_panel.table.rowCount() == 1  # only labels with voxels
    path = stats_panel.export_csv(str(tmp_path / "stats.csv"))
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = state.labels
    assert rows[0]["name"] == "Tumour" and int(rows[0]["voxels"]) == labels.voxel_count(1)
    inside = state.volume.array[labels.array == 1]
    assert float(rows[0]["mean"]) == pytest.approx(float(inside.mean()), abs=0.01)


def test_autosave_of_a_killed_session_is_offered_and_recovered(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                               tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MEDVIEW_RECOVERY_DIR", str(tmp_path / "recovery"))
    volume = _open(qtbot, window, chest_ct_sample)
    # another medview edits labels, autosaves, and dies without a clean exit
    script = f"""
import os, numpy as np
from medview.app.autosave import AutosaveSession
from medview.app.history import History
from medview.app.label_maps import open_label_map
from medview.io.readers import open_image
from medview.algorithms.label_edit import diff_edit
v = open_image({str(chest_ct_sample)!r})
lm = open_label_map({str(Path(chest_ct_sample).parent / 'tumour_label.nrrd')!r}, reference=v)
h = History(); h.register("labels", lm)
new = lm.array.copy(); new[10:12, 100:120, 100:120] = 1
h.perform("labels", diff_edit(lm.array, new, "Paint"), "Paint")
AutosaveSession().save(lm, "labels", study={str(chest_ct_sample)!r}, history=h)
os._exit(9)
"""
    env = dict(os.environ, MEDVIEW_RECOVERY_DIR=str(tmp_path / "recovery"))
    subprocess.run([sys.executable, "-c", script], env=env, timeout=120, check=False)
    from medview.app.autosave import pending_recoveries

    found = pending_recoveries()
    assert len(found) == 1
    window.editing.recover(found[0])
    labels = window.state.labels
    assert labels.array[10:12, 100:120, 100:120].all()
    assert window.state.history.can_undo  # the dead session's history came back with it
    window.editing.undo()
    assert not labels.array[10:12, 100:120, 100:120].all()
    assert pending_recoveries() == []
    del volume


def test_refine_labels_panel_dilates_in_mm_and_undoes(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    from scipy import ndimage

    from medview.algorithms.morphology import structuring_element

    _open(qtbot, window, chest_ct_sample)
    labels = window.state.labels
    before = labels.array.copy()
    panel = window.editing.refine
    form = panel.select("dilate")
    form.set_value("radius_mm", 2.0)
    with qtbot.waitSignal(panel.finished, timeout=30_000):
        panel.run()
    element = structuring_element(labels.geometry.spacing, 2.0)
    expected = ndimage.binary_dilation(before > 0, structure=element)
    np.testing.assert_array_equal(window.state.labels.array > 0, expected)
    window.editing.undo()
    np.testing.assert_array_equal(window.state.labels.array, before)


def test_history_survives_saving_closing_and_reopening(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                       tmp_path: Path) -> None:
    from medview.app.editing import BrushSettings, Stroke

    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    original = window.state.labels.array.copy()
    stroke = Stroke(window.state, BrushSettings(radius_mm=4.0), "axial")
    stroke.add(g.index_to_world([200, 200, 20]))
    stroke.finish()
    painted = window.state.labels.array.copy()
    path = tmp_path / "edited.nii.gz"
    worker = window.editing.save_labels(str(path))
    qtbot.waitUntil(lambda: worker.done, timeout=30_000)
    assert path.exists() and Path(str(path) + ".medview-history").exists()
    window.state.set_labels(None)
    assert not window.state.history.can_undo
    window.open_labels(str(path))  # as File > Open label map: read with its history in a worker
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=30_000)
    np.testing.assert_array_equal(window.state.labels.array, painted)
    assert window.state.history.can_undo
    window.editing.undo()
    np.testing.assert_array_equal(window.state.labels.array, original)


def test_sagittal_view_reads_x_major_copies_and_shows_edits_at_once(qtbot, window: MainWindow,
                                                                    chest_ct_sample: Path) -> None:
    """Once the series is loaded the window makes x-major copies of the volume and the labels in workers; the
    sagittal view reads its slices from them and shows the same pixels as from the arrays.  A brush stroke (in
    place, in the axial view) is on the sagittal slice at once, and the copies made after it hold it."""
    from PySide6.QtCore import QThreadPool

    from medview.algorithms.reslice import reslice
    from medview.app.editing import BrushSettings, Stroke

    volume = _open(qtbot, window, chest_ct_sample)
    g = volume.geometry
    state = window.state
    sagittal = window.grid.views["sagittal"]

    def copies_made() -> bool:
        plane = sagittal.plane
        return (state.slice_array("volume", plane) is not state.volume.array
                and state.slice_array("labels", plane) is not state.labels.array)

    qtbot.waitUntil(copies_made, timeout=30_000)
    assert state.slice_array("volume", window.grid.views["axial"].plane) is state.volume.array

    def shown_matches_arrays() -> None:
        plane = sagittal.plane
        np.testing.assert_array_equal(sagittal.image_data, reslice(state.volume.array, g, plane))
        labels = reslice(state.labels.array, g, plane, order=0, fill=0)
        shown = sagittal.shown_labels()
        drawn = np.zeros(labels.shape, bool) if shown is None else shown[..., 3] > 0
        visible = {e.value for e in state.labels.labels if e.visible and e.opacity > 0}
        np.testing.assert_array_equal(drawn, np.isin(labels, list(visible)))

    z, y, x = (int(np.median(a)) for a in np.nonzero(state.labels.array))  # in the tumour
    for column in (int(0.35 * g.size_xyz[0]), int(0.62 * g.size_xyz[0]), x):  # sagittal slices beside and through it
        state.set_cursor(g.index_to_world([column, y, z]))
        shown_matches_arrays()
    assert sagittal.shown_labels() is not None  # the tumour is on the last one

    state.add_label("Drawn")
    qtbot.waitUntil(copies_made, timeout=30_000)
    stroke = Stroke(state, BrushSettings(radius_mm=5.0), "axial")
    stroke.add(g.index_to_world([x, 120, z]))  # a disc on the axial slice, cut by the sagittal plane at x
    stroke.finish()
    assert (state.labels.array[z, :, x] == state.active_label).sum() > 3
    assert state.slice_array("labels", sagittal.plane) is state.labels.array  # the old copy is gone
    shown_matches_arrays()
    qtbot.waitUntil(copies_made, timeout=30_000)  # a new copy, made after the stroke
    copy = state.slice_array("labels", sagittal.plane)
    np.testing.assert_array_equal(copy, state.labels.array)
    sagittal._draw_labels()  # drawn again from the new copy
    shown_matches_arrays()
    QThreadPool.globalInstance().waitForDone(30_000)
