"""A PNG (a picture: pixels with no place in the patient) opens as one 2D view named '2D image', with no
patient letters (A/P/L/R) and no slice position, which the loader's placeholder grid would make up; a 2D
image opens in the 1x1 layout (coronal and sagittal views of one slice are a line each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medview.qt.main_window import MainWindow


def test_a_png_opens_as_one_unlettered_2d_image(qtbot, window: MainWindow, tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    Image.fromarray((np.arange(200 * 300).reshape(200, 300) % 251).astype(np.uint8)).save(path)
    assert window.grid.layout_name == "1x3"
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(path))
    qtbot.wait(100)
    assert window.grid.layout_name == "1x1"
    view = window.grid.views["axial"]
    assert view.isVisible() and not window.grid.views["coronal"].isVisible()
    overlay = view.overlay
    assert overlay.letters == {}, overlay.letters  # was R/L/A/P
    bottom_left = overlay.corners["bottom_left"]
    assert bottom_left[0].startswith("2D image") and len(bottom_left) == 1, bottom_left  # was 'Axial', 'S 0.0 mm'
