"""The window as a user drives it: open a study, hover a voxel, keep the UI responsive while loading."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import QPointF, Qt, QTimer
from PySide6.QtTest import QTest

from medview.qt.app import configure
from medview.qt.main_window import MainWindow
from tests.conftest import dicom_files

pytestmark = pytest.mark.qt


@pytest.fixture
def window(qtbot):
    configure()
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(900, 800)
    w.show()
    qtbot.waitExposed(w)
    return w


def _open(qtbot, window: MainWindow, path: Path, series: str | None = None):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path), series)
    return blocker.args[0]


def test_hover_shows_hounsfield_value_of_the_voxel(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    volume = _open(qtbot, window, chest_ct_sample)
    view = window.view
    z = view.index
    assert z == 24
    col, row = 300, 200
    sx, sy, _ = volume.geometry.spacing
    scene = view.view_box.mapViewToScene(QPointF((col + 0.5) * sx, (row + 0.5) * sy))
    widget_pos = view.graphics.mapFromScene(scene)
    QTest.mouseMove(view.graphics.viewport(), widget_pos)
    qtbot.waitUntil(lambda: "value" in window.position_label.text(), timeout=3000)
    text = window.position_label.text()
    expected = float(volume.array[z, row, col])
    assert f"value {expected:.1f} HU" in text, text
    assert f"voxel ({col}, {row}, {z})" in text


def test_bad_folder_reports_error_and_window_survives(qtbot, window: MainWindow, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with qtbot.waitSignal(window.load_failed, timeout=10_000) as blocker:
        window.open_path(str(tmp_path))
    assert "No DICOM images" in blocker.args[0]
    assert not window.progress.isVisible()


def test_event_loop_stays_responsive_while_loading(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                   tmp_path: Path) -> None:
    """Header parsing and decoding run off the GUI thread: no event waits more than 50 ms."""
    study = tmp_path / "study"
    for k in range(4):  # 192 files, 4 series: the scan parses all of them
        dst = study / f"s{k}"
        shutil.copytree(chest_ct_sample, dst)
        uid = pydicom.uid.generate_uid()
        for f in dicom_files(dst):
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = uid
            ds.save_as(f)
    target = pydicom.dcmread(dicom_files(study / "s2")[0]).SeriesInstanceUID
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()
    volume = _open(qtbot, window, study, series=target)
    timer.stop()
    assert volume.array.shape == (48, 512, 512)
    assert len(gaps) > 10
    worst = max(gaps[1:])
    assert worst < 0.050, f"the event loop stalled for {worst * 1000:.0f} ms"


def test_cancel_during_loading(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    """Cancel pressed while slices are arriving (right after the middle one is shown) stops the job."""
    finished: list[object] = []
    window.load_finished.connect(finished.append)

    def press_cancel(*_args) -> None:
        QTest.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)

    window.open_path(str(chest_ct_sample))
    window.worker.signals.partial.connect(press_cancel)
    with qtbot.waitSignal(window.load_cancelled, timeout=10_000):
        pass
    assert finished == [] and window.worker.done
    assert not window.progress.isVisible() and not window.cancel_button.isVisible()
