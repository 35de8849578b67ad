"""Detections in the real window: the blob detector finds the bundled CT's tumour, the candidates are
listed, selecting one moves the crosshair there, and the slice views draw it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medview.qt.main_window import MainWindow


def test_blob_detector_finds_the_tumour_and_selecting_it_moves_the_crosshair(qtbot, window: MainWindow,
                                                                            chest_ct_sample: Path,
                                                                            tmp_path: Path) -> None:
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(chest_ct_sample))
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=10_000)
    labels = window.state.labels
    panel = window.editing.detections
    panel.low.setValue(8.0)  # nodules from 8 mm (Fleischner follow-up size): a whole-CT search in ~10 s
    worker = panel.run()
    assert worker is not None
    # ``done`` is set before the queued result reaches the panel: wait for the panel's own end of the job
    qtbot.waitUntil(lambda: worker.done and not panel.cancel_button.isEnabled(), timeout=120_000)
    found = window.state.detections
    assert found is not None and found.detections and panel.table.rowCount() == len(found.detections)
    g = labels.geometry
    idx = np.argwhere(labels.array == 1)
    lo, hi = idx.min(axis=0), idx.max(axis=0)  # (z, y, x)

    def inside(d) -> bool:
        x, y, z = g.world_to_index(d.center_lps)
        return bool(lo[0] - 0.5 <= z <= hi[0] + 0.5 and lo[1] - 0.5 <= y <= hi[1] + 0.5
                    and lo[2] - 0.5 <= x <= hi[2] + 0.5)

    hits = [i for i, d in enumerate(found.detections) if inside(d)]
    assert hits, "no candidate inside the tumour's bounding box"
    panel.table.setCurrentCell(hits[0], 0)
    np.testing.assert_allclose(window.state.cursor, found.detections[hits[0]].center_lps, atol=1.0)
    window.grid.views["axial"].graphics.viewport().repaint()  # draws the candidate circles without error
    path = tmp_path / "found.json"
    panel.save_file(str(path))
    window.state.set_detections(None)
    panel.open_file(str(path))
    assert len(window.state.detections.detections) == len(found.detections)
