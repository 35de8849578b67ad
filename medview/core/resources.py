"""Where medview's files live: shipped data (``resources/``) and the user's data directory."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "MEDVIEW_DATA_DIR"


def resources_dir() -> Path:
    """The ``resources`` folder: ``MEDVIEW_RESOURCES`` or the one next to the package."""
    configured = os.environ.get("MEDVIEW_RESOURCES")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "resources"


def preset_path(name: str) -> Path:
    """A file in ``resources/presets`` (window/level, transfer functions)."""
    return resources_dir() / "presets" / name


def data_dir() -> Path:
    """medview's user data folder (recovery files, user models, later the study database).

    ``$MEDVIEW_DATA_DIR`` when set (every test sets it to a temporary folder), else the platform's user
    data directory (``platformdirs.user_data_dir("medview")``).  Not created here.
    """
    configured = os.environ.get(ENV_DATA_DIR)
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_data_dir("medview"))
