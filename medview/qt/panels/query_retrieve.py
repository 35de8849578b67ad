"""The PACS panel: query a configured node (C-FIND, or QIDO-RS for a DICOMweb server) and retrieve studies or
series (C-GET, or WADO-RS) into the study database; medview's own Storage SCP while the window is open.

Thin over :mod:`medview.io.net`: a node or server from ``nodes.toml`` (Nodes… edits it; Verify = C-ECHO), a
search by name or ID and a date preset, the matching studies in a tree whose rows open onto their series
(asked for when a study is expanded), and Retrieve for the selected studies and series, one job each in a
process of its own with progress and Cancel; a retrieve that does not finish leaves the study marked
incomplete.  Searches and echoes run in worker threads (network waits release the GIL).

The Storage SCP (``[local] listen = true``) runs in pynetdicom's threads in this process; what it receives is
imported when each association ends and the Studies list refreshes.  Messages name the sender's AE title and
counts, never a patient.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.core.errors import MedviewError
from medview.qt.panels.study_browser import DATE_PRESETS, date_range
from medview.qt.text import display_date, display_name
from medview.qt.views.flow_layout import FlowLayout
from medview.qt.workers import Worker, start

COLUMNS = (("Patient", "PatientName"), ("ID", "PatientID"), ("Date", "StudyDate"), ("Mod.", "ModalitiesInStudy"),
           ("Images", "NumberOfStudyRelatedInstances"), ("Description", "StudyDescription"))
STUDY_ROLE = Qt.ItemDataRole.UserRole
SERIES_ROLE = Qt.ItemDataRole.UserRole + 1
WEB_PREFIX = "web:"  # the node combo's data for a DICOMweb server


def _looks_like_id(text: str) -> bool:
    return not any(c.isalpha() for c in text.replace("*", "").replace("?", ""))


def _find(entry, text: str | None, date: str | None, task=None) -> list[dict]:
    """Studies on a DIMSE node or a DICOMweb server: ``text`` is a name (prefix or wildcards) or an ID."""
    from medview.io.net import dicomweb, dimse
    from medview.io.net.nodes import Node

    def search(**keys) -> list[dict]:
        if isinstance(entry, Node):
            return dimse.find(entry, "STUDY", study_date=date, **keys)
        return dicomweb.find(entry, "study", date=date, **keys)

    if text and _looks_like_id(text):
        return search(patient_id=text)
    rows = search(patient_name=text if text is None or "*" in text or "?" in text else f"{text}*")
    if text and not rows:  # not a name: try it as a patient ID
        rows = search(patient_id=text)
    return rows


def _find_series(entry, study_uid: str, task=None) -> list[dict]:
    from medview.io.net import dicomweb, dimse
    from medview.io.net.nodes import Node

    if isinstance(entry, Node):
        return dimse.find(entry, "SERIES", study_uid=study_uid)
    return dicomweb.find(entry, "series", study_uid=study_uid)


def _echo(node, task=None) -> float:
    from medview.io.net import dimse

    return dimse.echo(node)


def retrieve_job(entry, study_uid: str, series_uid: str | None, database: str, task=None) -> dict:
    """One retrieve (C-GET from a DIMSE node, WADO-RS from a DICOMweb server) into ``database``."""
    from medview.io.net.nodes import Node

    if isinstance(entry, Node):
        from medview.io.net.retrieve import retrieve

        return retrieve(entry, study_uid, series_uid, database=database, task=task)
    from medview.io.net.dicomweb import retrieve

    return retrieve(entry, study_uid, series_uid, database=database, task=task)


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if key == "PatientName":
        return display_name(value)
    if key == "StudyDate":
        return display_date(value)
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value)


class _ListenerSignals(QObject):
    imported = Signal(dict)  # emitted from pynetdicom's thread; delivered in the GUI thread


class QueryRetrievePanel(QWidget):
    """Search a node, retrieve the selected studies or series; run medview's Storage SCP."""

    retrieved = Signal(str)  # a study UID now in the database (retrieved, or received by the Storage SCP)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.nodes = QComboBox()
        self.nodes.setToolTip("DICOM nodes and DICOMweb servers (Nodes… to add or change them)")
        self.nodes.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.nodes.setMinimumContentsLength(8)  # long node labels do not widen the dock
        self.nodes_button = QPushButton("Nodes…")
        self.nodes_button.setToolTip("Add, change or verify nodes; medview's AE title and Storage SCP")
        self.nodes_button.clicked.connect(lambda: self.edit_nodes())
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
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels([c for c, _ in COLUMNS])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setUniformRowHeights(True)
        self.tree.header().setStretchLastSection(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.tree.itemExpanded.connect(self._expanded)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setToolTip("Retrieve the selected studies or series into the study list (open a "
                                        "study's row to choose series)")
        self.retrieve_button.clicked.connect(lambda: self.retrieve_selected())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.listener_status = QLabel("")
        self.listener_status.setWordWrap(True)
        self.rows: list[dict] = []
        self.worker: Worker | None = None
        self._series_workers: list[Worker] = []
        self._queue: list[tuple[str, str | None]] = []
        self._entry = None  # the node or server the queued retrieves go to
        self._searched = None  # the node or server the tree's rows came from
        self.listener = None  # medview.io.net.scp.StorageSCP while it runs
        self._listener_signals = _ListenerSignals(self)
        self._listener_signals.imported.connect(self._received)

        top = QHBoxLayout()
        top.addWidget(self.nodes, 1)
        top.addWidget(self.nodes_button)
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
        layout.addWidget(self.tree, 1)
        layout.addWidget(buttons_box)
        layout.addWidget(self.status)
        layout.addWidget(self.listener_status)
        self._book = None
        self.reload_nodes()

    # -- nodes ---------------------------------------------------------------------------------------------
    def reload_nodes(self) -> None:
        from medview.io.net.nodes import load_nodes

        current = self.nodes.currentData()
        self.nodes.clear()
        try:
            self._book = load_nodes()
        except MedviewError as exc:
            self._book = None
            self.status.setText(str(exc))
            return
        for name in sorted(self._book.nodes):
            self.nodes.addItem(f"{name} ({self._book.nodes[name].address})", name)
        for name in sorted(self._book.web):
            self.nodes.addItem(f"{name} (DICOMweb)", WEB_PREFIX + name)
        if current is not None and self.nodes.findData(current) >= 0:
            self.nodes.setCurrentIndex(self.nodes.findData(current))
        if not self._book.nodes and not self._book.web:
            self.status.setText("No node configured: Nodes… adds one")

    def edit_nodes(self, exec_dialog: bool = True):
        """The DICOM nodes dialog; on OK the list is read again and the Storage SCP follows its settings."""
        from medview.qt.dialogs.nodes import NodesDialog

        try:
            dialog = NodesDialog(self)
        except MedviewError as exc:
            QMessageBox.warning(self, "DICOM nodes", str(exc))
            return None
        dialog.accepted.connect(self._nodes_changed)
        if exec_dialog:
            dialog.exec()
        return dialog

    def _nodes_changed(self) -> None:
        self.reload_nodes()
        self.start_listener()

    def node(self):
        """The chosen DIMSE node (a Node) or DICOMweb server (a WebServer, password asked for once per
        session when it has a user); None when nothing is chosen or the password was not given."""
        name = self.nodes.currentData()
        if name is None or self._book is None:
            return None
        if not name.startswith(WEB_PREFIX):
            return self._book.nodes.get(name)
        web = self._book.web.get(name[len(WEB_PREFIX):])
        if web is None:
            return None
        import os

        from medview.io.net.dicomweb import WebServer
        from medview.qt.dialogs.nodes import WEB_PASSWORDS

        password = WEB_PASSWORDS.get(web.name)
        if web.user and password is None:
            password, ok = QInputDialog.getText(self, "DICOMweb", f"Password of {web.user} on {web.url}:",
                                                QLineEdit.EchoMode.Password)
            if not ok:
                return None
            WEB_PASSWORDS[web.name] = password
        return WebServer(web.url, user=web.user, password=password, token=os.environ.get("MEDVIEW_DICOMWEB_TOKEN"))

    def _busy(self) -> bool:
        if self.worker is not None and not self.worker.done:
            self.status.setText("A job is running; cancel it or wait.")
            return True
        return False

    def verify(self) -> Worker | None:
        from medview.io.net.nodes import Node

        node = self.node()
        if node is None or self._busy():
            return None
        if not isinstance(node, Node):
            self.status.setText("Verify is a C-ECHO: for a DICOMweb server, Search (or Nodes… > Verify)")
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
        worker.signals.finished.connect(lambda rows: self._found(node, rows))
        worker.signals.failed.connect(lambda message: self.status.setText(f"Search failed: {message}"))
        self.worker = start(worker)
        self.status.setText(f"Searching {node.label}…")
        return worker

    def _found(self, node, rows: list[dict]) -> None:
        self.rows = rows
        self._searched = node
        self.tree.clear()
        for row in rows:
            item = QTreeWidgetItem([_cell(key, row.get(key)) for _title, key in COLUMNS])
            item.setData(0, STUDY_ROLE, row.get("StudyInstanceUID"))
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.tree.addTopLevelItem(item)
        for column in range(len(COLUMNS) - 1):
            self.tree.resizeColumnToContents(column)
        self.status.setText(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} on {node.label}")

    def _expanded(self, item: QTreeWidgetItem) -> None:
        """A study opened: its series, asked for once."""
        if item.parent() is not None or item.data(0, SERIES_ROLE) == "asked":
            return
        item.setData(0, SERIES_ROLE, "asked")
        worker = Worker(_find_series, self._searched, item.data(0, STUDY_ROLE))
        worker.signals.finished.connect(lambda series: self._series_found(item, series))
        worker.signals.failed.connect(lambda message: self.status.setText(f"Series search failed: {message}"))
        self._series_workers = [w for w in self._series_workers if not w.done] + [worker]
        start(worker)

    def _series_found(self, item: QTreeWidgetItem, series: list[dict]) -> None:
        try:
            study = item.data(0, STUDY_ROLE)
        except RuntimeError:  # a new search removed the row
            return
        if not series:
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)
        for row in sorted(series, key=lambda r: (r.get("SeriesNumber") is None, r.get("SeriesNumber") or 0)):
            number = row.get("SeriesNumber")
            label = f"Series {number}" if number is not None else "Series"
            modality = _cell("Modality", row.get("Modality"))
            count = _cell("", row.get("NumberOfSeriesRelatedInstances"))
            description = _cell("", row.get("SeriesDescription"))
            # the dock is narrow: the first column says what the series is, the others stay sortable
            summary = " · ".join(part for part in (label, modality, f"{count} images" if count else "", description)
                                 if part)
            child = QTreeWidgetItem([summary, "", "", modality, count, description])
            child.setToolTip(0, summary)
            child.setData(0, STUDY_ROLE, study)
            child.setData(0, SERIES_ROLE, row.get("SeriesInstanceUID"))
            item.addChild(child)

    # -- retrieving ----------------------------------------------------------------------------------------
    def selected_targets(self) -> list[tuple[str, str | None]]:
        """(study UID, series UID or None for the whole study) of the selection, each once, in tree order."""
        items = self.tree.selectedItems()
        whole = {i.data(0, STUDY_ROLE) for i in items if i.parent() is None}
        order = {id(self.tree.topLevelItem(r)): r for r in range(self.tree.topLevelItemCount())}

        def position(i: QTreeWidgetItem) -> tuple[int, int]:
            parent = i.parent()
            return (order[id(i)], -1) if parent is None else (order[id(parent)], parent.indexOfChild(i))

        out = []
        for i in sorted(items, key=position):
            study, series = i.data(0, STUDY_ROLE), (i.data(0, SERIES_ROLE) if i.parent() is not None else None)
            if series is not None and study in whole:
                continue  # its study is retrieved whole
            out.append((study, series))
        return out

    def retrieve_selected(self) -> bool:
        targets = self.selected_targets()
        if not targets:
            self.status.setText("Select the studies (or series) to retrieve.")
            return False
        if self._busy():
            return False
        node = self._searched or self.node()
        if node is None:
            return False
        self._entry = node
        self._queue = targets
        self._total = len(self._queue)
        self.retrieve_button.setEnabled(False)
        self.cancel_button.show()
        self._next()
        return True

    def _next(self) -> None:
        if not self._queue or self._entry is None:
            self.retrieve_button.setEnabled(True)
            self.cancel_button.hide()
            return
        study, series = self._queue.pop(0)
        from medview.io.studydb import database_path

        k = self._total - len(self._queue)
        what = "Series" if series else "Study"
        worker = Worker(retrieve_job, self._entry, study, series, str(database_path()), in_process=True)
        worker.signals.progress.connect(lambda f, m: self.status.setText(f"{what} {k} of {self._total}: {m}"))
        worker.signals.finished.connect(lambda result: self._retrieved(result))
        worker.signals.failed.connect(lambda message: self._retrieve_failed(message))
        worker.signals.cancelled.connect(lambda: self._stopped("Retrieve cancelled; what arrived is kept, the "
                                                               "study is marked incomplete."))
        self.worker = start(worker)

    def _retrieved(self, result: dict) -> None:
        state = "" if result.get("complete", True) else " (incomplete)"
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

    # -- medview's Storage SCP -----------------------------------------------------------------------------
    def start_listener(self) -> bool:
        """Start (or restart with new settings, or stop) the Storage SCP as ``nodes.toml`` says; True when it
        runs.  A port that is taken or a certificate that does not load is said in the panel, not raised."""
        self.stop_listener()
        book = self._book
        if book is None or not book.listen:
            self.listener_status.setText("")
            return False
        from medview.io.net.scp import StorageSCP
        from medview.io.studydb import database_path

        allowed = book.allowed()
        try:
            self.listener = StorageSCP(book.listen_port, ae_title=book.local_ae, allow=allowed,
                                       database=str(database_path()), ssl_context=book.scp_ssl_context(),
                                       on_imported=self._listener_signals.imported.emit).start()
        except MedviewError as exc:
            self.listener = None
            self.listener_status.setText(f"Storage SCP not running: {exc}")
            return False
        who = ", ".join(allowed) if allowed else "nobody yet (add a node or allowed senders in Nodes…)"
        self.listener_status.setText(f"Receiving as {book.local_ae} on port {book.listen_port}"
                                     f"{' (TLS)' if book.tls_cert else ''} from {who}")
        return True

    def stop_listener(self) -> None:
        if self.listener is not None:
            self.listener.stop()
            self.listener = None

    def _received(self, summary: dict) -> None:
        if summary.get("error"):
            self.listener_status.setText(f"Received {summary['received']} instance(s) from {summary['from']} but "
                                         f"could not import them: {summary['error']}")
            return
        state = " (the sender stopped: marked incomplete)" if summary["aborted"] else ""
        self.listener_status.setText(f"Received {summary['received']} instance(s) from {summary['from']}{state}")
        for study in summary["studies"]:
            self.retrieved.emit(study)

    def shutdown(self) -> None:
        self.cancel()
        for worker in self._series_workers:
            worker.cancel()
        self.stop_listener()
