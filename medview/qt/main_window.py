"""The main window: a slice view of the current volume, loading in a worker with progress and Cancel.

This is the minimal viewer of the foundation issue; the MPR workstation replaces the central view.
"""

from __future__ import annotations

import os

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from medview.core.volume import Volume
from medview.io.readers import open_image
from medview.qt.workers import Worker, start


class SliceView(QWidget):
    """Axial slice of a volume with physical aspect ratio, window/level and a slice slider."""

    hovered = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.volume: Volume | None = None
        self.index = 0
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("k")
        self.view_box = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image = pg.ImageItem()
        self.view_box.addItem(self.image)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self.set_index)
        self.overlay = QLabel(self.graphics)
        self.overlay.setStyleSheet("color: #e0e0e0; background: transparent; font-family: monospace;")
        self.overlay.move(8, 6)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.slider)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)

    def set_volume(self, volume: Volume, index: int | None = None) -> None:
        self.volume = volume
        window = volume.default_window()
        self.levels = (window.low, window.high)
        n = volume.geometry.shape[0]
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.setValue(n // 2 if index is None else index)
        self.slider.blockSignals(False)
        self.set_index(self.slider.value(), autorange=True)

    def set_index(self, index: int, autorange: bool = False) -> None:
        if self.volume is None:
            return
        self.index = int(np.clip(index, 0, self.volume.geometry.shape[0] - 1))
        data = self.volume.array[self.index]
        sx, sy, _ = self.volume.geometry.spacing
        rows, cols = data.shape[:2]
        if self.volume.is_color:
            self.image.setImage(data, autoLevels=False, levels=(0, 255 if data.dtype == np.uint8 else 65535))
        else:
            self.image.setImage(data, autoLevels=False, levels=self.levels)
        self.image.setRect(0, 0, cols * sx, rows * sy)  # physical aspect: mm on both axes
        if autorange:
            self.view_box.autoRange(padding=0.0)
        self._update_overlay()

    def _update_overlay(self) -> None:
        v = self.volume
        if v is None:
            return
        lo, hi = self.levels
        z = v.geometry.index_to_world([0, 0, self.index])[2]
        desc = v.metadata.series_description or os.path.basename(v.metadata.source.rstrip("/"))
        self.overlay.setText(f"{v.modality or ''} {desc}\nslice {self.index + 1}/{v.geometry.shape[0]}  "
                             f"z={z:.1f} mm\nW {hi - lo:.0f} L {(hi + lo) / 2:.0f}")
        self.overlay.adjustSize()

    def _mouse_moved(self, scene_pos) -> None:
        v = self.volume
        if v is None or not self.view_box.sceneBoundingRect().contains(scene_pos):
            return
        p = self.view_box.mapSceneToView(scene_pos)
        sx, sy, _ = v.geometry.spacing
        col, row = int(np.floor(p.x() / sx)), int(np.floor(p.y() / sy))
        if not (0 <= row < v.geometry.shape[1] and 0 <= col < v.geometry.shape[2]):
            self.hovered.emit("")
            return
        world = v.geometry.index_to_world([col, row, self.index])
        value = v.array[self.index, row, col]
        units = v.metadata.units or ""
        shown = ", ".join(str(int(c)) for c in value) if v.is_color else f"{float(value):.1f} {units}"
        self.hovered.emit(f"voxel ({col}, {row}, {self.index})   LPS ({world[0]:.1f}, {world[1]:.1f}, "
                          f"{world[2]:.1f}) mm   value {shown}")


class MainWindow(QMainWindow):
    """Top-level window.  ``load_finished`` fires after a volume is shown (tests and screenshots)."""

    load_finished = Signal(object)
    load_failed = Signal(str)
    load_cancelled = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("medview")
        self.resize(1100, 850)
        self.volume: Volume | None = None
        self.worker: Worker | None = None
        self.view = SliceView()
        self.setCentralWidget(self.view)
        self.position_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_load)
        bar = self.statusBar()
        bar.addWidget(self.position_label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        self.view.hovered.connect(self.position_label.setText)
        self._build_menus()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        open_folder = QAction("Open DICOM &folder...", self)
        open_folder.setShortcut(QKeySequence("Ctrl+Shift+O"))
        open_folder.triggered.connect(self._choose_folder)
        open_file = QAction("&Open file...", self)
        open_file.setShortcut(QKeySequence.StandardKey.Open)
        open_file.triggered.connect(self._choose_file)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        for action in (open_folder, open_file, quit_action):
            file_menu.addAction(action)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if path:
            self.open_path(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", "", "Images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.zip *.png *.jpg "
            "*.tif *.tiff);;All files (*)")
        if path:
            self.open_path(path)

    # -- loading --------------------------------------------------------------------------------
    def open_path(self, path: str, series: str | None = None) -> None:
        """Load ``path`` in a worker; the middle slice is shown as soon as it is decoded."""
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()
        worker = Worker(open_image, path, series=series)
        worker.kwargs["on_middle_slice"] = worker.signals.partial.emit
        worker.signals.progress.connect(self._on_progress)
        worker.signals.partial.connect(self._on_partial)
        worker.signals.finished.connect(self._on_loaded)
        worker.signals.failed.connect(self._on_failed)
        worker.signals.cancelled.connect(self._on_cancelled)
        self.worker = worker
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.statusBar().showMessage(f"Opening {path}...")
        start(worker)

    def cancel_load(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_progress(self, fraction: float, message: str) -> None:
        if self.sender() is not (self.worker.signals if self.worker else None):
            return
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(message[:40] or "%p%")

    def _on_partial(self, volume: Volume, index: int) -> None:
        self.view.set_volume(volume, index)

    def _end_load(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)

    def _on_loaded(self, volume: Volume) -> None:
        self._end_load()
        self.volume = volume
        keep = self.view.index if self.view.volume is volume else None
        self.view.set_volume(volume, keep)
        title = volume.metadata.series_description or os.path.basename(volume.metadata.source.rstrip("/"))
        self.setWindowTitle(f"medview - {title}")
        self.statusBar().showMessage(repr(volume), 5000)
        if volume.warnings:
            self.statusBar().showMessage("Warning: " + " | ".join(volume.warnings), 15000)
        self.load_finished.emit(volume)

    def _on_failed(self, message: str) -> None:
        self._end_load()
        self.load_failed.emit(message)
        if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
            QMessageBox.warning(self, "Cannot open", message)
        else:
            self.statusBar().showMessage(f"Error: {message}")

    def _on_cancelled(self) -> None:
        self._end_load()
        self.statusBar().showMessage("Loading cancelled", 5000)
        self.load_cancelled.emit()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()
        super().closeEvent(event)
