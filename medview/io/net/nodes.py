"""Remote DICOM nodes (PACS, modalities, other workstations) and medview's own AE title.

They live in ``nodes.toml`` in medview's data folder (``$MEDVIEW_DATA_DIR``)::

    [local]
    ae_title = "MEDVIEW"

    [nodes.pacs]
    ae_title = "ORTHANC"
    host = "pacs.example.org"
    port = 4242
    tls = false
    ca_file = ""          # only with tls = true: CA bundle to verify the peer (empty: the system's)

The file is read with :mod:`tomllib` and written by a small writer of this fixed schema (atomically).
:func:`resolve_node` turns what a user types (a configured name or ``AE@HOST:PORT``) into a :class:`Node`.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medview.core.errors import MedviewError

NODES_FILE = "nodes.toml"
DEFAULT_LOCAL_AE = "MEDVIEW"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ADDRESS = re.compile(r"^(?P<ae>[^@]+)@(?P<host>\[[^\]]+\]|[^:@\[\]]+):(?P<port>\d+)$")


class NetworkError(MedviewError):
    """A DICOM network operation failed: the peer cannot be reached, rejected or aborted the association,
    did not answer in time, or answered with a failure status.  The message names the node."""


class NodeConfigError(MedviewError):
    """A node name or address is not valid, not configured, or ``nodes.toml`` cannot be read."""


def check_ae_title(title: str, what: str = "AE title") -> str:
    """An AE title as DICOM allows it (1-16 characters, no backslash or control characters, not blank)."""
    value = title.strip()
    if not value or len(value) > 16 or "\\" in value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise NodeConfigError(f"{what} {title!r} is not valid: 1 to 16 characters, no backslash or control "
                              "characters")
    return value


@dataclass(frozen=True)
class Node:
    """A remote DICOM application entity, and the AE title medview calls it with (``local_ae``)."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    local_ae: str = DEFAULT_LOCAL_AE

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"

    @property
    def label(self) -> str:
        """``name (AE@host:port)``, or just the address for a node typed as an address; used in messages."""
        return self.address if self.name == self.address else f"{self.name} ({self.address})"


def parse_address(text: str) -> tuple[str, str, int]:
    """``AE@HOST:PORT`` (HOST may be ``[v6]``) -> (AE title, host, port)."""
    match = _ADDRESS.match(text.strip())
    if not match:
        raise NodeConfigError(f"'{text}' is not a node address: expected AE@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise NodeConfigError(f"port {port} in '{text}' is out of range (1-65535)")
    host = match["host"].strip("[]")
    return check_ae_title(match["ae"]), host, port


def nodes_path() -> Path:
    from medview.core.resources import data_dir

    return data_dir() / NODES_FILE


@dataclass
class NodeBook:
    """The contents of ``nodes.toml``: medview's AE title and the configured nodes by name."""

    local_ae: str = DEFAULT_LOCAL_AE
    nodes: dict[str, Node] | None = None

    def __post_init__(self) -> None:
        if self.nodes is None:
            self.nodes = {}


def load_nodes(path: Path | None = None) -> NodeBook:
    """Read ``nodes.toml`` (none yet: no nodes, AE title MEDVIEW)."""
    path = path or nodes_path()
    if not path.exists():
        return NodeBook()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NodeConfigError(f"cannot read the node list: {exc}", path=str(path)) from None
    local = data.get("local", {})
    local_ae = check_ae_title(str(local.get("ae_title", DEFAULT_LOCAL_AE)), "local AE title")
    book = NodeBook(local_ae=local_ae)
    for name, entry in (data.get("nodes") or {}).items():
        try:
            node = Node(name=name, ae_title=check_ae_title(str(entry["ae_title"])), host=str(entry["host"]),
                        port=int(entry["port"]), tls=bool(entry.get("tls", False)),
                        ca_file=str(entry["ca_file"]) if entry.get("ca_file") else None, local_ae=local_ae)
        except (KeyError, TypeError, ValueError) as exc:
            raise NodeConfigError(f"node '{name}' in the node list is incomplete or invalid ({exc}); it needs "
                                  "ae_title, host and port", path=str(path)) from None
        book.nodes[name] = node
    return book


def _toml_string(value: str) -> str:
    out = []
    for char in value:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def dumps_nodes(book: NodeBook) -> str:
    lines = ["# medview DICOM nodes (medview pacs nodes add/list/remove)", "", "[local]",
             f"ae_title = {_toml_string(book.local_ae)}"]
    for name in sorted(book.nodes):
        node = book.nodes[name]
        lines += ["", f"[nodes.{name}]", f"ae_title = {_toml_string(node.ae_title)}",
                  f"host = {_toml_string(node.host)}", f"port = {int(node.port)}",
                  f"tls = {'true' if node.tls else 'false'}"]
        if node.ca_file:
            lines.append(f"ca_file = {_toml_string(node.ca_file)}")
    return "\n".join(lines) + "\n"


def save_nodes(book: NodeBook, path: Path | None = None) -> Path:
    from medview.core.atomic import atomic_write_text

    path = path or nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, dumps_nodes(book))


def add_node(name: str, address: str, *, tls: bool = False, ca_file: str | None = None,
             replace: bool = False, path: Path | None = None) -> Node:
    """Add (or with ``replace`` overwrite) node ``name`` at ``AE@HOST:PORT`` in ``nodes.toml``."""
    if not _NAME.match(name):
        raise NodeConfigError(f"node name '{name}' is not valid: use letters, digits, '-' and '_' (at most 64)")
    ae, host, port = parse_address(address)
    if ca_file and not tls:
        raise NodeConfigError("a CA file is only used with TLS (add --tls)")
    if ca_file and not Path(ca_file).is_file():
        raise NodeConfigError(f"CA file not found: {ca_file}")
    book = load_nodes(path)
    if name in book.nodes and not replace:
        raise NodeConfigError(f"node '{name}' already exists ({book.nodes[name].address}); remove it first")
    node = Node(name=name, ae_title=ae, host=host, port=port, tls=tls,
                ca_file=str(Path(ca_file).resolve()) if ca_file else None, local_ae=book.local_ae)
    book.nodes[name] = node
    save_nodes(book, path)
    return node


def remove_node(name: str, path: Path | None = None) -> Node:
    book = load_nodes(path)
    if name not in book.nodes:
        raise NodeConfigError(_unknown(name, book))
    node = book.nodes.pop(name)
    save_nodes(book, path)
    return node


def set_local_ae(title: str, path: Path | None = None) -> str:
    book = load_nodes(path)
    book.local_ae = check_ae_title(title, "local AE title")
    save_nodes(book, path)
    return book.local_ae


def _unknown(name: str, book: NodeBook) -> str:
    known = (", ".join(sorted(book.nodes)) if book.nodes
             else "none configured (medview pacs nodes add NAME AE@HOST:PORT)")
    return f"unknown node '{name}' (configured nodes: {known}; or give AE@HOST:PORT)"


def resolve_node(text: str, path: Path | None = None) -> Node:
    """A configured node name, or ``AE@HOST:PORT`` (called with the configured local AE title)."""
    book = load_nodes(path)
    text = text.strip()
    if text in book.nodes:
        return book.nodes[text]
    if "@" in text or ":" in text:  # meant as an address (node names have neither)
        ae, host, port = parse_address(text)
        address = Node(name="", ae_title=ae, host=host, port=port).address
        return Node(name=address, ae_title=ae, host=host, port=port, local_ae=book.local_ae)
    raise NodeConfigError(_unknown(text, book))
