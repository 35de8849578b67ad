"""Composition root of the GUI: QApplication, global settings, the main window."""

from __future__ import annotations

import gc
import logging
import sys

import pyqtgraph as pg
from PySide6.QtCore import Qt, QThreadPool, QTimer, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from medview.app.samples import sample_path
from medview.io.dicom import parallel
from medview.qt.main_window import MainWindow, save_pixmap
from medview.qt.workers import wait_for_all

log = logging.getLogger("medview.qt")
# what Qt's offscreen and minimal platform plugins say about window management they do not have: not a fault
_PLATFORM_CHATTER = ("This plugin does not support",)
_QT_LEVELS = {QtMsgType.QtDebugMsg: logging.DEBUG, QtMsgType.QtInfoMsg: logging.INFO,
              QtMsgType.QtWarningMsg: logging.WARNING, QtMsgType.QtCriticalMsg: logging.ERROR,
              QtMsgType.QtFatalMsg: logging.CRITICAL}


def _qt_message(kind: QtMsgType, _context, message: str) -> None:
    """Qt's messages go to medview's log (which decides what reaches stderr); platform chatter is dropped."""
    if message.startswith(_PLATFORM_CHATTER):
        return
    log.log(_QT_LEVELS.get(kind, logging.WARNING), "Qt: %s", message)


def configure() -> QApplication:
    """Create (or reuse) the QApplication with medview's global settings."""
    # no antialiasing: pixels are drawn as pixels (what a reader expects when zoomed in), and smooth
    # scaling of three 512^2 images cost ~5 ms per frame in software rendering
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)
    # workers (loading, thumbnails, histograms) share the GIL with the GUI thread: hand it back to the
    # GUI every 1 ms instead of Python's default 5 ms, so a burst of small numpy calls is not starved
    sys.setswitchinterval(0.001)
    # Full garbage collections walk every object and ran 50-130 ms on the GUI thread; objects that
    # exist at start-up (modules, Qt wrappers) live for the whole session, so take them out of it.
    # SimpleITK (NIfTI, NRRD, label maps) is imported here, before the event loop runs: loading its
    # 100+ MB extension holds the GIL for 100-150 ms, which in a background thread froze the GUI in
    # the middle of the first load (found with faulthandler's watchdog during the open benchmark)
    import SimpleITK  # noqa: F401

    gc.collect()
    gc.freeze()
    # decode workers forked before Qt started (by a script or test that loaded images first) share
    # this process's pages copy-on-write; from now on workers come from the fork server only, started
    # while the window opens (`medview` starts them before importing Qt; this does nothing then)
    if parallel.start_method() == "fork":
        parallel.shutdown()
    parallel.start_in_background()
    qInstallMessageHandler(_qt_message)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("medview")
    app.setOrganizationName("medview")
    return app  # type: ignore[return-value]


def run_gui(paths: list[str], series: str | None = None, screenshot: str | None = None,
            layout: str | None = None) -> int:
    """Start the workstation on ``paths`` (default: the bundled chest CT).  Returns the exit code."""
    app = configure()
    window = MainWindow()
    window.show()
    if layout:
        window.set_layout(layout)
    target = paths[0] if paths else str(sample_path("chest_ct"))
    status = {"code": 0}
    if screenshot:
        def save(_volume=None) -> None:
            app.processEvents()
            if save_pixmap(window.grab_with_3d(), screenshot, None):  # atomic, like every file medview writes
                print(f"medview: saved {screenshot}")
            else:
                print(f"medview: error: could not write {screenshot}", file=sys.stderr)
                status["code"] = 3
            app.quit()

        def failed(message: str) -> None:
            print(f"medview: error: {message}", file=sys.stderr)
            status["code"] = 3
            app.quit()

        def save_when_idle() -> None:
            # after the volume: its label map, thumbnails and histogram are made by workers too
            view_3d = window.grid.view_3d
            settled_3d = view_3d is None or not view_3d.isVisible() or view_3d.settled()
            if QThreadPool.globalInstance().activeThreadCount() == 0 and settled_3d:
                QTimer.singleShot(100, save)
            else:
                QTimer.singleShot(50, save_when_idle)

        window.load_finished.connect(lambda v: QTimer.singleShot(100, save_when_idle))
        window.load_failed.connect(failed)
    else:
        # after a crash: offer the autosaved labels once the first study is on screen
        window.load_finished.connect(lambda _v: QTimer.singleShot(200, window.editing.offer_recovery),
                                     Qt.ConnectionType.SingleShotConnection)
    QTimer.singleShot(0, lambda: window.open_path(target, series))
    app.exec()
    wait_for_all()
    return status["code"]
