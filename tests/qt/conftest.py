"""The main window as the Qt tests drive it: a fresh window per test, its jobs finished afterwards."""

from __future__ import annotations

import gc

import pytest
from PySide6.QtCore import QSettings

from medview.qt.app import configure
from medview.qt.main_window import MainWindow
from medview.qt.workers import wait_for_all


@pytest.fixture
def window(qtbot, tmp_path):
    gc.collect()  # free what earlier tests left (closed windows, their volumes) before this one measures
    configure()
    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    wait_for_all()  # no job of this test runs on into the next one
