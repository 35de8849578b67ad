"""The slice and its label overlay as one graphics item that blits 32-bit images Qt draws natively.

pyqtgraph's ImageItem converts its 8-bit indexed image to 32 bits on every paint (about 0.5 ms per
512^2 layer in software); here the windowed, coloured slice is already in Qt's RGB32 layout and the
labels in premultiplied ARGB32, the raster engine's fast paths.  Label maps of up to 256 values are
composited into the slice's pixels before they get here (one table lookup per pixel), so a repaint is
one scaled blit; a separate label layer is left for colour images and the threshold preview.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QRectF, QTimer
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject


def _qimage(words: np.ndarray, fmt: QImage.Format) -> QImage:
    h, w = words.shape
    return QImage(words.data, w, h, w * 4, fmt)  # shares ``words``: the item keeps it alive


class SliceImageItem(QGraphicsObject):
    """Draws a ``(rows, cols)`` uint32 image over ``rect`` (view mm), and optionally labels above it."""

    def __init__(self) -> None:
        super().__init__()
        self._rect = QRectF()
        self._words: np.ndarray | None = None
        self._image: QImage | None = None
        self._label_index: np.ndarray | None = None
        self._label_rgba: np.ndarray | None = None
        self._label_words: np.ndarray | None = None
        self._label_image: QImage | None = None
        self._base: Callable[[], np.ndarray] | None = None  # the slice without labels, when they are composited
        # Kept as a device-resolution pixmap between changes: a view whose slice did not change (the axial
        # view while the crosshair is dragged in it) repaints with one unscaled blit instead of two scaled ones.
        # When every repaint brings new content (the other two views during that drag, all three during a
        # window/level drag), the pixmap is a second pass and a new pixmap a frame: the item draws directly
        # then, and takes the pixmap again once it is repainted unchanged (see _changed and paint).
        self._paints_since_change = 0
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    # -- content ---------------------------------------------------------------------------------
    def set_image(self, words: np.ndarray | None, rect: QRectF | None = None,
                  composited: tuple[Callable[[], np.ndarray], np.ndarray, np.ndarray] | None = None) -> None:
        """Show ``words`` (0xAARRGGBB, opaque) stretched over ``rect``; ``None`` clears the item.

        ``composited`` says that ``words`` already has labels drawn in: ``(slice, index, rgba)`` where
        ``slice()`` gives the pixels without labels and ``index``/``rgba`` describe the labels (for
        :meth:`displayed_rgb` and :meth:`displayed_labels`); no separate label layer is blended then.
        """
        self._base = None
        if words is None:
            self._words = self._image = None
            self.set_labels(None)
            self.update()
            return
        if composited is not None:
            self._base, index, rgba = composited
            self._label_image = self._label_words = None
            self._label_index, self._label_rgba = index, rgba
        self._words = np.ascontiguousarray(words, dtype=np.uint32)
        self._image = _qimage(self._words, QImage.Format.Format_RGB32)
        if rect is not None and rect != self._rect:
            self.prepareGeometryChange()
            self._rect = QRectF(rect)
        self._changed()

    def set_labels(self, index: np.ndarray | None, rgba: np.ndarray | None = None,
                   words: np.ndarray | None = None) -> None:
        """A separate label layer (after a :meth:`set_image` without ``composited``): ``index``
        (rows, cols) into ``rgba`` (n, 4) straight-alpha colours, and
        ``words`` the same pixels premultiplied (what is blitted). ``None`` hides the overlay."""
        if index is None or words is None:
            self._label_index = self._label_rgba = self._label_words = self._label_image = None
        else:
            self._label_index, self._label_rgba = index, rgba
            self._label_words = np.ascontiguousarray(words, dtype=np.uint32)
            self._label_image = _qimage(self._label_words, QImage.Format.Format_ARGB32_Premultiplied)
        self._changed()

    def _changed(self) -> None:
        """New content: repaint.  A change right after the last content was painted once (not twice, nor not
        yet: the slice and its labels change together) means changes come frame by frame: drawn directly,
        without the pixmap cache, until they stop."""
        if self._paints_since_change == 1 and self.cacheMode() != QGraphicsItem.CacheMode.NoCache:
            self.setCacheMode(QGraphicsItem.CacheMode.NoCache)
        self._paints_since_change = 0
        self.update()

    def _cache_again(self) -> None:
        if self._paints_since_change >= 2:  # still unchanged
            self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def displayed_rgb(self) -> np.ndarray | None:
        """The slice's pixels as drawn, ``(rows, cols, 3)`` uint8 (without labels)."""
        if self._words is None:
            return None
        w = self._base() if self._base is not None else self._words
        return np.stack([(w >> 16) & 0xFF, (w >> 8) & 0xFF, w & 0xFF], axis=-1).astype(np.uint8)

    def displayed_labels(self) -> np.ndarray | None:
        """The label overlay as drawn, ``(rows, cols, 4)`` straight-alpha RGBA, or None."""
        if self._label_index is None or self._label_rgba is None:
            return None
        return self._label_rgba[self._label_index]

    # -- QGraphicsItem ---------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return QRectF(self._rect) if self._image is not None else QRectF()

    def paint(self, painter: QPainter, option, widget=None) -> None:
        self._paints_since_change += 1
        if self._paints_since_change == 2 and self.cacheMode() == QGraphicsItem.CacheMode.NoCache:
            QTimer.singleShot(0, self, self._cache_again)  # repainted unchanged: keep a pixmap from the next paint on
        if self._image is None:
            return
        painter.drawImage(self._rect, self._image)
        if self._label_image is not None:
            painter.drawImage(self._rect, self._label_image)
