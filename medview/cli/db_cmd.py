"""``medview db import|list|series|remove``: the local study database (``<data dir>/studies.sqlite``).

``import`` prints where each study now is (its StudyInstanceUID); ``--json`` prints one JSON object per line
(per study for ``list``, per series for ``series``, one summary for ``import``).  Exit codes: 0 done, 3 bad
input (a missing path, an unknown study, a bad date range); the CLI's usual one-line ``medview: error: ...``.
Nothing heavy is imported at module level: the work happens in :mod:`medview.io.studydb`.
"""

from __future__ import annotations

import argparse
import json

from medview.core.tasks import TaskContext

_LIST_COLUMNS = (("StudyDate", 8), ("PatientID", 12), ("PatientName", 22), ("ModalitiesInStudy", 8),
                 ("NumberOfStudyRelatedInstances", 6), ("StudyDescription", 28), ("StudyInstanceUID", 0))


def add_filters(p: argparse.ArgumentParser) -> None:
    """The study filters ``db list`` and ``batch --from-db`` share."""
    p.add_argument("--patient-id", metavar="ID", help="patient ID (exact, or with * and ? wildcards)")
    p.add_argument("--patient-name", metavar="PATTERN", help="patient name: a prefix, or * and ? wildcards "
                                                             "(case-insensitive), e.g. 'DOE^J*'")
    p.add_argument("--date", metavar="RANGE", help="study date YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    p.add_argument("--modality", metavar="M", help="a modality in the study (CT, MR, ...)")
    p.add_argument("--accession", metavar="NUMBER", help="accession number")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("db", help="the local study database: import, list, remove")
    verbs = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    imp = verbs.add_parser("import", help="index DICOM folders, files, zips or DICOMDIRs (incremental)")
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--copy", action="store_true", help="copy the files into medview's store (default: index "
                                                         "them where they are)")
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")
    ls = verbs.add_parser("list", help="studies in the database, newest first")
    add_filters(ls)
    ls.add_argument("--limit", type=int, default=None, metavar="N", help="at most N studies")
    ls.add_argument("--json", action="store_true", help="one JSON object per study")
    series = verbs.add_parser("series", help="the series of a study")
    series.add_argument("study_uid", metavar="STUDY_UID")
    series.add_argument("--json", action="store_true", help="one JSON object per series")
    rm = verbs.add_parser("remove", help="forget a study (files in medview's store are deleted, others kept)")
    rm.add_argument("study_uid", metavar="STUDY_UID")
    return p


def _table(rows: list[dict], columns) -> None:
    for row in rows:
        cells = []
        for key, width in columns:
            value = row.get(key, "")
            text = "\\".join(value) if isinstance(value, list) else ("" if value is None else str(value))
            cells.append(text[:width].ljust(width) if width else text)
        print("  ".join(cells).rstrip())


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    from medview.io.studydb import StudyDatabase

    with StudyDatabase() as db:
        if args.db_command == "import":
            result = db.import_paths(args.paths, copy=args.copy, task=progress)
            if args.json:
                print(json.dumps(result.as_dict()))
            else:
                print(f"{result.added} file(s) added, {result.updated} updated, {result.unchanged} unchanged, "
                      f"{len(result.skipped)} skipped (not DICOM images), {result.missing} marked missing, "
                      f"in {result.seconds:.1f} s")
                for uid in result.studies:
                    print(f"study {uid}")
            return 0
        if args.db_command == "list":
            rows = db.list_studies(patient_id=args.patient_id, patient_name=args.patient_name, date=args.date,
                                   modality=args.modality, accession=args.accession, limit=args.limit)
            if args.json:
                for row in rows:
                    print(json.dumps(row))
            else:
                _table(rows, _LIST_COLUMNS)
                print(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'}")
            return 0
        if args.db_command == "series":
            from medview.io.studydb import StudyDatabaseError

            if db.study_of(args.study_uid) != args.study_uid:
                raise StudyDatabaseError(f"No study {args.study_uid} in the study database")
            rows = db.list_series(args.study_uid)
            if args.json:
                for row in rows:
                    print(json.dumps(row))
            else:
                _table(rows, (("SeriesNumber", 4), ("Modality", 4), ("NumberOfSeriesRelatedInstances", 6),
                              ("SeriesDescription", 30), ("SeriesInstanceUID", 0)))
            return 0
        n = db.remove_study(args.study_uid)
        print(f"removed study {args.study_uid} ({n} instance(s))")
        return 0
