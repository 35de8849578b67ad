"""Where medview's shipped data lives (``resources/``: presets, samples, models)."""

from __future__ import annotations

import os
from pathlib import Path


def resources_dir() -> Path:
    """The ``resources`` folder: ``MEDVIEW_RESOURCES`` or the one next to the package."""
    configured = os.environ.get("MEDVIEW_RESOURCES")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "resources"


def preset_path(name: str) -> Path:
    """A file in ``resources/presets`` (window/level, transfer functions)."""
    return resources_dir() / "presets" / name
