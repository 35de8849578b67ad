"""The transfer-function editor as a user drives it: drag, add and delete points over the histogram."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QColorDialog

from medview.core.errors import MedviewError
from medview.qt.panels.transfer_function import TransferFunctionEditor
from medview.render.presets import validate_colour_points, validate_opacity_points

pytestmark = pytest.mark.qt

COLOUR = ((-1000.0, 0.0, 0.0, 0.0), (150.0, 0.8, 0.3, 0.2), (400.0, 1.0, 0.9, 0.8), (3000.0, 1.0, 1.0, 1.0))
OPACITY = ((-1000.0, 0.0), (150.0, 0.0), (400.0, 0.6), (3000.0, 0.9))


@pytest.fixture
def editor(qtbot) -> TransferFunctionEditor:
    pg.setConfigOptions(imageAxisOrder="row-major")
    w = TransferFunctionEditor()
    qtbot.addWidget(w)
    w.resize(600, 260)
    edges = np.linspace(-1024.0, 3071.0, 257)
    counts = np.r_[np.full(64, 5000), np.full(64, 200), np.full(128, 10)].astype(float)
    w.set_histogram(edges, counts)
    w.set_points(COLOUR, OPACITY)
    w.show()
    qtbot.waitExposed(w)
    return w


def _viewport_pos(editor: TransferFunctionEditor, box: pg.ViewBox, value: float, y: float) -> QPoint:
    scene = box.mapViewToScene(QPointF(value, y))
    return editor.graphics.mapFromScene(scene)


def _send(editor: TransferFunctionEditor, kind: QEvent.Type, pos: QPoint, button: Qt.MouseButton,
          buttons: Qt.MouseButton) -> None:
    viewport = editor.graphics.viewport()
    event = QMouseEvent(kind, QPointF(pos), QPointF(viewport.mapToGlobal(pos)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, event)


def _drag(editor: TransferFunctionEditor, start: QPoint, end: QPoint, steps: int = 8) -> float:
    """Press, move in ``steps`` and release the left button; returns how long the drag took (s)."""
    left = Qt.MouseButton.LeftButton
    began = time.perf_counter()
    _send(editor, QEvent.Type.MouseMove, start, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    _send(editor, QEvent.Type.MouseButtonPress, start, left, left)
    for t in np.linspace(0.0, 1.0, steps + 1)[1:]:
        p = QPoint(round(start.x() + t * (end.x() - start.x())), round(start.y() + t * (end.y() - start.y())))
        QTest.qWait(15)  # pyqtgraph drops mouse moves closer than 10 ms (its mouseRateLimit)
        _send(editor, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, left)
    _send(editor, QEvent.Type.MouseButtonRelease, end, left, Qt.MouseButton.NoButton)
    return time.perf_counter() - began


def _click(editor: TransferFunctionEditor, pos: QPoint, button: Qt.MouseButton, double: bool = False) -> None:
    _send(editor, QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)
    _send(editor, QEvent.Type.MouseButtonPress, pos, button, button)
    _send(editor, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)
    if double:
        _send(editor, QEvent.Type.MouseButtonDblClick, pos, button, button)
        _send(editor, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)


def _assert_valid(colour, opacity) -> None:
    assert validate_colour_points(colour) == tuple(colour)
    assert validate_opacity_points(opacity) == tuple(opacity)
    values = [p[0] for p in opacity]
    assert values == sorted(values) and len(set(values)) == len(values)


def test_set_points_round_trips_exactly(qtbot, editor: TransferFunctionEditor) -> None:
    colour, opacity = editor.points()
    assert colour == COLOUR and opacity == OPACITY
    odd = ([[-3.25, 0.1, 0.2, 0.3], [7, 1, 1, 1]], [(0.125, 0.333333333333), (1e-3, 1.0)][:1])
    with qtbot.assertNotEmitted(editor.points_changed):
        editor.set_points(*odd)
    assert editor.points() == (((-3.25, 0.1, 0.2, 0.3), (7.0, 1.0, 1.0, 1.0)), ((0.125, 0.333333333333),))
    assert len(editor.opacity_handles) == 1 and len(editor.colour_handles) == 2


def test_bad_points_are_refused(editor: TransferFunctionEditor) -> None:
    with pytest.raises(MedviewError, match="sorted"):
        editor.set_points(COLOUR, [(10.0, 0.1), (0.0, 0.2)])
    with pytest.raises(MedviewError, match=r"outside 0\.\.1"):
        editor.set_points(COLOUR, [(0.0, 1.5)])
    assert editor.points() == (COLOUR, OPACITY)  # unchanged


def test_histogram_shows_log_counts(editor: TransferFunctionEditor) -> None:
    x, y = editor.histogram_curve.getData()
    assert x is not None and len(x) == 257 and len(y) == 256
    assert y.max() == pytest.approx(1.0)
    assert y[0] == pytest.approx(np.log1p(5000) / np.log1p(5000))
    assert y[-1] == pytest.approx(np.log1p(10) / np.log1p(5000))  # log scale: small bins stay visible
    assert editor.value_range() == (-1024.0, 3071.0)
    image = editor.graphics.grab().toImage()
    assert image.width() > 0 and len({image.pixel(x, image.height() // 3) for x in range(0, image.width(), 7)}) > 2


def test_dragging_an_opacity_handle(qtbot, editor: TransferFunctionEditor) -> None:
    handle = editor.opacity_handles[2]  # (400, 0.6)
    start = _viewport_pos(editor, editor.plot_box, 400.0, 0.6)
    end = _viewport_pos(editor, editor.plot_box, 900.0, 0.25)
    received = []
    editor.points_changed.connect(lambda c, o: received.append((c, o)))
    seconds = _drag(editor, start, end)
    colour, opacity = editor.points()
    assert opacity[2][0] == pytest.approx(900.0, abs=30.0) and opacity[2][1] == pytest.approx(0.25, abs=0.03)
    assert opacity[:2] == OPACITY[:2] and opacity[3] == OPACITY[3] and colour == COLOUR
    assert handle.pos().x() == pytest.approx(opacity[2][0])
    # throttled: the first step went out at once, the rest waited; the release always sends the final ramp
    sent = len(received)
    assert 2 <= sent <= 2 + seconds / 0.1
    assert received[-1] == (colour, opacity)
    for c, o in received:
        _assert_valid(c, o)
    qtbot.wait(3 * 100)
    assert len(received) == sent  # nothing more after the release


def test_drag_is_clamped_between_neighbours_and_to_0_1(qtbot, editor: TransferFunctionEditor) -> None:
    received = []
    editor.points_changed.connect(lambda c, o: received.append(o))
    start = _viewport_pos(editor, editor.plot_box, 400.0, 0.6)
    end = _viewport_pos(editor, editor.plot_box, 2500.0, 1.3)
    end.setX(end.x() + 400)  # far past the right neighbour (3000) and above the plot
    end.setY(end.y() - 200)
    _drag(editor, start, end)
    _, opacity = editor.points()
    assert opacity[2][1] == 1.0
    assert opacity[1][0] < opacity[2][0] < opacity[3][0] == 3000.0
    for o in received:
        _assert_valid(COLOUR, o)
    start = _viewport_pos(editor, editor.plot_box, *opacity[2])
    _drag(editor, start, QPoint(2, start.y() + 500))  # left past every point and below zero
    _, opacity = editor.points()
    assert opacity[2][1] == 0.0 and opacity[1][0] < opacity[2][0]


def test_throttle_sends_at_most_about_ten_a_second(qtbot, editor: TransferFunctionEditor) -> None:
    received = []
    editor.points_changed.connect(lambda c, o: received.append(o))
    handle = editor.opacity_handles[2]
    began = time.perf_counter()
    for i in range(30):  # 30 drag steps (the handle's own callback) in 300 ms or more
        editor._handle_dragged(handle, QPointF(400.0 + 10 * i, 0.5), False)
        qtbot.wait(10)
    seconds = time.perf_counter() - began
    during = len(received)
    editor._handle_dragged(handle, QPointF(800.0, 0.5), True)
    assert 3 <= during <= 1 + seconds / 0.1  # one at once, then one per 100 ms at most
    assert len(received) == during + 1 and received[-1][2] == (800.0, 0.5)


def test_double_click_adds_and_right_click_removes(qtbot, editor: TransferFunctionEditor) -> None:
    pos = _viewport_pos(editor, editor.plot_box, 1500.0, 0.4)
    with qtbot.waitSignal(editor.points_changed, timeout=1000) as blocker:
        _click(editor, pos, Qt.MouseButton.LeftButton, double=True)
    colour, opacity = editor.points()
    assert len(opacity) == 5 and colour == COLOUR
    new = opacity[3]
    assert new[0] == pytest.approx(1500.0, abs=30.0) and new[1] == pytest.approx(0.4, abs=0.03)
    assert blocker.args == [colour, opacity]
    _assert_valid(colour, opacity)
    assert len(editor.opacity_handles) == 5

    with qtbot.waitSignal(editor.points_changed, timeout=1000):
        _click(editor, _viewport_pos(editor, editor.plot_box, *new), Qt.MouseButton.RightButton)
    assert editor.points() == (COLOUR, OPACITY)
    assert len(editor.opacity_handles) == 4


def test_double_click_on_a_handle_does_not_add_a_point(editor: TransferFunctionEditor) -> None:
    _click(editor, _viewport_pos(editor, editor.plot_box, 400.0, 0.6), Qt.MouseButton.LeftButton, double=True)
    assert editor.points() == (COLOUR, OPACITY)


def test_last_point_cannot_be_removed(editor: TransferFunctionEditor) -> None:
    editor.set_points(COLOUR[:1], OPACITY[:1])
    assert not editor.remove_point("opacity", 0)
    assert not editor.remove_point("colour", 0)
    assert editor.points() == (COLOUR[:1], OPACITY[:1])


def test_colour_points_add_drag_recolour_remove(qtbot, editor: TransferFunctionEditor, monkeypatch) -> None:
    pos = _viewport_pos(editor, editor.bar_box, 275.0, 0.5)
    with qtbot.waitSignal(editor.points_changed, timeout=1000):
        _click(editor, pos, Qt.MouseButton.LeftButton, double=True)
    colour, opacity = editor.points()
    assert len(colour) == 5 and opacity == OPACITY
    value, r, g, b = colour[2]
    assert value == pytest.approx(275.0, abs=30.0)
    t = (value - 150.0) / 250.0  # the new point takes the ramp's colour there
    assert (r, g, b) == pytest.approx((0.8 + 0.2 * t, 0.3 + 0.6 * t, 0.2 + 0.6 * t))

    _drag(editor, _viewport_pos(editor, editor.bar_box, value, 0.5), _viewport_pos(editor, editor.bar_box, -5000, 0.9))
    colour, _ = editor.points()
    assert colour[1][0] < colour[2][0] < 275.0 and colour[2][1:] == (r, g, b)  # stopped at its neighbour
    _assert_valid(colour, OPACITY)

    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor(255, 0, 51))
    with qtbot.waitSignal(editor.points_changed, timeout=1000):
        _click(editor, _viewport_pos(editor, editor.bar_box, colour[2][0], 0.5), Qt.MouseButton.LeftButton,
               double=True)
    colour, _ = editor.points()
    assert colour[2][1:] == pytest.approx((1.0, 0.0, 0.2))
    assert len(colour) == 5  # recoloured, not added

    _click(editor, _viewport_pos(editor, editor.bar_box, colour[2][0], 0.5), Qt.MouseButton.RightButton)
    assert editor.points() == (COLOUR, OPACITY)


def test_owner_echoing_points_back_does_not_break_a_drag(qtbot, editor: TransferFunctionEditor) -> None:
    editor.points_changed.connect(editor.set_points)  # e.g. an owner that stores and re-shows the ramp
    handle = editor.opacity_handles[2]
    _drag(editor, _viewport_pos(editor, editor.plot_box, 400.0, 0.6),
          _viewport_pos(editor, editor.plot_box, 700.0, 0.8))
    _, opacity = editor.points()
    assert opacity[2][0] == pytest.approx(700.0, abs=30.0) and opacity[2][1] == pytest.approx(0.8, abs=0.03)
    assert editor.opacity_handles[2] is handle  # the same handle all along
