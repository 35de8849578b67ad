"""Transfer-function editor for volume rendering: opacity and colour points over the intensity histogram.

The top plot shows the volume's histogram (log counts, scaled to 0..1) with the scalar-opacity ramp as a
polyline through draggable handles (x = value in data units, e.g. HU; y = opacity 0..1).  Under it, on the
same value axis, a colour bar shows the colour ramp with one handle per colour point.

Mouse: drag a handle to move it (it stays between its neighbours, so the ramp stays sorted, and inside the
value range; opacity is clamped to 0..1); double-click the plot or the colour bar to add a point there;
right-click a handle to delete it (one point of each ramp always stays); double-click a colour handle to
choose its colour.

The editor only edits points: the widget that renders validates nothing itself, because every ramp the
editor emits has passed :func:`~medview.render.presets.validate_colour_points` and
:func:`~medview.render.presets.validate_opacity_points`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QColorDialog, QVBoxLayout, QWidget

from medview.core.errors import MedviewError
from medview.render.presets import ColourPoint, OpacityPoint, validate_colour_points, validate_opacity_points

#: Shortest interval between two ``points_changed`` signals while a handle is dragged (at most ~10/s).
EMIT_INTERVAL_MS = 100
#: Smallest gap kept between neighbouring points, as a fraction of the value range: VTK's piecewise
#: functions replace a point added at the value of another, so dragged points never land on a neighbour.
_MIN_GAP = 1e-4
_COLOUR_BAR_SAMPLES = 512
_HANDLE_PEN = pg.mkPen((128, 128, 128), width=2)  # mid grey: visible on black and on white points


class _EditorViewBox(pg.ViewBox):
    """A fixed-range ViewBox: no pan, zoom or menu; reports double-clicks on empty space."""

    double_clicked = Signal(QPointF)  # view coordinates

    def __init__(self) -> None:
        super().__init__(enableMenu=False)
        self.setMouseEnabled(x=False, y=False)
        self.disableAutoRange()

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() == Qt.MouseButton.LeftButton and ev.double():
            ev.accept()
            self.double_clicked.emit(self.mapSceneToView(ev.scenePos()))
        elif ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu on the background
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph override
        ev.ignore()

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph override
        ev.ignore()


class PointHandle(pg.TargetItem):
    """A draggable point of one ramp; the editor decides where it may go.

    Parameters
    ----------
    kind
        ``'opacity'`` or ``'colour'``.
    index
        Position of the point in its ramp.
    on_drag
        ``f(handle, view_pos, finished)`` for every drag step (view coordinates: value, opacity).
    on_click
        ``f(handle, button, double)`` for clicks on the handle.
    """

    def __init__(self, kind: str, index: int, on_drag: Callable[[PointHandle, QPointF, bool], None],
                 on_click: Callable[[PointHandle, Qt.MouseButton, bool], None], brush: object) -> None:
        super().__init__(pos=(0.0, 0.0), size=11, symbol="o", pen=_HANDLE_PEN, hoverPen=pg.mkPen("w", width=2),
                         brush=brush, hoverBrush=brush, movable=True)
        self.kind, self.index = kind, index
        self._on_drag, self._on_click = on_drag, on_click
        self._offset = QPointF()
        self.setZValue(10)

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        view = self.getViewBox()
        if ev.isStart():  # keep the grab offset: the handle does not jump under the cursor
            self._offset = self.pos() - view.mapSceneToView(ev.buttonDownScenePos())
        self._on_drag(self, view.mapSceneToView(ev.scenePos()) + self._offset, bool(ev.isFinish()))

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph override
        if ev.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            ev.accept()  # a double-click on a handle must not also add a point underneath it
            self._on_click(self, ev.button(), bool(ev.double()))
        else:
            ev.ignore()

    def hoverEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph override
        hovering = not ev.isExit() and ev.acceptDrags(Qt.MouseButton.LeftButton)
        if hovering:
            ev.acceptClicks(Qt.MouseButton.RightButton)
        self.setMouseHover(hovering)


class TransferFunctionEditor(QWidget):
    """Opacity and colour points of a volume-rendering transfer function, over the intensity histogram.

    Signals
    -------
    points_changed(colour_points, opacity_points)
        The user edited a ramp: two tuples of validated points sorted by value.  While a handle is
        dragged it is sent at most every ``EMIT_INTERVAL_MS`` ms, and always once when it is released.
        :meth:`set_points` does not send it.
    """

    points_changed = Signal(object, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._colour: tuple[ColourPoint, ...] = ((0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))
        self._opacity: tuple[OpacityPoint, ...] = ((0.0, 0.0), (1.0, 1.0))
        self._histogram_range: tuple[float, float] | None = None
        self._range = (0.0, 1.0)
        self._pending = False  # a change not yet sent (throttled while dragging)
        self._emit_timer = QTimer(self)
        self._emit_timer.setSingleShot(True)
        # a coarse timer may fire up to 5 % early, which broke the promised "at most one per interval"
        self._emit_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._emit_timer.setInterval(EMIT_INTERVAL_MS)
        self._emit_timer.timeout.connect(self._emit_pending)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground((25, 25, 25))
        self.graphics.ci.layout.setSpacing(0)
        self.plot_box, self.bar_box = _EditorViewBox(), _EditorViewBox()
        self.plot = self.graphics.addPlot(row=0, col=0, viewBox=self.plot_box)
        self.bar = self.graphics.addPlot(row=1, col=0, viewBox=self.bar_box)
        for item, axes in ((self.plot, ("left", "bottom")), (self.bar, ("left",))):
            item.setMenuEnabled(False)
            for axis in axes:
                item.hideAxis(axis)
        self.bar.setMaximumHeight(46)
        self.bar.setXLink(self.plot)  # one value axis (data units) for both
        self.plot_box.setYRange(0.0, 1.0, padding=0.04)
        self.bar_box.setYRange(0.0, 1.0, padding=0.0)

        self.histogram_curve = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=(120, 160, 220, 90),
                                               pen=pg.mkPen((120, 160, 220, 160)))
        self.plot.addItem(self.histogram_curve)
        self.opacity_curve = pg.PlotDataItem(pen=pg.mkPen((255, 220, 0), width=2))
        self.opacity_curve.setZValue(5)
        self.plot.addItem(self.opacity_curve)
        self.colour_image = pg.ImageItem(axisOrder="row-major")
        self.bar.addItem(self.colour_image)
        self.opacity_handles: list[PointHandle] = []
        self.colour_handles: list[PointHandle] = []

        self.plot_box.double_clicked.connect(lambda pos: self.add_point("opacity", pos.x(), pos.y()))
        self.bar_box.double_clicked.connect(lambda pos: self.add_point("colour", pos.x()))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.graphics)
        self.setMinimumHeight(150)
        self.setToolTip("Drag a point to move it, double-click to add one, right-click a point to delete it; "
                        "double-click a colour point to choose its colour")
        self._rebuild()

    # -- public API ---------------------------------------------------------------------------------
    def set_histogram(self, edges: np.ndarray, counts: np.ndarray) -> None:
        """Show the intensity histogram behind the opacity ramp (log counts).

        Parameters
        ----------
        edges
            ``bins + 1`` bin edges in data units (HU for CT), increasing.
        counts
            ``bins`` counts.
        """
        edges = np.asarray(edges, dtype=float)
        counts = np.asarray(counts, dtype=float)
        if edges.ndim != 1 or counts.ndim != 1 or edges.size != counts.size + 1 or counts.size == 0:
            raise ValueError(f"set_histogram needs bins + 1 edges and bins counts, got {edges.shape} and "
                             f"{counts.shape}")
        # log: air and soft tissue outnumber bone by orders of magnitude, and bone is what one looks for
        heights = np.log1p(np.maximum(counts, 0.0))
        top = float(heights.max())
        self.histogram_curve.setData(edges, heights / top if top > 0 else heights)
        self._histogram_range = (float(edges[0]), float(edges[-1]))
        self._rebuild()

    def set_points(self, colour_points: Sequence[Sequence[float]], opacity_points: Sequence[Sequence[float]]) -> None:
        """Show these ramps (values in data units), without sending ``points_changed``.

        Raises
        ------
        MedviewError
            A ramp is empty, unsorted, or has a colour or opacity outside 0..1.
        """
        colour = validate_colour_points(colour_points)
        opacity = validate_opacity_points(opacity_points)
        if (colour, opacity) == (self._colour, self._opacity):
            return  # an owner echoing our own signal back must not replace the handle being dragged
        self._emit_timer.stop()
        self._pending = False
        self._colour, self._opacity = colour, opacity
        self._rebuild()

    def points(self) -> tuple[tuple[ColourPoint, ...], tuple[OpacityPoint, ...]]:
        """The ramps as shown: ``(colour_points, opacity_points)``, sorted by value."""
        return self._colour, self._opacity

    def value_range(self) -> tuple[float, float]:
        """The values (data units) points can be placed at: the histogram's range and every point's."""
        return self._range

    # -- drawing ------------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Range, curves and a fresh set of handles (after new points, or a point added or removed)."""
        values = [p[0] for p in self._colour] + [p[0] for p in self._opacity]
        lo, hi = min(values), max(values)
        if self._histogram_range is not None:
            lo, hi = min(lo, self._histogram_range[0]), max(hi, self._histogram_range[1])
        if not hi > lo:
            lo, hi = lo - 1.0, hi + 1.0
        self._range = (lo, hi)
        self.plot_box.setXRange(lo, hi, padding=0.02)
        for box, handles in ((self.plot_box, self.opacity_handles), (self.bar_box, self.colour_handles)):
            for handle in handles:
                box.removeItem(handle)
            handles.clear()
        for i in range(len(self._opacity)):
            handle = PointHandle("opacity", i, self._handle_dragged, self._handle_clicked, (255, 220, 0))
            self.plot_box.addItem(handle, ignoreBounds=True)
            self.opacity_handles.append(handle)
        for i, (_, r, g, b) in enumerate(self._colour):
            handle = PointHandle("colour", i, self._handle_dragged, self._handle_clicked, _qcolor(r, g, b))
            self.bar_box.addItem(handle, ignoreBounds=True)
            self.colour_handles.append(handle)
        self._redraw()

    def _redraw(self) -> None:
        """Move handles and redraw the opacity polyline and the colour bar from the points."""
        lo, hi = self._range
        for handle, (value, alpha) in zip(self.opacity_handles, self._opacity, strict=True):
            handle.setPos(value, alpha)
            handle.setToolTip(f"{value:.1f}: opacity {alpha:.3f}")
        # VTK holds the end values beyond the first and last points: draw that too
        xs = [lo, *(p[0] for p in self._opacity), hi]
        ys = [self._opacity[0][1], *(p[1] for p in self._opacity), self._opacity[-1][1]]
        self.opacity_curve.setData(xs, ys)
        for handle, (value, r, g, b) in zip(self.colour_handles, self._colour, strict=True):
            handle.setPos(value, 0.5)
            handle.setBrush(_qcolor(r, g, b))
            handle.setHoverBrush(_qcolor(r, g, b))
            handle.setToolTip(f"{value:.1f}: colour {round(r * 255)}, {round(g * 255)}, {round(b * 255)}")
        samples = np.linspace(lo, hi, _COLOUR_BAR_SAMPLES)
        ramp = np.stack([self._colour_at(samples)], axis=0)  # (1, n, 3)
        self.colour_image.setImage(np.round(ramp * 255).astype(np.uint8), levels=(0, 255))
        self.colour_image.setRect(QRectF(lo, 0.0, hi - lo, 1.0))

    def _colour_at(self, values: np.ndarray) -> np.ndarray:
        """RGB (0..1) of the colour ramp at ``values``, linear between points as VTK's RGB space does."""
        ramp = np.array(self._colour, dtype=float)
        return np.stack([np.interp(values, ramp[:, 0], ramp[:, c]) for c in (1, 2, 3)], axis=-1)

    # -- editing ------------------------------------------------------------------------------------
    def _bounds(self, values: list[float], index: int) -> tuple[float, float]:
        """Where point ``index`` of a ramp may go: between its neighbours (with a gap) and in range."""
        lo, hi = self._range
        gap = _MIN_GAP * (hi - lo)
        low = lo if index == 0 else values[index - 1] + gap
        high = hi if index == len(values) - 1 else values[index + 1] - gap
        if low > high:  # neighbours closer than two gaps (as given to set_points): the value stays
            return values[index], values[index]
        return low, high

    def _handle_dragged(self, handle: PointHandle, pos: QPointF, finished: bool) -> None:
        if handle not in self.opacity_handles and handle not in self.colour_handles:
            return  # new points were set while it was dragged: this handle is gone
        if handle.kind == "opacity":
            points = list(self._opacity)
            low, high = self._bounds([p[0] for p in points], handle.index)
            points[handle.index] = (float(np.clip(pos.x(), low, high)), float(np.clip(pos.y(), 0.0, 1.0)))
            self._commit(opacity=points)
        else:
            points = list(self._colour)
            low, high = self._bounds([p[0] for p in points], handle.index)
            points[handle.index] = (float(np.clip(pos.x(), low, high)), *points[handle.index][1:])
            self._commit(colour=points)
        if finished:
            self._emit_now()
        else:
            self._emit_throttled()

    def _handle_clicked(self, handle: PointHandle, button: Qt.MouseButton, double: bool) -> None:
        if button == Qt.MouseButton.RightButton:
            self.remove_point(handle.kind, handle.index)
        elif double and handle.kind == "colour":
            self.edit_colour(handle.index)

    def add_point(self, kind: str, value: float, opacity: float | None = None) -> bool:
        """Add a point as a double-click does, and send ``points_changed``.

        Parameters
        ----------
        kind
            ``'opacity'`` or ``'colour'``.
        value
            Where, in data units; clamped to :meth:`value_range`.
        opacity
            Opacity of a new opacity point (clamped to 0..1); default: the ramp's opacity there.  A new
            colour point takes the ramp's colour at ``value``.

        Returns
        -------
        bool
            False (nothing changes) when a point of that ramp is already at ``value``.
        """
        _check_kind(kind)
        lo, hi = self._range
        value = float(np.clip(value, lo, hi))
        ramp = self._opacity if kind == "opacity" else self._colour
        values = [p[0] for p in ramp]
        if any(abs(v - value) <= _MIN_GAP * (hi - lo) for v in values):
            return False
        at = bisect.bisect(values, value)
        if kind == "opacity":
            alpha = float(np.interp(value, values, [p[1] for p in ramp])) if opacity is None else opacity
            self._commit(opacity=[*ramp[:at], (value, float(np.clip(alpha, 0.0, 1.0))), *ramp[at:]], rebuild=True)
        else:
            r, g, b = (float(c) for c in np.clip(self._colour_at(np.array([value]))[0], 0.0, 1.0))
            self._commit(colour=[*ramp[:at], (value, r, g, b), *ramp[at:]], rebuild=True)
        self._emit_now()
        return True

    def remove_point(self, kind: str, index: int) -> bool:
        """Delete point ``index`` of the ``'opacity'`` or ``'colour'`` ramp (as a right-click does).

        Returns False, changing nothing, for the last point of a ramp: a transfer function needs one.
        """
        _check_kind(kind)
        ramp = list(self._opacity if kind == "opacity" else self._colour)
        if len(ramp) <= 1 or not 0 <= index < len(ramp):
            return False
        del ramp[index]
        if kind == "opacity":
            self._commit(opacity=ramp, rebuild=True)
        else:
            self._commit(colour=ramp, rebuild=True)
        self._emit_now()
        return True

    def edit_colour(self, index: int) -> None:
        """Ask for a new colour of colour point ``index`` (a colour dialog), and apply it."""
        value, r, g, b = self._colour[index]
        chosen = QColorDialog.getColor(_qcolor(r, g, b), self, f"Colour at {value:g}")
        if not chosen.isValid():
            return
        points = list(self._colour)
        points[index] = (value, chosen.redF(), chosen.greenF(), chosen.blueF())
        self._commit(colour=points)
        self._emit_now()

    def _commit(self, colour: Sequence[ColourPoint] | None = None,
                opacity: Sequence[OpacityPoint] | None = None, rebuild: bool = False) -> None:
        """Validate and keep edited ramps, then redraw (``rebuild``: new handles, when points were added
        or removed).  An edit that would not validate is dropped, so it is never emitted."""
        try:
            new_colour = self._colour if colour is None else validate_colour_points(colour)
            new_opacity = self._opacity if opacity is None else validate_opacity_points(opacity)
        except MedviewError:  # the clamps above make this unreachable; the caller must still never see it
            self._redraw()
            return
        self._colour, self._opacity = new_colour, new_opacity
        self._pending = True
        if rebuild:
            self._rebuild()
        else:
            self._redraw()

    # -- throttled signal ---------------------------------------------------------------------------
    def _emit_throttled(self) -> None:
        """The first change of a burst goes out at once, later ones at most every EMIT_INTERVAL_MS."""
        if not self._emit_timer.isActive():
            self._emit_now(restart_timer=True)

    def _emit_pending(self) -> None:
        if self._pending:
            self._emit_now(restart_timer=True)

    def _emit_now(self, restart_timer: bool = False) -> None:
        self._emit_timer.stop()
        self._pending = False
        if restart_timer:
            self._emit_timer.start()
        self.points_changed.emit(self._colour, self._opacity)


def _check_kind(kind: str) -> None:
    if kind not in ("opacity", "colour"):
        raise ValueError(f"kind must be 'opacity' or 'colour', got {kind!r}")


def _qcolor(r: float, g: float, b: float) -> QColor:
    return QColor.fromRgbF(float(r), float(g), float(b))
