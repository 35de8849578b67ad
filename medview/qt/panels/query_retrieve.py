"""The PACS panel: query a configured DIMSE node (C-FIND) and retrieve studies (C-GET) into the study database.

Thin over :mod:`medview.io.net`: a node from ``nodes.toml`` (Verify = C-ECHO), a search by name or ID and a
date preset, the matching studies in a table, and Retrieve for the selected ones, one job per study in a
process of its own with progress and Cancel; a retrieve that does not finish leaves the study marked
incomplete.  Searches and echoes run in worker threads (network waits release the GIL).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.core.errors import MedviewError
from medview.qt.panels.study_browser import DATE_PRESETS, date_range
from medview.qt.views.flow_layout import FlowLayout
from medview.qt.workers import Worker, start

COLUMNS = (("Patient", "PatientName"), ("ID", "PatientID"), ("Date", "StudyDate"), ("Mod.", "ModalitiesInStudy"),
           ("Images", "NumberOfStudyRelatedInstances"), ("Description", "StudyDescription"))


def _find(node, text: str | None, date: str | None, task=None) -> list[dict]:
    from medview.io.net import dimse

    if text and not any(c.isalpha() for c in text.replace("*", "").replace("?", "")):
        return dimse.find(node, "STUDY", patient_id=text, study_date=date)
    rows = dimse.find(node, "STUDY", patient_name=(text if text is None or "*" in text or "?" in text
                                                   else f"{text}*"), study_date=date)
    if text and not rows:  # not a name: try it as a patient ID
        rows = dimse.find(node, "STUDY", patient_id=text, study_date=date)
    return rows


def _echo(node, task=None) -> float:
    from medview.io.net import dimse

    return dimse.echo(node)


class QueryRetrievePanel(QWidget):
    """Search a node, retrieve the selected studies."""

    retrieved = Signal(str)  # a study UID now in the database

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.nodes = QComboBox()
        self.nodes.setToolTip("Nodes configured with: medview pacs nodes add NAME AE@HOST:PORT")
        self.nodes.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.nodes.setMinimumContentsLength(8)  # long node labels do not widen the dock
        self.reload_button = QPushButton("↻")
        self.reload_button.setToolTip("Read the node list again")
        self.reload_button.clicked.connect(self.reload_nodes)
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip("C-ECHO: is the node there, and does it accept medview?")
        self.verify_button.clicked.connect(lambda: self.verify())
        self.search = QLineEdit()
        self.search.setPlaceholderText("Name or ID (e.g. DOE^J*)")
        self.search.returnPressed.connect(lambda: self.find())
        self.dates = QComboBox()
        self.dates.addItems(DATE_PRESETS)
        self.find_button = QPushButton("Search")
        self.find_button.clicked.connect(lambda: self.find())
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c for c, _ in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setToolTip("C-GET the selected studies into the study list")
        self.retrieve_button.clicked.connect(lambda: self.retrieve_selected())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.rows: list[dict] = []
        self.worker: Worker | None = None
        self._queue: list[str] = []

        self.reload_button.setMaximumWidth(self.fontMetrics().horizontalAdvance("↻") + 16)
        top = QHBoxLayout()
        top.addWidget(self.nodes, 1)
        top.addWidget(self.reload_button)
        search = QHBoxLayout()
        search.addWidget(self.dates, 1)
        search.addWidget(self.find_button)
        buttons_box = QWidget()
        buttons = FlowLayout(buttons_box)  # wraps: the panel shares the narrow left dock
        for b in (self.verify_button, self.retrieve_button, self.cancel_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addLayout(search)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons_box)
        layout.addWidget(self.status)
        self._book = None
        self.reload_nodes()

    # -- nodes ---------------------------------------------------------------------------------------------
    def reload_nodes(self) -> None:
        from medview.io.net.nodes import load_nodes

        self.nodes.clear()
        try:
            self._book = load_nodes()
        except MedviewError as exc:
            self._book = None
            self.status.setText(str(exc))
            return
        for name in sorted(self._book.nodes):
            self.nodes.addItem(f"{name} ({self._book.nodes[name].address})", name)
        if not self._book.nodes:
            self.status.setText("No node configured: medview pacs nodes add NAME AE@HOST:PORT")

    def node(self):
        name = self.nodes.currentData()
        return None if name is None or self._book is None else self._book.nodes.get(name)

    def _busy(self) -> bool:
        if self.worker is not None and not self.worker.done:
            self.status.setText("A job is running; cancel it or wait.")
            return True
        return False

    def verify(self) -> Worker | None:
        node = self.node()
        if node is None or self._busy():
            return None
        worker = Worker(_echo, node)
        worker.signals.finished.connect(lambda s: self.status.setText(f"{node.label}: C-ECHO ok in {s * 1000:.0f} ms"))
        worker.signals.failed.connect(self.status.setText)
        self.worker = start(worker)
        self.status.setText(f"Verifying {node.label}…")
        return worker

    # -- searching -----------------------------------------------------------------------------------------
    def find(self) -> Worker | None:
        node = self.node()
        if node is None or self._busy():
            return None
        text = self.search.text().strip() or None
        worker = Worker(_find, node, text, date_range(self.dates.currentText()))
        worker.signals.finished.connect(self._found)
        worker.signals.failed.connect(lambda message: self.status.setText(f"Search failed: {message}"))
        self.worker = start(worker)
        self.status.setText(f"Searching {node.label}…")
        return worker

    def _found(self, rows: list[dict]) -> None:
        self.rows = rows
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, (_title, key) in enumerate(COLUMNS):
                value = row.get(key, "")
                if key == "PatientName":
                    value = str(value).replace("^", " ").strip()
                elif key == "StudyDate" and len(str(value)) == 8:
                    value = f"{value[:4]}-{value[4:6]}-{value[6:]}"
                elif isinstance(value, list):
                    value = "/".join(value)
                self.table.setItem(r, c, QTableWidgetItem(str(value)))
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} on {self.node().label}")

    # -- retrieving ----------------------------------------------------------------------------------------
    def retrieve_selected(self) -> bool:
        node = self.node()
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()})
        if node is None or not rows or self._busy():
            if not rows:
                self.status.setText("Select the studies to retrieve.")
            return False
        self._queue = [self.rows[r]["StudyInstanceUID"] for r in rows]
        self._total = len(self._queue)
        self.retrieve_button.setEnabled(False)
        self.cancel_button.show()
        self._next()
        return True

    def _next(self) -> None:
        node = self.node()
        if not self._queue or node is None:
            self.retrieve_button.setEnabled(True)
            self.cancel_button.hide()
            return
        study = self._queue.pop(0)
        from medview.io.net.retrieve import retrieve
        from medview.io.studydb import database_path

        k = self._total - len(self._queue)
        worker = Worker(retrieve, node, study, None, database=str(database_path()), in_process=True)
        worker.signals.progress.connect(lambda f, m: self.status.setText(f"Study {k} of {self._total}: {m}"))
        worker.signals.finished.connect(lambda result: self._retrieved(result))
        worker.signals.failed.connect(lambda message: self._retrieve_failed(message))
        worker.signals.cancelled.connect(lambda: self._stopped("Retrieve cancelled; what arrived is kept, the "
                                                               "study is marked incomplete."))
        self.worker = start(worker)

    def _retrieved(self, result: dict) -> None:
        state = "" if result["complete"] else " (incomplete)"
        self.status.setText(f"Retrieved {result['received']} instance(s){state}")
        self.retrieved.emit(result["study"])
        self._next()

    def _retrieve_failed(self, message: str) -> None:
        self._stopped(f"Retrieve failed: {message}")
        QMessageBox.warning(self, "Retrieve", message)

    def _stopped(self, text: str) -> None:
        self._queue = []
        self.retrieve_button.setEnabled(True)
        self.cancel_button.hide()
        self.status.setText(text)

    def cancel(self) -> None:
        self._queue = []
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()

    def shutdown(self) -> None:
        self.cancel()
