"""Whether a process is still the one it was: a process id plus its start time (ids are reused)."""

from __future__ import annotations


def process_started(pid: int) -> float | None:
    """Start time of process ``pid`` (seconds since the epoch), or None when there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def is_running(pid: int, started: float | None) -> bool:
    """True when process ``pid`` runs (not a zombie) and, given ``started``, is the one that started then."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except (psutil.Error, OSError):
        return False
