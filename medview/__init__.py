"""medview: a medical imaging workstation with a GUI-free core.

The public API is imported lazily so that ``import medview`` stays fast::

    import medview
    for series in medview.scan("study/"):
        print(series.uid, series.modality, series.size_xyz)
    volume = medview.open_image("study/", series=series.uid)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["open_image", "scan", "write_image"]


def __getattr__(name: str) -> Any:
    if name in ("scan", "open_image"):
        from medview.io import readers

        return getattr(readers, name)
    if name == "write_image":
        from medview.io.writers import write_image

        return write_image
    raise AttributeError(f"module 'medview' has no attribute {name!r}")
