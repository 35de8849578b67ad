"""Every layout and workspace mode as a reader sees it: whole images after layout changes, resizes and
rotation; readable panel tabs, at most five per mode (issue 17, item 21).  Each case also writes a
screenshot of the window next to the test's files for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDockWidget, QTabBar

from medview.qt.main_window import MainWindow
from medview.qt.modes import ALWAYS, MAX_TABS, MODES


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    return blocker.args[0]


def _settle(qtbot) -> None:
    qtbot.wait(120)  # resize events and the views' re-fits run in the event loop


def _shows_whole_image(view, tol_mm: float = 0.5) -> bool:
    """The view's visible range encloses the image and the image fills one of its two directions."""
    (x0, x1), (y0, y1) = view.view_box.viewRange()
    r = view._image_rect
    encloses = x0 <= r.left() + tol_mm and x1 >= r.right() - tol_mm and y0 <= r.top() + tol_mm and \
        y1 >= r.bottom() - tol_mm
    fills = abs((x1 - x0) - r.width()) < 0.02 * r.width() + tol_mm or \
        abs((y1 - y0) - r.height()) < 0.02 * r.height() + tol_mm
    return encloses and fills


def _slice_views(window: MainWindow):
    return [v for v in window.grid.views.values() if v.isVisible() and v.plane is not None]


@pytest.mark.parametrize("start", ["1x3", "1x1", "2x2"])
def test_views_stay_fitted_through_layout_changes_and_rotation(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                                tmp_path: Path, start: str) -> None:
    window.set_layout(start)
    _open(qtbot, window, chest_ct_sample)
    _settle(qtbot)
    for layout in ("1x3", "2x2", "1x1", "1x3"):
        window.set_layout(layout)
        _settle(qtbot)
        views = _slice_views(window)
        assert views
        for view in views:
            assert _shows_whole_image(view), f"{view.view} cropped after switching to {layout}"
        window.grab().save(str(tmp_path / f"layout-{start}-to-{layout}.png"))
    window.resize(1000, 700)
    _settle(qtbot)
    assert all(_shows_whole_image(v) for v in _slice_views(window)), "cropped after a window resize"
    # a rotated (oblique) plane cuts a larger image: it is shown whole too
    window.state.rotate("axial", 30.0)
    _settle(qtbot)
    assert all(_shows_whole_image(v) for v in _slice_views(window)), "cropped after a rotation"


def test_a_zoom_the_reader_chose_survives_a_resize(qtbot, window: MainWindow, chest_ct_sample: Path) -> None:
    _open(qtbot, window, chest_ct_sample)
    window.set_layout("1x3")
    _settle(qtbot)
    view = window.grid.views["axial"]
    view.view_box.fitted = False  # what Ctrl+wheel and a middle-button pan set
    view.view_box.scaleBy((0.5, 0.5))
    zoomed = view.view_box.viewRange()
    assert not _shows_whole_image(view)
    window.resize(1300, 880)
    _settle(qtbot)
    assert zoomed[0][1] - zoomed[0][0] < view._image_rect.width()
    (x0, x1), _ = view.view_box.viewRange()
    assert x1 - x0 < 0.9 * view._image_rect.width(), "the resize threw the reader's zoom away"
    view.reset_zoom()  # Home / double-click: whole again, and kept whole through resizes
    window.resize(1500, 950)
    _settle(qtbot)
    assert _shows_whole_image(view)


def _visible_tab_bars(window: MainWindow) -> list[QTabBar]:
    return [b for b in window.findChildren(QTabBar) if b.isVisible() and b.count() > 0
            and b.parent() is window and window.rect().contains(b.geometry())]


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_shows_at_most_five_readable_tabs(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                    tmp_path: Path, mode: str) -> None:
    _open(qtbot, window, chest_ct_sample)
    window.resize(1600, 1000)
    window.modes.set_mode(mode)
    _settle(qtbot)
    checked = [name for name, action in window.modes.actions_by_mode.items() if action.isChecked()]
    assert checked == [mode]
    open_tabs = window.modes.visible_tabs()
    assert set(open_tabs) == set(MODES[mode]) and len(open_tabs) <= MAX_TABS
    docks = {d.objectName().removeprefix("dock_"): d for d in window.findChildren(QDockWidget)}
    for name in ALWAYS:
        assert docks[name].isVisible(), f"{name} hidden in {mode}"
    bars = _visible_tab_bars(window)
    for bar in bars:
        metrics = bar.fontMetrics()
        for i in range(bar.count()):
            text = bar.tabText(i)
            assert bar.tabRect(i).width() >= metrics.horizontalAdvance(text), f"tab {text!r} is cut in {mode}"
            assert bar.rect().contains(bar.tabRect(i)), f"tab {text!r} is scrolled out of sight in {mode}"
    # the mode's first panel is the one shown; a tab bar left over from an earlier arrangement is not drawn
    # over the views
    grid_rect = window.grid.geometry()
    for bar in window.findChildren(QTabBar):
        if bar.isVisible() and bar.parent() is window and bar.count() > 0:
            assert not grid_rect.intersects(bar.geometry()), "a tab bar is drawn over the views"
    window.grab().save(str(tmp_path / f"mode-{mode}.png"))


def test_mode_is_remembered_and_switched_from_the_mode_bar(qtbot, window: MainWindow, tmp_path: Path) -> None:
    window.modes.actions_by_mode["AI"].trigger()
    assert window.modes.mode == "AI"
    assert window.settings.value("workspace/mode") == "AI"
    assert set(window.modes.visible_tabs()) == {"AI", "Detections"}
    # a panel's state survives hiding: the AI panel object is the same and alive after a round trip
    ai = window.editing.ai
    window.modes.set_mode("Read")
    window.modes.set_mode("AI")
    assert window.editing.ai is ai and ai.isVisible()


def test_a_panel_asked_for_brings_its_mode(qtbot, window: MainWindow) -> None:
    window.modes.set_mode("Read")
    window.modes.show_panel("Detections")  # what a detection model's result does
    assert window.modes.mode == "AI"
    menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Analysis")
    action = next(a for a in menu.actions() if a.text() == "Features panel")
    action.trigger()
    assert window.modes.mode == "Analyse"
    assert not window.analysis.docks["Features"].isHidden() and not window.analysis.docks["Features"].isFloating()
    window.modes.show_panel("Labels")  # a panel of every mode: no switch
    assert window.modes.mode == "Analyse"
