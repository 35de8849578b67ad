"""Issue 17 item 3: a required parameter left empty blocks Run (it showed, and ran with, the spin box's lowest
value: Canny's upper threshold 0.001), and a filter whose result replaces the study asks before it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QDoubleSpinBox, QMessageBox

from medview.qt.main_window import MainWindow


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    return blocker.args[0]


def test_canny_without_its_upper_threshold_does_not_run(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                        monkeypatch) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    original = volume.array.copy()
    warnings, questions = [], []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: questions.append(a[2]) or QMessageBox.StandardButton.No)
    panel = window.editing.filters
    form = panel.select("canny")
    upper = form.widgets["upper"]
    assert isinstance(upper, QDoubleSpinBox) and upper.text() == "not set"
    assert panel.run() is None and panel.worker is None
    assert warnings and "upper" in warnings[0] and "Enter it" in warnings[0]
    assert not questions, "nothing is asked before the missing value is given"
    assert window.state.volume is volume
    np.testing.assert_array_equal(volume.array, original)


def test_a_filter_that_replaces_the_image_asks_first(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                     monkeypatch) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    answers, questions = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes], []

    def ask(parent, title, text, *args, **kwargs):
        questions.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", ask)
    panel = window.editing.filters
    form = panel.select("canny")
    form.set_value("upper", 200.0)
    assert panel.run() is None and panel.worker is None  # answered No: nothing runs
    assert "0/1 edge map" in questions[0] and window.state.volume is volume
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        assert panel.run() is not None  # answered Yes
    assert len(questions) == 2
    edges = window.state.volume.array
    assert set(np.unique(edges)) <= {0, 1} and edges.any()


def test_a_filter_that_keeps_the_image_kind_runs_without_asking(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                               monkeypatch) -> None:
    _open(qtbot, window, chest_ct_sample)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    panel = window.editing.filters
    panel.select("median").set_value("radius", 1.0)
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        assert panel.run() is not None
    assert not asked


def test_threshold_with_neither_bound_does_not_run(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                   monkeypatch) -> None:
    """It started the job, which failed in its process; now Run says what is missing and starts nothing."""
    _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    before = window.state.labels.array.copy()
    warnings = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warnings.append(a[2]))
    panel = window.editing.segmentation
    panel.select("threshold")
    assert panel.run() is None and panel.worker is None
    assert warnings and "lower or upper" in warnings[0]
    np.testing.assert_array_equal(window.state.labels.array, before)
