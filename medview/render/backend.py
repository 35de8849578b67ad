"""Pick VTK's render-window backend before any VTK window exists (no VTK import here)."""

from __future__ import annotations

import os


def choose_offscreen_backend() -> None:
    """Use VTK's OSMesa render window when there is no display (CI, servers, ``--screenshot``).

    VTK reads ``VTK_DEFAULT_OPENGL_WINDOW`` when the first render window is created, so this runs on
    ``import medview.render``. An explicit value from the user wins.
    """
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    offscreen_qt = os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal")
    if (not has_display or offscreen_qt) and "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ:
        os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkOSOpenGLRenderWindow"
