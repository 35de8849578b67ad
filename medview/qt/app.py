"""Composition root of the GUI: QApplication, global settings, the main window."""

from __future__ import annotations

import sys

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from medview.app.samples import sample_path
from medview.qt.main_window import MainWindow
from medview.qt.workers import wait_for_all


def configure() -> QApplication:
    """Create (or reuse) the QApplication with medview's global settings."""
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("medview")
    app.setOrganizationName("medview")
    return app  # type: ignore[return-value]


def run_gui(paths: list[str], series: str | None = None, screenshot: str | None = None) -> int:
    """Start the workstation on ``paths`` (default: the bundled chest CT).  Returns the exit code."""
    app = configure()
    window = MainWindow()
    window.show()
    target = paths[0] if paths else str(sample_path("chest_ct"))
    status = {"code": 0}
    if screenshot:
        def save(_volume=None) -> None:
            app.processEvents()
            window.grab().save(screenshot)
            print(f"medview: saved {screenshot}")
            app.quit()

        def failed(message: str) -> None:
            print(f"medview: error: {message}", file=sys.stderr)
            status["code"] = 3
            app.quit()

        window.load_finished.connect(lambda v: QTimer.singleShot(200, save))
        window.load_failed.connect(failed)
    QTimer.singleShot(0, lambda: window.open_path(target, series))
    app.exec()
    wait_for_all()
    return status["code"]
