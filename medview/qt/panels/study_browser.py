"""The Studies panel: the study database as a list a reader searches, thin over :mod:`medview.io.studydb`.

Rows come from the database a page at a time (``canFetchMore``/``fetchMore``: 200 rows, well under a
millisecond each at 10,000 studies), never all at once.  Imports (a folder, a zip or a DICOMDIR; by reference
or copied into medview's store) run in a process of their own (Worker ``in_process``) with progress and Cancel
(killing it leaves a consistent database); the list refreshes as files are indexed.  The study under the
cursor shows its series with thumbnails below the list (read from the index; double-click opens one).
Double-click (or Open) shows a study, Open with several selected lists all their series; Send to... and
Remove act on every selected study; Remove asks first and deletes only files medview's store owns.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from medview.core.errors import MedviewError
from medview.qt.panels.series_browser import SeriesBrowser
from medview.qt.text import display_date, display_name
from medview.qt.views.flow_layout import FlowLayout
from medview.qt.workers import Worker, start

PAGE = 200
COLUMNS = (("Patient", "PatientName"), ("ID", "PatientID"), ("Date", "StudyDate"), ("Mod.", "ModalitiesInStudy"),
           ("Images", "NumberOfStudyRelatedInstances"), ("Description", "StudyDescription"))
DATE_PRESETS = ("Any date", "Today", "Last 7 days", "Last 30 days", "This year")


def date_range(preset: str, today: dt.date | None = None) -> str | None:
    """A preset as a database date range (``YYYYMMDD-YYYYMMDD``); None for any date."""
    today = today or dt.date.today()
    first = {"Today": today, "Last 7 days": today - dt.timedelta(days=6),
             "Last 30 days": today - dt.timedelta(days=29), "This year": today.replace(month=1, day=1)}.get(preset)
    return None if first is None else f"{first:%Y%m%d}-{today:%Y%m%d}"


class StudyTableModel(QAbstractTableModel):
    """The studies matching the filters, fetched from the database a page at a time."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.db = None
        self.filters: dict = {}
        self.rows: list[dict] = []
        self._exhausted = True

    def open_database(self) -> None:
        from medview.io.studydb import StudyDatabase

        if self.db is None:
            self.db = StudyDatabase()

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def set_filters(self, **filters) -> None:
        self.open_database()
        self.beginResetModel()
        self.filters = {k: v for k, v in filters.items() if v}
        self.rows = self.db.list_studies(limit=PAGE, **self.filters)
        self._exhausted = len(self.rows) < PAGE
        self.endResetModel()

    def refresh(self) -> None:
        self.set_filters(**self.filters)

    # -- Qt model -----------------------------------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802, B008 - Qt override
        return 0 if parent.isValid() else len(COLUMNS)

    def canFetchMore(self, parent=QModelIndex()) -> bool:  # noqa: N802, B008 - Qt override
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent=QModelIndex()) -> None:  # noqa: N802, B008 - Qt override
        if parent.isValid() or self._exhausted or self.db is None:
            return
        more = self.db.list_studies(limit=PAGE, offset=len(self.rows), **self.filters)
        self._exhausted = len(more) < PAGE
        if more:
            self.beginInsertRows(QModelIndex(), len(self.rows), len(self.rows) + len(more) - 1)
            self.rows.extend(more)
            self.endInsertRows()

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section][0]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        key = COLUMNS[index.column()][1]
        if role == Qt.ItemDataRole.DisplayRole:
            value = row.get(key, "")
            if key == "PatientName":
                return display_name(value)
            if key == "StudyDate":
                return display_date(value)
            if isinstance(value, list):
                return "/".join(value)
            text = str(value)
            if key == "NumberOfStudyRelatedInstances" and not row.get("Complete", True):
                text += f" ({row.get('MissingInstances', 0)} missing)"
            return text
        if role == Qt.ItemDataRole.ToolTipRole:
            return row["StudyInstanceUID"] + ("" if row.get("Complete", True) else "\nsome files are missing")
        return None


class StudyBrowser(QWidget):
    """Search, import, open and remove studies of the local database."""

    open_requested = Signal(list)  # study UIDs to show
    series_requested = Signal(str, str)  # (study UID, series UID) double-clicked in the series below the list
    imported = Signal(dict)  # an import's summary

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = StudyTableModel(self)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Name or ID (e.g. DOE^J*, 123456)")
        self.search.setClearButtonEnabled(True)
        self.dates = QComboBox()
        self.dates.addItems(DATE_PRESETS)
        self.modality = QComboBox()
        self.modality.addItems(["Any", "CT", "MR", "PT", "CR", "DX", "US", "NM", "MG", "XA", "RTDOSE"])
        self.modality.setToolTip("Modality in the study")
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)  # compact rows
        self.table.setWordWrap(False)
        self.model.modelReset.connect(self.table.resizeColumnsToContents)  # one page of rows: cheap
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.doubleClicked.connect(lambda index: self._open_rows([index.row()]))
        self.table.selectionModel().selectionChanged.connect(lambda *_: self._preview_timer.start())
        self.preview = SeriesBrowser(thumbnail_size=64)
        self.preview.series_activated.connect(self.series_requested.emit)
        self.preview.status.setText("Select a study to see its series")
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)  # arrow keys through the list: one read when the cursor rests
        self._preview_timer.timeout.connect(self._show_series)
        self.import_button = QPushButton("Import…")
        self.import_button.setToolTip("Index a folder, a zip or a DICOMDIR into the study list")
        menu = QMenu(self.import_button)
        menu.addAction("Folder…", lambda: self.import_paths())
        menu.addAction("Zip file or DICOMDIR…", lambda: self.import_paths(kind="file"))
        menu.addSeparator()
        self.copy_action = menu.addAction("Copy the files into medview's store")
        self.copy_action.setCheckable(True)
        self.copy_action.setToolTip("For a CD or a USB stick: the study stays in the list when the medium is gone")
        self.import_button.setMenu(menu)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_import)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self._open_rows(self._selected_rows()))
        self.send_button = QPushButton("Send to…")
        self.send_button.setToolTip("C-STORE the selected studies to a configured PACS node (File > DICOM nodes…)")
        self.send_button.clicked.connect(lambda: self.send_selected())
        self.remove_button = QPushButton("Remove…")
        self.remove_button.clicked.connect(lambda: self.remove_selected())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.worker: Worker | None = None
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(250)  # typing: search once the reader pauses
        self._search_timer.timeout.connect(self.apply_filters)
        self.search.textChanged.connect(lambda _t: self._search_timer.start())
        self.dates.currentIndexChanged.connect(lambda _i: self.apply_filters())
        self.modality.currentIndexChanged.connect(lambda _i: self.apply_filters())

        # narrow-friendly: the search box on its own row, the buttons wrap (the panel shares the left dock with
        # Series and PACS; a wide minimum took the slice views' room)
        filters = QHBoxLayout()
        filters.addWidget(self.dates, 1)
        filters.addWidget(self.modality)
        buttons_box = QWidget()
        buttons = FlowLayout(buttons_box)
        for b in (self.import_button, self.cancel_button, self.open_button, self.send_button, self.remove_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.search)
        layout.addLayout(filters)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.preview)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        layout.addWidget(buttons_box)
        layout.addWidget(self.status)
        self._loaded = False
        self.hide_phi = lambda: False  # the window's privacy setting: no name in the confirmation then

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if not self._loaded:  # the database is opened when the list is first shown
            self._loaded = True
            self.apply_filters()

    # -- searching ----------------------------------------------------------------------------------------
    def apply_filters(self) -> None:
        text = self.search.text().strip()
        modality = self.modality.currentText()
        try:
            self.model.set_filters(date=date_range(self.dates.currentText()),
                                   modality=None if modality == "Any" else modality, text=text or None)
        except MedviewError as exc:
            self.status.setText(str(exc))
            return
        n = self.model.db.count_studies() if self.model.db is not None else 0
        shown = len(self.model.rows)
        more = "+" if self.model.canFetchMore() else ""
        self.status.setText(f"{shown}{more} of {n} studies" if self.model.filters else f"{n} studies")

    def _selected_rows(self) -> list[int]:
        return sorted(i.row() for i in self.table.selectionModel().selectedRows() if i.row() < len(self.model.rows))

    def selected_studies(self) -> list[str]:
        return [self.model.rows[r]["StudyInstanceUID"] for r in self._selected_rows()]

    def _open_rows(self, rows: list[int]) -> None:
        uids = [self.model.rows[r]["StudyInstanceUID"] for r in rows if 0 <= r < len(self.model.rows)]
        if uids:
            self.open_requested.emit(uids)

    def _show_series(self) -> None:
        """The series of the one selected study, with thumbnails, below the list."""
        studies = self.selected_studies()
        if len(studies) == 1:
            self.preview.scan_path(studies[0], self._study_title(self.model.rows[self._selected_rows()[0]]))
        else:
            self.preview.set_scan("", [])
            self.preview.status.setText(f"{len(studies)} studies selected: Open lists all their series"
                                        if studies else "Select a study to see its series")

    def _study_title(self, row: dict) -> str:
        """How the preview names a study: patient (unless Hide PHI is on), date, modalities; not its UID."""
        modalities = row.get("ModalitiesInStudy") or ""
        parts = [] if self.hide_phi() else [display_name(row.get("PatientName"))]
        parts += [display_date(row.get("StudyDate")),
                  "/".join(modalities) if isinstance(modalities, list) else str(modalities)]
        return " · ".join(p for p in parts if p) or "This study"

    # -- importing ----------------------------------------------------------------------------------------
    def import_paths(self, paths: list[str] | None = None, copy: bool | None = None,
                     chunk: int | None = None, kind: str = "folder") -> Worker | None:
        """Import ``paths`` (asked for when None: a folder, or with ``kind='file'`` zips or a DICOMDIR); ``copy``
        None follows the menu's "Copy the files into medview's store"."""
        if self.worker is not None and not self.worker.done:
            self.status.setText("An import is running; cancel it or wait.")
            return None
        if copy is None:
            copy = self.copy_action.isChecked()
        if paths is None and kind == "file":
            paths, _ = QFileDialog.getOpenFileNames(self, "Import zip files or a DICOMDIR into the study list", "",
                                                    "Zip or DICOMDIR (*.zip *.ZIP DICOMDIR dicomdir);;All files (*)")
            if not paths:
                return None
        elif paths is None:
            folder = QFileDialog.getExistingDirectory(self, "Import a folder into the study list")
            if not folder:
                return None
            paths = [folder]
        from medview.app.studies import import_studies

        self.model.open_database()
        worker = Worker(import_studies, list(paths), copy, chunk, str(self.model.db.path), in_process=True)
        worker.signals.progress.connect(self._import_progress)
        worker.signals.finished.connect(self._import_done)
        worker.signals.failed.connect(self._import_failed)
        worker.signals.cancelled.connect(self._import_cancelled)
        self.worker = worker
        self.import_button.setEnabled(False)
        self.send_button.setEnabled(False)
        self.cancel_button.show()
        self.status.setText("Importing…")
        self._last_refresh = 0.0
        start(worker)
        return worker

    def _import_progress(self, fraction: float, message: str) -> None:
        import time

        self.status.setText(f"{message} ({100 * fraction:.0f}%)")
        now = time.monotonic()
        if now - self._last_refresh > 1.0:  # a live list: what has been committed so far
            self._last_refresh = now
            self.model.refresh()

    def _import_ended(self) -> None:
        self.send_button.setEnabled(True)
        self.import_button.setEnabled(True)
        self.cancel_button.hide()
        self.model.refresh()
        self._show_series()  # the selected study may have more series now

    def _import_done(self, summary: dict) -> None:
        self._import_ended()
        self.status.setText(f"Imported: {summary['added']} added, {summary['updated']} updated, "
                            f"{summary['unchanged']} unchanged, {summary['skipped']} skipped, "
                            f"{summary['missing']} missing in {summary['seconds']:.1f} s; "
                            f"{len(summary['studies'])} studies with new files, "
                            f"{self.model.db.count_studies()} in the list")
        self.imported.emit(summary)

    def _import_failed(self, message: str) -> None:
        self._import_ended()
        self.status.setText(f"Import failed: {message}")
        QMessageBox.warning(self, "Import", message)

    def _import_cancelled(self) -> None:
        self._import_ended()
        self.status.setText("Import cancelled; the studies indexed so far are kept (import again to go on).")

    def cancel_import(self) -> None:
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()

    # -- sending ------------------------------------------------------------------------------------------
    def send_selected(self, node_name: str | None = None) -> Worker | None:
        """Send the selected studies to a configured node (asked for when not given), in a process of its own
        (one association per study)."""
        studies = self.selected_studies()
        if not studies:
            self.status.setText("Select a study to send.")
            return None
        if self.worker is not None and not self.worker.done:
            self.status.setText("A job is running; cancel it or wait.")
            return None
        from medview.io.net.nodes import load_nodes

        try:
            book = load_nodes()
        except MedviewError as exc:
            QMessageBox.warning(self, "Send to", str(exc))
            return None
        names = sorted(book.nodes)
        if not names:
            QMessageBox.information(self, "Send to", "No PACS node is configured yet. Add one with File > DICOM "
                                    "nodes… (or medview pacs nodes add NAME AE@HOST:PORT)")
            return None
        if node_name is None:
            node_name, ok = QInputDialog.getItem(self, "Send to", "Node:", names, 0, False)
            if not ok:
                return None
        node = book.nodes.get(node_name)
        if node is None:
            self.status.setText(f"No node named {node_name}")
            return None
        from medview.app.studies import send_studies

        worker = Worker(send_studies, node, studies, str(self.model.db.path), in_process=True)
        worker.signals.progress.connect(lambda f, m: self.status.setText(f"{m} to {node.label} ({100 * f:.0f}%)"))
        worker.signals.finished.connect(lambda r: (self._job_ended(), self.status.setText(
            f"Sent {r['sent']} file(s) to {node.label} in {r['seconds']:.1f} s")))
        worker.signals.failed.connect(lambda message: (self._job_ended(), self.status.setText(f"Send failed: "
                                                                                                f"{message}"),
                                                       QMessageBox.warning(self, "Send to", message)))
        worker.signals.cancelled.connect(lambda: (self._job_ended(), self.status.setText("Send cancelled")))
        self.worker = worker
        self.import_button.setEnabled(False)
        self.send_button.setEnabled(False)
        self.cancel_button.show()
        self.status.setText(f"Sending to {node.label}…")
        start(worker)
        return worker

    def _job_ended(self) -> None:
        self.import_button.setEnabled(True)
        self.send_button.setEnabled(True)
        self.cancel_button.hide()

    # -- removing -----------------------------------------------------------------------------------------
    def remove_selected(self, confirm: bool = True) -> int:
        """Forget the selected studies (after a confirmation); the number of instances removed."""
        rows = self._selected_rows()
        if not rows or self.model.db is None:
            return 0
        studies = [self.model.rows[r] for r in rows]
        tail = (" Files medview copied into its store are deleted; files indexed where they are stay on the "
                "disk.")
        if len(studies) == 1:
            study = studies[0]
            name = "" if self.hide_phi() else str(study["PatientName"]).replace("^", " ")
            question = (f"Remove the study of {name or 'this patient'} ({study['StudyDate'] or 'no date'}, "
                        f"{study['NumberOfStudyRelatedInstances']} images) from the list?" + tail)
        else:
            images = sum(int(s["NumberOfStudyRelatedInstances"] or 0) for s in studies)
            question = f"Remove {len(studies)} studies ({images} images) from the list?" + tail
        if confirm and QMessageBox.question(self, "Remove studies", question) != QMessageBox.StandardButton.Yes:
            return 0
        n = 0
        for study in studies:
            try:
                n += self.model.db.remove_study(study["StudyInstanceUID"])
            except MedviewError as exc:
                QMessageBox.warning(self, "Remove study", str(exc))
                break
        self.apply_filters()
        return n

    def shutdown(self) -> None:
        self._search_timer.stop()
        self._preview_timer.stop()
        self.cancel_import()
        self.preview.shutdown()
        self.model.close()
