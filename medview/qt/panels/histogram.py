"""Histogram of the volume with the current window as a draggable region (two-way with the state)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QVBoxLayout, QWidget

from medview.app.viewer import ViewerState
from medview.core.volume import WindowPreset


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
        self.region = pg.LinearRegionItem(brush=(255, 220, 0, 40))
        self.region.sigRegionChanged.connect(self._region_moved)
        self.plot.addItem(self.region)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.plot)
        self.setMinimumHeight(110)
        state.subscribe("volume", self.refresh)
        state.subscribe("window", self._window_changed)
        self._updating = False

    def refresh(self) -> None:
        volume = self.state.volume
        if volume is None or volume.is_color:
            self.curve.setData([0, 1], [0])
            return
        data = volume.array
        step = max(1, int(np.ceil((data.size / 2_000_000) ** (1 / 3))))
        sample = data[::step, ::step, ::step].ravel()
        lo, hi = float(sample.min()), float(sample.max())
        counts, edges = np.histogram(sample, bins=256, range=(lo, hi if hi > lo else lo + 1))
        self.curve.setData(edges, np.log1p(counts))
        self._window_changed()

    def _window_changed(self) -> None:
        w = self.state.window
        self._updating = True
        self.region.setRegion((w.low, w.high))
        self._updating = False

    def _region_moved(self) -> None:
        if self._updating:
            return
        lo, hi = self.region.getRegion()
        self.state.set_window(WindowPreset((lo + hi) / 2.0, max(hi - lo, 1e-6), "Custom"))
