"""The AI panel drives a model end to end in the real window: card shown, time estimated, labels from the
model on the study's grid, one undo step, and Cancel leaves the study unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medview.qt.main_window import MainWindow
from tests.inference.models import torchscript_model


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch) -> Path:
    pytest.importorskip("torch")
    folder = tmp_path / "models"
    # the chest CT: class 1 where the normalised value > 0.5, i.e. HU above the middle of the clip window
    torchscript_model(folder / "bright", name="bright-test", preprocessing={"clip": [-1000, 1000],
                                                                             "normalize": "minmax"},
                      spacing_mm=[4.0, 4.0, 5.0], patch_size=[16, 32, 32],
                      labels=[{"value": 1, "name": "Dense", "color": [250, 200, 0]}])
    monkeypatch.setenv("MEDVIEW_MODELS_DIR", str(folder))
    return folder


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    return blocker.args[0]


def test_run_a_model_from_the_panel(qtbot, window: MainWindow, chest_ct_sample: Path, model_dir: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    panel = window.editing.ai
    panel.refresh()
    names = [panel.models.item(i).text() for i in range(panel.models.count())]
    assert "bright-test" in names and "demo-body-lungs" in names  # the user's model and the bundled demo
    panel.models.setCurrentRow(names.index("bright-test"))
    assert "bright-test" in panel.details.toHtml() and "not for clinical use" in panel.details.toHtml()
    worker = panel.estimate()
    # ``done`` is set before the queued result reaches the panel: wait for the panel's own end of the job
    qtbot.waitUntil(lambda: worker.done and not panel.cancel_button.isEnabled(), timeout=60_000)
    assert "about" in panel.status.text() and "windows" in panel.status.text()
    before = window.state.labels.array.copy()
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        panel.run()
    labels = window.state.labels
    assert labels.geometry == volume.geometry
    dense = labels.array == 1
    # the model marks HU above 0 (the middle of -1000..1000): most of its voxels are dense tissue or bone
    assert dense.any() and (volume.array[dense] > -100).mean() > 0.9
    window.editing.undo()
    np.testing.assert_array_equal(window.state.labels.array, before)


def test_cancel_leaves_the_study_unchanged(qtbot, window: MainWindow, chest_ct_sample: Path, model_dir: Path
                                           ) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    labels_before = window.state.labels.array.copy()
    image_before = volume.array.copy()
    panel = window.editing.ai
    panel.refresh()
    names = [panel.models.item(i).text() for i in range(panel.models.count())]
    panel.models.setCurrentRow(names.index("bright-test"))
    worker = panel.run()
    worker.cancel()
    # ``done`` is set before the queued result reaches the panel: wait for the panel's own end of the job
    qtbot.waitUntil(lambda: worker.done and not panel.cancel_button.isEnabled(), timeout=60_000)
    assert "Cancelled" in panel.status.text()  # cancel is checked before every window
    np.testing.assert_array_equal(window.state.labels.array, labels_before)
    np.testing.assert_array_equal(window.state.volume.array, image_before)
    assert not window.state.history.can_undo
