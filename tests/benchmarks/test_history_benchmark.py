"""Undo-history benchmark: memory and time per brush stroke on a 512 x 512 x 300 label map.

Data (made in memory): a 512 x 512 x 300 uint8 label map, 0.7 x 0.7 x 1.0 mm, holding an elliptic "body"
(label 1, ~40 % of the voxels).  100 brush strokes of a 10 mm brush (a disc of radius 5 mm) paint label 2:
each stroke is 15 dabs along a 40 mm line in a random axial slice, drawn live (``paint`` + ``Edit.apply``
per dab), then merged into one step (``combine_edits``) and recorded (``History.record``).

Reported, per stroke: bytes the history holds per step, time to draw the stroke (dabs), to record it, to
undo it and to redo it; then one whole-volume step (a 1-voxel dilation of the body replacing the array),
and saving / loading the history file.  Peers in the same run: the naive undo that keeps a full copy of
the label map per step (bytes = the array; time = ``array.copy()`` to record, ``np.copyto`` to undo) and
the uncompressed bounding-box diff (before + after arrays of the stroke's bbox).  The only assertions are
correctness: undoing everything gives the original array exactly, redoing everything the final one, and the
history stays within its budget.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from medview.algorithms.label_edit import brush_region, combine_edits, paint, replace_array
from medview.app.history import History
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap

from .dataset import BENCH

SHAPE = (300, 512, 512)
SPACING = (0.7, 0.7, 1.0)
STROKES = 100
DABS = 15
RADIUS_MM = 5.0  # a 10 mm brush
STROKE_MM = 40.0


def _label_map() -> LabelMap:
    g = Geometry(SHAPE, SPACING)
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = ((x - 256) / 220.0) ** 2 + ((y - 256) / 160.0) ** 2 + ((z - 150) / 170.0) ** 2 <= 1.0
    return LabelMap(body.astype(np.uint8), g, labels=[Label(1, "body"), Label(2, "lesion")])


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "max_ms": 1000 * ordered[-1]}


def test_history_benchmark() -> None:
    started = time.perf_counter()
    lm = _label_map()
    g = lm.geometry
    original = lm.array.copy()
    history = History()
    history.register("labels", lm)
    rng = np.random.default_rng(0)

    draw_s, record_s, bbox_bytes, step_bytes = [], [], [], []
    for _ in range(STROKES):
        z = int(rng.integers(40, 260))
        start = np.array([rng.uniform(100, 350), rng.uniform(150, 350), z], dtype=float)  # x, y, z index
        angle = rng.uniform(0, 2 * np.pi)
        step_index = np.array([np.cos(angle), np.sin(angle), 0.0]) * STROKE_MM / np.array(SPACING) / (DABS - 1)
        t0 = time.perf_counter()
        dabs = []
        for i in range(DABS):
            dab = paint(lm, brush_region(g, g.index_to_world(start + i * step_index), RADIUS_MM, "disc", "axial"), 2)
            dab.apply(lm.array)
            dabs.append(dab)
        t1 = time.perf_counter()
        stroke = combine_edits(lm.array, dabs, "Brush stroke")
        before = history.memory_bytes
        history.record("labels", stroke)
        t2 = time.perf_counter()
        draw_s.append(t1 - t0)
        record_s.append(t2 - t1)
        bbox_bytes.append(stroke.nbytes)
        step_bytes.append(history.memory_bytes - before)
    final = lm.array.copy()

    undo_s, redo_s = [], []
    for _ in range(STROKES):
        t0 = time.perf_counter()
        history.undo()
        undo_s.append(time.perf_counter() - t0)
    assert np.array_equal(lm.array, original)
    for _ in range(STROKES):
        t0 = time.perf_counter()
        history.redo()
        redo_s.append(time.perf_counter() - t0)
    assert np.array_equal(lm.array, final)

    # peer: a full copy of the label map per step
    copy_s, restore_s = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        snapshot = lm.array.copy()
        copy_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.copyto(lm.array, snapshot)
        restore_s.append(time.perf_counter() - t0)
        del snapshot

    # one whole-volume step: the body dilated by one voxel replaces the array
    grown = lm.array.copy()
    t0 = time.perf_counter()
    dilated = ndimage.binary_dilation(lm.array == 1)
    grown[dilated & (lm.array == 0)] = 1
    morph_compute = time.perf_counter() - t0
    t0 = time.perf_counter()
    edit = replace_array(lm, grown, "Dilate body")
    before = history.memory_bytes
    history.perform("labels", edit)
    morph_record = time.perf_counter() - t0
    morph_bytes = history.memory_bytes - before
    t0 = time.perf_counter()
    history.undo()
    morph_undo = time.perf_counter() - t0
    assert np.array_equal(lm.array, final)
    history.redo()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.nii.gz.medview-history"
        t0 = time.perf_counter()
        history.save(path, "labels")
        save_s = time.perf_counter() - t0
        file_bytes = path.stat().st_size
        t0 = time.perf_counter()
        loaded = History.load(path, "labels", lm)
        load_s = time.perf_counter() - t0
        assert len(loaded) == len(history)
    assert history.memory_bytes <= history.budget_bytes

    full_bytes = int(np.prod(SHAPE))
    mean_step = statistics.mean(step_bytes)
    mean_bbox = statistics.mean(bbox_bytes)
    results = {
        "strokes": STROKES, "dabs_per_stroke": DABS, "radius_mm": RADIUS_MM,
        "bytes_per_step": {"medview": mean_step, "max": max(step_bytes), "bbox_uncompressed": mean_bbox,
                           "full_copy": full_bytes},
        "draw": _ms(draw_s), "record": _ms(record_s), "undo": _ms(undo_s), "redo": _ms(redo_s),
        "full_copy": {"copy": _ms(copy_s), "restore": _ms(restore_s)},
        "whole_volume": {"compute_s": morph_compute, "record_s": morph_record, "undo_s": morph_undo,
                         "bytes": morph_bytes, "changed_voxels": int(np.count_nonzero(edit.before != edit.after))},
        "file": {"bytes": file_bytes, "save_s": save_s, "load_s": load_s},
        "total_memory_bytes": history.memory_bytes,
    }
    env = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           "cpus": os.cpu_count()}
    r = results
    ours_ms = r["record"]["median_ms"] + r["undo"]["median_ms"]
    peer_ms = r["full_copy"]["copy"]["median_ms"] + r["full_copy"]["restore"]["median_ms"]
    lines = [
        f"## Undo history benchmark: {STROKES} strokes of a 10 mm brush on a 512 x 512 x 300 label map",
        "",
        f"{os.cpu_count()} CPUs, Python {env['python']}, numpy {env['numpy']}.  Each stroke: {DABS} dabs of a disc "
        f"(radius {RADIUS_MM:g} mm, {SPACING[0]} x {SPACING[1]} mm in-plane) along {STROKE_MM:g} mm of an axial slice.",
        "",
        "| per step | bytes | x medview |",
        "|---|---:|---:|",
        f"| medview (zlib bbox diff: before + XOR) | {mean_step:,.0f} (max {max(step_bytes):,}) | 1 |",
        f"| uncompressed bbox diff (before + after) | {mean_bbox:,.0f} | {mean_bbox / mean_step:,.1f} |",
        f"| full copy of the label map | {full_bytes:,} | {full_bytes / mean_step:,.0f} |",
        "",
        "| per stroke | median ms | p95 ms | max ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {r[key]['median_ms']:.2f} | {r[key]['p95_ms']:.2f} | {r[key]['max_ms']:.2f} |"
          for name, key in (("draw (15 dabs: brush_region + paint + apply)", "draw"),
                            ("record (combine_edits + History.record)", "record"),
                            ("undo", "undo"), ("redo", "redo"))),
        f"| peer: full copy to record | {r['full_copy']['copy']['median_ms']:.2f} | "
        f"{r['full_copy']['copy']['p95_ms']:.2f} | {r['full_copy']['copy']['max_ms']:.2f} |",
        f"| peer: full copy back to undo | {r['full_copy']['restore']['median_ms']:.2f} | "
        f"{r['full_copy']['restore']['p95_ms']:.2f} | {r['full_copy']['restore']['max_ms']:.2f} |",
        "",
        f"* record + undo per stroke: {ours_ms:.2f} ms (medview) vs {peer_ms:.2f} ms (full copy): "
        f"{peer_ms / max(ours_ms, 1e-9):.0f}x faster.",
        f"* {STROKES} strokes hold {history.memory_bytes - morph_bytes:,} bytes in the history; full copies would hold "
        f"{STROKES * full_bytes / 2**30:.1f} GiB (the default budget of 256 MiB would keep 3 of them).",
        f"* whole-volume step (1-voxel dilation of the body, {r['whole_volume']['changed_voxels']:,} voxels changed): "
        f"{morph_bytes:,} bytes, record {morph_record:.2f} s (diff + compress), undo {morph_undo:.2f} s "
        f"(the dilation itself: {morph_compute:.2f} s).",
        f"* history file with all {len(history)} steps: {file_bytes:,} bytes, save {save_s:.2f} s (includes the "
        f"SHA-256 of the label map), load {load_s:.2f} s.",
        "* correctness (asserted): undoing all strokes gives the original array exactly, redoing them the final one.",
        "",
    ]
    table = "\n".join(lines)
    print("\n" + table)
    BENCH.mkdir(exist_ok=True)
    (BENCH / "history_results.md").write_text(table)
    (BENCH / "history_results.json").write_text(json.dumps({"environment": env, "results": results}, indent=1))
    print(f"[bench] total {time.perf_counter() - started:.0f} s; written to {BENCH / 'history_results.md'}")
