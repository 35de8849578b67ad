"""The AI panel's progress bar moves window by window during a run of the bundled demo model on the sample CT
(it sat at 5 % for the whole run: the 8 windows were one batch), and Estimate answers from the run's record."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from medview.qt.main_window import MainWindow

pytest.importorskip("torch")
pytest.importorskip("monai")


@pytest.fixture(autouse=True)
def answer_yes(monkeypatch) -> None:
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)


def test_progress_bar_moves_per_window_and_estimate_uses_the_run(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                                 monkeypatch) -> None:
    from medview.inference import pipeline

    monkeypatch.setattr(pipeline, "time_one_window", lambda *a: pytest.fail("the estimate ran the network"))
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(chest_ct_sample))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    panel = window.editing.ai
    panel.refresh()
    names = [panel.models.item(i).text() for i in range(panel.models.count())]
    panel.models.setCurrentRow(names.index("demo-body-lungs"))
    values: list[int] = []
    formats: list[str] = []
    panel.progress.valueChanged.connect(values.append)
    panel.progress.valueChanged.connect(lambda _: formats.append(panel.progress.format()))
    # every report reaches the bar (the worker passes 10 a second at most: a fast machine's 8 windows take less
    # than 0.1 s each, and the bar would move less often although every window reports)
    from medview.qt import workers

    monkeypatch.setattr(workers, "PROGRESS_INTERVAL_S", 0.0)
    with qtbot.waitSignal(panel.finished, timeout=180_000):
        panel.run()
    during = [v for v in values if 5 < v < 90]
    assert values == sorted(values) and values[-1] >= 90
    assert len(set(during)) >= 3  # was none: the bar stood at 5 from the first window to the last
    assert any("window" in f for f in formats)
    worker = panel.estimate()  # the run just recorded this machine's time per window
    qtbot.waitUntil(lambda: worker.done and not panel.cancel_button.isEnabled(), timeout=30_000)
    assert "measured by an earlier run here" in panel.status.text()
