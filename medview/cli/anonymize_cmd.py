"""``medview anonymize IN OUT``: de-identify a file, folder, zip or database study into a new folder (issue 19).

DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile, with the options picked by
``--retain``; UIDs replaced under the project's key (``<data dir>/deid.key``, or ``--key-file``), patients by
pseudonyms (keyed, or from ``--pseudonyms CSV``).  Exit codes: 0 every file written, 3 a file failed (the
summary names each) or the run could not start, 2 usage.  Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys

from medview.core.tasks import TaskContext


def add_parser(sub) -> argparse.ArgumentParser:
    from medview.io.deid.profile import RETAIN  # light: no pydicom

    p = sub.add_parser("anonymize", help="de-identify DICOM (PS3.15 Annex E) into a new folder")
    p.add_argument("input", metavar="IN", help="a DICOM file, a folder, a zip, or a STUDY_UID of the study database")
    p.add_argument("output", metavar="OUT", help="a new (missing or empty) folder")
    p.add_argument("--retain", action="append", choices=list(RETAIN), metavar="WHAT",
                   help=f"keep what an Annex E option keeps (repeatable): {', '.join(RETAIN)}")
    p.add_argument("--key-file", metavar="K", help="the secret key for UIDs and pseudonyms (default: the data "
                                                   "folder's deid.key, made on first use)")
    p.add_argument("--pseudonyms", metavar="CSV", help="real patient ID -> pseudonym, two columns")
    p.add_argument("--map-out", metavar="CSV", help="write real ID -> pseudonym here (not inside OUT)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    from medview.app.anonymize import anonymize, options_from, read_pseudonyms

    pseudonyms = read_pseudonyms(args.pseudonyms) if args.pseudonyms else None
    summary = anonymize([args.input], args.output, options_from(args.retain), key_file=args.key_file,
                        pseudonyms=pseudonyms, map_out=args.map_out, task=progress)
    if args.json:
        print(json.dumps(summary))
    else:
        options = f"; {', '.join(summary['options'])}" if summary["options"] else ""
        skipped = f"; {summary['skipped']} non-DICOM file(s) skipped" if summary["skipped"] else ""
        print(f"anonymized {summary['written']} file(s) of {summary['patients']} patient(s) into "
              f"{summary['output']} in {summary['seconds']:.1f} s (PS3.15 {summary['profile_edition']}{options})"
              f"{skipped}")
    for name, reason in summary["failed"]:
        print(f"medview anonymize: failed: {name}: {reason}", file=sys.stderr)
    if summary["failed"]:
        print(f"medview anonymize: {len(summary['failed'])} file(s) failed", file=sys.stderr)
        return 3
    return 0
