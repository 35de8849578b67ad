"""A window showing one virtual radiograph (DRR), measured in mm and in water-equivalent path length.

The image is the Volume that :func:`medview.algorithms.drr.drr` returns (shape ``(1, rows, columns)``); its
detector pixels may be rectangular (e.g. 0.57 x 5 mm when the CT's slices are thick), so it is drawn with
its physical aspect ratio: one mm is as long across the screen as it is down it.

Mouse: right drag = window/level, left or middle drag = pan, wheel = zoom, double-click = fit the image.
The status line gives, under the mouse, the position in mm on the detector (from the image's top-left
corner, and in patient LPS) and the value: the line integral of attenuation (unitless) and the
water-equivalent path length in mm (the integral divided by the attenuation of water).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QMessageBox, QPushButton, QVBoxLayout, QWidget

from medview.algorithms.drr import MU_WATER_PER_MM, modality_problem
from medview.algorithms.reslice import orientation_letters
from medview.app.rendering import radiograph_picture
from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext, check_cancel
from medview.core.volume import Volume
from medview.io.writers import write_picture
from medview.qt.views.overlay import OverlayLayer, SliceGraphicsView, nice_length
from medview.qt.workers import Worker, start

VIEW_NAMES = {"ap": "AP", "lateral": "Lateral"}
#: Screen pixels of right drag that change the window by one window width (as in the slice views).
_DRAG_PIXELS_PER_WIDTH = 300.0


def confirm_radiograph_input(parent: QWidget | None, volume: Volume) -> bool:
    """True to go on with a radiograph of ``volume``: a CT, or another image (MR, a file that does not say its
    modality) that the user chose to project anyway (Yes/No, No by default)."""
    problem = modality_problem(volume)
    if problem is None:
        return True
    answer = QMessageBox.question(parent, "Radiograph of a non-CT image?",
                                  f"{problem}: a radiograph is computed from CT numbers (Hounsfield units).\n\n"
                                  "Project this image anyway?",
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


class RadiographViewBox(pg.ViewBox):
    """ViewBox with square mm on screen: right drag reports window/level, double-click fits the image."""

    window_drag = Signal(float, float)  # screen pixels dx, dy

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            delta = ev.pos() - ev.lastPos()
            self.window_drag.emit(float(delta.x()), float(delta.y()))
        elif ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            ev.accept()  # pan with either: there is no other left-button tool here
            shift = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.translateBy(x=-shift.x(), y=-shift.y())
        else:
            ev.ignore()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() == Qt.MouseButton.LeftButton and ev.double():
            ev.accept()
            self.autoRange(padding=0.02)
        else:
            ev.ignore()


class RadiographWindow(QWidget):
    """A top-level window with one DRR, its value and position under the mouse, and Save PNG.

    Parameters
    ----------
    image
        A radiograph from :func:`medview.algorithms.drr.drr`: a greyscale Volume of shape
        ``(1, rows, columns)`` whose geometry spacing ``(x, y)`` is the detector pixel size in mm.
    view
        ``'ap'`` or ``'lateral'`` (any case), shown in the title.
    parent
        Owner window (the radiograph stays a separate window).

    Signals
    -------
    saved(str)
        A PNG was written to this path.
    save_failed(str)
        Writing failed; the message says why.

    Raises
    ------
    MedviewError
        The image is not a single greyscale slice, or the view is unknown.
    """

    saved = Signal(str)
    save_failed = Signal(str)

    def __init__(self, image: Volume, view: str, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        key = str(view).strip().lower()
        if key not in VIEW_NAMES:
            raise MedviewError(f"Unknown radiograph view '{view}': use one of {', '.join(VIEW_NAMES.values())}")
        if image.is_color or image.array.ndim != 3 or image.array.shape[0] != 1:
            raise MedviewError(f"A radiograph window shows one greyscale image; this one has shape {image.shape}")
        self.image = image
        self.view = key
        self.data = np.asarray(image.array[0])
        drr_info = image.metadata.extra.get("drr", {})
        self.mu_water_per_mm = float(drr_info.get("mu_water_per_mm", MU_WATER_PER_MM))
        self.output = str(drr_info.get("output", "line_integral"))
        self.pixel_mm = (float(image.geometry.spacing[0]), float(image.geometry.spacing[1]))
        rows, cols = self.data.shape
        self.image_rect = QRectF(0.0, 0.0, cols * self.pixel_mm[0], rows * self.pixel_mm[1])
        self.worker: Worker | None = None
        title = f"Radiograph — {VIEW_NAMES[key]}"
        self.setWindowTitle(f"{title} — {image.metadata.series_description}" if
                            image.metadata.series_description else title)

        self.overlay = OverlayLayer()
        self.graphics = SliceGraphicsView(self.overlay)
        self.graphics.setBackground("k")
        self.view_box = RadiographViewBox()
        self.graphics.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.image_item.setImage(self.data, autoLevels=False)
        self.image_item.setRect(self.image_rect)  # mm: rectangular detector pixels drawn to scale
        self.view_box.addItem(self.image_item)
        finite = self.data[np.isfinite(self.data)]
        high = float(finite.max()) if finite.size else 1.0
        self.levels = (0.0, high if high > 0 else 1.0)  # nothing attenuates less than air
        self.image_item.setLevels(self.levels)
        direction = image.geometry.direction_matrix
        self.overlay.letters = orientation_letters(direction[:, 0], direction[:, 1])

        self.status = QLabel("Move the mouse over the image")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.save_button = QPushButton("Save PNG…")
        self.save_button.setToolTip("Write the radiograph as a PNG with square pixels")
        self.save_button.clicked.connect(self.save_png)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(bottom)
        self.resize(*_initial_size(self.image_rect))

        self.view_box.window_drag.connect(self._on_window_drag)
        self.view_box.sigRangeChanged.connect(lambda *_: self._update_overlay())
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.view_box.autoRange(padding=0.02)
        self._update_overlay()

    # -- window/level and annotations -------------------------------------------------------------
    def set_levels(self, low: float, high: float) -> None:
        """Display window: ``low`` black, ``high`` white, in the image's units (line integral)."""
        if not (math.isfinite(low) and math.isfinite(high)):
            return
        if high <= low:
            high = low + 1e-6 * max(abs(low), 1.0)
        self.levels = (float(low), float(high))
        self.image_item.setLevels(self.levels)
        self._update_overlay()

    def _on_window_drag(self, dx: float, dy: float) -> None:
        low, high = self.levels
        width, center = high - low, (high + low) / 2.0
        scale = max(width, 1e-6) / _DRAG_PIXELS_PER_WIDTH
        center -= dy * scale
        width = max(width + dx * scale, 1e-6)
        self.set_levels(center - width / 2.0, center + width / 2.0)

    def _update_overlay(self) -> None:
        """Corner texts and the scale bar (its length in mm adapts to the zoom)."""
        md = self.image.metadata
        rows, cols = self.data.shape
        sx, sy = self.pixel_mm
        low, high = self.levels
        self.overlay.corners = {
            "top_left": [f"DRR {VIEW_NAMES[self.view]}", md.series_description],
            "top_right": [],
            "bottom_left": [f"{cols} x {rows} px of {sx:.3g} x {sy:.3g} mm"],
            "bottom_right": [f"W {high - low:.3g} L {(high + low) / 2:.3g}"],
        }
        (x0, x1), _ = self.view_box.viewRange()
        view_px = max(self.view_box.width(), 1.0)
        mm_per_px = (x1 - x0) / view_px
        self.overlay.bar_mm = nice_length((x1 - x0) / 5.0)
        self.overlay.bar_px = self.overlay.bar_mm / mm_per_px if mm_per_px > 0 else 0.0
        self.graphics.scene().update()

    def scale_bar_text(self) -> str:
        """The scale bar's label as painted (``'20 mm'``), or '' when it is too short to draw."""
        return f"{self.overlay.bar_mm:g} mm" if self.overlay.bar_px > 4 else ""

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._update_overlay()

    # -- values under the mouse ---------------------------------------------------------------------
    def describe(self, pos: QPointF) -> str:
        """Status text for a position in view coordinates (mm from the image's top-left corner).

        Empty outside the image.  Inside: detector position in mm, patient LPS in mm, the value and the
        water-equivalent path length in mm.
        """
        sx, sy = self.pixel_mm
        col, row = math.floor(pos.x() / sx), math.floor(pos.y() / sy)
        rows, cols = self.data.shape
        if not (0 <= row < rows and 0 <= col < cols):
            return ""
        value = float(self.data[row, col])
        if self.output == "intensity":  # absorbed fraction 1 - exp(-integral): back to the integral
            integral = -math.log1p(-value) if value < 1.0 else math.inf
            shown = f"absorbed {value:.3f}"
        else:
            integral = value
            shown = f"line integral {value:.3f}"
        water_mm = integral / self.mu_water_per_mm
        lps = self.image.geometry.index_to_world((float(col), float(row), 0.0))
        return (f"x {pos.x():.1f} mm, y {pos.y():.1f} mm   LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm   "
                f"{shown}   water-equivalent {water_mm:.1f} mm")

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.view_box.sceneBoundingRect().contains(scene_pos):
            return
        self.status.setText(self.describe(self.view_box.mapSceneToView(scene_pos)))

    # -- saving -------------------------------------------------------------------------------------
    def save_png(self) -> None:
        """Ask for a file name and write the radiograph there as a PNG (square pixels) in a worker."""
        default = f"radiograph-{self.view}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save radiograph as PNG", default, "PNG pictures (*.png)")
        if not path:
            return
        if not path.lower().endswith(".png"):
            path += ".png"
        if self.worker is not None and not self.worker.done:
            return  # one save at a time; the button is disabled meanwhile
        self.save_button.setEnabled(False)
        self.status.setText(f"Saving {os.path.basename(path)}…")
        self.worker = Worker(write_radiograph_png, self.image, path, self.levels)
        self.worker.signals.finished.connect(self._saved)
        self.worker.signals.failed.connect(self._save_failed)
        self.worker.signals.cancelled.connect(lambda: self.save_button.setEnabled(True))
        start(self.worker)

    def _saved(self, path: str) -> None:
        self.save_button.setEnabled(True)
        self.status.setText(f"Saved {path}")
        self.saved.emit(path)

    def _save_failed(self, message: str) -> None:
        self.save_button.setEnabled(True)
        self.status.setText(f"Error: {message}")
        self.save_failed.emit(message)
        box = QMessageBox(QMessageBox.Icon.Warning, "Save radiograph", message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.show()  # not modal: the window stays usable, and nothing waits on it

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()  # cancelled before it writes; a write under way completes (atomically)
        super().closeEvent(event)


def write_radiograph_png(image: Volume, path: str, levels: tuple[float, float] | None = None,
                         task: TaskContext | None = None) -> str:
    """Worker job: the radiograph as an 8-bit PNG with square pixels, in the window shown on screen."""
    check_cancel(task)
    picture = radiograph_picture(image, levels)
    check_cancel(task)
    return write_picture(picture, path)


def _initial_size(rect: QRectF) -> tuple[int, int]:
    """A window size near 700 px on its longer side, shaped like the image (plus the status line)."""
    longest = max(rect.width(), rect.height(), 1e-6)
    scale = 700.0 / longest
    return max(480, round(rect.width() * scale)), max(360, round(rect.height() * scale) + 40)
