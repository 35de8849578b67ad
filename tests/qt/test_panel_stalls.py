"""Issue 17 item 17 (processing panels): from the click on Run until the result is shown, the window's event loop
never stalls for more than 250 ms (the goal is 50 ms; the bound leaves room for a loaded machine).

Each test drives the real Filter / Segment / Refine-labels panel of the main window on the bundled sample CT: a
real click on Run, then the event loop spins until the result is in the views.  The job runs in a process of its
own; the undo step of the result (the compressed before/after of the changed box) is prepared there too, so the
GUI thread only copies the result into place.  Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from medview.qt.main_window import MainWindow
from tests.qt.stall_probe import StallProbe

BOUND_MS = 250.0


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # the sample's tumour label
    qtbot.wait(300)  # the background work an opened study starts (x-major copies) is done
    return blocker.args[0]


def _run_measured(qtbot, window: MainWindow, panel, timeout_s: float = 240.0) -> tuple[float, float, list]:
    """Click Run, spin the event loop until the panel's result has been applied and shown (0.5 s more for what
    it triggers): (longest stall in ms, wall time in s, the stalls over 50 ms)."""
    from PySide6.QtCore import QCoreApplication

    results = []
    panel.finished.connect(lambda *a: results.append(time.perf_counter()))
    failed = []
    panel.failed.connect(failed.append)
    probe = StallProbe()
    t0 = time.perf_counter()
    with probe:
        QTest.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
        assert panel.busy, panel.status.text()
        while not results and not failed:
            QCoreApplication.processEvents()
            time.sleep(0.001)
            assert time.perf_counter() - t0 < timeout_s, "the job did not finish"
        wall = time.perf_counter() - t0
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            QCoreApplication.processEvents()
            time.sleep(0.001)
    assert not failed, failed
    print(f"\n{panel.kind} {panel.form.operation.name}: longest stall {probe.longest_ms:.0f} ms, "
          f"{wall:.1f} s from Run to result, stalls over 50 ms: {probe.stalls}")
    return probe.longest_ms, wall, probe.stalls


def _float32_study(chest_ct_sample: Path, tmp_path: Path) -> Path:
    """The sample CT stored as float32 (a NIfTI written by nibabel), as an image after a float filter is."""
    import nibabel as nib

    from medview.io.readers import open_image

    volume = open_image(str(chest_ct_sample))
    g = volume.geometry
    affine = np.eye(4)
    direction = np.asarray(g.direction, dtype=float).reshape(3, 3)
    affine[:3, :3] = direction * np.asarray(g.spacing, dtype=float)
    affine[:3, 3] = g.origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS -> RAS
    path = tmp_path / "ct_float32.nii.gz"
    nib.save(nib.Nifti1Image(np.ascontiguousarray(volume.array.astype(np.float32).transpose(2, 1, 0)), affine),
             str(path))
    return path


@pytest.mark.parametrize("kind, name, params", [
    ("filter", "median", {"radius": 1.0}),
    ("filter", "gaussian", {"sigma": 1.0}),
    ("segment", "threshold", {"lower": 300.0, "upper": 3000.0}),
    ("segment", "kmeans", {}),
    ("segment", "dbscan", {}),
    ("segment", "birch", {}),
])
def test_processing_panel_keeps_the_event_loop_free(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                    kind, name, params) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    original, before_labels = volume.array.copy(), window.state.labels.array.copy()
    panel = window.editing.filters if kind == "filter" else window.editing.segmentation
    form = panel.select(name)
    for key, value in params.items():
        form.set_value(key, value)
    longest, _wall, stalls = _run_measured(qtbot, window, panel)
    if kind == "filter":  # the result is shown (in place, or as a new image of another type)
        shown = window.state.volume.array
        assert shown.dtype != original.dtype or not np.array_equal(shown, original)
    else:
        assert not np.array_equal(window.state.labels.array, before_labels)
    assert longest < BOUND_MS, stalls


def test_median_on_a_float32_study_keeps_the_event_loop_free(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                             tmp_path: Path) -> None:
    path = _float32_study(chest_ct_sample, tmp_path)
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.wait(300)
    volume = window.state.volume
    assert volume.array.dtype == np.float32
    original = volume.array.copy()
    panel = window.editing.filters
    panel.select("median").set_value("radius", 1.0)
    longest, _wall, stalls = _run_measured(qtbot, window, panel)
    assert not np.array_equal(window.state.volume.array, original)
    assert longest < BOUND_MS, stalls


def test_remove_islands_keeps_the_event_loop_free(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Refine labels: remove islands of the bone threshold (many pieces) on the whole CT."""
    _open(qtbot, window, chest_ct_sample)
    segment = window.editing.segmentation
    form = segment.select("threshold")
    form.set_value("lower", 300.0)
    form.set_value("upper", 3000.0)
    with qtbot.waitSignal(segment.finished, timeout=60_000):
        segment.run()
    before = window.state.labels.array.copy()
    panel = window.editing.refine
    panel.select("remove-islands").set_value("min_size_mm3", 500.0)
    longest, _wall, stalls = _run_measured(qtbot, window, panel)
    assert np.count_nonzero(window.state.labels.array) < np.count_nonzero(before)
    assert longest < BOUND_MS, stalls


def _soft_tissue_box(array: np.ndarray, labels: np.ndarray) -> tuple[slice, slice, slice]:
    """A 1 x 4 x 4 box near the middle of the body (inside the bone's bounding box), below 300 HU and unlabelled."""
    z, y0, x0 = array.shape[0] // 2, array.shape[1] // 2, array.shape[2] // 2
    for dy in range(0, 60, 4):
        for dx in range(0, 60, 4):
            box = (slice(z, z + 1), slice(y0 + dy, y0 + dy + 4), slice(x0 + dx, x0 + dx + 4))
            if (array[box] < 300).all() and not labels[box].any():
                return box
    raise AssertionError("no soft tissue near the middle")


def test_a_result_that_arrives_after_an_edit_is_diffed_against_the_edited_map(qtbot, window: MainWindow,
                                                                              chest_ct_sample: Path) -> None:
    """The job's prepared undo step describes the map as it was at Run; painted on meanwhile, the result is
    diffed against the map as it is, so undo brings back the stroke (not the map from before it)."""
    from medview.algorithms.label_edit import make_edit

    volume = _open(qtbot, window, chest_ct_sample)
    state = window.state
    original = state.labels.array.copy()
    panel = window.editing.segmentation
    form = panel.select("threshold")
    form.set_value("lower", 300.0)
    form.set_value("upper", 3000.0)
    box = _soft_tissue_box(volume.array, original)
    painted_while_running = []

    def paint(*_progress) -> None:  # the job reports progress: it holds its copy of the map already
        if not painted_while_running:
            painted_while_running.append(not panel.worker.done)
            state.edit_labels(make_edit(state.labels.array, box, np.full((1, 4, 4), 1, np.uint8)), "Paint")

    with qtbot.waitSignal(panel.finished, timeout=60_000):
        worker = panel.run()
        worker.signals.progress.connect(paint)
    assert painted_while_running == [True], "the edit is made while the job runs"
    bone = (volume.array >= 300) & (volume.array <= 3000)
    np.testing.assert_array_equal(state.labels.array > 0, bone)
    window.editing.undo()
    painted = original.copy()
    painted[box] = 1
    np.testing.assert_array_equal(state.labels.array, painted)
    window.editing.undo()
    np.testing.assert_array_equal(state.labels.array, original)


def test_cancel_from_the_panel_stops_the_job_process(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Cancel during k-means: the job's process is killed at once and nothing changes."""
    _open(qtbot, window, chest_ct_sample)
    before = window.state.labels.array.copy()
    panel = window.editing.segmentation
    panel.select("kmeans")
    QTest.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=30_000)  # running in its process
    t0 = time.perf_counter()
    QTest.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.run_button.isEnabled(), timeout=5_000)
    assert time.perf_counter() - t0 < 1.0
    assert "Cancelled" in panel.status.text()
    np.testing.assert_array_equal(window.state.labels.array, before)
