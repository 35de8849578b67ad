"""The AI panel drives a model end to end in the real window: card shown, time estimated, labels from the
model on the study's grid, one undo step, and Cancel leaves the study unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from medview.qt.main_window import MainWindow
from tests.inference.models import torchscript_model


@pytest.fixture(autouse=True)
def answer_yes(monkeypatch) -> None:
    """The panel asks before a model replaces a label map or runs on another modality (tests/qt/test_ai_modality.py
    checks those questions): here every question is answered Yes."""
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)


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


def _identity_model(folder: Path) -> Path:
    """An image-to-image model: out = 2 x (min-max normalised input), as TorchScript with its card."""
    import hashlib
    import warnings

    import torch

    from tests.inference.models import card_data, write_card

    folder.mkdir(parents=True)
    conv = torch.nn.Conv3d(1, 1, 1)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.zero_()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(conv.eval()).save(str(folder / "model.ts"))
    sha = hashlib.sha256((folder / "model.ts").read_bytes()).hexdigest()
    write_card(folder, card_data("model.ts", sha, name="double-test", task="image-to-image", labels=[],
                                 preprocessing={"clip": [-1000, 1000], "normalize": "minmax"},
                                 spacing_mm=[4.0, 4.0, 5.0], patch_size=[16, 32, 32]))
    return folder


def _run_named(qtbot, window: MainWindow, name: str):
    panel = window.editing.ai
    panel.refresh()
    names = [panel.models.item(i).text() for i in range(panel.models.count())]
    panel.models.setCurrentRow(names.index(name))
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        panel.run()
    return panel


def test_image_to_image_result_is_a_layer_beside_the_study(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                           model_dir: Path) -> None:
    _identity_model(model_dir / "double")
    volume = _open(qtbot, window, chest_ct_sample)
    labels = window.state.labels
    _run_named(qtbot, window, "double-test")
    state = window.state
    assert len(state.layers) == 2 and state.current_layer == "double-test output"
    shown = state.volume
    assert shown is not volume and shown.geometry == volume.geometry and shown.array.dtype == np.float32
    # min-max over the clip window -1000..1000, doubled: soft tissue (~40 HU) -> about 1.04
    inside = np.abs(volume.array.astype(float) - 40) < 20
    assert abs(float(np.median(shown.array[inside])) - 2 * (40 + 1000) / 2000) < 0.1
    assert window.layer_action.isVisible() and window.layer_combo.count() == 2
    assert state.labels is labels  # the label map stays on the study
    window.layer_combo.activated.emit(window.layer_combo.findText(next(iter(state.layers))))
    assert state.volume is volume and state.labels is labels


def test_detection_model_results_are_listed_in_the_detections_panel(qtbot, window: MainWindow, tmp_path: Path,
                                                                     model_dir: Path) -> None:
    from medview.io.writers import write_image
    from tests.inference.models import detection_model
    from tests.inference.test_detection_model import _spheres

    detection_model(model_dir / "det")
    volume, centres = _spheres((40, 48, 48), (1.0, 1.0, 1.0))
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(write_image(volume, tmp_path / "spheres.nii.gz"))
    _run_named(qtbot, window, "sphere-detector")
    found = window.state.detections
    assert found is not None and len(found.detections) == 3
    table = window.editing.detections.table
    assert table.rowCount() == 3
    for row, d in enumerate(found.detections):
        assert table.item(row, 2).text() == ", ".join(f"{c:.1f}" for c in d.center_lps)
        assert min(np.linalg.norm(np.array(d.center_lps) - c) for c in centres) <= 0.5
