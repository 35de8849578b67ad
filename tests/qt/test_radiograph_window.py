"""The radiograph window on a DRR of a water sphere: physical aspect, values under the mouse, Save PNG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QFileDialog

from medview.algorithms.drr import MU_WATER_PER_MM, drr
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata
from medview.qt.dialogs.radiograph import RadiographWindow
from medview.qt.workers import wait_for_all

pytestmark = pytest.mark.qt

RADIUS_MM = 15.0
SPACING = (0.5, 0.5, 2.0)  # x, y, z mm: thick slices give rectangular detector pixels (0.5 x 2 mm)
SHAPE = (41, 81, 81)  # z, y, x: odd, so that a voxel sits on the sphere's centre


@pytest.fixture(scope="module")
def sphere_ct() -> Volume:
    """Water (0 HU) sphere of radius 15 mm in air (-1000 HU)."""
    nz, ny, nx = SHAPE
    sx, sy, sz = SPACING
    z, y, x = np.meshgrid((np.arange(nz) - nz // 2) * sz, (np.arange(ny) - ny // 2) * sy,
                          (np.arange(nx) - nx // 2) * sx, indexing="ij")
    hu = np.where(x**2 + y**2 + z**2 <= RADIUS_MM**2, 0.0, -1000.0).astype(np.float32)
    geometry = Geometry(SHAPE, SPACING, (-20.0, -20.0, -40.0))
    return Volume(hu, geometry, VolumeMetadata(modality="CT", series_description="Sphere phantom", units="HU"))


@pytest.fixture
def open_window(qtbot):
    pg.setConfigOptions(imageAxisOrder="row-major")
    windows: list[RadiographWindow] = []

    def make(image: Volume, view: str) -> RadiographWindow:
        w = RadiographWindow(image, view)
        qtbot.addWidget(w)
        w.show()
        qtbot.waitExposed(w)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()
    wait_for_all()


def _hover(window: RadiographWindow, view_pos: QPointF) -> None:
    viewport = window.graphics.viewport()
    for offset in (QPoint(3, 3), QPoint(0, 0)):  # arrive from elsewhere, as a mouse does
        QTest.qWait(15)  # pyqtgraph drops mouse moves closer than 10 ms (its mouseRateLimit); layout settles
        p = window.graphics.mapFromScene(window.view_box.mapViewToScene(view_pos)) + offset
        event = QMouseEvent(QEvent.Type.MouseMove, QPointF(p), QPointF(viewport.mapToGlobal(p)),
                            Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(viewport, event)


def test_image_has_the_physical_aspect(open_window, sphere_ct: Volume) -> None:
    image = drr(sphere_ct, "ap")
    rows, cols = image.array.shape[1:]
    sx, sy = image.geometry.spacing[:2]
    assert (sx, sy) == (0.5, 2.0)
    w = open_window(image, "ap")
    rect = w.image_item.mapRectToParent(w.image_item.boundingRect())
    assert rect.width() == pytest.approx(cols * sx) and rect.height() == pytest.approx(rows * sy)
    assert rect.width() / rect.height() == pytest.approx(cols * sx / (rows * sy))
    px_x, px_y = w.view_box.viewPixelSize()  # mm per screen pixel: the same both ways
    assert px_x == pytest.approx(px_y, rel=1e-3)
    assert "AP" in w.windowTitle()
    assert re.fullmatch(r"\d+(\.\d+)? mm", w.scale_bar_text())
    assert w.overlay.letters == {"left": "R", "right": "L", "top": "S", "bottom": "I"}


def test_lateral_title_and_bad_input(open_window, sphere_ct: Volume) -> None:
    w = open_window(drr(sphere_ct, "lateral"), "Lateral")
    assert "Lateral" in w.windowTitle()
    with pytest.raises(MedviewError, match="one greyscale image"):
        RadiographWindow(sphere_ct, "ap")
    with pytest.raises(MedviewError, match="Unknown radiograph view"):
        RadiographWindow(drr(sphere_ct, "ap"), "oblique")


@pytest.mark.parametrize("output", ["line_integral", "intensity"])
def test_hover_reports_the_water_equivalent_path(open_window, sphere_ct: Volume, output: str) -> None:
    image = drr(sphere_ct, "ap", output=output)
    w = open_window(image, "ap")
    sx, sy = image.geometry.spacing[:2]
    rows, cols = image.array.shape[1:]
    centre = QPointF((cols // 2 + 0.5) * sx, (rows // 2 + 0.5) * sy)  # the pixel whose ray hits the centre
    _hover(w, centre)
    text = w.status.text()
    water = float(re.search(r"water-equivalent ([\d.]+) mm", text).group(1))
    assert water == pytest.approx(2 * RADIUS_MM, abs=1.0)  # a chord of 61 voxels of 0.5 mm
    x, y = (float(v) for v in re.search(r"x ([\d.]+) mm, y ([\d.]+) mm", text).groups())
    mm_per_px = max(w.view_box.viewPixelSize())  # the mouse is on a whole screen pixel
    assert (x, y) == pytest.approx((centre.x(), centre.y()), abs=mm_per_px + 0.05)
    lps = [float(v) for v in re.search(r"LPS \(([-\d.]+), ([-\d.]+), ([-\d.]+)\)", text).groups()]
    assert lps[0] == pytest.approx(0.0, abs=1e-6) and lps[2] == pytest.approx(0.0, abs=1e-6)  # sphere centre
    if output == "line_integral":
        value = float(re.search(r"line integral ([\d.]+)", text).group(1))
        assert value == pytest.approx(2 * RADIUS_MM * MU_WATER_PER_MM, abs=0.02)

    _hover(w, QPointF(1.0, 1.0))  # a corner: air only
    assert float(re.search(r"water-equivalent ([\d.]+) mm", w.status.text()).group(1)) == 0.0


def test_right_drag_changes_window(qtbot, open_window, sphere_ct: Volume) -> None:
    w = open_window(drr(sphere_ct, "ap"), "ap")
    low, high = w.levels
    assert low == 0.0 and high == pytest.approx(float(w.data.max()))
    w.view_box.window_drag.emit(30.0, 0.0)
    assert w.levels[1] - w.levels[0] == pytest.approx((high - low) * 1.1)
    assert tuple(w.image_item.levels) == pytest.approx(w.levels)
    assert any(t.startswith("W ") for t in w.overlay.texts())


def test_save_png_writes_square_pixels(qtbot, open_window, sphere_ct: Volume, tmp_path: Path, monkeypatch) -> None:
    image = drr(sphere_ct, "ap")
    w = open_window(image, "ap")
    target = tmp_path / "sphere-ap"  # no extension: the window adds .png
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PNG pictures (*.png)"))
    with qtbot.waitSignal(w.saved, timeout=20_000) as blocker:
        qtbot.mouseClick(w.save_button, Qt.MouseButton.LeftButton)
    written = Path(blocker.args[0])
    assert written == tmp_path / "sphere-ap.png" and written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture = QImage(str(written))
    rows, cols = image.array.shape[1:]
    assert (picture.width(), picture.height()) == (cols, rows * 4)  # 2 mm rows resampled to 0.5 mm
    assert w.save_button.isEnabled() and "Saved" in w.status.text()


def test_cancelled_save_dialog_writes_nothing(open_window, sphere_ct: Volume, tmp_path: Path, monkeypatch) -> None:
    w = open_window(drr(sphere_ct, "ap"), "ap")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))
    w.save_png()
    assert w.worker is None and list(tmp_path.iterdir()) == []
