"""``medview pacs``: talk to a PACS or another DICOM node (C-ECHO, C-FIND, C-STORE) and manage ``nodes.toml``.

    medview pacs echo NODE
    medview pacs find NODE [--level patient|study|series] [--patient-id ID] [--patient-name P] [--date RANGE]
                           [--modality M] [--study-uid UID] [--json]
    medview pacs send NODE PATH...
    medview pacs listen [--ae TITLE] [--port N] [--allow AE]... [--tls-cert PEM --tls-key PEM]
    medview pacs nodes add NAME AE@HOST:PORT [--tls [--ca-file PEM]] | web NAME URL [--user U] | list
                       | remove NAME | local-ae TITLE | scp [--port N] [--listen|--no-listen] [--allow AE]...

NODE is a configured name (``medview pacs nodes list``) or ``AE@HOST:PORT``.  A network failure is one line on
stderr naming the node (exit 3).  Nothing heavy (pynetdicom, pydicom) is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys

from medview.core.tasks import TaskContext

_COLUMNS = {
    "PATIENT": [("PatientName", "Patient", 24), ("PatientID", "ID", 14), ("PatientBirthDate", "Born", 8),
                ("PatientSex", "Sex", 3), ("NumberOfPatientRelatedStudies", "Studies", 7)],
    "STUDY": [("StudyDate", "Date", 8), ("PatientName", "Patient", 22), ("PatientID", "ID", 12),
              ("ModalitiesInStudy", "Mod", 6), ("NumberOfStudyRelatedInstances", "Images", 6),
              ("AccessionNumber", "Accession", 10), ("StudyDescription", "Description", 24),
              ("StudyInstanceUID", "Study UID", 0)],
    "SERIES": [("StudyDate", "Date", 8), ("PatientID", "ID", 12), ("Modality", "Mod", 4),
               ("SeriesNumber", "No", 4), ("NumberOfSeriesRelatedInstances", "Images", 6),
               ("SeriesDescription", "Description", 24), ("SeriesInstanceUID", "Series UID", 0)],
}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("pacs", help="DICOM network: echo, find and send to a PACS node; manage the node list")
    verbs = p.add_subparsers(dest="pacs_verb", metavar="ACTION")

    def node_args(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("node", help="configured node name (medview pacs nodes list) or AE@HOST:PORT")
        parser.add_argument("--timeout", type=float, default=None, metavar="S",
                            help="seconds to wait for the connection and for each answer (default 5 for echo, "
                                 "10 otherwise)")

    echo = verbs.add_parser("echo", help="C-ECHO a node: is it there, and does it accept medview?")
    node_args(echo)

    find = verbs.add_parser("find", help="C-FIND: list a node's patients, studies or series")
    node_args(find)
    find.add_argument("--level", default="study", choices=["patient", "study", "series"])
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--patient-name", metavar="NAME", help="DICOM name, wildcards * and ?: 'DOE^J*'")
    find.add_argument("--date", metavar="RANGE", help="study date YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    find.add_argument("--modality", metavar="M", help="e.g. CT (modalities in study; the series' modality)")
    find.add_argument("--study-uid", metavar="UID")
    find.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N matches")
    find.add_argument("--json", action="store_true", help="one JSON object per line")

    send = verbs.add_parser("send", help="C-STORE DICOM files or folders to a node (one association)")
    node_args(send)
    send.add_argument("paths", nargs="+", metavar="PATH", help="DICOM files or folders (searched recursively), or "
                                                               "study UIDs of the study database")

    get = verbs.add_parser("retrieve", help="C-GET or C-MOVE a study (or one series) into the study database")
    node_args(get)
    get.add_argument("study_uid", metavar="STUDY_UID")
    get.add_argument("--series", metavar="UID", help="only this series")
    get.add_argument("--method", choices=("get", "move"), default="get",
                     help="get: the data comes back on the same association (default); move: the node sends it to "
                          "medview's AE title, which must be configured on the node with --port")
    get.add_argument("--port", type=int, default=None, metavar="N", help="port of medview's Storage SCP for --method "
                                                                          "move")
    get.add_argument("--json", action="store_true")

    listen = verbs.add_parser("listen", help="run medview's Storage SCP until Ctrl+C: received studies go into the "
                                             "study database")
    listen.add_argument("--ae", default=None, metavar="TITLE", help="medview's AE title (default: the configured "
                                                                     "one, MEDVIEW unless set)")
    listen.add_argument("--port", type=int, default=None, metavar="N", help="port (default: the configured one, "
                                                                            "11112 unless set)")
    listen.add_argument("--allow", action="append", metavar="AE", default=None,
                        help="calling AE title allowed to store (repeatable; default: the configured allow-list, "
                             "else the configured nodes' AE titles)")
    listen.add_argument("--tls-cert", metavar="PEM", help="DICOM over TLS with this certificate (default: the "
                                                          "configured one, if any)")
    listen.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")

    nodes = verbs.add_parser("nodes", help="the configured nodes (nodes.toml in medview's data folder)")
    nodes_verbs = nodes.add_subparsers(dest="nodes_verb", metavar="ACTION")
    add = nodes_verbs.add_parser("add", help="add a node")
    add.add_argument("name", help="letters, digits, '-' and '_'")
    add.add_argument("address", help="AE@HOST:PORT, e.g. ORTHANC@pacs.example.org:4242")
    add.add_argument("--tls", action="store_true", help="DICOM over TLS")
    add.add_argument("--ca-file", metavar="PEM", help="CA certificate(s) to verify the node (with --tls)")
    add.add_argument("--replace", action="store_true", help="overwrite a node of that name")
    listing = nodes_verbs.add_parser("list", help="list the nodes")
    listing.add_argument("--json", action="store_true")
    remove = nodes_verbs.add_parser("remove", help="remove a node")
    remove.add_argument("name")
    local = nodes_verbs.add_parser("local-ae", help="set medview's own AE title (default MEDVIEW)")
    local.add_argument("title")
    web = nodes_verbs.add_parser("web", help="add a DICOMweb server (use its name as URL in medview web ...)")
    web.add_argument("name", help="letters, digits, '-' and '_'")
    web.add_argument("url", help="the DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    web.add_argument("--user", help="basic-auth user (the password is never stored)")
    web.add_argument("--replace", action="store_true")
    scp = nodes_verbs.add_parser("scp", help="medview's Storage SCP: port, whether it runs while the workstation is "
                                             "open, who may store, TLS")
    scp.add_argument("--port", type=int, metavar="N")
    on = scp.add_mutually_exclusive_group()
    on.add_argument("--listen", dest="listen", action="store_true", default=None,
                    help="run the SCP while the workstation is open")
    on.add_argument("--no-listen", dest="listen", action="store_false")
    scp.add_argument("--allow", action="append", metavar="AE", default=None, help="calling AE title allowed "
                                                                                  "(repeatable; replaces the list)")
    scp.add_argument("--allow-configured", action="store_true",
                     help="allow the configured nodes' AE titles (forget an explicit list)")
    scp.add_argument("--tls-cert", metavar="PEM", help="certificate for DICOM over TLS ('' for none)")
    scp.add_argument("--tls-key", metavar="PEM", help="its private key ('' for none)")
    return p


def _usage(text: str) -> int:
    print(f"medview: error: {text}", file=sys.stderr)
    return 2


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(value)
    return str(value)


def print_table(level: str, rows: list[dict]) -> None:
    columns = _COLUMNS[level]
    widths = []
    for key, title, width in columns:
        longest = max([len(title), *(len(_cell(r.get(key))) for r in rows)])
        widths.append(longest if width == 0 else min(max(width, len(title)), longest))
    print("  ".join(title.ljust(w) for (_, title, _), w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        cells = []
        for (key, _, _), w in zip(columns, widths, strict=True):
            text = _cell(row.get(key))
            cells.append((text[: w - 1] + "~" if len(text) > w else text).ljust(w))
        print("  ".join(cells).rstrip())


def _run_nodes(args: argparse.Namespace) -> int:
    from medview.io.net import nodes

    if args.nodes_verb == "add":
        node = nodes.add_node(args.name, args.address, tls=args.tls, ca_file=args.ca_file, replace=args.replace)
        print(f"added {node.label}{' over TLS' if node.tls else ''} to {nodes.nodes_path()}")
    elif args.nodes_verb == "remove":
        node = nodes.remove_node(args.name)
        print(f"removed {node.label}")
    elif args.nodes_verb == "local-ae":
        print(f"medview's AE title is now {nodes.set_local_ae(args.title)}")
    elif args.nodes_verb == "web":
        web = nodes.add_web(args.name, args.url, user=args.user, replace=args.replace)
        print(f"added DICOMweb server {web.label} to {nodes.nodes_path()}")
    elif args.nodes_verb == "scp":
        allow = None if args.allow_configured else (args.allow if args.allow is not None else False)
        book = nodes.set_listener(listen=args.listen, port=args.port, allow=allow,
                                  tls_cert=False if args.tls_cert is None else args.tls_cert,
                                  tls_key=False if args.tls_key is None else args.tls_key)
        print(_scp_line(book))
    elif args.nodes_verb == "list":
        book = nodes.load_nodes()
        if args.json:
            for node in book.nodes.values():
                print(json.dumps({"name": node.name, "ae_title": node.ae_title, "host": node.host, "port": node.port,
                                  "tls": node.tls, "ca_file": node.ca_file, "local_ae": node.local_ae}))
            for web in book.web.values():
                print(json.dumps({"name": web.name, "url": web.url, "user": web.user}))
            return 0
        print(f"medview's AE title: {book.local_ae} ({nodes.nodes_path()})")
        print(_scp_line(book))
        if not book.nodes and not book.web:
            print("no nodes configured: medview pacs nodes add NAME AE@HOST:PORT")
        for name in sorted(book.nodes):
            node = book.nodes[name]
            print(f"  {name:16s} {node.address}{'  TLS' if node.tls else ''}")
        for name in sorted(book.web):
            web = book.web[name]
            print(f"  {name:16s} {web.url}  DICOMweb{f' (user {web.user})' if web.user else ''}")
    else:
        return _usage("medview pacs nodes needs an action: add, web, list, remove, local-ae or scp")
    return 0


def _scp_line(book) -> str:
    allowed = book.allowed()
    who = ", ".join(allowed) if allowed else "nobody yet"
    return (f"Storage SCP: {book.local_ae} on port {book.listen_port}"
            f"{' over TLS' if book.tls_cert else ''}, "
            f"{'runs while the workstation is open' if book.listen else 'not started with the workstation'}; "
            f"accepts {who}{'' if book.allow is not None else ' (the configured nodes)'}")


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    verb = getattr(args, "pacs_verb", None)
    if verb == "nodes":
        return _run_nodes(args)
    if verb == "listen":
        return _listen(args)
    if verb not in ("echo", "find", "send", "retrieve"):
        return _usage("medview pacs needs an action: echo, find, send, retrieve, listen or nodes")
    from medview.io.net import dimse
    from medview.io.net.nodes import resolve_node

    node = resolve_node(args.node)
    if verb == "echo":
        seconds = dimse.echo(node, timeout=args.timeout or 5.0)
        print(f"{node.label}: C-ECHO ok in {seconds * 1000:.0f} ms (called as {node.local_ae})")
        return 0
    timeout = args.timeout or dimse.DEFAULT_TIMEOUT_S
    if verb == "find":
        level = args.level.upper()
        rows = dimse.find(node, level, timeout=timeout, limit=args.limit, patient_id=args.patient_id,
                          patient_name=args.patient_name, study_date=args.date, modality=args.modality,
                          study_uid=args.study_uid)
        if args.json:
            for row in rows:
                print(json.dumps(row, ensure_ascii=False))
        else:
            print_table(level, rows)
            print(f"{len(rows)} {level.lower()} match(es) on {node.label}", file=sys.stderr)
        return 0
    if verb == "retrieve":
        from medview.io.net.retrieve import retrieve

        result = retrieve(node, args.study_uid, args.series, method=args.method, move_port=args.port,
                          timeout=timeout, task=progress)
        if args.json:
            print(json.dumps(result))
        else:
            state = "complete" if result["complete"] else "INCOMPLETE"
            print(f"retrieved {result['received']} instance(s) from {node.label} in {result['seconds']:.1f} s "
                  f"({state}): study {result['study']}")
        return 0 if result["complete"] else 1

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress.progress(done / total, f"sent {done}/{total}")

    from medview.io.studydb import files_or_studies

    result = dimse.send(node, files_or_studies(args.paths), timeout=timeout, progress=report)
    skipped = f", {result['skipped']} non-DICOM file(s) skipped" if result["skipped"] else ""
    print(f"sent {result['sent']} file(s) to {node.label} in {result['seconds']:.2f} s{skipped}")
    return 0


def _listen(args: argparse.Namespace) -> int:
    import time

    from medview.io.net.nodes import NodeBook, load_nodes
    from medview.io.net.scp import StorageSCP

    book = load_nodes()
    allow = args.allow if args.allow is not None else book.allowed()
    if not allow:
        return _usage("no calling AE title is allowed to store: configure a node (medview pacs nodes add) or give "
                      "--allow AE")
    if args.tls_key and not args.tls_cert:
        return _usage("--tls-key needs --tls-cert")
    tls = (NodeBook(tls_cert=args.tls_cert, tls_key=args.tls_key) if args.tls_cert else book).scp_ssl_context()
    ae = args.ae or book.local_ae
    port = args.port or book.listen_port

    def imported(summary: dict) -> None:
        state = " (aborted: marked incomplete)" if summary["aborted"] else ""
        print(f"received {summary['received']} instance(s) from {summary['from']}{state}: "
              + ", ".join(f"study {uid}" for uid in summary["studies"]), flush=True)

    with StorageSCP(port, ae_title=ae, allow=allow, on_imported=imported, ssl_context=tls):
        print(f"medview: Storage SCP {ae} on port {port}{' (TLS)' if tls else ''}, accepting {', '.join(allow)}; "
              "Ctrl+C stops", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
