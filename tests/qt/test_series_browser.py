"""The series browser as a user drives it: scan a folder, see thumbnails and warnings, open a series."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from PySide6.QtCore import Qt, QThreadPool
from PySide6.QtTest import QTest

import medview.qt.panels.series_browser as series_browser_module
from medview.qt.panels.series_browser import UID_ROLE, SeriesBrowser

pytestmark = pytest.mark.qt


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("image"))


@pytest.fixture(scope="module")
def two_series(tmp_path_factory, chest_ct_sample: Path) -> Path:
    """The sample CT, and 16 of its slices again under a new SeriesInstanceUID (pixels stay JPEG-LS)."""
    root = tmp_path_factory.mktemp("browser_two")
    shutil.copytree(chest_ct_sample, root / "first")
    (root / "second").mkdir()
    uid = generate_uid()
    for f in _image_files(chest_ct_sample)[16:32]:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = 9
        ds.SeriesDescription = "Second series"
        ds.save_as(root / "second" / f.name)
    return root


@pytest.fixture
def browser(qtbot):
    w = SeriesBrowser()
    qtbot.addWidget(w)
    w.resize(520, 500)
    w.show()
    yield w
    w.shutdown()
    QThreadPool.globalInstance().waitForDone(10_000)


def _scan(qtbot, browser: SeriesBrowser, path: Path, rows: int) -> None:
    browser.scan_path(str(path))
    qtbot.waitUntil(lambda: browser.tree.topLevelItemCount() == rows and browser.thumbnails_ready() == rows,
                    timeout=30_000)


def test_scan_lists_series_with_thumbnails_and_double_click_opens(qtbot, browser, two_series, monkeypatch):
    threads = []
    real = series_browser_module._thumbnail_in_process  # hands each thumbnail to a pool process and waits

    def recording(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(series_browser_module, "_thumbnail_in_process", recording)
    _scan(qtbot, browser, two_series, 2)
    assert threads == [False, False]  # never on the GUI thread
    tree = browser.tree
    first, second = tree.topLevelItem(0), tree.topLevelItem(1)
    assert (first.text(1), first.text(2)) == ("CT", "48")
    assert (second.text(1), second.text(2)) == ("CT", "16")
    assert "Second series" in second.text(0) and "512×512" in second.text(3)
    for item in (first, second):
        pixmap = item.icon(0).pixmap(96, 96)
        assert not pixmap.isNull()
        grey = pixmap.toImage().convertToFormat(pixmap.toImage().Format.Format_Grayscale8)
        values = np.array([grey.pixelColor(x, y).value() for y in range(0, 96, 4) for x in range(0, 96, 4)])
        assert values.std() > 10  # a real image, not the placeholder
    uid = second.data(0, UID_ROLE)
    assert uid != first.data(0, UID_ROLE)
    centre = tree.visualItemRect(second).center()
    no = Qt.KeyboardModifier.NoModifier
    with qtbot.waitSignal(browser.series_activated, timeout=3000) as blocker:
        # QTest's widget double-click sends no press first; a real double-click starts with a click
        QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, no, centre)
        QTest.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, no, centre)
    assert blocker.args == [str(two_series), uid]


def test_enter_opens_current_and_select_uid_highlights(qtbot, browser, two_series):
    _scan(qtbot, browser, two_series, 2)
    tree = browser.tree
    first_uid = tree.topLevelItem(0).data(0, UID_ROLE)
    browser.select_uid(first_uid)
    assert tree.currentItem() is tree.topLevelItem(0)
    assert tree.topLevelItem(0).font(0).bold() and not tree.topLevelItem(1).font(0).bold()
    tree.setFocus()
    with qtbot.waitSignal(browser.series_activated, timeout=3000) as blocker:
        QTest.keyClick(tree, Qt.Key.Key_Return)
    assert blocker.args == [str(two_series), first_uid]


def test_missing_slice_shows_warning(qtbot, browser, chest_ct_sample, tmp_path):
    folder = tmp_path / "gap"
    shutil.copytree(chest_ct_sample, folder)
    (folder / "image0030.dcm").unlink()
    _scan(qtbot, browser, folder, 1)
    item = browser.tree.topLevelItem(0)
    assert "missing slice" in item.toolTip(0)
    assert not item.icon(1).isNull()  # the warning marker
    assert item.childCount() == 1
    note = item.child(0)
    assert "missing slice" in note.text(0) and note.font(0).italic()
    assert note.foreground(0).color().name() == "#e08a00"


def test_bad_folder_emits_scan_failed(qtbot, browser, tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with qtbot.waitSignal(browser.scan_failed, timeout=10_000) as blocker:
        browser.scan_path(str(tmp_path))
    message = blocker.args[0]
    assert "No DICOM images" in message and "\n" not in message
    assert browser.tree.topLevelItemCount() == 0
    with qtbot.waitSignal(browser.scan_failed, timeout=10_000) as blocker:
        browser.scan_path(str(tmp_path / "nowhere"))
    assert "No such file or folder" in blocker.args[0]


def test_new_scan_cancels_pending_thumbnails(qtbot, browser, two_series, chest_ct_sample):
    from medview.io.readers import scan

    browser.set_scan(str(two_series), scan(two_series))
    old = browser._thumb_worker
    browser.set_scan(str(chest_ct_sample), scan(chest_ct_sample))
    assert old is not None and old.task.token.cancelled
    qtbot.waitUntil(lambda: browser.thumbnails_ready() == 1, timeout=30_000)
    QThreadPool.globalInstance().waitForDone(10_000)
    qtbot.wait(50)  # late signals of the cancelled job are ignored
    assert browser.tree.topLevelItemCount() == 1 and browser.thumbnails_ready() == 1


def test_destroying_the_panel_cancels_its_jobs(qtbot, two_series):
    from medview.io.readers import scan

    panel = SeriesBrowser()
    panel.set_scan(str(two_series), scan(two_series))
    worker = panel._thumb_worker
    panel.deleteLater()
    qtbot.waitUntil(lambda: worker.task.token.cancelled, timeout=3000)
    QThreadPool.globalInstance().waitForDone(10_000)


def test_nrrd_row_shows_unknown_modality_not_the_format(qtbot, browser, tmp_path):
    """A NRRD that states no modality is 'unknown' in the Modality column (it read 'NRRD'); the format
    is named on the row's second line instead."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 8, 8), np.int16)), str(tmp_path / "plain.nrrd"))
    _scan(qtbot, browser, tmp_path / "plain.nrrd", 1)
    row = browser.tree.topLevelItem(0)
    assert row.text(1) == "unknown"
    assert "NRRD" in row.text(0)
