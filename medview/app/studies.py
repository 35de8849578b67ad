"""Study database jobs the GUI runs in a process of their own (sqlite3 and pickling hold the GIL; a killed
import leaves a consistent database by design, so Cancel may kill the process)."""

from __future__ import annotations

from typing import Any

from medview.core.tasks import TaskContext


def import_studies(paths: list[str], copy: bool = False, chunk: int | None = None, database: str | None = None,
                   task: TaskContext | None = None) -> dict[str, Any]:
    """Import ``paths`` into the study database at ``database`` (default: the data folder's); the result as a
    plain dict.  The GUI passes the path of the database it shows: a job process may have been started with
    another environment."""
    from medview.io.studydb import StudyDatabase

    with StudyDatabase(database) as db:
        result = db.import_paths(paths, copy=copy, task=task, chunk=chunk)
    summary = result.as_dict()
    summary["skipped_files"] = result.skipped[:20]
    return summary


def send_study(node, study_uid: str, database: str | None = None, task: TaskContext | None = None) -> dict[str, Any]:
    """C-STORE every file of a database study to ``node`` (a :class:`medview.io.net.nodes.Node`, resolved by the
    caller) over one association."""
    from medview.io.net.dimse import send
    from medview.io.studydb import StudyDatabase

    with StudyDatabase(database) as db:
        files = db.files_of(study_uid)
    if not files:
        from medview.core.errors import MedviewError

        raise MedviewError("This study has no file on the disk any more; nothing to send")

    def progress(done: int, total: int) -> None:
        if task is not None:
            task.progress(done / max(total, 1), f"Sent {done} of {total} files")

    return send(node, files, progress=progress)


def send_studies(node, study_uids: list[str], database: str | None = None,
                 task: TaskContext | None = None) -> dict[str, Any]:
    """:func:`send_study` for each study in turn (one association each); the totals."""
    total: dict[str, Any] = {"sent": 0, "skipped": 0, "seconds": 0.0, "studies": len(study_uids)}
    n = len(study_uids)
    for k, uid in enumerate(study_uids):
        sub = None
        if task is not None:  # this study's share of the bar; Cancel reaches it through the same token
            sub = TaskContext(on_progress=lambda f, m, k=k: task.progress((k + f) / n, f"Study {k + 1} of {n}: {m}"),
                              token=task.token, min_interval_s=0.0)
        result = send_study(node, uid, database, task=sub)
        for key in ("sent", "skipped", "seconds"):
            total[key] += result.get(key, 0)
    return total
