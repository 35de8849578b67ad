"""Remote DICOM nodes (PACS, modalities, other workstations) and medview's own AE title.

They live in ``nodes.toml`` in medview's data folder (``$MEDVIEW_DATA_DIR``)::

    [local]
    ae_title = "MEDVIEW"
    port = 11112          # medview's Storage SCP
    listen = false        # true: the SCP runs while the workstation is open
    allow = ["ORTHANC"]   # calling AE titles that may store (absent: the configured nodes' AE titles)
    tls_cert = ""         # PEM certificate and key: the SCP speaks DICOM over TLS
    tls_key = ""

    [nodes.pacs]
    ae_title = "ORTHANC"
    host = "pacs.example.org"
    port = 4242
    tls = false
    ca_file = ""          # only with tls = true: CA bundle to verify the peer (empty: the system's)

    [web.archive]
    url = "https://pacs.example.org/dicom-web"
    user = ""             # basic auth (the password is asked for, never stored); empty: none or a token

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
DEFAULT_LISTEN_PORT = 11112
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


@dataclass(frozen=True)
class WebNode:
    """A configured DICOMweb service root (the password of ``user`` is never stored)."""

    name: str
    url: str
    user: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.url})"


@dataclass
class NodeBook:
    """The contents of ``nodes.toml``: medview's AE title and Storage SCP settings, the configured DIMSE nodes
    and DICOMweb servers by name."""

    local_ae: str = DEFAULT_LOCAL_AE
    nodes: dict[str, Node] | None = None
    listen: bool = False
    listen_port: int = DEFAULT_LISTEN_PORT
    allow: list[str] | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    web: dict[str, WebNode] | None = None

    def __post_init__(self) -> None:
        if self.nodes is None:
            self.nodes = {}
        if self.web is None:
            self.web = {}

    def allowed(self) -> list[str]:
        """The calling AE titles the Storage SCP accepts: the explicit list, else the configured nodes'."""
        if self.allow is not None:
            return list(self.allow)
        return sorted({n.ae_title for n in self.nodes.values()})

    def scp_ssl_context(self):
        """The Storage SCP's TLS context (None without a certificate)."""
        if not self.tls_cert:
            return None
        import ssl

        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.tls_cert, self.tls_key or None)
        except (OSError, ssl.SSLError) as exc:
            raise NodeConfigError(f"cannot load the Storage SCP's TLS certificate or key ({exc})") from None
        return context


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
    try:
        port = _check_port(int(local.get("port", DEFAULT_LISTEN_PORT)))
        allow = local.get("allow")
        if allow is not None:
            if not isinstance(allow, list):
                raise ValueError("allow is a list of AE titles")
            allow = [check_ae_title(str(a), "allowed AE title") for a in allow]
    except (TypeError, ValueError, NodeConfigError) as exc:
        raise NodeConfigError(f"the [local] settings of the node list are invalid ({exc})", path=str(path)) from None
    book = NodeBook(local_ae=local_ae, listen=bool(local.get("listen", False)), listen_port=port, allow=allow,
                    tls_cert=str(local["tls_cert"]) if local.get("tls_cert") else None,
                    tls_key=str(local["tls_key"]) if local.get("tls_key") else None)
    for name, entry in (data.get("web") or {}).items():
        try:
            book.web[name] = WebNode(name=name, url=check_web_url(str(entry["url"])),
                                     user=str(entry["user"]) if entry.get("user") else None)
        except (KeyError, TypeError) as exc:
            raise NodeConfigError(f"DICOMweb server '{name}' in the node list needs a url ({exc})",
                                  path=str(path)) from None
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


def _check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise NodeConfigError(f"port {port} is out of range (1-65535)")
    return port


def check_web_url(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NodeConfigError(f"a DICOMweb server is an http(s) URL such as http://host:8042/dicom-web, not {url!r}")
    return url.strip().rstrip("/")


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
    lines = ["# medview DICOM nodes (medview pacs nodes add/list/remove, or the DICOM nodes dialog)", "", "[local]",
             f"ae_title = {_toml_string(book.local_ae)}", f"port = {int(book.listen_port)}",
             f"listen = {'true' if book.listen else 'false'}"]
    if book.allow is not None:
        lines.append("allow = [" + ", ".join(_toml_string(a) for a in book.allow) + "]")
    for key in ("tls_cert", "tls_key"):
        if getattr(book, key):
            lines.append(f"{key} = {_toml_string(getattr(book, key))}")
    for name in sorted(book.nodes):
        node = book.nodes[name]
        lines += ["", f"[nodes.{name}]", f"ae_title = {_toml_string(node.ae_title)}",
                  f"host = {_toml_string(node.host)}", f"port = {int(node.port)}",
                  f"tls = {'true' if node.tls else 'false'}"]
        if node.ca_file:
            lines.append(f"ca_file = {_toml_string(node.ca_file)}")
    for name in sorted(book.web):
        web = book.web[name]
        lines += ["", f"[web.{name}]", f"url = {_toml_string(web.url)}"]
        if web.user:
            lines.append(f"user = {_toml_string(web.user)}")
    return "\n".join(lines) + "\n"


def save_nodes(book: NodeBook, path: Path | None = None) -> Path:
    from medview.core.atomic import atomic_write_text

    path = path or nodes_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, dumps_nodes(book))


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise NodeConfigError(f"node name '{name}' is not valid: use letters, digits, '-' and '_' (at most 64)")
    return name


def add_node(name: str, address: str, *, tls: bool = False, ca_file: str | None = None,
             replace: bool = False, path: Path | None = None) -> Node:
    """Add (or with ``replace`` overwrite) node ``name`` at ``AE@HOST:PORT`` in ``nodes.toml``."""
    check_name(name)
    ae, host, port = parse_address(address)
    if ca_file and not tls:
        raise NodeConfigError("a CA file is only used with TLS (add --tls)")
    if ca_file and not Path(ca_file).is_file():
        raise NodeConfigError(f"CA file not found: {ca_file}")
    book = load_nodes(path)
    if name in book.web:
        raise NodeConfigError(f"'{name}' is already the name of a DICOMweb server")
    if name in book.nodes and not replace:
        raise NodeConfigError(f"node '{name}' already exists ({book.nodes[name].address}); remove it first")
    node = Node(name=name, ae_title=ae, host=host, port=port, tls=tls,
                ca_file=str(Path(ca_file).resolve()) if ca_file else None, local_ae=book.local_ae)
    book.nodes[name] = node
    save_nodes(book, path)
    return node


def remove_node(name: str, path: Path | None = None) -> Node | WebNode:
    book = load_nodes(path)
    if name in book.web:
        node = book.web.pop(name)
    elif name in book.nodes:
        node = book.nodes.pop(name)
    else:
        raise NodeConfigError(_unknown(name, book))
    save_nodes(book, path)
    return node


def add_web(name: str, url: str, *, user: str | None = None, replace: bool = False,
            path: Path | None = None) -> WebNode:
    """Add (or with ``replace`` overwrite) DICOMweb server ``name`` at ``url`` in ``nodes.toml``."""
    check_name(name)
    book = load_nodes(path)
    if name in book.nodes:
        raise NodeConfigError(f"'{name}' is already the name of a DIMSE node")
    if name in book.web and not replace:
        raise NodeConfigError(f"DICOMweb server '{name}' already exists ({book.web[name].url}); remove it first")
    web = WebNode(name=name, url=check_web_url(url), user=user or None)
    book.web[name] = web
    save_nodes(book, path)
    return web


def set_listener(*, listen: bool | None = None, port: int | None = None, allow: list[str] | bool | None = False,
                 tls_cert: str | bool | None = False, tls_key: str | bool | None = False,
                 path: Path | None = None) -> NodeBook:
    """Change the Storage SCP's settings (an argument left at its default keeps the setting; ``allow=None``
    goes back to the configured nodes' AE titles)."""
    book = load_nodes(path)
    if listen is not None:
        book.listen = bool(listen)
    if port is not None:
        book.listen_port = _check_port(int(port))
    if allow is not False:
        book.allow = None if allow is None else [check_ae_title(a, "allowed AE title") for a in allow]
    for key, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if value is not False:
            if value and not Path(value).is_file():
                raise NodeConfigError(f"TLS {key[4:]} file not found: {value}")
            setattr(book, key, str(Path(value).resolve()) if value else None)
    if book.tls_key and not book.tls_cert:
        raise NodeConfigError("a TLS key needs its certificate (tls_cert)")
    book.scp_ssl_context()  # a certificate that does not load is refused now, not when the SCP starts
    save_nodes(book, path)
    return book


def set_local_ae(title: str, path: Path | None = None) -> str:
    book = load_nodes(path)
    book.local_ae = check_ae_title(title, "local AE title")
    save_nodes(book, path)
    return book.local_ae


def _unknown(name: str, book: NodeBook) -> str:
    known = (", ".join(sorted(book.nodes) + sorted(book.web)) if book.nodes or book.web
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


def resolve_web(text: str, path: Path | None = None) -> WebNode:
    """A configured DICOMweb server's name, or an http(s) URL."""
    text = text.strip()
    if text.startswith(("http://", "https://")):
        return WebNode(name=text, url=check_web_url(text))
    book = load_nodes(path)
    if text in book.web:
        return book.web[text]
    known = ", ".join(sorted(book.web)) or "none configured (medview pacs nodes web NAME URL)"
    raise NodeConfigError(f"unknown DICOMweb server '{text}' (configured: {known}; or give an http(s) URL)")
