"""The DICOM nodes dialog: medview's own AE title and Storage SCP, the remote DIMSE nodes and DICOMweb servers.

Thin over :mod:`medview.io.net.nodes` (``nodes.toml``): the dialog edits a copy of the node book and writes it
when OK is pressed (atomically), so Cancel leaves the file as it was.  Verify runs C-ECHO (a DIMSE node) or a
one-result QIDO-RS search (a DICOMweb server) with what the form holds, saved or not, in a worker thread.
DICOMweb passwords are never stored: one typed here is kept for this session only (:data:`WEB_PASSWORDS`).
"""

from __future__ import annotations

import copy
from dataclasses import replace

from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from medview.core.errors import MedviewError
from medview.io.net.nodes import (
    DEFAULT_LISTEN_PORT,
    Node,
    NodeBook,
    NodeConfigError,
    WebNode,
    check_ae_title,
    check_name,
    check_web_url,
    load_nodes,
    save_nodes,
)
from medview.qt.workers import Worker, start

DIMSE, WEB = "DICOM (DIMSE)", "DICOMweb"
#: DICOMweb passwords typed in this session, by server name (never written to disk).
WEB_PASSWORDS: dict[str, str] = {}


def _verify(entry, password: str | None = None, task=None) -> str:
    if isinstance(entry, Node):
        from medview.io.net import dimse

        return f"{entry.label}: C-ECHO ok in {dimse.echo(entry) * 1000:.0f} ms"
    from medview.io.net import dicomweb

    server = dicomweb.WebServer(entry.url, user=entry.user, password=password, timeout=10.0)
    dicomweb.find(server, "study", limit=1)
    return f"{entry.label}: QIDO-RS answers"


def _file_row(edit: QLineEdit, parent: QWidget, title: str) -> QWidget:
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit, 1)
    browse = QPushButton("…")
    browse.setToolTip(title)
    browse.setMaximumWidth(32)

    def pick() -> None:
        path, _ = QFileDialog.getOpenFileName(parent, title, edit.text(), "PEM files (*.pem *.crt *.key);;All (*)")
        if path:
            edit.setText(path)

    browse.clicked.connect(pick)
    row.addWidget(browse)
    return box


class NodesDialog(QDialog):
    """Edit ``nodes.toml``: ``NodesDialog(parent).exec()``; :attr:`book` is what was saved."""

    def __init__(self, parent: QWidget | None = None, book: NodeBook | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("DICOM nodes")
        self.book = copy.deepcopy(book) if book is not None else load_nodes()
        self.worker: Worker | None = None

        # -- this workstation ---------------------------------------------------------------------------
        local = QGroupBox("This workstation")
        self.local_ae = QLineEdit(self.book.local_ae)
        self.local_ae.setToolTip("The AE title medview calls with, and answers to as a Storage SCP")
        self.listen = QCheckBox("Receive studies while medview is open (Storage SCP)")
        self.listen.setChecked(self.book.listen)
        self.listen_port = QSpinBox()
        self.listen_port.setRange(1, 65535)
        self.listen_port.setValue(self.book.listen_port or DEFAULT_LISTEN_PORT)
        self.allow = QLineEdit(", ".join(self.book.allow) if self.book.allow is not None else "")
        self.allow.setPlaceholderText("empty: the AE titles of the nodes below")
        self.allow.setToolTip("Calling AE titles allowed to store into medview (comma-separated)")
        self.tls_cert = QLineEdit(self.book.tls_cert or "")
        self.tls_cert.setPlaceholderText("none: the SCP speaks plain DICOM")
        self.tls_key = QLineEdit(self.book.tls_key or "")
        form = QFormLayout(local)
        form.addRow("AE title", self.local_ae)
        form.addRow(self.listen)
        form.addRow("Port", self.listen_port)
        form.addRow("Allowed senders", self.allow)
        form.addRow("TLS certificate", _file_row(self.tls_cert, self, "PEM certificate of the Storage SCP"))
        form.addRow("TLS key", _file_row(self.tls_key, self, "Private key of the certificate"))

        # -- remote nodes -------------------------------------------------------------------------------
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Name", "Kind", "Address"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._selected)

        editor = QGroupBox("Node")
        self.name = QLineEdit()
        self.kind = QComboBox()
        self.kind.addItems([DIMSE, WEB])
        self.kind.currentTextChanged.connect(lambda _t: self._show_kind())
        self.ae_title = QLineEdit()
        self.host = QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.tls = QCheckBox("DICOM over TLS")
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("the system's CA certificates")
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.user = QLineEdit()
        self.user.setPlaceholderText("none")
        self.password = QLineEdit()
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("kept for this session only, never saved")
        self.form = QFormLayout(editor)
        self.form.addRow("Name", self.name)
        self.form.addRow("Kind", self.kind)
        self.form.addRow("AE title", self.ae_title)
        self.form.addRow("Host", self.host)
        self.form.addRow("Port", self.port)
        self.form.addRow(self.tls)
        self.form.addRow("CA file", _file_row(self.ca_file, self, "CA certificate(s) that sign the node's"))
        self.form.addRow("URL", self.url)
        self.form.addRow("User", self.user)
        self.form.addRow("Password", self.password)
        self.new_button = QPushButton("New")
        self.new_button.clicked.connect(self.new_entry)
        self.apply_button = QPushButton("Apply")
        self.apply_button.setToolTip("Put the form into the list (written when you press OK)")
        self.apply_button.clicked.connect(lambda: self.apply_entry())
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(lambda: self.remove_entry())
        self.verify_button = QPushButton("Verify")
        self.verify_button.setToolTip("C-ECHO (DIMSE) or a QIDO-RS search (DICOMweb) with what the form holds")
        self.verify_button.clicked.connect(lambda: self.verify())
        buttons = QHBoxLayout()
        for b in (self.new_button, self.apply_button, self.remove_button, self.verify_button):
            buttons.addWidget(b)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addWidget(local)
        layout.addWidget(QLabel("Remote nodes"))
        layout.addWidget(self.table, 1)
        layout.addWidget(editor)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(box)
        self._fill_table()
        self._show_kind()
        self.resize(560, 720)

    # -- the list --------------------------------------------------------------------------------------
    def _entries(self) -> list[Node | WebNode]:
        return [self.book.nodes[n] for n in sorted(self.book.nodes)] + [self.book.web[n] for n in sorted(self.book.web)]

    def _fill_table(self, select: str | None = None) -> None:
        entries = self._entries()
        self.table.setRowCount(len(entries))
        for r, entry in enumerate(entries):
            if isinstance(entry, Node):
                cells = (entry.name, "DIMSE" + (" TLS" if entry.tls else ""), entry.address)
            else:
                cells = (entry.name, "DICOMweb", entry.url)
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
            if entry.name == select:
                self.table.selectRow(r)

    def _selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        entry = self._entries()[rows[0].row()]
        self.name.setText(entry.name)
        if isinstance(entry, Node):
            self.kind.setCurrentText(DIMSE)
            self.ae_title.setText(entry.ae_title)
            self.host.setText(entry.host)
            self.port.setValue(entry.port)
            self.tls.setChecked(entry.tls)
            self.ca_file.setText(entry.ca_file or "")
        else:
            self.kind.setCurrentText(WEB)
            self.url.setText(entry.url)
            self.user.setText(entry.user or "")
            self.password.setText(WEB_PASSWORDS.get(entry.name, ""))
        self.status.setText("")

    def _show_kind(self) -> None:
        web = self.kind.currentText() == WEB
        for widget, for_web in ((self.ae_title, False), (self.host, False), (self.port, False), (self.tls, False),
                                (self.ca_file, False), (self.url, True), (self.user, True), (self.password, True)):
            self.form.setRowVisible(self._row_of(widget), for_web == web)

    def _row_of(self, widget: QWidget) -> int:
        for row in range(self.form.rowCount()):
            for role in (QFormLayout.ItemRole.FieldRole, QFormLayout.ItemRole.SpanningRole):
                item = self.form.itemAt(row, role)
                if item is not None and (item.widget() is widget or (item.widget() is not None
                                                                     and item.widget().isAncestorOf(widget))):
                    return row
        raise KeyError(widget)

    def new_entry(self) -> None:
        self.table.clearSelection()
        for edit in (self.name, self.ae_title, self.host, self.ca_file, self.url, self.user, self.password):
            edit.clear()
        self.port.setValue(104)
        self.tls.setChecked(False)
        self.name.setFocus()

    def form_entry(self) -> Node | WebNode:
        """The node the form describes (checked; raises NodeConfigError with what is wrong)."""
        name = check_name(self.name.text().strip())
        if self.kind.currentText() == WEB:
            return WebNode(name=name, url=check_web_url(self.url.text()), user=self.user.text().strip() or None)
        host = self.host.text().strip()
        if not host:
            raise NodeConfigError("the node needs a host (a name or an IP address)")
        ca = self.ca_file.text().strip() or None
        if ca and not self.tls.isChecked():
            raise NodeConfigError("a CA file is only used with TLS")
        local = self.local_ae.text().strip() or self.book.local_ae
        return Node(name=name, ae_title=check_ae_title(self.ae_title.text()), host=host, port=self.port.value(),
                    tls=self.tls.isChecked(), ca_file=ca, local_ae=local)

    def apply_entry(self) -> bool:
        try:
            entry = self.form_entry()
        except MedviewError as exc:
            self.status.setText(str(exc))
            return False
        self.book.nodes.pop(entry.name, None)
        self.book.web.pop(entry.name, None)
        if isinstance(entry, Node):
            self.book.nodes[entry.name] = entry
        else:
            self.book.web[entry.name] = entry
            if self.password.text():
                WEB_PASSWORDS[entry.name] = self.password.text()
        self._fill_table(select=entry.name)
        self.status.setText(f"{entry.label} is in the list; OK writes it")
        return True

    def remove_entry(self) -> bool:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            self.status.setText("Select the node to remove.")
            return False
        entry = self._entries()[rows[0].row()]
        (self.book.nodes if isinstance(entry, Node) else self.book.web).pop(entry.name, None)
        self._fill_table()
        self.new_entry()
        self.status.setText(f"{entry.label} removed; OK writes the list")
        return True

    def verify(self) -> Worker | None:
        if self.worker is not None and not self.worker.done:
            return None
        try:
            entry = self.form_entry()
        except MedviewError as exc:
            self.status.setText(str(exc))
            return None
        worker = Worker(_verify, entry, self.password.text() or WEB_PASSWORDS.get(entry.name))
        worker.signals.finished.connect(self.status.setText)
        worker.signals.failed.connect(lambda message: self.status.setText(f"Verify failed: {message}"))
        self.worker = start(worker)
        self.status.setText(f"Verifying {entry.label}…")
        return worker

    # -- saving ----------------------------------------------------------------------------------------
    def collect(self) -> NodeBook:
        """The book with this workstation's settings from the form (checked)."""
        book = copy.deepcopy(self.book)
        book.local_ae = check_ae_title(self.local_ae.text(), "medview's AE title")
        book.nodes = {name: replace(node, local_ae=book.local_ae) for name, node in book.nodes.items()}
        book.listen = self.listen.isChecked()
        book.listen_port = self.listen_port.value()
        allow = [a.strip() for a in self.allow.text().split(",") if a.strip()]
        book.allow = [check_ae_title(a, "allowed AE title") for a in allow] or None
        book.tls_cert = self.tls_cert.text().strip() or None
        book.tls_key = self.tls_key.text().strip() or None
        if book.tls_key and not book.tls_cert:
            raise NodeConfigError("a TLS key needs its certificate")
        book.scp_ssl_context()  # a certificate that does not load is said now
        return book

    def accept(self) -> None:
        try:
            book = self.collect()
            save_nodes(book)
        except (MedviewError, OSError) as exc:
            self.status.setText(f"Not saved: {exc}")
            return
        self.book = book
        super().accept()

    def done(self, result: int) -> None:
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()
        super().done(result)
