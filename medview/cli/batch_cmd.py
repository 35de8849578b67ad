"""``medview batch PIPELINE COHORT --out DIR``: run a pipeline over a cohort on Dask distributed.

Exit codes: 0 every case finished ok; 1 the run finished but some cases failed (their errors are in
DIR/errors.csv and each case's case.json); 3 bad input (pipeline, cohort or options rejected before any case
ran); 130 interrupted (finished cases are kept; re-running resumes).
Nothing heavy is imported at module level: the work happens in :mod:`medview.app.batch`.
"""

from __future__ import annotations

import argparse

from medview.core.tasks import TaskContext


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("batch", help="run a pipeline (YAML) over a cohort (CSV or folder) on Dask distributed")
    p.add_argument("pipeline", help="pipeline YAML (medview_pipeline: 1, steps: [...])")
    p.add_argument("cohort", nargs="?", help="CSV with case_id,image[,label][,target] or a folder of studies "
                                             "(or --from-db)")
    p.add_argument("--from-db", action="store_true",
                   help="the cohort is the study database's studies matching the filters below (one case per "
                        "study: its largest series)")
    from medview.cli.db_cmd import add_filters

    add_filters(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (re-running it skips finished cases)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes of a local Dask cluster (default: CPUs, at most the cases)")
    where.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                       help="address of a running Dask scheduler (e.g. a dask-jobqueue cluster)")
    p.add_argument("--memory-limit", default=None, metavar="SIZE",
                   help="memory per local worker, e.g. 2GB (default 2GB; ignored with --scheduler)")
    return p


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    from medview.app.batch import run_batch

    # the engine reports progress itself: a bar (tqdm, with ETA) on a terminal, plain lines in a log or pipe,
    # so the generic bar (terminal only) is not passed on
    cohort = args.cohort
    if args.from_db == (cohort is not None):
        from medview.core.errors import MedviewError

        raise MedviewError("give a cohort (CSV or folder) or --from-db with filters, not both and not neither")
    if args.from_db:
        from medview.app.pipeline import Cohort

        cohort = Cohort.from_database(patient_id=args.patient_id, patient_name=args.patient_name, date=args.date,
                                      modality=args.modality, accession=args.accession)
    summary = run_batch(args.pipeline, cohort, args.out, workers=args.workers, scheduler=args.scheduler,
                        memory_limit=args.memory_limit, task=None, progress=True)
    print(f"{summary['cases']} case(s): {summary['ok']} ok, {summary['failed']} failed "
          f"({summary['ran']} run now, {summary['skipped']} already done) in {summary['seconds']:.1f} s on "
          f"{summary['workers']} worker(s)")
    print(f"wrote {summary['features_csv']}, {summary['features_parquet']}, {summary['summary_json']}")
    if summary["failed"]:
        print(f"{summary['failed']} case(s) failed: see {summary['errors_csv']}")
        return 1
    return 0
