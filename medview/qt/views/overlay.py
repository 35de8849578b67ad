"""What is painted over a slice: corner annotations, orientation letters and a scale bar."""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen

# pre-rendered lines, letters and scale bars (text and shadow), least recently used first: a crosshair drag
# makes two new lines in two views per frame (the slice's number and position), and dragging back over the
# same slices finds them here.  A 16-character line is about 7 KB.
_BLOCKS: OrderedDict[tuple, QImage] = OrderedDict()
BLOCKS_KEPT = 2048
SHADOW = QColor(0, 0, 0, 200)
LIGHT = QColor(230, 230, 230)
LETTER = QColor(255, 210, 90)


class OverlayLayer:
    """Corner annotations, orientation letters and a scale bar, painted in the view's own paint pass.

    ``texts()`` returns exactly what is painted, so tests can check that no patient identifier is
    drawn when the PHI switch is on.  Each annotation line, each letter and the scale bar are rendered
    once (text and its shadow) into a small premultiplied image and blitted on every repaint: while the
    crosshair is dragged only the slice line of two views changes, and a blit costs a fraction of
    laying out and drawing a dozen texts twice.
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
        # metrics of the device the blocks are drawn on (an image's resolution, not the screen's)
        self._reference = QImage(1, 1, QImage.Format.Format_ARGB32_Premultiplied)
        self._metrics = QFontMetricsF(self.font, self._reference)
        self._bold_metrics = QFontMetricsF(self.bold, self._reference)
        self._line_height, self._ascent = self._metrics.height(), self._metrics.ascent()
        self._bold_height, self._bold_ascent = self._bold_metrics.height(), self._bold_metrics.ascent()
        self._font_key = (self.font.toString(), self.bold.toString())
        self._blocks = _BLOCKS  # shared by every view: the three views show the same window line
        self._placed_key: tuple | None = None
        self._placed: list[tuple[QPointF, QImage]] = []

    def texts(self) -> list[str]:
        out = [line for lines in self.corners.values() for line in lines]
        out += list(self.letters.values())
        if self.bar_px > 0:
            out.append(f"{self.bar_mm:g} mm")
        return out

    # -- pre-rendered blocks ----------------------------------------------------------------------
    def _block(self, key: tuple, dpr: float, make) -> QImage:
        """The image for ``key`` at ``dpr``; on a miss ``make()`` gives ``(width, height, draw)`` and
        ``draw(painter)`` paints it on a transparent image of that logical size."""
        full = (self._font_key, *key, dpr)
        image = self._blocks.get(full)
        if image is not None:
            self._blocks.move_to_end(full)
        else:
            width, height, draw = make()
            while len(self._blocks) >= BLOCKS_KEPT:
                self._blocks.popitem(last=False)
            image = QImage(max(int(np.ceil(width * dpr)), 1), max(int(np.ceil(height * dpr)), 1),
                           QImage.Format.Format_ARGB32_Premultiplied)
            image.setDevicePixelRatio(dpr)
            image.fill(Qt.GlobalColor.transparent)
            painter = QPainter(image)
            draw(painter)
            painter.end()
            self._blocks[full] = image
        return image

    def _line_block(self, line: str, dpr: float) -> QImage:
        def make():
            m = self._metrics

            def draw(p: QPainter) -> None:
                p.setFont(self.font)
                for colour, d in ((SHADOW, 1.0), (LIGHT, 0.0)):  # a dark shadow one pixel down-right
                    p.setPen(colour)
                    p.drawText(QPointF(d, m.ascent() + d), line)

            return m.horizontalAdvance(line) + 1, m.height() + 1, draw

        return self._block(("line", line), dpr, make)

    def _letter_block(self, letter: str, dpr: float) -> QImage:
        def make():
            m = self._bold_metrics

            def draw(p: QPainter) -> None:
                p.setFont(self.bold)
                for colour, d in ((SHADOW, 1.0), (LETTER, 0.0)):
                    p.setPen(colour)
                    p.drawText(QPointF(d, m.ascent() + d), letter)

            return m.horizontalAdvance(letter) + 1, m.height() + 1, draw

        return self._block(("letter", letter), dpr, make)

    def _bar_above(self) -> int:
        """Height (pixels) of the scale bar's label above the bar."""
        m = self._metrics
        return int(np.ceil(m.ascent() + m.descent() + 6))

    def _bar_block(self, bar_px: int, label: str, dpr: float) -> QImage:
        def make():
            y0 = self._bar_above()

            def draw(p: QPainter) -> None:
                p.setFont(self.font)
                for colour, d in ((SHADOW, 1), (LIGHT, 0)):
                    p.setPen(QPen(colour, 2))
                    p.drawLine(1 + d, y0 + d, 1 + bar_px + d, y0 + d)
                    for x in (1, 1 + bar_px):
                        p.drawLine(x + d, y0 - 4 + d, x + d, y0 + 4 + d)
                    p.drawText(1 + d, y0 - 6 + d, label)

            return max(bar_px, self._metrics.horizontalAdvance(label)) + 4, y0 + 7, draw

        return self._block(("bar", bar_px, label), dpr, make)

    # -- painting ---------------------------------------------------------------------------------
    def paint(self, p: QPainter, w: int, ht: int) -> None:
        device = p.device()
        dpr = float(device.devicePixelRatioF()) if device is not None else 1.0
        key = (tuple(map(tuple, self.corners.values())), tuple(self.letters.items()), self.bar_mm, self.bar_px,
               w, ht, dpr)
        if key != self._placed_key:  # place the blocks once per change, not on every repaint
            self._placed_key, self._placed = key, self._place(w, ht, dpr)
        for at, block in self._placed:
            p.drawImage(at, block)

    def _place(self, w: int, ht: int, dpr: float) -> list[tuple[QPointF, QImage]]:
        """Every block with its top-left corner in the viewport.

        Nothing overlaps: where a left and a right corner's lines would collide (a narrow view), the right
        corner moves a block of rows inward (away from its edge); an orientation letter that would fall on
        corner text (e.g. the top letter on a long series line) moves inward past it.
        """
        h, ascent = self._line_height, self._ascent
        corners: dict[str, list[tuple[QPointF, QImage]]] = {}
        for key, lines in self.corners.items():
            right = key.endswith("right")
            out = corners[key] = []
            for i, line in enumerate(lines):
                block = self._line_block(line, dpr)
                x = w - block.width() / dpr - 5 if right else 6  # one shadow pixel wider than the text
                baseline = 4 + h * (i + 1) if key.startswith("top") else ht - 6 - h * (len(lines) - 1 - i)
                out.append((QPointF(round(x), round(baseline - ascent)), block))
        shift = {"top_right": 0.0, "bottom_right": 0.0}
        for side, sign in (("top", 1), ("bottom", -1)):
            left, right = corners[f"{side}_left"], corners[f"{side}_right"]
            if left and right and any(_rect(*a, dpr).intersects(_rect(*b, dpr)) for a in left for b in right):
                shift[f"{side}_right"] = sign * h * len(left)
                corners[f"{side}_right"] = [(QPointF(at.x(), round(at.y() + sign * h * len(left))), block)
                                            for at, block in right]
        placed = [item for items in corners.values() for item in items]
        taken = [_rect(at, block, dpr) for at, block in placed]
        bold_height, bold_ascent = self._bold_height, self._bold_ascent
        for side, letter in self.letters.items():
            block = self._letter_block(letter, dpr)
            tw = block.width() / dpr - 1
            if side == "left":
                x, baseline = 6, ht // 2
            elif side == "right":
                x, baseline = w - tw - 6, ht // 2
            elif side == "top":
                x, baseline = (w - tw) // 2, bold_height + 2
            else:
                x, baseline = (w - tw) // 2, ht - 8
            at = QPointF(round(x), round(baseline - bold_ascent))
            inward = {"top": (0, 1), "bottom": (0, -1), "left": (1, 0), "right": (-1, 0)}[side]
            for _ in range(64):  # step inward until the letter covers no text
                hit = next((r for r in taken if r.intersects(_rect(at, block, dpr))), None)
                if hit is None:
                    break
                if inward[1] > 0:
                    at = QPointF(at.x(), hit.bottom() + 1)
                elif inward[1] < 0:
                    at = QPointF(at.x(), hit.top() - block.height() / dpr - 1)
                elif inward[0] > 0:
                    at = QPointF(hit.right() + 1, at.y())
                else:
                    at = QPointF(hit.left() - block.width() / dpr - 1, at.y())
            placed.append((at, block))
            taken.append(_rect(at, block, dpr))
        if self.bar_px > 4:
            block = self._bar_block(int(self.bar_px), f"{self.bar_mm:g} mm", dpr)
            x0, y0 = w - 16 - self.bar_px, ht - 6 - h * 4 + shift["bottom_right"]
            placed.append((QPointF(int(x0) - 1, int(y0) - self._bar_above()), block))
        return placed


def _rect(at: QPointF, block: QImage, dpr: float) -> QRectF:
    """The viewport rectangle the text of a block placed at ``at`` covers (less its 1-pixel shadow, which
    may touch the next line)."""
    return QRectF(at.x(), at.y(), block.width() / dpr - 1, block.height() / dpr - 1)


class SliceGraphicsView(pg.GraphicsView):
    """GraphicsView that paints the overlay in the same pass as the image (one repaint per change)."""

    def __init__(self, overlay: OverlayLayer) -> None:
        super().__init__()
        self.overlay = overlay
        # the overlay and crosshair cover the whole viewport, so any change repaints all of it, once
        self.setViewportUpdateMode(pg.QtWidgets.QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        # pyqtgraph caches the background in a pixmap: copying that (a read and a write of every pixel)
        # costs more than filling the plain black background again
        self.setCacheMode(pg.QtWidgets.QGraphicsView.CacheModeFlag.CacheNone)
        # the view paints every pixel (black background): Qt need not repaint the parents underneath
        self.setFrameShape(pg.QtWidgets.QFrame.Shape.NoFrame)
        for widget in (self, self.viewport()):
            widget.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
            widget.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground, True)
        # extra painters in device coordinates, called before the overlay: f(painter, width, height)
        self.foreground_painters: list = [overlay.paint]
        # pyqtgraph looks up the items under the mouse and sends each a hover event on every move, also in
        # the middle of a drag, where it lets none of them accept it: skip that once an item has the drag
        # (callgrind, crosshair drag by mouse: 0.28 M of 10.3 M instructions per frame)
        scene = self.scene()
        scene.sendHoverEvents = functools.partial(_hover_unless_dragging, weakref.ref(scene))

    def drawForeground(self, painter: QPainter, rect) -> None:  # noqa: N802 - Qt override
        super().drawForeground(painter, rect)
        painter.save()
        painter.resetTransform()
        viewport = self.viewport()
        for paint in self.foreground_painters:
            paint(painter, viewport.width(), viewport.height())
        painter.restore()


def _hover_unless_dragging(scene_ref, ev, exitOnly: bool = False) -> None:
    """pyqtgraph's hover delivery, skipped while an item holds a mouse drag (keeps no reference to the scene)."""
    scene = scene_ref()
    if scene is not None and (exitOnly or not ev.buttons() or scene.dragItem is None):
        type(scene).sendHoverEvents(scene, ev, exitOnly)


def nice_length(mm: float) -> float:
    """Largest 1/2/5 x 10^k not above ``mm``."""
    if mm <= 0:
        return 0.0
    k = 10 ** np.floor(np.log10(mm))
    return float(max(m * k for m in (1, 2, 5) if m * k <= mm))


class ProjectionView(NamedTuple):
    """How a view annotates a 2D image (see :func:`projection_view`); None keeps the view's own."""

    label: str | None  # instead of 'Axial' etc.
    letters: dict[str, str] | None  # instead of the world (L/R/A/P/S/I) letters
    patient_frame: bool  # False: the image has no position in the patient, so no slice position either


_NOT_A_PROJECTION = ProjectionView(None, None, True)


def projection_view(extra: dict, direction, u, v) -> ProjectionView:
    """Annotations of a 2D image (a radiograph, a photo) as the loader described it in ``metadata.extra``.

    In the image's own plane the view is named by ``view_label`` (the modality: 'CR', 'DX', ...), not by a
    slice plane.  An image without a patient frame (no ImageOrientationPatient) gets PatientOrientation's
    letters, or none, never world letters made up from its placeholder grid, and no slice position.
    """
    if extra.get("kind") != "image2d":
        return _NOT_A_PROJECTION
    normal = np.cross(np.asarray(u, dtype=float), np.asarray(v, dtype=float))
    z_axis = np.asarray(direction, dtype=float).reshape(3, 3)[:, 2]
    in_plane = abs(float(normal @ z_axis)) > 0.999 * (np.linalg.norm(normal) * np.linalg.norm(z_axis) or 1.0)
    placed = bool(extra.get("patient_frame", True))
    letters = None if placed else patient_orientation_letters(extra.get("patient_orientation"), direction, u, v)
    return ProjectionView(extra.get("view_label") if in_plane else None, letters, placed)


# PatientOrientation letters of a biped (PS3.3 C.7.6.1.1.1) and their opposites; a value may combine several
# (e.g. 'LF': toward the patient's left and feet)
_OPPOSITE = {"A": "P", "P": "A", "L": "R", "R": "L", "H": "F", "F": "H"}


def patient_orientation_letters(patient_orientation, direction, u, v) -> dict[str, str]:
    """Edge letters of an image without a patient frame (a radiograph), from its PatientOrientation.

    PatientOrientation names the patient direction of the rows (first pixel to last of a row: the image's
    +x index axis) and of the columns (top row to bottom: +y).  The view's screen right ``u`` and down ``v``
    are matched to those axes (a flipped or turned view swaps or mirrors them): the row letter goes on the
    edge the rows run toward, the column letter on the edge the columns run toward, their opposites on the
    other edges (only for the biped letters A/P/L/R/H/F, the opposite of a quadruped's code is not drawn).
    A view across the image (not its own plane) gets no letters.

    Parameters
    ----------
    patient_orientation
        The two values, e.g. ``['L', 'F']``; anything else gives no letters.
    direction
        The volume geometry's 3x3 direction (row-major 9 numbers, columns are the index axes).
    u, v
        The view's screen axes in the volume's world frame.
    """
    if not patient_orientation or len(patient_orientation) != 2:
        return {}
    axes = np.asarray(direction, dtype=float).reshape(3, 3).T  # axes[0]: +x index (along a row), axes[1]: +y
    letters: dict[str, str] = {}
    for screen, (toward, away) in ((np.asarray(u, dtype=float), ("right", "left")),
                                   (np.asarray(v, dtype=float), ("bottom", "top"))):
        screen = screen / (np.linalg.norm(screen) or 1.0)
        dots = axes[:2] @ screen
        axis = int(np.argmax(np.abs(dots)))
        if abs(dots[axis]) < 0.999:
            return {}
        letter = str(patient_orientation[axis]).upper()
        opposite = "".join(_OPPOSITE[c] for c in letter) if letter and set(letter) <= set(_OPPOSITE) else ""
        if dots[axis] < 0:
            letter, opposite = opposite, letter
        for side, text in ((toward, letter), (away, opposite)):
            if text:
                letters[side] = text
    return letters
