"""How fast a model runs on this machine: measured by every run, read back by the time estimate.

A run of :func:`medview.inference.pipeline.run_model` (or ``detect``) records its whole time per sliding
window (resampling, normalisation, network, blending and the way back, over the number of windows) and
the one-time cost of importing MONAI in a fresh process.  An estimate then costs a file read: the number of
windows times that figure (plus the import when it is still to come), instead of loading and timing the
network.  Entries are per model card (its hash), requested device and number of CPUs, in
``inference_throughput.json`` in medview's data folder; a damaged file is ignored (the estimate then times
one window, as on a machine with no record).
"""

from __future__ import annotations

import json
import os
from typing import Any

from medview.core.errors import MedviewError
from medview.core.resources import data_dir

FILE_NAME = "inference_throughput.json"
#: used until a run here has measured it (MONAI's import on a 2-core machine: 2.4 s idle)
DEFAULT_IMPORT_S = 2.5


def _path():
    return data_dir() / FILE_NAME


def key(card_hash: str, device: str) -> str:
    """Per model card, requested device ('auto', 'cpu', 'cuda') and CPU count: a lookup needs no torch."""
    return f"{card_hash}:{device}:{os.cpu_count() or 1}"


def _load() -> dict[str, Any]:
    try:
        data = json.loads(_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(card_hash: str, device: str) -> dict[str, Any] | None:
    """The recorded ``{"seconds_per_window", "windows", ...}`` for this model and device here, or None."""
    entry = _load().get(key(card_hash, device))
    if not isinstance(entry, dict):
        return None
    try:
        if float(entry["seconds_per_window"]) > 0:
            return entry
    except (KeyError, TypeError, ValueError):
        pass
    return None


def import_seconds() -> float:
    """MONAI's import time as last measured here (``DEFAULT_IMPORT_S`` before any)."""
    try:
        return max(float(_load().get("monai_import_s", DEFAULT_IMPORT_S)), 0.0)
    except (TypeError, ValueError):
        return DEFAULT_IMPORT_S


def record(card_hash: str, device: str, windows: int, seconds: float, import_s: float | None = None) -> None:
    """Store a run's time per window (``seconds`` without the import) and, when measured, the import time.

    Never raises: a folder that cannot be written only means the next estimate times a window again.
    """
    if windows < 1 or seconds <= 0:
        return
    from medview.core.atomic import atomic_write_text

    data = _load()
    data[key(card_hash, device)] = {"seconds_per_window": seconds / windows, "windows": int(windows),
                                    "seconds": seconds}
    if import_s is not None and import_s > 0:
        data["monai_import_s"] = import_s
    try:
        _path().parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(_path(), json.dumps(data, indent=2))
    except (OSError, MedviewError):  # a cache: losing it costs one timed window
        pass
