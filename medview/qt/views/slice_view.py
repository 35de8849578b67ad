"""One MPR slice view: a pyqtgraph ViewBox + ImageItems that draw the GUI-free ViewerState.

Mouse: left = current tool (crosshair, or a measurement), right drag = window/level, middle drag =
pan, wheel = scroll slices, Ctrl+wheel = zoom, double-click = reset zoom.  The view never computes
an image itself: planes and reslicing come from ``medview.algorithms.reslice`` through the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen, QTransform
from PySide6.QtWidgets import QSlider, QStyle, QStyleOptionSlider, QVBoxLayout, QWidget

from medview.algorithms.display import (
    composite_table,
    composite_words,
    label_keys,
    lut_index,
    palette_argb32,
    premultiplied_argb32,
    rgb_to_argb32,
    unsigned_bits,
    window_to_argb32,
    window_to_uint8,
    windowed_by_table,
)
from medview.algorithms.reslice import Plane, is_index_aligned, orientation_letters, reslice, slice_index_for
from medview.app.editing import BrushSettings, Stroke, fill_at
from medview.app.measurements import Measurement
from medview.app.viewer import VIEWS, ViewerState
from medview.core.errors import MedviewError
from medview.core.geometry import slice_position_text
from medview.qt.text import display_date
from medview.qt.views.overlay import OverlayLayer, SliceGraphicsView, nice_length, projection_view
from medview.qt.views.slice_image import SliceImageItem

VIEW_COLORS = {"axial": (230, 60, 60), "coronal": (60, 200, 80), "sagittal": (230, 200, 40)}
TOOLS = ("crosshair", "distance", "angle", "rectangle", "ellipse", "polygon", "paint", "erase", "fill")
EDIT_TOOLS = ("paint", "erase", "fill")
HOVER_MS = 30  # the position/value under the mouse is reported at most ~33 times a second
# labels are composited into the slice's pixels up to this many slice pixels per screen pixel shown, above it
# blended as a layer by the screen's raster engine: in window/level drags compositing was 0.05-0.44 ms a frame
# cheaper for a 512^2 slice on 99,000 screen pixels (2.6 each) and 1.0-1.4 ms dearer for 1024^2 (10.6 each)
COMPOSITE_UP_TO = 4.0


class CrosshairLine:
    """One crosshair line: where another view's plane cuts this one (view coordinates, mm)."""

    def __init__(self, color: tuple[int, int, int]) -> None:
        self.pen = QPen(QColor(*color))
        self.pen.setCosmetic(True)
        self.angle = 0.0  # degrees from the view's +x axis
        self.pos = QPointF()


@dataclass
class LabelLayer:
    """The labels of the shown slice: ``index`` per pixel into ``rgba`` (straight alpha) and ``premultiplied``
    (the same colours as Qt blends them).  ``composite``: a uint8 index into at most 256 entries, which the
    slice may take into its own pixels; otherwise the layer's words are blended over it."""

    index: np.ndarray
    rgba: np.ndarray
    premultiplied: np.ndarray
    composite: bool
    _words: np.ndarray | None = None

    def words(self) -> np.ndarray:
        """Premultiplied pixels of the layer, made the first time it is blended."""
        if self._words is None:
            self._words = np.take(self.premultiplied, self.index)
        return self._words


class SliceSlider(QSlider):
    """The slice slider under a view, painted as a flat groove, fill and handle.

    It moves on every frame of a crosshair drag; Fusion's gradients and rounded paths cost about as much
    as the slice itself.  Geometry (and so mouse handling) is the style's own: only the look is simpler.
    """

    _look_key: tuple | None = None
    _look: tuple = ()

    def _handle_rect(self) -> QRect:
        """The style's handle rectangle for the current position.  Asking the style (an option filled in and a
        rectangle computed) is half of a repaint's cost, so the handle at the minimum and its travel are
        kept per size, range and style, and the position is placed as the style places it."""
        key = (self.width(), self.height(), self.minimum(), self.maximum(), self.orientation(),
               self.invertedAppearance(), self.layoutDirection(), id(self.style()), self.palette().cacheKey())
        if key != self._look_key:
            option = QStyleOptionSlider()
            self.initStyleOption(option)
            option.sliderPosition = option.sliderValue = self.minimum()
            at_min = self.style().subControlRect(QStyle.ComplexControl.CC_Slider, option,
                                                 QStyle.SubControl.SC_SliderHandle, self)
            horizontal = self.orientation() == Qt.Orientation.Horizontal
            travel = (self.width() - at_min.width()) if horizontal else (self.height() - at_min.height())
            palette = self.palette()
            brushes = (palette.window(), palette.mid(), palette.highlight(), palette.button(), palette.dark().color())
            self._look_key, self._look = key, (at_min, max(travel, 0), option.upsideDown, horizontal, brushes)
        at_min, travel, upside_down, horizontal, _ = self._look
        start = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), self.minimum(), travel, upside_down)
        now = QStyle.sliderPositionFromValue(self.minimum(), self.maximum(), self.sliderPosition(), travel, upside_down)
        return at_min.translated(now - start, 0) if horizontal else at_min.translated(0, now - start)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        handle = self._handle_rect()
        window, groove_brush, fill, button, edge = self._look[4]
        painter = QPainter(self)
        painter.fillRect(self.rect(), window)
        mid = self.height() // 2
        groove = QRect(2, mid - 2, max(self.width() - 4, 0), 4)
        painter.fillRect(groove, groove_brush)
        painter.fillRect(QRect(groove.left(), groove.top(), max(handle.center().x() - groove.left(), 0), 4), fill)
        painter.fillRect(handle.adjusted(1, 1, -1, -1), button)
        painter.setPen(edge)
        painter.drawRect(handle.adjusted(1, 1, -2, -2))
        painter.end()


class SliceViewBox(pg.ViewBox):
    """ViewBox with a reading workstation's mouse mapping; it reports, the SliceView decides."""

    left_press = Signal(QPointF)
    left_drag = Signal(QPointF, bool)  # view position, finished
    window_drag = Signal(float, float)  # screen pixels dx, dy
    wheel_steps = Signal(int)

    def __init__(self) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        # the range changes only when the reader zooms/pans or resets it; automatic re-ranging on every
        # new slice cost a second repaint per frame
        self.disableAutoRange()
        # True while the image is shown whole (after a fit, until the reader zooms or pans): then a resize
        # (layout change, dock, window) or a new image extent (rotation) fits it again instead of cropping
        self.fitted = True

    def fit(self) -> None:
        """Show the whole image, as large as the view allows, and keep it fitted through resizes."""
        self.fitted = True
        self.autoRange(padding=0.0)

    def resizeEvent(self, ev) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(ev)
        if self.fitted and self.addedItems:
            self.autoRange(padding=0.0)

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - Qt override
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            pos = self.mapSceneToView(ev.scenePos())
            if ev.double():
                self.fit()
                return
            self.left_press.emit(pos)
            self.left_drag.emit(pos, True)
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt override
        ev.accept()
        button = ev.button()
        if button == Qt.MouseButton.RightButton:
            delta = ev.pos() - ev.lastPos()
            self.window_drag.emit(float(delta.x()), float(delta.y()))
        elif button == Qt.MouseButton.MiddleButton:
            shift = self.mapToView(ev.pos()) - self.mapToView(ev.lastPos())
            self.fitted = False
            self.translateBy(x=-shift.x(), y=-shift.y())
        elif button == Qt.MouseButton.LeftButton:
            if ev.isStart():
                self.left_press.emit(self.mapSceneToView(ev.buttonDownScenePos()))
            self.left_drag.emit(self.mapSceneToView(ev.scenePos()), bool(ev.isFinish()))

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - Qt override
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.fitted = False
            super().wheelEvent(ev, axis)
            return
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if delta:
            self.wheel_steps.emit(1 if delta > 0 else -1)
        ev.accept()


class SliceView(QWidget):
    """A view of ``state`` in one of the three MPR orientations."""

    hovered = Signal(str)
    message = Signal(str)  # a refused edit (locked label, point outside the image): the status bar says why
    activated = Signal(str)  # this view was clicked (the window tracks the active view)

    def __init__(self, state: ViewerState, view: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if view not in VIEWS:
            raise ValueError(view)
        self.state = state
        self.view = view
        self.tool = "crosshair"
        self.brush = BrushSettings()  # the window gives every view the same settings object
        self._stroke: Stroke | None = None
        self.plane: Plane | None = None
        self.image_data: np.ndarray | None = None
        self._pending: list[np.ndarray] = []
        self._drag_measurement: Measurement | None = None
        self._drag_point: int | None = None
        self._geometry = None
        self._zoom_pending = False
        self._image_rect = QRectF()
        self._overlay_key: tuple | None = None
        self._overlay_parts: tuple = ()
        self._overlay_plane: Plane | None = None
        self._slider_key: tuple | None = None
        self._slice_index_key: tuple | None = None
        self._slice_index: tuple[int | None, int] = (None, 0)

        self.overlay = OverlayLayer()
        self.graphics = SliceGraphicsView(self.overlay)
        self.graphics.setBackground("k")
        self.view_box = SliceViewBox()
        self.graphics.setCentralItem(self.view_box)
        self.image = SliceImageItem()  # the slice and its labels, one item
        self.view_box.addItem(self.image)
        # crosshair lines are painted with the overlay: no scene items to re-index on every move
        self.lines = {other: CrosshairLine(VIEW_COLORS[other]) for other in VIEWS if other != view}
        self._line_angles_key: tuple | None = None
        self.graphics.foreground_painters.insert(0, self._paint_crosshair)
        self.graphics.foreground_painters.insert(1, self._paint_detections)
        self._palette_key: tuple | None = None
        self._label_table_key: tuple | None = None
        self._label_layer: LabelLayer | None = None
        self._composite_key: tuple | None = None
        self._label_keys: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self._lut_index: tuple[np.ndarray | None, np.ndarray | None] = (None, None)
        self._index_buffer = np.empty(0, np.intp)
        self._composite = np.zeros(0, np.uint32)
        self._label_tables: tuple[np.ndarray, np.ndarray] = (np.zeros((1, 4), np.uint8), np.zeros(1, np.uint32))
        self._palette = palette_argb32(np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1))
        self.preview = pg.PlotDataItem(pen=pg.mkPen((255, 255, 0), width=1.5))
        self.preview.setZValue(20)
        self.view_box.addItem(self.preview, ignoreBounds=True)
        self.measure_items: list[pg.GraphicsObject] = []
        self._labels_range: tuple = ()  # the view range the measurement labels were laid out for
        self.slider = SliceSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Slice")
        self.slider.setAutoFillBackground(True)  # opaque: moving it does not repaint the window behind it
        self.slider.valueChanged.connect(self._slider_moved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(1)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.slider)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        vb = self.view_box
        vb.left_press.connect(self._on_press)
        vb.left_drag.connect(self._on_drag)
        vb.window_drag.connect(self._on_window_drag)
        vb.wheel_steps.connect(lambda steps: self.state.scroll(self.view, steps))
        vb.sigRangeChanged.connect(lambda *_: self._update_overlay())
        # labels are laid out in screen pixels: a zoom or pan lays them out again (only if there are any)
        vb.sigRangeChanged.connect(lambda *_: self._relayout_labels())
        self._hover_pos = None
        self._hover_timer = QTimer(self)
        self._hover_timer.setSingleShot(True)
        self._hover_timer.setInterval(HOVER_MS)
        self._hover_timer.timeout.connect(self._report_hover)
        self.graphics.scene().sigMouseMoved.connect(self._on_mouse_moved)
        for event, handler in (("volume", self._on_volume), ("cursor", self.refresh), ("window", self._apply_levels),
                               ("labels", self._draw_labels), ("geometry_view", self._rerender),
                               ("overlay", self._on_overlay), ("measurements", self._draw_measurements),
                               ("detections", lambda: self.graphics.scene().update())):
            state.subscribe(event, handler)

    # -- coordinates ------------------------------------------------------------------------------
    def view_to_world(self, pos: QPointF) -> np.ndarray:
        """World LPS point of a position in view coordinates (mm from the plane's corner)."""
        assert self.plane is not None
        su, sv = self.plane.spacing
        return self.plane.pixel_to_world(pos.x() / su - 0.5, pos.y() / sv - 0.5)

    def world_to_view(self, point: np.ndarray) -> QPointF:
        assert self.plane is not None
        su, sv = self.plane.spacing
        col, row = self.plane.world_to_pixel(point)
        return QPointF((col + 0.5) * su, (row + 0.5) * sv)

    def world_to_widget(self, point: np.ndarray) -> QPointF:
        """Where a world point appears in this widget's graphics viewport (for tests and tools)."""
        scene = self.view_box.mapViewToScene(self.world_to_view(point))
        return QPointF(self.graphics.mapFromScene(scene))

    # -- drawing ----------------------------------------------------------------------------------
    def _on_volume(self) -> None:
        """A new volume, or the same study completed after its middle slice: keep zoom if the grid is the same."""
        geometry = self.state.volume.geometry if self.state.volume is not None else None
        if geometry != self._geometry:
            self._zoom_pending = True  # fit the view once it has an image of this grid
        self._geometry = geometry
        self.plane = None
        self.refresh()

    def _rerender(self) -> None:
        """Rotation or slab changed: reslice even if the plane is the same."""
        self.plane = None
        self.refresh()

    def reset_zoom(self) -> None:
        if self.plane is not None:
            self.view_box.fit()

    def refresh(self) -> None:
        """Reslice if the plane changed, then move the crosshair lines and annotations."""
        volume = self.state.volume
        if volume is None:
            return
        plane = self.state.plane(self.view)
        if self.state.loading and not _along_slices(volume.geometry, plane):
            # slices are still arriving: a plane across them would show (and page in) empty memory
            self.plane, self.image_data = plane, None
            self.image.set_image(None)
            self._place_crosshair()
            return
        if plane != self.plane or self.image_data is None:
            self.plane = plane
            aligned = is_index_aligned(volume.geometry, plane)
            data = reslice(self.state.slice_array("volume", plane), volume.geometry, plane, slab_mm=self.state.slab_mm,
                           mode=self.state.slab_mode, fill=None if aligned else self.state.fill_value())
            self.image_data = data
            su, sv = plane.spacing
            rows, cols = data.shape[:2]
            extent_changed = self._image_rect.size() != QRectF(0, 0, cols * su, rows * sv).size()
            self._image_rect = QRectF(0, 0, cols * su, rows * sv)
            self._label_layer = self._make_label_layer()
            self._show()
            self._draw_measurements()
            if extent_changed and self.view_box.fitted:
                self._zoom_pending = True  # a rotated plane cuts a larger image: show it whole again
        if self._zoom_pending and self.image_data is not None:
            self._zoom_pending = False
            self.reset_zoom()
        self._place_crosshair()
        self._update_overlay()
        self._sync_slider()

    def slice_index(self) -> int | None:
        """Index of the shown slice along the grid axis normal to this view (None when oblique)."""
        return self._slice_position()[0]

    def _slice_position(self) -> tuple[int | None, int]:
        """``(slice index or None, number of slices along the normal)``, cached per grid and plane."""
        volume = self.state.volume
        if volume is None or self.plane is None:
            return None, 0
        key = (id(volume.geometry), self.plane)
        if self._slice_index_key != key:
            self._slice_index_key = key
            self._slice_index = (slice_index_for(volume.geometry, self.plane),
                                 _normal_axis_length(volume.geometry, self.plane))
        return self._slice_index

    def _sync_slider(self) -> None:
        """Slider range and position: slices along this view's normal (hidden for oblique planes)."""
        k, n = self._slice_position()
        if (n, k) == self._slider_key:
            return
        self._slider_key = (n, k)
        self.slider.setVisible(k is not None)
        if k is None:
            return
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.setValue(k)
        self.slider.blockSignals(False)

    def _slider_moved(self, value: int) -> None:
        volume = self.state.volume
        if volume is None or self.plane is None:
            return
        k = self.slice_index()
        if k is not None and value != k:
            self.state.scroll(self.view, value - k if self._index_increases_along_normal() else k - value)

    def _index_increases_along_normal(self) -> bool:
        d = self.state.volume.geometry.direction_matrix
        normal = self.plane.normal()
        axis = int(np.argmax(np.abs(d.T @ normal)))
        return float(d[:, axis] @ normal) > 0

    def _apply_levels(self, update_overlay: bool = True) -> None:
        """The window or colours changed: draw the slice (and its labels) again."""
        self._show()
        if update_overlay:
            self._update_overlay()

    def _show(self) -> None:
        """Window the current slice to 8 bits (fast LUT, off pyqtgraph's slow path), colour it and draw the
        labels: composited into the same pixels through one table when the map has at most 256 values
        (a lookup per slice pixel instead of a second image blended at screen resolution), else as a layer."""
        volume = self.state.volume
        if volume is None or self.image_data is None:
            return
        layer = self._label_layer
        if layer is not None and layer.index.shape != self.image_data.shape[:2]:
            layer = None  # of another slice (the views redraw it before they use it again)
        if volume.is_color:
            self.image.set_image(rgb_to_argb32(self.image_data), self._image_rect)
        else:
            w = self.state.window
            palette = self._current_palette()
            values = self._table_index(self.image_data)
            if layer is not None and layer.composite and layer.index.size <= COMPOSITE_UP_TO * self._screen_pixels():
                # composite unless the slice has many more pixels than the screen shows: three passes over
                # the slice's pixels, against one and a blend of the layer over the screen's (see COMPOSITE_UP_TO)
                index, rgba = layer.index, layer.rgba
                grey = window_to_uint8(self.image_data, w.low, w.high, values)
                if self._label_keys[0] is not index:  # kept while only the window changes
                    self._label_keys = (index, label_keys(index))
                words = composite_words(grey, self._label_keys[1], self._composite_table(palette, rgba))
                self.image.set_image(words, self._image_rect,
                                     composited=(lambda: np.take(palette, grey), index, rgba))
                return
            self.image.set_image(window_to_argb32(self.image_data, w.low, w.high, palette, values), self._image_rect)
        if layer is None:
            self.image.set_labels(None)
        else:
            self.image.set_labels(layer.index, layer.rgba, layer.words())

    def _table_index(self, image: np.ndarray) -> np.ndarray | None:
        """The window table's index for ``image``: kept while the same slice is re-windowed, written into one
        buffer per slice shape (8 bytes per pixel) so that a new slice allocates nothing.

        The first slice of a new shape is drawn from its own bits instead (no buffer yet): when a load
        completes, the views across the slices draw theirs at once, and the buffers' fresh pages were half of
        that event-loop turn (measured with perf: 4.5 ms of page faults per 305 x 512 buffer on this VM).
        """
        if not windowed_by_table(image.dtype):
            return None
        kept_image, kept = self._lut_index
        if kept_image is image and kept is not None and kept.dtype == np.intp:
            return kept
        new_shape = kept_image is None or kept_image.shape != image.shape
        if kept_image is not image and new_shape and self._index_buffer.shape != image.shape:
            index = unsigned_bits(image)
        else:  # the next slice of this shape, or this one re-windowed
            if self._index_buffer.shape != image.shape:
                self._index_buffer = np.empty(image.shape, np.intp)
            index = lut_index(image, out=self._index_buffer)
        self._lut_index = (image, index)
        return index

    def _screen_pixels(self) -> float:
        """How many viewport pixels the slice covers now (the view box fills the viewport: its view range
        is what the viewport shows)."""
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        if x1 <= x0 or y1 <= y0:
            return 0.0
        r = self._image_rect
        size = self.view_box.size()
        across = max(min(x1, r.right()) - max(x0, r.left()), 0.0) * size.width() / (x1 - x0)
        down = max(min(y1, r.bottom()) - max(y0, r.top()), 0.0) * size.height() / (y1 - y0)
        return across * down

    def _composite_table(self, palette: np.ndarray, rgba: np.ndarray) -> np.ndarray:
        key = (self._palette_key, self._label_table_key)  # composited labels come from _label_table
        if key != self._composite_key:
            self._composite_key, self._composite = key, composite_table(palette, rgba)
        return self._composite

    def _current_palette(self) -> np.ndarray:
        """The colormap (inverted if asked) as 256 RGB32 words, rebuilt only when it changes."""
        key = (self.state.colormap, self.state.invert)
        if key != self._palette_key:
            name = self.state.colormap
            if name == "grey":
                lut = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
            else:
                lut = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)
            self._palette = palette_argb32(lut[::-1] if self.state.invert else lut)
            self._palette_key = key
        return self._palette

    def _on_overlay(self) -> None:
        self._apply_levels()

    def _place_crosshair(self) -> None:
        assert self.plane is not None
        centre = self.world_to_view(self.state.cursor)
        # the lines' angles change only with the planes' orientations, not with the cursor
        key = (self.plane.u, self.plane.v, *(self.state.rotations[other].tobytes() for other in self.lines))
        if key != self._line_angles_key:
            self._line_angles_key = key
            n_self = self.plane.normal()
            for other, line in self.lines.items():
                direction = np.cross(n_self, self.state.plane(other).normal())
                du, dv = float(np.dot(direction, self.plane.u)), float(np.dot(direction, self.plane.v))
                line.angle = float(np.degrees(np.arctan2(dv, du)))
        moved = any(line.pos != centre for line in self.lines.values())
        for line in self.lines.values():
            line.pos = centre
        if moved:
            self.graphics.scene().update()  # queued like the items' own updates: merged into one repaint

    def _view_to_device(self) -> QTransform:
        """View coordinates (mm) to viewport pixels: one transform for everything painted in a frame."""
        return self.view_box.childGroup.deviceTransform(self.graphics.viewportTransform())

    def _paint_crosshair(self, painter: QPainter, width: int, height: int) -> None:
        """Paint the crosshair lines (device coordinates) across the whole viewport.

        A line running along a screen axis (every line unless the views are turned) is filled as one row or
        column of pixels, the one a one-pixel line at that position covers; others are drawn as lines."""
        if self.plane is None or self.state.volume is None:
            return
        t = self._view_to_device()
        reach = float(width + height)
        for line in self.lines.values():
            a = math.radians(line.angle)
            ux, uy = math.cos(a), math.sin(a)
            dx, dy = t.m11() * ux + t.m21() * uy, t.m12() * ux + t.m22() * uy  # the direction on screen
            norm = math.hypot(dx, dy)
            if norm == 0:
                continue
            p = t.map(line.pos)
            x, y = p.x(), p.y()
            if abs(dy) <= 1e-9 * norm:
                painter.fillRect(QRect(0, math.floor(y), width, 1), line.pen.color())
            elif abs(dx) <= 1e-9 * norm:
                painter.fillRect(QRect(math.floor(x), 0, 1, height), line.pen.color())
            else:
                dx, dy = dx / norm * reach, dy / norm * reach
                painter.setPen(line.pen)
                painter.drawLine(QLineF(x - dx, y - dy, x + dx, y + dy))

    def _paint_detections(self, painter: QPainter, width: int, height: int) -> None:
        """Detections whose sphere (or box) cuts this slice: a circle of the cut's radius, and the score."""
        found = self.state.detections
        if found is None or self.plane is None or not found.detections:
            return
        normal = self.plane.normal()
        origin = np.asarray(self.plane.origin)
        pen = QPen(QColor(0, 230, 255))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        painter.setPen(pen)
        to_device = self._view_to_device()
        for d in found.detections:
            centre = np.asarray(d.center_lps, dtype=float)
            radius = (d.diameter_mm or 6.0) / 2.0
            distance = float(np.dot(centre - origin, normal))
            if abs(distance) > radius:
                continue
            cut = float(np.sqrt(max(radius * radius - distance * distance, 0.0)))
            c = self.world_to_view(centre - distance * normal)
            p0, p1 = to_device.map(c), to_device.map(QPointF(c.x() + cut, c.y()))
            r = max(abs(p1.x() - p0.x()), 3.0)
            painter.drawEllipse(p0, r, r)
            painter.drawText(QPointF(p0.x() + r + 2, p0.y() - r), f"{d.score:.2g}")

    def _draw_labels(self) -> None:
        """The labels (or the threshold preview) changed: draw this slice again."""
        self._label_layer = self._make_label_layer()
        self._show()

    def _make_label_layer(self) -> LabelLayer | None:
        """This slice's labels, or None when none show."""
        if self.state.threshold_preview is not None and self.image_data is not None and self.image_data.ndim == 2:
            return self._threshold_preview_layer()
        labels = self.state.labels
        if labels is None or self.plane is None or self.state.volume is None or self.image_data is None:
            return None
        # one contiguous copy: a sagittal cut is a strided view, and it is read two or three times below
        lab = np.ascontiguousarray(reslice(self.state.slice_array("labels", self.plane), labels.geometry, self.plane,
                                           order=0, fill=0))
        if lab.dtype.kind == "f":
            lab = np.rint(lab).astype(np.int32)
        outline = self.state.label_display.outline
        # a uint8 map indexes a 256-entry table directly: no conversion of the slice
        n = 256 if lab.dtype == np.uint8 else max(self.state.label_max, int(lab.max(initial=0)),
                                                   max((e.value for e in labels.labels), default=0)) + 1
        rgba, words = self._label_table(labels, n, outline)
        if outline:
            edge = np.zeros(lab.shape, dtype=bool)
            edge[1:, :] |= lab[1:, :] != lab[:-1, :]
            edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
            edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
            edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
            lab = np.where(edge, lab, 0)
        if not rgba[:, 3].any() or not np.count_nonzero(lab):  # nothing to draw here
            return None
        index = lab if lab.dtype == np.uint8 else np.clip(lab, 0, n - 1).astype(np.uint8 if n <= 256 else np.intp)
        return LabelLayer(index, rgba, words, composite=index.dtype == np.uint8 and self.image_data.ndim == 2)

    def _label_table(self, labels, n: int, outline: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(rgba, premultiplied words)`` per label value, rebuilt only when a colour, opacity or
        visibility changes (a new slice only looks its pixels up)."""
        overall = self.state.label_display.opacity
        key = (n, outline, overall, tuple((e.value, tuple(e.color), e.visible, e.opacity) for e in labels.labels))
        if key != self._label_table_key:
            rgba = np.zeros((n, 4), np.uint8)
            for entry in labels.labels:
                if entry.visible and 0 < entry.value < n:
                    rgba[entry.value] = (*entry.color, int(255 * entry.opacity * overall))
            if outline:
                rgba[1:, 3] = np.where(rgba[1:, 3] > 0, 255, 0)
            self._label_table_key, self._label_tables = key, (rgba, premultiplied_argb32(rgba))
        return self._label_tables

    def _threshold_preview_layer(self) -> LabelLayer | None:
        """The voxels of this slice within the threshold being edited, in a preview colour (a layer)."""
        lower, upper = self.state.threshold_preview
        data = self.image_data
        inside = np.ones(data.shape, dtype=bool)
        if lower is not None:
            inside &= data >= lower
        if upper is not None:
            inside &= data <= upper
        if not inside.any():
            return None
        table = np.array([[0, 0, 0, 0], [40, 220, 120, 110]], dtype=np.uint8)
        index = inside.view(np.uint8)
        return LabelLayer(index, table, premultiplied_argb32(table), composite=False)

    def shown_labels(self) -> np.ndarray | None:
        """The label overlay as drawn (RGBA per pixel), or None when nothing is drawn."""
        return self.image.displayed_labels()

    def _visible_here(self, m: Measurement) -> bool:
        assert self.plane is not None
        tolerance = 0.5 * max(min(self.state.volume.geometry.spacing), 1e-3) if self.state.volume else 0.5
        if m.plane is not None:
            return np.allclose(m.plane.normal(), self.plane.normal(), atol=1e-6) and all(
                abs(self.plane.distance_to(p)) <= tolerance for p in m.points)
        return all(abs(self.plane.distance_to(p)) <= tolerance for p in m.points)

    def _relayout_labels(self) -> None:
        if self.measure_items and self._labels_range != self._range_key():
            self._draw_measurements()

    def _range_key(self) -> tuple:
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        return round(x0, 3), round(x1, 3), round(y0, 3), round(y1, 3)

    def _draw_measurements(self) -> None:
        self._labels_range = self._range_key()
        for item in self.measure_items:
            self.view_box.removeItem(item)
        self.measure_items = []
        if self.plane is None:
            return
        units = self.state.volume.metadata.units if self.state.volume else ""
        sx, sy = (abs(v) or 1.0 for v in self.view_box.viewPixelSize())  # mm per screen pixel
        (vx0, vx1), (vy0, vy1) = self.view_box.viewRange()
        taken: list[QRectF] = []  # labels placed so far (view mm): none may cover another
        for m in self.state.measurements:
            if not self._visible_here(m):
                continue
            xy = self._outline(m)
            item = pg.PlotDataItem(xy[:, 0], xy[:, 1], pen=pg.mkPen((255, 220, 0), width=1.5),
                                   symbol="o" if m.kind in ("distance", "angle") else None, symbolSize=5,
                                   symbolBrush=(255, 220, 0))
            text = pg.TextItem(m.label_text(units), color=(255, 230, 120), anchor=(0, 0),
                               fill=pg.mkBrush(0, 0, 0, 160))
            box = text.boundingRect()
            w, h = box.width() * sx, box.height() * sy
            left, right, top = float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min())
            # beside the shape (right, else left), inside the visible part of the slice, below earlier labels
            x = right + 6 * sx if right + 6 * sx + w <= vx1 else left - 6 * sx - w
            x = min(max(x, vx0), max(vx1 - w, vx0))
            y = min(max(top, vy0), max(vy1 - h, vy0))
            rect = QRectF(x, y, w, h)
            for _ in range(len(taken) + 1):
                hit = next((r for r in taken if r.intersects(rect)), None)
                if hit is None:
                    break
                rect.moveTop(hit.bottom() + 2 * sy)
            taken.append(rect)
            text.setPos(rect.left(), rect.top())
            items = [item, text]
            # a label moved away from its shape is tied to it by a thin line to the nearest corner
            corner = (right if rect.left() > right else left, top)
            near = (rect.left() if rect.left() > right else rect.right(), rect.top())
            if abs(near[1] - corner[1]) > 8 * sy or abs(near[0] - corner[0]) > 12 * sx:
                items.append(pg.PlotDataItem([corner[0], near[0]], [corner[1], near[1]],
                                             pen=pg.mkPen((255, 220, 0, 180), width=1,
                                                          style=Qt.PenStyle.DashLine)))
            for it in items:
                it.setZValue(15)
                self.view_box.addItem(it, ignoreBounds=True)
                self.measure_items.append(it)

    def _outline(self, m: Measurement) -> np.ndarray:
        return self._outline_xy(m.kind, m.points)

    def _outline_xy(self, kind: str, points: list[np.ndarray]) -> np.ndarray:
        """Polyline (view coordinates) that draws a measurement of ``kind`` through world ``points``."""
        pts = np.array([[q.x(), q.y()] for q in (self.world_to_view(p) for p in points)])
        if kind == "rectangle" and len(pts) == 2:
            (x0, y0), (x1, y1) = pts
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        if kind == "ellipse" and len(pts) == 2:
            (cx, cy), (ex, ey) = pts
            t = np.linspace(0, 2 * np.pi, 73)
            return np.column_stack([cx + abs(ex - cx) * np.cos(t), cy + abs(ey - cy) * np.sin(t)])
        if kind == "polygon":
            return np.vstack([pts, pts[:1]])
        return pts

    def _update_overlay(self) -> None:
        volume = self.state.volume
        plane = self.plane
        if volume is None or plane is None:
            return
        w = self.state.window
        (x0, x1), _ = self.view_box.viewRange()
        view_px = max(self.view_box.width(), 1.0)
        # everything the annotations depend on but the slice: a crosshair move changes none of it, and in
        # two of the views only the slice (the slice's number and position lines)
        key = (id(volume), plane.u, plane.v, plane.spacing, w.center, w.width, self.state.hide_phi,
               self.state.slab_mm, self.state.slab_mode, self.state.is_oblique, x0, x1, view_px)
        if key != self._overlay_key:
            self._overlay_key = key
            self._overlay_parts = self._overlay_without_slice(volume, plane, x0, x1, view_px)
        elif plane == self._overlay_plane:
            return
        self._overlay_plane = plane
        top_left, bottom_right, letters, bar_mm, bar_px = self._overlay_parts
        shown = projection_view(volume.metadata.extra, volume.geometry.direction, plane.u, plane.v)  # radiograph?
        position = slice_position_text(plane.origin, plane.normal()) if shown.patient_frame else ""  # the slice shown
        k, n = self._slice_position()
        slice_text = shown.label or self.view.capitalize()
        if k is not None:
            slice_text += f"  {k + 1}/{n}"
        if self.state.slab_mm > 0:
            slice_text += f"  {self.state.slab_mode.upper()} {self.state.slab_mm:g} mm"
        corners = {"top_left": top_left, "top_right": [], "bottom_left": [slice_text, position][:2 if position else 1],
                   "bottom_right": bottom_right}
        o = self.overlay
        if (corners, letters, bar_mm, round(bar_px)) != (o.corners, o.letters, o.bar_mm, round(o.bar_px)):
            o.corners, o.letters, o.bar_mm, o.bar_px = corners, letters, bar_mm, bar_px
            self.graphics.scene().update()  # merged with the image's update: one repaint

    def _overlay_without_slice(self, volume, plane: Plane, x0: float, x1: float, view_px: float
                               ) -> tuple[list[str], list[str], dict[str, str], float, float]:
        """The annotations that do not change with the slice: ``(top left, bottom right, orientation letters,
        scale bar mm, scale bar pixels)``."""
        md = volume.metadata
        w = self.state.window
        top_left = []
        if not self.state.hide_phi:
            top_left += [md.patient_name.replace("^", " ") or "(no name)", f"ID {md.patient_id or '-'}",
                         f"{display_date(md.study_date, '-')}"]
        top_left += [f"{md.modality} {md.series_description}".strip()]
        mm_per_px = (x1 - x0) / view_px
        zoom = (plane.spacing[0] / mm_per_px) if mm_per_px > 0 else 1.0
        bottom_right = [f"W {w.width:.0f} L {w.center:.0f}" if not volume.is_color else "RGB", f"zoom {zoom:.2f}x"]
        if self.state.is_oblique:
            bottom_right.insert(0, "oblique")
        bar_mm = nice_length((x1 - x0) / 5.0)
        bar_px = bar_mm / mm_per_px if mm_per_px > 0 else 0.0
        letters = projection_view(md.extra, volume.geometry.direction, plane.u, plane.v).letters
        if letters is None:
            letters = orientation_letters(plane.u, plane.v)
        return top_left, bottom_right, letters, bar_mm, bar_px

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._update_overlay()

    # -- input --------------------------------------------------------------------------------------
    def _on_press(self, pos: QPointF) -> None:
        self.activated.emit(self.view)
        if self.plane is None:
            return
        if self.tool in EDIT_TOOLS:
            self._edit_press(self.view_to_world(pos))
            return
        if self.tool != "crosshair":
            hit = self._hit_measurement(pos)
            if hit is not None:
                self._drag_measurement, self._drag_point = hit
                return
        if self.tool in ("distance", "rectangle", "ellipse", "polygon"):
            self._pending = [self.view_to_world(pos)]
        elif self.tool == "angle":
            self._pending.append(self.view_to_world(pos))

    def _hit_measurement(self, pos: QPointF) -> tuple[Measurement, int] | None:
        """A measurement point within 6 screen pixels of ``pos`` (to drag it)."""
        mm_per_px = self.view_box.viewPixelSize()[0]
        for m in self.state.measurements:
            if not self._visible_here(m) or m.kind == "polygon":
                continue
            for i, p in enumerate(m.points):
                q = self.world_to_view(p)
                if np.hypot(q.x() - pos.x(), q.y() - pos.y()) <= 6 * mm_per_px:
                    return m, i
        return None

    def _edit_press(self, world: np.ndarray) -> None:
        try:
            if self.tool == "fill":
                fill_at(self.state, world, self.view, self.brush)
                return
            self._stroke = Stroke(self.state, self.brush, self.view, erase_mode=self.tool == "erase")
            self._stroke.add(world)
        except MedviewError as exc:
            self._stroke = None
            self.message.emit(str(exc))

    def _edit_drag(self, world: np.ndarray, finished: bool) -> None:
        stroke = self._stroke
        if stroke is None:
            return
        try:
            stroke.add(world)
        except MedviewError as exc:
            self.message.emit(str(exc))
        if finished:
            self._stroke = None
            stroke.finish()

    def _on_drag(self, pos: QPointF, finished: bool) -> None:
        if self.plane is None:
            return
        if self.tool in EDIT_TOOLS:
            self._edit_drag(self.view_to_world(pos), finished)
            return
        world = self.view_to_world(pos)
        if self._drag_measurement is not None:
            points = list(self._drag_measurement.points)
            points[self._drag_point or 0] = world
            self.state.update_measurement(self._drag_measurement, points)
            if finished:
                self._drag_measurement = self._drag_point = None
            return
        if self.tool == "crosshair":
            self.state.set_cursor(world)
            return
        if self.tool == "angle":
            if finished and len(self._pending) >= 3:
                self._finish_measurement("angle", self._pending[:3])
            else:
                self._show_preview([*self._pending, world])
            return
        if not self._pending:
            return
        if self.tool == "polygon" and not finished:
            self._pending.append(world)
        points = [self._pending[0], world] if self.tool != "polygon" else self._pending
        if finished:
            if self.tool == "polygon" and len(points) >= 3:
                self._finish_measurement("polygon", points)
            elif self.tool != "polygon" and np.linalg.norm(points[1] - points[0]) > 1e-6:
                self._finish_measurement(self.tool, points)
            else:
                self._pending = []
                self.preview.clear()
        else:
            self._show_preview(points)

    def _show_preview(self, points: list[np.ndarray]) -> None:
        xy = self._outline_xy(self.tool, points)
        self.preview.setData(xy[:, 0], xy[:, 1])

    def _finish_measurement(self, kind: str, points: list[np.ndarray]) -> None:
        self._pending = []
        self.preview.clear()
        plane = self.plane if kind in ("rectangle", "ellipse", "polygon") else None
        self.state.add_measurement(Measurement(kind, points, view=self.view, plane=plane))

    def _on_window_drag(self, dx: float, dy: float) -> None:
        volume = self.state.volume
        if volume is None or volume.is_color:
            return
        scale = max(self.state.window.width, 1.0) / 300.0  # 300 screen pixels = one window width
        self.state.adjust_window(d_center=-dy * scale, d_width=dx * scale)

    def _on_mouse_moved(self, scene_pos) -> None:
        """Report the position and value under the mouse at most every HOVER_MS (for the latest position):
        formatting it and relaying out the status bar on each of 60-120 moves a second was part of every
        drag frame."""
        self._hover_pos = scene_pos
        if not self._hover_timer.isActive():
            self._hover_timer.start()

    def _report_hover(self) -> None:
        scene_pos = self._hover_pos
        volume = self.state.volume
        if volume is None or self.plane is None or self.image_data is None:
            return
        if not self.view_box.sceneBoundingRect().contains(scene_pos):
            return
        pos = self.view_box.mapSceneToView(scene_pos)
        su, sv = self.plane.spacing
        col, row = int(np.floor(pos.x() / su)), int(np.floor(pos.y() / sv))
        if not (0 <= row < self.image_data.shape[0] and 0 <= col < self.image_data.shape[1]):
            self.hovered.emit("")
            return
        world = self.plane.pixel_to_world(col, row)
        value = self.image_data[row, col]
        units = volume.metadata.units
        shown = ", ".join(str(int(c)) for c in value) if volume.is_color else f"{float(value):.1f} {units}".rstrip()
        ijk = np.rint(volume.geometry.world_to_index(world)).astype(int)
        self.hovered.emit(f"{self.view}  voxel ({ijk[0]}, {ijk[1]}, {ijk[2]})   LPS ({world[0]:.1f}, "
                          f"{world[1]:.1f}, {world[2]:.1f}) mm   value {shown}")

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        key = event.key()
        steps = {Qt.Key.Key_Up: 1, Qt.Key.Key_Down: -1, Qt.Key.Key_PageUp: 10, Qt.Key.Key_PageDown: -10}
        if key in steps:
            self.state.scroll(self.view, steps[key])
        else:
            super().keyPressEvent(event)


def _along_slices(geometry, plane: Plane) -> bool:
    """True for a plane parallel to the acquired slices (the one the loader delivers first)."""
    return abs(float(geometry.direction_matrix[:, 2] @ plane.normal())) > 0.999


def _normal_axis_length(geometry, plane: Plane) -> int:
    """Number of slices along the plane's normal (the grid axis it is parallel to)."""
    axis = int(np.argmax(np.abs(geometry.direction_matrix.T @ plane.normal())))
    return geometry.size_xyz[axis]

