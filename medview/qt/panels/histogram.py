"""Histogram of the volume with the current window as a draggable region (two-way with the state)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QGraphicsItem, QVBoxLayout, QWidget

from medview.algorithms.statistics import Histogram, intensity_histogram
from medview.app.viewer import ViewerState
from medview.core.volume import WindowPreset
from medview.qt.workers import Worker, start

REGION_FOLLOW_MS = 40  # at most 25 region moves a second while the window is dragged elsewhere


class HistogramPanel(QWidget):
    def __init__(self, state: ViewerState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.hideAxis("left")
        self.plot.setMouseEnabled(x=False, y=False)
        self.curve = self.plot.plot(stepMode="center", fillLevel=0, brush=(120, 160, 220, 120),
                                    pen=pg.mkPen((120, 160, 220)))
        # the curve changes with the volume, the region with every window/level drag: keep the curve's
        # pixels so that a drag repaints a blit and the region, not the whole filled histogram
        self.curve.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.region = pg.LinearRegionItem(brush=(255, 220, 0, 40))
        self.region.sigRegionChanged.connect(self._region_moved)
        # not part of the auto range: a window drag then leaves the view range, and with it the axis and the
        # cached curve, as they are (the range follows the histogram only)
        self.plot.addItem(self.region, ignoreBounds=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot)
        self.setMinimumHeight(110)
        state.subscribe("volume", self.refresh)
        # the region follows window/level drags at most every REGION_FOLLOW_MS: moving it repaints the filled
        # histogram, which would otherwise be part of every frame of a drag in the slice views
        self._follow = QTimer(self)
        self._follow.setSingleShot(True)
        self._follow.setInterval(REGION_FOLLOW_MS)
        self._follow.timeout.connect(self._apply_window)
        state.subscribe("window", self._window_changed)
        self._updating = False
        self.worker: Worker | None = None

    def refresh(self) -> None:
        """Recompute the histogram in a worker (never on the GUI thread) for the shown volume."""
        volume = self.state.volume
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()
        if volume is None or volume.is_color or self.state.loading:
            # no histogram (a volume still filling would give a wrong one and compete with the load); the
            # region follows the new window through the state's window event, in a later event-loop turn
            self.curve.setData([0, 1], [0])
            return
        # in this worker thread, not a pool process: pickling the 2.5 MB sample for a process held the
        # interpreter (and wrote fresh pages) in this process just as a load finished, a 50-70 ms event-loop gap
        # found with perf; the subsample copy and the count run in numpy's C loops, which let the GUI run
        self.worker = Worker(intensity_histogram, volume.array)
        self.worker.signals.finished.connect(self._show)
        start(self.worker)

    def cancel(self) -> None:
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()

    def _show(self, hist: Histogram) -> None:
        if self.worker is None or self.sender() is not self.worker.signals:
            return  # a histogram of a volume that is no longer shown
        self.curve.setData(hist.edges, np.log1p(hist.counts))
        self._apply_window()

    def _window_changed(self) -> None:
        if not self._follow.isActive():
            self._follow.start()

    def _apply_window(self) -> None:
        """Show the state's window as the region (unless the region is where the window came from)."""
        self._follow.stop()
        w = self.state.window
        lo, hi = self.region.getRegion()
        if abs(lo - w.low) <= 1e-9 * max(abs(w.low), 1.0) and abs(hi - w.high) <= 1e-9 * max(abs(w.high), 1.0):
            return
        self._updating = True
        self.region.setRegion((w.low, w.high))
        self._updating = False

    def _region_moved(self) -> None:
        if self._updating:
            return
        lo, hi = self.region.getRegion()
        self.state.set_window(WindowPreset((lo + hi) / 2.0, max(hi - lo, 1e-6), "Custom"))
