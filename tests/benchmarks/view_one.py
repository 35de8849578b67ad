"""One viewer measurement in a fresh process: ``python view_one.py drag SIZE`` or ``view_one.py open DIR``.

Prints one JSON line on stdout.  The window is the real one, set up as ``medview`` starts it:
``configure()`` (pyqtgraph options, GC freeze, GIL switch interval), ``MainWindow`` at 1600 x 900,
shown, layout 1x3; settings go to a throw-away ini file so the user's recent-files list is untouched.

drag SIZE (512 or 1024)
    The bundled chest CT (512 x 512 x 48) opened through the window, its tumour label loaded by the
    window, then a multi-label map (tumour + body mask at -300 HU, a large area) set on it; for 1024 the
    CT and labels repeated 2 x 2 in-plane (spacing halved) and shown with ``state.set_volume``.  Then,
    with every background job finished:

    * ``crosshair``: ``state.set_cursor(p)`` (what a left drag in the axial view calls), a synchronous
      ``repaint()`` of the three viewports and ``processEvents()``; the cursor walks the axial plane's
      diagonal so the coronal and sagittal slices change on every frame;
    * ``crosshair-mouse``: the same drag as real mouse events (``QTest`` press, moves, release on the
      axial viewport, crosshair tool), time per move including the repaint and ``processEvents()``;
    * ``window-mouse``: a right-button (window/level) drag on the axial viewport, timed the same way.

    Moves are paced ``PACE_S`` apart (a mouse reporting at ~80 Hz; pyqtgraph drops moves closer than
    10 ms) and the event loop runs in between, as it would; ``WARMUP`` frames before each run are
    not counted.  A 5 ms heartbeat ``QTimer`` runs throughout each run: its largest gap is the longest
    time the event loop could not answer.  With ``--profile FILE``, cProfile statistics of the timed
    frames go to FILE.

open DIR
    Time from ``window.open_path(DIR)`` to: the scan done (``_scanned`` entered), the first slice on
    screen (the axial view has an image, then a forced ``repaint()``), ``load_finished``, and (bundled
    chest CT) its label map shown; then the event loop runs until the background jobs (thumbnails,
    histogram) are done, plus ``SETTLE_S``.  The heartbeat covers all of it.  The decode workers are
    started from the fork server in a background thread before the imports, as ``medview`` starts them, and
    not waited for: the series is opened right after the window is shown (as ``medview view PATH`` does),
    so the workers' start can overlap the scan.  What-if (not used by the benchmark): ``--warm-pool`` waits
    for the workers before the clock.  ``pool_start_method`` in the result says how they were started.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the decode pool's workers (forkserver: the GUI runs threads) import this file as __mp_main__: keep that
# as light as the real `medview` script, which imports only the CLI module
if __name__ == "__main__":
    from medview.io.dicom import parallel

    parallel.start_in_background()  # first, as `medview` does: the workers start beside the imports below
    import numpy as np
    from PySide6.QtCore import QPoint, QSettings, Qt, QThreadPool, QTimer
    from PySide6.QtTest import QTest

    from medview.algorithms.reslice import slice_index_for
    from medview.app.samples import sample_path
    from medview.core.geometry import Geometry
    from medview.core.labels import Label, LabelMap
    from medview.core.volume import Volume
    from medview.qt.app import configure
    from medview.qt.main_window import MainWindow
    from medview.qt.workers import wait_for_all

WINDOW_SIZE = (1600, 900)
PACE_S = 0.012  # between moves: ~80 Hz, above pyqtgraph's 10 ms mouse rate limit
WARMUP = 20
FRAMES = 300
HEARTBEAT_MS = 5
STALL_MS = 50.0
SETTLE_S = 0.3
BODY_HU = -300

now = time.perf_counter


class Heartbeat:
    """A 5 ms timer on the GUI thread; gaps between its ticks are event-loop stalls."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []

    def _tick(self) -> None:
        self.ticks.append(now())

    def start(self) -> None:
        self.ticks = [now()]
        self.timer.start()

    def stop(self) -> dict:
        self.ticks.append(now())
        self.timer.stop()
        t = np.array(self.ticks)
        gaps = np.diff(t) * 1000.0
        i = int(np.argmax(gaps)) if gaps.size else 0
        return {"max_gap_ms": float(gaps.max()) if gaps.size else 0.0,
                "max_gap_at_s": float(t[i] - t[0]) if gaps.size else 0.0,
                "stalls_over_50ms": int(np.count_nonzero(gaps > STALL_MS)),
                "stalls": [[round(float(t[j] - t[0]), 4), round(float(gaps[j]), 2)]
                           for j in np.flatnonzero(gaps > STALL_MS)][:50],
                "ticks": int(t.size), "started_perf_counter": float(t[0])}


class GcWatch:
    """Durations of the garbage collector's runs (gc.callbacks) while active."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, float]] = []
        self._t0 = 0.0

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = now()
        else:
            self.runs.append((info["generation"], (now() - self._t0) * 1000.0))

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._cb)

    def summary(self) -> dict:
        return {"gc_runs": len(self.runs), "gc_max_ms": max((d for _, d in self.runs), default=0.0),
                "gc_gen2_runs": sum(1 for g, _ in self.runs if g == 2)}


def spin(app, until=None, timeout_s: float = 120.0, min_s: float = 0.0) -> bool:
    """Run the event loop (the GUI thread idles in between, as in ``exec()``) until ``until()`` is true."""
    start = now()
    while True:
        app.processEvents()
        elapsed = now() - start
        if elapsed >= min_s and (until is None or until()):
            return True
        if elapsed > timeout_s:
            return False
        time.sleep(0.0002)


def jobs_idle() -> bool:
    return QThreadPool.globalInstance().activeThreadCount() == 0


def settle(app) -> None:
    """Let background jobs (histogram, thumbnails, label import, the arrays' x-major copies) finish, idle a
    little, and let any job that started meanwhile (the copies start after a short delay) finish too."""
    spin(app, jobs_idle, timeout_s=60.0)
    spin(app, min_s=SETTLE_S)
    spin(app, jobs_idle, timeout_s=60.0)


def scratch_dir() -> str:
    """A temporary folder for the window's settings file, removed when the process exits."""
    tmp = tempfile.mkdtemp(prefix="medview-viewbench-")
    atexit.register(shutil.rmtree, tmp, True)
    return tmp


def make_window(tmp: str):
    app = configure()
    window = MainWindow(settings=QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat))
    window.resize(*WINDOW_SIZE)
    window.show()
    window.set_layout("1x3")
    QTest.qWaitForWindowExposed(window)
    spin(app, min_s=0.2)
    return app, window


def paint_all(app, views) -> None:
    for v in views:
        v.graphics.viewport().repaint()
    app.processEvents()


def stats(frames_ms: list[float]) -> dict:
    a = np.asarray(frames_ms, dtype=float)
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "p99_ms": float(np.percentile(a, 99)), "max_ms": float(a.max()), "mean_ms": float(a.mean())}


def check_slices(window) -> dict:
    """Each view's slice index against the one the geometry gives for the cursor."""
    geometry = window.state.volume.geometry
    expected_ijk = np.rint(geometry.world_to_index(window.state.cursor)).astype(int)
    out = {}
    for name, view in window.grid.views.items():
        axis = int(np.argmax(np.abs(geometry.direction_matrix.T @ view.plane.normal())))
        out[name] = {"shown": slice_index_for(geometry, view.plane), "expected": int(expected_ijk[axis])}
    return out


# -- data -------------------------------------------------------------------------------------------
def multi_labels(volume: Volume, tumour: LabelMap) -> LabelMap:
    """Tumour (as imported) plus a body mask (> -300 HU) as a second label: a realistic overlay area."""
    body_value = max((e.value for e in tumour.labels), default=1) + 1
    array = np.where(volume.array > BODY_HU, np.uint8(body_value), np.uint8(0)).astype(np.uint8)
    inside = tumour.array > 0
    array[inside] = tumour.array[inside]
    entries = [Label(e.value, e.name, e.color, e.visible, e.opacity) for e in tumour.labels]
    entries.append(Label(body_value, "Body (> -300 HU)", (60, 180, 75), True, 0.3))
    return LabelMap(array, volume.geometry, labels=entries, source="benchmark")


def upsampled(volume: Volume, labels: LabelMap) -> tuple[Volume, LabelMap]:
    """The volume and labels repeated 2 x 2 in-plane: 1024 x 1024 slices, same anatomy and extent."""
    g = volume.geometry
    sx, sy, sz = g.spacing
    d = g.direction_matrix
    origin = np.array(g.origin) - d @ np.array([sx / 4.0, sy / 4.0, 0.0])  # voxel centres stay consistent
    geometry = Geometry((g.shape[0], g.shape[1] * 2, g.shape[2] * 2), (sx / 2.0, sy / 2.0, sz), tuple(origin),
                        g.direction)
    array = np.repeat(np.repeat(volume.array, 2, axis=1), 2, axis=2)
    big = Volume(array, geometry, volume.metadata)
    lab = np.repeat(np.repeat(labels.array, 2, axis=1), 2, axis=2)
    entries = [Label(e.value, e.name, e.color, e.visible, e.opacity) for e in labels.labels]
    return big, LabelMap(lab, geometry, labels=entries, source="benchmark")


# -- drag ---------------------------------------------------------------------------------------------
def diagonal(volume: Volume, n: int) -> list[np.ndarray]:
    """World points along the axial plane's diagonal (10 % to 90 %), on the middle slice."""
    g = volume.geometry
    nx, ny, nz = g.size_xyz
    t = np.linspace(0.1, 0.9, n)
    idx = np.column_stack([t * (nx - 1), t * (ny - 1), np.full(n, (nz - 1) // 2)])
    return list(g.index_to_world(idx))


def mouse_path(view, volume: Volume, n: int, step_px: int = 2) -> list[QPoint]:
    """Widget pixels along the same diagonal, ``step_px`` apart in x and y, back and forth to ``n`` moves."""
    a, b = (view.world_to_widget(p) for p in diagonal(volume, 2))
    x0, y0, x1, y1 = round(a.x()), round(a.y()), round(b.x()), round(b.y())
    steps = max(int(min(abs(x1 - x0), abs(y1 - y0)) // step_px), 2)
    sx, sy = (1 if x1 >= x0 else -1) * step_px, (1 if y1 >= y0 else -1) * step_px
    one_way = [QPoint(x0 + i * sx, y0 + i * sy) for i in range(steps + 1)]
    path: list[QPoint] = []
    while len(path) < n + 1:
        path.extend(one_way if not path else one_way[1:])
        one_way = one_way[::-1]
    return path[:n + 1]


def window_path(n: int) -> list[QPoint]:
    """Offsets for a window/level drag: x (width) and y (level) zig-zag 3 px a move."""
    out, x, y = [], 0, 0
    for i in range(n):
        x += 3 if (i // 25) % 2 == 0 else -3
        y += 3 if (i // 40) % 2 == 0 else -3
        out.append(QPoint(x, y))
    return out


class PaintCounter:
    """Counts paint events of the three viewports (an event filter; it never consumes events)."""

    def __init__(self, viewports) -> None:
        from PySide6.QtCore import QEvent, QObject

        paint = QEvent.Type.Paint

        class Filter(QObject):
            count = 0

            def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
                if event.type() == paint:
                    Filter.count += 1
                return False

        self.filter = Filter()
        self.cls = Filter
        for vp in viewports:
            vp.installEventFilter(self.filter)

    @property
    def count(self) -> int:
        return self.cls.count


def run_frames(app, step, n_warm: int, n: int, profile: cProfile.Profile | None, paints: PaintCounter,
               force_repaint: bool = True) -> dict:
    """``step(i)`` does one frame's input and returns whether it changed the state; then the views are
    painted: ``repaint()`` of each viewport + ``processEvents()`` (``force_repaint``), or only
    ``processEvents()`` (the event loop paints what is dirty, as in ``exec()``).  Paced and timed."""
    views = list(step.views)
    hb = Heartbeat()
    frames: list[float] = []
    inputs: list[float] = []
    painted: list[int] = []
    changed = 0
    last = now()
    with GcWatch() as gw:
        for i in range(n_warm + n):
            if i == n_warm:
                hb.start()
            due = last + PACE_S
            spin(app, lambda due=due: now() >= due, timeout_s=1.0)  # idle until the next move is due
            last = now()
            if profile is not None and i >= n_warm:
                profile.enable()
            before = paints.count
            t0 = now()
            did = step(i)
            t1 = now()
            if force_repaint:
                paint_all(app, views)
            else:
                app.processEvents()
            t2 = now()
            if profile is not None and i >= n_warm:
                profile.disable()
            if i >= n_warm:
                frames.append((t2 - t0) * 1000.0)
                inputs.append((t1 - t0) * 1000.0)
                painted.append(paints.count - before)
                changed += bool(did)
        spin(app, min_s=0.05)
        loop = hb.stop()
    return {**stats(frames), "input_p50_ms": float(np.median(inputs)),
            "paint_p50_ms": float(np.median(np.array(frames) - np.array(inputs))),
            "paints_per_frame": float(np.mean(painted)), "forced_repaint": force_repaint,
            "frames_ms": [round(f, 3) for f in frames], "changed": changed, **loop, **gw.summary()}


class CursorSteps:
    def __init__(self, window, points) -> None:
        self.window, self.points, self.views = window, points, window.grid.views.values()

    def __call__(self, i: int) -> bool:
        before = self.window.state.cursor.copy()
        self.window.state.set_cursor(self.points[i % len(self.points)])
        return not np.array_equal(before, self.window.state.cursor)


class MouseSteps:
    """Mouse moves with a button held; ``watch()`` tells whether a move changed the state."""

    def __init__(self, window, viewport, positions, watch) -> None:
        self.window, self.viewport, self.positions, self.watch = window, viewport, positions, watch
        self.views = window.grid.views.values()

    def __call__(self, i: int) -> bool:
        before = self.watch()
        QTest.mouseMove(self.viewport, self.positions[i])
        return not np.array_equal(before, self.watch())


def drag(size: int, profile_path: str | None) -> dict:
    tmp = scratch_dir()
    app, window = make_window(tmp)
    out: dict = {"mode": "drag", "size": size}
    t0 = now()
    window.open_path(str(sample_path("chest_ct")))
    if not spin(app, lambda: window.volume is not None and window.state.labels is not None, timeout_s=120):
        raise RuntimeError("the chest CT or its label did not load")
    settle(app)
    out["open_s"] = now() - t0
    volume, tumour = window.state.volume, window.state.labels
    labels = multi_labels(volume, tumour)
    if size == 1024:
        volume, labels = upsampled(volume, labels)
        t = now()
        window.state.set_volume(volume)
        out["set_volume_ms"] = (now() - t) * 1000.0
        settle(app)
    elif size != 512:
        raise ValueError(size)
    t = now()
    window.state.set_labels(labels)
    out["set_labels_ms"] = (now() - t) * 1000.0  # on the GUI thread, with the labels panel's refresh
    settle(app)
    views = window.grid.views
    out["shape"] = list(volume.geometry.shape)
    out["label_fraction"] = float(np.count_nonzero(labels.array) / labels.array.size)
    out["viewports"] = {n: [v.graphics.viewport().width(), v.graphics.viewport().height()] for n, v in views.items()}
    profiles: dict[str, cProfile.Profile] = {}

    def profile_for(name: str) -> cProfile.Profile | None:
        return profiles.setdefault(name, cProfile.Profile()) if profile_path else None

    paints = PaintCounter([v.graphics.viewport() for v in views.values()])
    runs: dict[str, dict] = {}

    # programmatic crosshair drag: forced repaint (an upper bound: repaint() paints at once, and the scene's
    # queued update then paints each view a second time, which the event loop alone never does), then the
    # event loop only, as in the application
    points = diagonal(volume, FRAMES)
    warm = diagonal(volume, WARMUP)
    runs["crosshair"] = run_frames(app, CursorSteps(window, warm + points), WARMUP, FRAMES,
                                   profile_for("crosshair"), paints)
    out["slices_after_crosshair"] = check_slices(window)
    back = diagonal(volume, FRAMES + 1)[::-1][1:]  # the way back, starting one step from the last point
    runs["crosshair-loop"] = run_frames(app, CursorSteps(window, warm + back), WARMUP, FRAMES,
                                        profile_for("crosshair-loop"), paints, force_repaint=False)
    out["slices_after_loop"] = check_slices(window)

    # the same drag through mouse events (crosshair tool), painted by the event loop as in the application
    window.set_tool("crosshair")
    axial = views["axial"]
    vp = axial.graphics.viewport()
    path = mouse_path(axial, volume, WARMUP + FRAMES)
    QTest.mouseMove(vp, path[0])
    spin(app, min_s=0.05)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, path[0])
    runs["crosshair-mouse"] = run_frames(
        app, MouseSteps(window, vp, path[1:], lambda: window.state.cursor.copy()), WARMUP, FRAMES,
        profile_for("crosshair-mouse"), paints, force_repaint=False)
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, path[-1])
    spin(app, min_s=0.05)
    out["slices_after_mouse"] = check_slices(window)
    out["mouse_step_px"] = 2

    # window/level: right-button drag on the axial view
    centre = vp.rect().center()
    QTest.mouseMove(vp, centre)
    spin(app, min_s=0.05)
    w_before = window.state.window
    QTest.mousePress(vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, centre)
    moves = [centre + d for d in window_path(WARMUP + FRAMES)]
    runs["window-mouse"] = run_frames(
        app, MouseSteps(window, vp, moves, lambda: (window.state.window.center, window.state.window.width)),
        WARMUP, FRAMES, profile_for("window-mouse"), paints, force_repaint=False)
    QTest.mouseRelease(vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, moves[-1])
    spin(app, min_s=0.05)
    out["window_before"] = [w_before.center, w_before.width]
    out["window_after"] = [window.state.window.center, window.state.window.width]
    out["runs"] = runs

    if profile_path:
        text = io.StringIO()
        for name, profile in profiles.items():
            text.write(f"\n\n######## {size}^2 {name}: the {FRAMES} timed frames (cProfile inflates Python-heavy "
                       "parts)\n")
            st = pstats.Stats(profile, stream=text)
            st.sort_stats("cumulative").print_stats(40)
            st.sort_stats("tottime").print_stats(25)
        Path(profile_path).write_text(text.getvalue())
    window.close()
    wait_for_all()
    return out


# -- open ---------------------------------------------------------------------------------------------
def open_series(folder: str, warm_pool: bool = False) -> dict:
    tmp = scratch_dir()
    app, window = make_window(tmp)
    if warm_pool:  # what-if: the decode pool up before the clock (a series opened a while after start-up)
        parallel.warm_up()
    axial = window.grid.views["axial"]
    marks: dict[str, float] = {}
    failed: list[str] = []
    sample = Path(folder).resolve() == sample_path("chest_ct").resolve()

    original_scanned = window._scanned

    def scanned(*args) -> None:  # the scan worker's result arrives on the GUI thread
        marks.setdefault("scan", now())
        original_scanned(*args)

    window._scanned = scanned  # type: ignore[method-assign]

    def on_volume() -> None:  # after the views (they subscribed first) have drawn the new volume
        if "first_paint" not in marks and axial.image_data is not None:
            marks["first_data"] = now()
            axial.graphics.viewport().repaint()
            marks["first_paint"] = now()
            marks["first_partial"] = float(window.state.loading)

    window.state.subscribe("volume", on_volume)
    window.load_finished.connect(lambda _v: marks.setdefault("finished", now()))
    window.load_failed.connect(failed.append)

    hb = Heartbeat()
    with GcWatch() as gw:
        hb.start()
        t0 = now()
        window.open_path(folder)
        ok = spin(app, lambda: "finished" in marks or bool(failed), timeout_s=300)
        if not ok or failed:
            raise RuntimeError(f"loading {folder} failed: {failed or 'timeout'}")
        if sample:
            spin(app, lambda: window.state.labels is not None, timeout_s=60)
            marks["labels"] = now()
        spin(app, jobs_idle, timeout_s=60.0)
        marks["jobs_done"] = now()
        spin(app, min_s=SETTLE_S)
        loop = hb.stop()
    rel = {k: (v - t0 if k != "first_partial" else v) for k, v in marks.items()}
    finished = rel["finished"]
    in_load = [s for s in loop["stalls"] if s[0] - (t0 - hb.ticks[0]) <= finished]
    window.close()
    wait_for_all()
    return {"mode": "open", "folder": folder, "warm_pool": warm_pool,
            "pool_start_method": parallel.start_method(), "shape": list(window.volume.geometry.shape),
            "scan_s": rel.get("scan"),
            "first_data_s": rel.get("first_data"), "first_slice_s": rel.get("first_paint"),
            "first_was_partial": bool(rel.get("first_partial")), "finished_s": finished,
            "labels_s": rel.get("labels"), "jobs_done_s": rel["jobs_done"], **loop,
            "stalls_before_finished": len(in_load), **gw.summary()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["drag", "open"])
    parser.add_argument("arg")
    parser.add_argument("--profile", default=None, help="drag: write cProfile statistics of the frames here")
    parser.add_argument("--warm-pool", action="store_true", help="open: start the decode pool before the clock")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # only the JSON line goes to stdout
        if args.mode == "drag":
            result = drag(int(args.arg), args.profile)
        else:
            result = open_series(args.arg, args.warm_pool)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
