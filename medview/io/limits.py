"""Resource limits applied before any large allocation or decompression.

A header can claim any size: a 60000 x 60000 x 1000 image is 7 TB.  Every reader checks the bytes it
is about to allocate against :func:`memory_budget_bytes` first, and compressed inputs against the
size they claim once decompressed.  The budget is configurable with the environment variable
``MEDVIEW_MEMORY_BUDGET_MB`` (default: 80 % of the memory available when the check runs).
"""

from __future__ import annotations

import os

import psutil

from medview.core.errors import ResourceLimitError


def memory_budget_bytes() -> int:
    """Largest single image, in bytes, that medview will allocate."""
    configured = os.environ.get("MEDVIEW_MEMORY_BUDGET_MB")
    if configured:
        try:
            return max(int(float(configured) * 1024 * 1024), 1)
        except ValueError:
            pass
    return int(psutil.virtual_memory().available * 0.8)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_allocation(n_bytes: int, what: str, budget: int | None = None) -> None:
    """Raise :class:`ResourceLimitError` if allocating ``n_bytes`` would exceed the budget."""
    limit = memory_budget_bytes() if budget is None else budget
    if n_bytes > limit:
        raise ResourceLimitError(
            f"{what} would need {format_bytes(n_bytes)} of memory, more than the "
            f"{format_bytes(limit)} allowed (set MEDVIEW_MEMORY_BUDGET_MB to change the limit)"
        )
