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
