"""Crash-safe file writing for medview's readers and writers: see :mod:`medview.core.atomic`.

The implementation lives in ``medview.core`` so that every layer (``medview.algorithms``,
``medview.render`` included, which may not import ``medview.io``) writes through the same code.
Anything that writes a file users rely on goes through :func:`atomic_path` (for writers that want a
path, such as SimpleITK, VTK or pydicom), :func:`atomic_open` or :func:`atomic_write_bytes`.
"""

from __future__ import annotations

from medview.core.atomic import (
    PARTIAL_PREFIX,
    STALE_AGE_S,
    atomic_copy,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    current_umask,
    fsync_file,
    fsync_folder,
    is_stale_partial,
    mode_for,
    partial_path,
    remove_partials,
    remove_stale_partials,
)

__all__ = [
    "PARTIAL_PREFIX",
    "STALE_AGE_S",
    "atomic_copy",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "current_umask",
    "fsync_file",
    "fsync_folder",
    "is_stale_partial",
    "mode_for",
    "partial_path",
    "remove_partials",
    "remove_stale_partials",
]
