"""The overlay's cache of pre-rendered annotation blocks."""

from __future__ import annotations

import pytest

from medview.qt.views import overlay

pytestmark = pytest.mark.qt


def test_blocks_are_kept_least_recently_used_first(qtbot, monkeypatch) -> None:
    """A block in use stays (the same image, not drawn again) while older ones make room for new lines; the
    cache never holds more than its limit."""
    monkeypatch.setattr(overlay, "_BLOCKS", overlay.OrderedDict())
    monkeypatch.setattr(overlay, "BLOCKS_KEPT", 3)
    layer = overlay.OverlayLayer()
    a, b, c = (layer._line_block(text, 1.0) for text in ("Axial  1/48", "Axial  2/48", "Axial  3/48"))
    assert layer._line_block("Axial  1/48", 1.0) is a  # used again: now the most recent
    d = layer._line_block("Axial  4/48", 1.0)  # makes room: the least recently used (2/48) goes
    assert len(overlay._BLOCKS) == 3
    assert layer._line_block("Axial  1/48", 1.0) is a and layer._line_block("Axial  3/48", 1.0) is c
    assert layer._line_block("Axial  4/48", 1.0) is d
    again = layer._line_block("Axial  2/48", 1.0)  # drawn anew
    assert again is not b and again.size() == b.size() and again == b  # same pixels
    assert len(overlay._BLOCKS) == 3


def _overlaps(placed) -> list[tuple[int, int]]:
    from medview.qt.views.overlay import _rect

    rects = [_rect(at, block, 1.0) for at, block in placed]
    return [(i, j) for i in range(len(rects)) for j in range(i + 1, len(rects)) if rects[i].intersects(rects[j])]


def test_annotations_never_overlap_in_a_narrow_view(qtbot) -> None:
    """Seen in the 1x3 layout: 'Coronal 257/512' ran into 'W 1500 L -600'; with Hide PHI the top letter sat
    on the series line."""
    from medview.qt.views.overlay import OverlayLayer

    layer = OverlayLayer()
    layer.corners = {"top_left": ["CT Chest CT (NSCLC, lung1) with a long description"], "top_right": [],
                     "bottom_left": ["Coronal  257/512", "A 179.0 mm"],
                     "bottom_right": ["W 1500 L -600", "zoom 0.85x"]}
    layer.letters = {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    layer.bar_mm, layer.bar_px = 50.0, 60.0
    for width in (220, 300, 420):
        placed = layer._place(width, 400, 1.0)
        assert len(placed) == 2 + 2 + 1 + 4 + 1
        assert _overlaps(placed) == [], f"overlap at {width} px"
        assert all(at.y() >= 0 and at.y() + block.height() <= 400 for at, block in placed)
    # a wide view keeps the corners on their own rows, as before
    wide = layer._place(1200, 400, 1.0)
    bottom_left_y = [at.y() for at, b in wide[1:3]]
    bottom_right_y = [at.y() for at, b in wide[3:5]]
    assert bottom_left_y == bottom_right_y


def test_window_views_show_no_overlapping_annotations(qtbot, window, chest_ct_sample) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(chest_ct_sample))
    window.phi_action.setChecked(True)
    window.set_layout("1x3")
    shown = [view for view in window.grid.views.values() if view.isVisible()]
    assert len(shown) == 3
    for size, view in ((size, view) for size in ((1400, 900), (1250, 800)) for view in shown):
        window.resize(*size)
        qtbot.wait(150)
        viewport = view.graphics.viewport()
        assert view.overlay.corners["bottom_left"] and view.overlay.corners["bottom_right"]
        placed = view.overlay._place(viewport.width(), viewport.height(), 1.0)
        assert _overlaps(placed) == [], f"{view.view}: annotations overlap at {size}"
