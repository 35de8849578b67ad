"""Series browser: every series of a scanned folder or file, with thumbnails made in the background.

Scanning (``scan_path``) and thumbnails run in :class:`~medview.qt.workers.Worker` jobs; the panel
only shows what they send back.  Double-click or Enter on a series emits ``series_activated``.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QStyle,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.app.offload import run_in_process
from medview.io.dicom.scan import SeriesInfo
from medview.io.readers import FileImageInfo, scan
from medview.io.thumbnails import middle_slice_series, thumbnail, thumbnails
from medview.qt.workers import Worker, start

UID_ROLE = Qt.ItemDataRole.UserRole
SERIES_UID_ROLE = Qt.ItemDataRole.UserRole + 1
COLUMNS = ("Series", "Modality", "Slices", "Size / spacing")
FULL_ROLE = Qt.ItemDataRole.UserRole + 2  # the first column's text with the other columns shown
COMPACT_ROLE = Qt.ItemDataRole.UserRole + 3  # ... with them folded into it (a narrow panel)
COMPACT_BELOW_PX = 400  # narrower than this, the panel shows one column (the others left 'Seri' of the name)
WARNING_COLOUR = QColor("#e08a00")
_FORMATS = {".nii": "NIfTI", ".nii.gz": "NIfTI", ".nrrd": "NRRD", ".nhdr": "NRRD", ".mha": "MHA",
            ".mhd": "MHD", ".hdr": "Analyze", ".img": "Analyze"}


def icon_from_array(image: np.ndarray, square: int = 0) -> QIcon:
    """A QIcon from a uint8 (h, w) grey or (h, w, 3) RGB array, centred on a ``square`` px canvas if given."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w = image.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if image.ndim == 2 else QImage.Format.Format_RGB888
    qimage = QImage(image.data, w, h, image.strides[0], fmt)
    side = max(square, w, h)
    pixmap = QPixmap(side, side)
    pixmap.fill(Qt.GlobalColor.transparent)  # non-square thumbnails keep the text column aligned
    painter = QPainter(pixmap)
    painter.drawImage((side - w) // 2, (side - h) // 2, qimage)
    painter.end()
    return QIcon(pixmap)


def _short(warning: str) -> str:
    """The first clause of a warning ("Series 2 has 1 missing slice(s)"); the tooltip has it all."""
    return warning.split(":")[0].split(";")[0].strip()


def _cancel_all(workers: list[Worker]) -> None:
    for worker in workers:
        worker.cancel()


def _thumbnail_in_process(info, size: int, task=None):
    """One thumbnail made in a pool process: decoding, windowing (a percentile) and resampling in this
    worker thread shared the interpreter with the GUI thread right when a load finished (a 50 ms event-loop
    gap at the end of a 305-slice load, found with a faulthandler watchdog).  A DICOM series goes as its
    middle slice alone: pickling all of its slices' records (228 kB for 305) held the interpreter here."""
    if isinstance(info, SeriesInfo):
        info = middle_slice_series(info)
    return run_in_process(thumbnail, info, size, task=task)


class SeriesBrowser(QWidget):
    """Lists the series of a scan result: thumbnail, modality, description, slices, size and warnings."""

    series_activated = Signal(str, str)  # (scanned path, series uid as scan() reports it)
    scan_failed = Signal(str)  # one-line message for a dialog

    def __init__(self, parent: QWidget | None = None, thumbnail_size: int = 96) -> None:
        super().__init__(parent)
        self.thumbnail_size = thumbnail_size
        self.path = ""
        self.title: str | None = None  # what the header names instead of the path (scan_path)
        self.series: list = []
        self._workers: list[Worker] = []  # running jobs stay referenced until they end
        self._scan_worker: Worker | None = None
        self._thumb_worker: Worker | None = None
        self._thumbnails_done = 0
        self._compact = False
        self.status = QLabel("No folder scanned")
        self.status.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setIconSize(QSize(thumbnail_size, thumbnail_size))
        self.tree.setRootIsDecorated(False)
        self.tree.setIndentation(0)
        self.tree.setItemsExpandable(False)
        self.tree.setExpandsOnDoubleClick(False)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemActivated.connect(self._on_activated)  # double-click and Enter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.status)
        layout.addWidget(self.tree, 1)
        warning = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        self._warning_icon = QIcon(warning.pixmap(16, 16))  # small: the row is sized for thumbnails
        blank = QPixmap(thumbnail_size, thumbnail_size)
        blank.fill(QColor("#202020"))
        self._placeholder = QIcon(blank)
        self.destroyed.connect(functools.partial(_cancel_all, self._workers))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(420, 480)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._set_compact(self.width() < COMPACT_BELOW_PX)

    def _set_compact(self, compact: bool) -> None:
        """In a narrow panel, one column: modality, slices and size become the row's third line."""
        if compact == self._compact:
            return
        self._compact = compact
        for column in range(1, len(COLUMNS)):
            self.tree.setColumnHidden(column, compact)
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            text = item.data(0, COMPACT_ROLE if compact else FULL_ROLE)
            if text:
                item.setText(0, text)

    # -- public API -----------------------------------------------------------------------------
    def scan_path(self, path: str, title: str | None = None) -> None:
        """Scan ``path`` (folder, file or zip) in a worker, then list what it holds; the header names ``title``
        (a study's date and modalities) instead of the path when given."""
        self.title = title
        if self._scan_worker is not None:
            self._scan_worker.cancel()
        worker = Worker(scan, path)
        worker.signals.finished.connect(self._on_scanned)
        worker.signals.failed.connect(self._on_scan_failed)
        worker.signals.cancelled.connect(self._on_scan_cancelled)
        self._scan_worker = worker
        self.status.setText(f"Scanning {path}…")
        self._start(worker)

    def set_scan(self, path: str, series: list, defer_thumbnails: bool = False) -> None:
        """List ``series`` (SeriesInfo / FileImageInfo found at ``path``) and make thumbnails in the background.

        With ``defer_thumbnails`` the thumbnails wait for :meth:`start_thumbnails` (the window calls it
        once the series it is loading is on screen, so thumbnails do not compete with that load).
        """
        if self._scan_worker is not None:
            self._scan_worker.cancel()  # a scan still running would replace this list
            self._scan_worker = None
        if self._thumb_worker is not None:
            self._thumb_worker.cancel()
        self.path, self.series = path, list(series)
        self.tree.clear()
        for info in self.series:
            self._add_row(info)
        skipped = getattr(series, "skipped", None) or []
        note = f"; {len(skipped)} file(s) skipped" if skipped else ""
        name = self.title or os.path.basename(path.rstrip(os.sep)) or path
        self.title = None
        if len(name) > 40:  # a study UID from the database, a long folder name: the panel keeps its width
            name = f"{name[:18]}…{name[-12:]}"
        self.status.setText(f"{name}: {len(self.series)} series{note}")
        self.status.setToolTip("\n".join([path] + [f"skipped {f}: {why}" for f, why in skipped[:20]]))
        self._thumbnails_done = 0
        self._thumb_worker = None
        if not defer_thumbnails:
            self.start_thumbnails()

    def start_thumbnails(self) -> None:
        """Make the thumbnails of the listed series (once per listing)."""
        if self._thumb_worker is not None or not self.series:
            return
        worker = Worker(thumbnails, list(self.series), self.thumbnail_size, make=_thumbnail_in_process)
        worker.kwargs["on_thumbnail"] = worker.signals.partial.emit  # each thumbnail as soon as it is ready
        worker.signals.partial.connect(self._on_thumbnail)
        self._thumb_worker = worker
        self._start(worker)

    def select_uid(self, uid: str) -> None:
        """Highlight (bold, selected) the series being shown; matches ``uid`` or the SeriesInstanceUID."""
        items = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        match = next((it for it in items if it.data(0, UID_ROLE) == uid), None) or \
            next((it for it in items if it.data(0, SERIES_UID_ROLE) == uid), None)
        for item in items:
            font = item.font(0)
            font.setBold(item is match)
            item.setFont(0, font)
        if match is not None:
            self.tree.setCurrentItem(match)
            self.tree.scrollToItem(match)

    def thumbnails_ready(self) -> int:
        """How many rows have their thumbnail (or a thumbnail error) so far."""
        return self._thumbnails_done

    def shutdown(self) -> None:
        """Cancel the running scan and thumbnail jobs (the window calls this on close)."""
        _cancel_all(self._workers)

    # -- rows -----------------------------------------------------------------------------------
    def _add_row(self, info) -> None:
        s = info.summary()
        sx, sy, sz = s["size"]
        spacing = s["spacing_mm"]
        number = s.get("series_number")
        kind = "2D image" if s["kind"] == "image2d" else "3D volume"
        second = " · ".join(x for x in (f"Series {number}" if number is not None else "", kind) if x)
        modality = s["modality"] or "?"  # what the file states ("unknown" for NIfTI), never the file format
        if isinstance(info, FileImageInfo):
            name = info.path.lower()
            second = " · ".join((next((v for k, v in _FORMATS.items() if name.endswith(k)), "Picture"), second))
        mm = "×".join(f"{v:.3g}" for v in (spacing if sz > 1 else spacing[:2]))
        full = f"{s['description'] or '(no description)'}\n{second}"
        item = QTreeWidgetItem(self.tree, [full, modality, str(sz), f"{sx}×{sy}\n{mm} mm"])
        item.setData(0, FULL_ROLE, full)
        item.setData(0, COMPACT_ROLE, f"{full}\n{modality} · {sz} slice{'s' * (sz != 1)}\n{sx}×{sy} · {mm} mm")
        if self._compact:
            item.setText(0, item.data(0, COMPACT_ROLE))
        item.setIcon(0, self._placeholder)
        item.setData(0, UID_ROLE, s["uid"])
        item.setData(0, SERIES_UID_ROLE, s.get("series_instance_uid", s["uid"]))
        tip = [f"UID: {s['uid']}", f"{modality} {kind}, {sx}×{sy}×{sz} voxels, {mm} mm, {s['orientation']}",
               f"{s['files']} file(s)"]
        warnings = s["warnings"]
        if warnings:
            tip += ["", "Warnings:"] + [f"• {w}" for w in warnings]
            item.setIcon(1, self._warning_icon)
            note = QTreeWidgetItem(item, ["⚠ " + " · ".join(_short(w) for w in warnings)])
            note.setFirstColumnSpanned(True)
            note.setFlags(Qt.ItemFlag.ItemIsEnabled)  # belongs to the row above; not selectable itself
            note.setData(0, UID_ROLE, s["uid"])
            note.setForeground(0, QBrush(WARNING_COLOUR))
            font = QFont(note.font(0))
            font.setItalic(True)
            note.setFont(0, font)
            note.setToolTip(0, "\n".join(warnings))
            item.setExpanded(True)
        for column in range(len(COLUMNS)):
            item.setToolTip(column, "\n".join(tip))

    # -- worker results (main thread) -------------------------------------------------------------
    def _start(self, worker: Worker) -> None:
        self._workers[:] = [w for w in self._workers if not w.done]
        self._workers.append(worker)
        start(worker)

    def _is_current(self, worker: Worker | None) -> bool:
        return worker is not None and self.sender() is worker.signals

    def _on_scanned(self, series: list) -> None:
        worker = self._scan_worker
        if self._is_current(worker):
            self.set_scan(worker.args[0], series)  # type: ignore[union-attr]

    def _on_scan_failed(self, message: str) -> None:
        if not self._is_current(self._scan_worker):
            return
        self._scan_worker = None
        one_line = " ".join(message.split())
        self.status.setText(f"Cannot scan: {one_line}")
        self.scan_failed.emit(one_line)

    def _on_scan_cancelled(self) -> None:
        if self._is_current(self._scan_worker):
            self._scan_worker = None
            self.status.setText("Scan cancelled")

    def _on_thumbnail(self, image: np.ndarray | str, index: int) -> None:
        if not self._is_current(self._thumb_worker) or index >= self.tree.topLevelItemCount():
            return  # from a previous scan
        item = self.tree.topLevelItem(index)
        if isinstance(image, np.ndarray):
            item.setIcon(0, icon_from_array(image, self.thumbnail_size))
        else:
            item.setIcon(0, self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical))
            item.setToolTip(0, f"{item.toolTip(0)}\n\nNo thumbnail: {image}")
        self._thumbnails_done += 1

    def _on_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        uid = item.data(0, UID_ROLE)
        if uid:
            self.series_activated.emit(self.path, uid)
