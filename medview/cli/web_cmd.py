"""``medview web find|retrieve|send URL ...``: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with dicomweb-client.

URL is the service root, e.g. ``http://pacs:8042/dicom-web``.  ``--user`` with the password in
``MEDVIEW_DICOMWEB_PASSWORD`` (never on the command line), or ``--token`` / ``MEDVIEW_DICOMWEB_TOKEN`` for a
bearer token.  ``retrieve`` imports the study into the study database and prints its UID there (open it with
``medview view STUDY_UID``); ``send`` takes files, folders or study UIDs of the database.  Exit codes: 0 done,
3 a network or input failure (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os

from medview.core.tasks import TaskContext


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("web", help="DICOMweb: search (QIDO-RS), retrieve (WADO-RS), send (STOW-RS)")
    verbs = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("url", help="the DICOMweb root, e.g. http://host:8042/dicom-web, or a configured server's "
                                   "name (medview pacs nodes web NAME URL)")
        q.add_argument("--user", help="basic-auth user (password from MEDVIEW_DICOMWEB_PASSWORD; default: the "
                                      "configured server's user)")
        q.add_argument("--token", help="bearer token (or MEDVIEW_DICOMWEB_TOKEN)")
        q.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")

    find = verbs.add_parser("find", help="search studies (or a study's series with --level series)")
    common(find)
    find.add_argument("--level", choices=("study", "series"), default="study")
    find.add_argument("--patient-id", metavar="ID")
    find.add_argument("--patient-name", metavar="PATTERN", help="with * and ? wildcards")
    find.add_argument("--date", metavar="RANGE", help="YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    find.add_argument("--modality", metavar="M")
    find.add_argument("--study-uid", metavar="UID")
    find.add_argument("--limit", type=int, default=None)
    find.add_argument("--json", action="store_true", help="one JSON object per line")
    get = verbs.add_parser("retrieve", help="retrieve a study (or one series) into the study database")
    common(get)
    get.add_argument("study_uid", metavar="STUDY_UID")
    get.add_argument("--series", metavar="UID", help="only this series")
    get.add_argument("--json", action="store_true")
    send = verbs.add_parser("send", help="store DICOM files, folders or database studies on the server")
    common(send)
    send.add_argument("items", nargs="+", metavar="PATH|STUDY_UID")
    send.add_argument("--json", action="store_true")
    return p


def _server(args: argparse.Namespace):
    from medview.io.net.dicomweb import WebServer
    from medview.io.net.nodes import resolve_web

    web = resolve_web(args.url)
    token = args.token or os.environ.get("MEDVIEW_DICOMWEB_TOKEN")
    return WebServer(web.url, user=args.user or web.user, password=os.environ.get("MEDVIEW_DICOMWEB_PASSWORD"),
                     token=token, timeout=args.timeout)


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    from medview.io.net import dicomweb

    server = _server(args)
    if args.web_command == "find":
        rows = dicomweb.find(server, args.level, patient_id=args.patient_id, patient_name=args.patient_name,
                             date=args.date, modality=args.modality, study_uid=args.study_uid, limit=args.limit)
        for row in rows:
            if args.json:
                print(json.dumps(row))
            else:
                print("  ".join(str("\\".join(v) if isinstance(v, list) else v) for v in row.values()))
        if not args.json:
            print(f"{len(rows)} result(s)")
        return 0
    if args.web_command == "retrieve":
        result = dicomweb.retrieve(server, args.study_uid, args.series, task=progress)
        print(json.dumps(result) if args.json else
              f"retrieved {result['received']} instance(s) in {result['seconds']:.1f} s: study {result['study']}")
        return 0
    from medview.io.studydb import files_or_studies

    result = dicomweb.send(server, files_or_studies(args.items), task=progress)
    print(json.dumps(result) if args.json else f"sent {result['sent']} instance(s) in {result['seconds']:.1f} s"
          + (f" ({result['skipped']} non-DICOM file(s) skipped)" if result["skipped"] else ""))
    return 0
