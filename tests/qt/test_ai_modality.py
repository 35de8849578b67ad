"""The AI panel asks before the CT demo model runs on an MR and before its result replaces the label map; the
radiograph asks before it projects an image that is not a CT.  Questions are answered by a stand-in for
QMessageBox.question that records them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume, VolumeMetadata
from medview.qt.dialogs.radiograph import confirm_radiograph_input
from medview.qt.main_window import MainWindow
from tests.conftest import shared_case
from tests.inference.test_modality_guard import _mr_series

pytestmark = pytest.mark.qt
YES, NO = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No


class Answers:
    """QMessageBox.question answering from a list, remembering (title, text) of every question."""

    def __init__(self) -> None:
        self.queue: list[QMessageBox.StandardButton] = []
        self.asked: list[tuple[str, str]] = []

    def __call__(self, parent, title, text, *args, **kwargs):
        self.asked.append((title, text))
        assert self.queue, f"an unexpected question: {title}: {text}"
        return self.queue.pop(0)

    def answer(self, *buttons) -> None:
        self.queue, self.asked = list(buttons), []


@pytest.fixture
def answers(monkeypatch) -> Answers:
    stand_in = Answers()
    monkeypatch.setattr(QMessageBox, "question", stand_in)
    return stand_in


def _open(qtbot, window: MainWindow, path: Path) -> Volume:
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    qtbot.wait(50)
    return blocker.args[0]


def _choose(window: MainWindow, name: str):
    panel = window.editing.ai
    panel.refresh()
    names = [panel.models.item(i).text() for i in range(panel.models.count())]
    panel.models.setCurrentRow(names.index(name))
    return panel


def _no_then_yes(qtbot, window: MainWindow, answers: Answers, lesion: np.ndarray, modality_text: str) -> None:
    """No to the modality; Yes to it but No to replacing; Yes to both: the model runs and replaces, undoably."""
    panel = _choose(window, "demo-body-lungs")
    state = window.state
    before = state.labels

    answers.answer(NO)
    assert panel.run() is None  # nothing started
    assert [t for t, _ in answers.asked] == ["Model and image do not match"]
    assert "made for CT" in answers.asked[0][1] and modality_text in answers.asked[0][1]
    assert not panel.busy and "not run" in panel.status.text()
    assert state.labels is before and np.array_equal(state.labels.array, lesion)
    assert not state.history.can_undo

    answers.answer(YES, NO)
    assert panel.run() is None
    assert [t for t, _ in answers.asked] == ["Model and image do not match", "Replace the label map?"]
    assert "Lesion" in answers.asked[1][1] and "Undo" in answers.asked[1][1]
    assert state.labels is before and np.array_equal(state.labels.array, lesion)
    assert not state.history.can_undo

    answers.answer(YES, YES)
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        assert panel.run() is not None
    qtbot.waitUntil(lambda: not panel.busy, timeout=10_000)
    assert not np.array_equal(state.labels.array, lesion)  # replaced, after both Yes
    assert {e.name for e in state.labels.labels} >= {"Body", "Lungs"}
    window.editing.undo()
    np.testing.assert_array_equal(state.labels.array, lesion)  # one undo step brings the lesion back


def test_the_ct_model_on_an_mr_series_asks_twice(qtbot, window: MainWindow, answers: Answers, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    volume = _open(qtbot, window, _mr_series(tmp_path / "mr", shape=(12, 48, 48)))
    assert volume.modality == "MR"
    lesion = np.zeros(volume.geometry.shape, np.uint8)
    lesion[4:8, 20:28, 20:28] = 1
    window.state.set_labels(LabelMap(lesion.copy(), volume.geometry, [Label(1, "Lesion", (255, 0, 0))]))
    _no_then_yes(qtbot, window, answers, lesion, "this image is MR")


def test_the_ct_model_on_brain1_asks_before_it_labels_the_head(qtbot, window: MainWindow, answers: Answers) -> None:
    """The finding: on brain1 it labelled the air around the head "Lungs" and overwrote the lesion label."""
    pytest.importorskip("torch")
    image, label = shared_case("brain1_image.nrrd"), shared_case("brain1_label.nrrd")
    _open(qtbot, window, image)
    window.open_labels(str(label))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=30_000)
    labels = window.state.labels
    labels.labels = [Label(e.value, "Lesion", e.color) for e in labels.labels]
    _no_then_yes(qtbot, window, answers, labels.array.copy(), "unknown modality")


def test_no_question_for_a_ct_model_on_a_ct_without_labels(qtbot, window: MainWindow, answers: Answers,
                                                           chest_ct_sample: Path) -> None:
    """The guard asks only when there is something to ask: a CT and an empty label map run at once."""
    pytest.importorskip("torch")
    volume = _open(qtbot, window, chest_ct_sample)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)  # the sample's tumour
    window.state.set_labels(None)
    panel = _choose(window, "demo-body-lungs")
    answers.answer()
    with qtbot.waitSignal(panel.finished, timeout=120_000):
        assert panel.run() is not None
    assert answers.asked == []
    assert window.state.labels.geometry == volume.geometry


def test_a_radiograph_of_an_mr_asks_first(qtbot, answers: Answers) -> None:
    shape = (4, 8, 8)
    from medview.core.geometry import Geometry

    def volume(modality: str) -> Volume:
        return Volume(np.zeros(shape, np.float32), Geometry(shape), VolumeMetadata(modality=modality))

    answers.answer()
    assert confirm_radiograph_input(None, volume("CT")) and answers.asked == []
    for modality, shown in (("MR", "this image is MR"), ("unknown", "unknown modality"), ("", "unknown modality")):
        answers.answer(NO)
        assert not confirm_radiograph_input(None, volume(modality))
        assert shown in answers.asked[0][1] and "Hounsfield" in answers.asked[0][1]
        answers.answer(YES)
        assert confirm_radiograph_input(None, volume(modality))
