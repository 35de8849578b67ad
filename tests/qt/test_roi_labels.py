"""ROI statistics labels on the slice: beside their shape, inside the view, never on top of one another
(issue 17, item 21: the one-line text ran out of the view and overlapped other ROIs' text)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg

from medview.app.measurements import Measurement
from medview.qt.main_window import MainWindow


def _labels(view) -> list:
    return [it for it in view.measure_items if isinstance(it, pg.TextItem)]


def _view_rect(view, text):
    return text.mapRectToView(text.boundingRect())


def test_overlapping_rois_get_separate_labels_near_their_shapes(qtbot, window: MainWindow,
                                                               chest_ct_sample: Path) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(chest_ct_sample))
    volume = blocker.args[0]
    window.set_layout("2x2")
    qtbot.wait(100)
    axial = window.grid.views["axial"]
    g = volume.geometry
    z = int(np.rint(g.world_to_index(window.state.cursor)[2]))
    corners = [((200, 180), (260, 230)), ((210, 190), (270, 240)), ((205, 185), (250, 220))]
    for (i0, j0), (i1, j1) in corners:
        window.state.add_measurement(Measurement("rectangle", [g.index_to_world([i0, j0, z]),
                                                               g.index_to_world([i1, j1, z])],
                                                 view="axial", plane=axial.plane))
    qtbot.wait(50)
    texts = _labels(axial)
    assert len(texts) == 3
    rects = [_view_rect(axial, t) for t in texts]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not rects[a].intersects(rects[b]), "two ROI labels cover each other"
    (x0, x1), (y0, y1) = axial.view_box.viewRange()
    sx, sy = (abs(v) for v in axial.view_box.viewPixelSize())
    for m, rect, text in zip(window.state.measurements, rects, texts, strict=True):
        assert x0 - sx <= rect.left() and rect.right() <= x1 + sx, "label outside the view"
        top, bottom = sorted((rect.top(), rect.bottom()))
        assert y0 - sy <= top and bottom <= y1 + sy, "label outside the view"
        assert "mean" in text.toPlainText() and "area" in text.toPlainText()
        xy = axial._outline(m)
        # tied to its shape: beside it, or joined to it by a leader line
        gap = max(rect.left() - xy[:, 0].max(), xy[:, 0].min() - rect.right(), 0.0) / sx
        assert gap < 20 or len(axial.measure_items) > 2 * 3
    # zooming in lays the labels out again: still apart and inside the view
    axial.view_box.fitted = False
    axial.view_box.scaleBy((0.5, 0.5))
    qtbot.wait(50)
    rects = [_view_rect(axial, t) for t in _labels(axial)]
    (x0, x1), _ = axial.view_box.viewRange()
    assert not any(rects[a].intersects(rects[b]) for a in range(3) for b in range(a + 1, 3))
    assert all(x0 - sx <= r.left() and r.right() <= x1 + sx for r in rects)
