"""What is painted over a slice: corner annotations, orientation letters and a scale bar."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QStaticText


class OverlayLayer:
    """Corner annotations, orientation letters and a scale bar, painted in the view's own paint pass.

    ``texts()`` returns exactly what is painted, so tests can check that no patient identifier is
    drawn when the PHI switch is on.
    """

    def __init__(self) -> None:
        self.corners: dict[str, list[str]] = {"top_left": [], "top_right": [], "bottom_left": [], "bottom_right": []}
        self.letters: dict[str, str] = {}
        self.bar_mm = 0.0
        self.bar_px = 0.0
        self.font = QFont("monospace")
        self.font.setStyleHint(QFont.StyleHint.TypeWriter)
        self.font.setPointSize(9)
        self.bold = QFont(self.font)
        self.bold.setBold(True)
        self.bold.setPointSize(11)
        self._static_texts: dict[str, QStaticText] = {}

    def _static(self, line: str, bold: bool = False) -> QStaticText:
        """Laid-out text, kept between repaints (most annotations stay the same while dragging)."""
        key = f"\0{line}" if bold else line
        text = self._static_texts.get(key)
        if text is None:
            if len(self._static_texts) > 256:
                self._static_texts.clear()
            text = self._static_texts[key] = QStaticText(line)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.prepare(font=self.bold if bold else self.font)
        return text

    def texts(self) -> list[str]:
        out = [line for lines in self.corners.values() for line in lines]
        out += list(self.letters.values())
        if self.bar_px > 0:
            out.append(f"{self.bar_mm:g} mm")
        return out

    def paint(self, p: QPainter, w: int, ht: int) -> None:
        p.setFont(self.font)
        metrics = p.fontMetrics()
        h = metrics.height()
        shadow, light = QColor(0, 0, 0, 200), QColor(230, 230, 230)
        placed = []
        for key, lines in self.corners.items():
            for i, line in enumerate(lines):
                text = self._static(line)
                tw = text.size().width()
                x = 6 if key.endswith("left") else w - tw - 6
                y = 4 + h * (i + 1) if key.startswith("top") else ht - 6 - h * (len(lines) - 1 - i)
                placed.append((QPointF(x, y - metrics.ascent()), text))
        # a dark shadow one pixel down-right keeps the text legible over bright anatomy
        for colour, offset in ((shadow, QPointF(1, 1)), (light, QPointF(0, 0))):
            p.setPen(colour)
            for at, text in placed:
                p.drawStaticText(at + offset, text)
        p.setPen(QColor(255, 210, 90))
        p.setFont(self.bold)
        m2 = p.fontMetrics()
        for side, letter in self.letters.items():
            text = self._static(letter, bold=True)
            tw = text.size().width()
            if side == "left":
                x, baseline = 6, ht // 2
            elif side == "right":
                x, baseline = w - tw - 6, ht // 2
            elif side == "top":
                x, baseline = (w - tw) // 2, m2.height() + 2
            else:
                x, baseline = (w - tw) // 2, ht - 8
            at = QPointF(x, baseline - m2.ascent())
            p.setPen(shadow)
            p.drawStaticText(at + QPointF(1, 1), text)
            p.setPen(QColor(255, 210, 90))
            p.drawStaticText(at, text)
        if self.bar_px > 4:
            x0, y0 = w - 16 - self.bar_px, ht - 6 - h * 4
            p.setFont(self.font)
            for colour, d in ((shadow, 1), (light, 0)):
                p.setPen(QPen(colour, 2))
                p.drawLine(int(x0) + d, int(y0) + d, int(x0 + self.bar_px) + d, int(y0) + d)
                for x in (x0, x0 + self.bar_px):
                    p.drawLine(int(x) + d, int(y0 - 4) + d, int(x) + d, int(y0 + 4) + d)
                p.drawText(int(x0) + d, int(y0 - 6) + d, f"{self.bar_mm:g} mm")


class SliceGraphicsView(pg.GraphicsView):
    """GraphicsView that paints the overlay in the same pass as the image (one repaint per change)."""

    def __init__(self, overlay: OverlayLayer) -> None:
        super().__init__()
        self.overlay = overlay
        # the overlay and crosshair cover the whole viewport, so any change repaints all of it, once
        self.setViewportUpdateMode(pg.QtWidgets.QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        # the view paints every pixel (black background): Qt need not repaint the parents underneath
        self.setFrameShape(pg.QtWidgets.QFrame.Shape.NoFrame)
        for widget in (self, self.viewport()):
            widget.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
            widget.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground, True)
        # extra painters in device coordinates, called before the overlay: f(painter, width, height)
        self.foreground_painters: list = [overlay.paint]

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802 - Qt override
        super().drawForeground(painter, rect)
        painter.save()
        painter.resetTransform()
        viewport = self.viewport()
        for paint in self.foreground_painters:
            paint(painter, viewport.width(), viewport.height())
        painter.restore()


def nice_length(mm: float) -> float:
    """Largest 1/2/5 x 10^k not above ``mm``."""
    if mm <= 0:
        return 0.0
    k = 10 ** np.floor(np.log10(mm))
    return float(max(m * k for m in (1, 2, 5) if m * k <= mm))
