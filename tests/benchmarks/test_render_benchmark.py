"""Volume-rendering benchmark: the 3D scene on a 256^3 CT in a 512 x 512 window, against plain VTK.

Data: the bundled chest CT (512 x 512 x 48, 0.57 x 0.57 x 5 mm) resampled to 256^3 over the same extent
(linear, ``scipy.ndimage.zoom``), kept in ``.bench/render_ct256.npz``.  Every measurement is a fresh
process (``render_one.py``), with shading on and off, ``MEDVIEW_BENCH_RENDER_REPEATS`` (default 3) rounds,
medians reported:

* medview: time from ``set_volume`` to the first full-quality frame; fps rotating the camera (3 degree
  ``Azimuth`` steps) at full quality and with LOD on (``begin_interaction``); the first LOD frame and the
  frame back to full quality apart; and with ``set_volume(progressive=True)``, the first (LOD) frame and
  the first full-quality frame after it;
* peer: plain VTK without LOD, ``vtkSmartVolumeMapper`` with its default render mode, full quality, the same
  data, transfer function, lighting and camera; also its ray-cast mode (``peer-raycast``).

The ratio printed is medview's interactive fps over the peer's fps (what a user rotating the view sees).
Goals (reported, not enforced): >= 10 fps interacting, first render <= 1 s.  On a machine without a GPU
this is all software OpenGL (Mesa llvmpipe through OSMesa).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .dataset import BENCH, REPO, resampled_sample

RENDER_ONE = Path(__file__).with_name("render_one.py")
REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_RENDER_REPEATS", "3") or 3), 1)
DATA = BENCH / "render_ct256.npz"
SIZE = 256
GOAL_FPS = 10.0
GOAL_FIRST_S = 1.0
FRAMES = 10


def make_data() -> Path:
    """The 256^3 CT, made once from the bundled sample (its geometry spans the same box)."""
    return resampled_sample(DATA, (SIZE, SIZE, SIZE))


def run_render(args: list[str]) -> dict:
    cmd = [sys.executable, str(RENDER_ONE), str(DATA), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def med(runs: list[dict], *keys: str) -> float:
    values = []
    for r in runs:
        for k in keys:
            r = r[k]
        values.append(r)
    return statistics.median(values)


def environment() -> dict:
    import numpy
    import vtkmodules

    return {"python": platform.python_version(), "vtk": vtkmodules.__version__, "numpy": numpy.__version__,
            "platform": platform.platform(), "cpus": os.cpu_count(),
            "display": os.environ.get("DISPLAY") or "none (OSMesa)", "repeats": REPEATS,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _mark(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def render_table(results: dict[str, dict[str, list[dict]]], env: dict) -> str:
    out = [f"## Volume-rendering benchmark: 256^3 CT, 512 x 512, {env['cpus']} CPUs, VTK {env['vtk']}, "
           f"display {env['display']}", "",
           "| shading | measurement | medview | peer (smart mapper, default) | peer (smart mapper, ray cast) "
           "| medview / peer |",
           "|---|---|---:|---:|---:|---:|"]
    for shade, r in results.items():
        m, p, pr, prog = r["medview"], r["peer"], r["peer-raycast"], r["medview-progressive"]
        inter, peer_fps = med(m, "interactive", "fps"), med(p, "full", "fps")
        out += [
            f"| {shade} | first render after set_volume [s] | {med(m, 'first_render_s'):.3f} "
            f"| {med(p, 'first_render_s'):.3f} | {med(pr, 'first_render_s'):.3f} | - |",
            f"| {shade} | progressive: first (LOD) frame / first full frame [s] | {med(prog, 'first_frame_s'):.3f} / "
            f"{med(prog, 'first_full_frame_s'):.3f} | - | - | - |",
            f"| {shade} | rotating, full quality [fps] | {med(m, 'full', 'fps'):.1f} | {peer_fps:.2f} "
            f"| {med(pr, 'full', 'fps'):.1f} | {med(m, 'full', 'fps') / peer_fps:.1f}x |",
            f"| {shade} | rotating, interacting (LOD) [fps] | {inter:.1f} | {peer_fps:.2f} "
            f"| {med(pr, 'full', 'fps'):.1f} | **{inter / peer_fps:.1f}x** |",
            f"| {shade} | interacting frame p50 / max [ms] | {med(m, 'interactive', 'p50_ms'):.0f} / "
            f"{med(m, 'interactive', 'max_ms'):.0f} | - | - | - |",
            f"| {shade} | first LOD frame / back to full quality [s] | {med(m, 'first_lod_frame_s'):.3f} / "
            f"{med(m, 'restore_full_s'):.3f} | - | - | - |",
        ]
    first = results["on"]["medview"][0]
    out += ["", "### Goals", ""]
    for shade, r in results.items():
        inter = med(r["medview"], "interactive", "fps")
        first_s = med(r["medview"], "first_render_s")
        prog_s = med(r["medview-progressive"], "first_frame_s")
        out.append(f"- shading {shade}: >= {GOAL_FPS:g} fps interacting: {inter:.1f} fps {_mark(inter >= GOAL_FPS)}; "
                   f"first render <= {GOAL_FIRST_S:g} s: {first_s:.3f} s {_mark(first_s <= GOAL_FIRST_S)} "
                   f"(progressive first frame {prog_s:.3f} s {_mark(prog_s <= GOAL_FIRST_S)})")
    out += ["",
            f"* medview: {first['mapper']} (backend {first['backend']}); LOD input {first['lod_dims']} voxels, image "
            f"sample distance {first['lod_image_sample_distance']:g} px, sample distance "
            f"{first['lod_sample_distance']:.2f} mm (full quality: 1 px, {first['full_sample_distance']:.2f} mm).",
            f"* {FRAMES} timed frames at full quality, {FRAMES * 3} with LOD, {3:g} degree azimuth steps; first render "
            "= set_volume + the first Render() returning; peer first render = building its image, mapper and "
            "property + the first Render().  Medians of "
            f"{env['repeats']} fresh processes per row.",
            f"* peer render mode used (smart mapper): {results['on']['peer'][0]['render_mode']} "
            "(0 default, 1 ray cast, 2 GPU).",
            "", f"Software: Python {env['python']}, VTK {env['vtk']}, numpy {env['numpy']}; {env['platform']}; "
            f"{env['date']}", ""]
    return "\n".join(out)


def test_render_benchmark() -> None:
    started = time.perf_counter()
    make_data()
    env = environment()
    print()
    results: dict[str, dict[str, list[dict]]] = {}
    for shade in ("on", "off"):
        runs: dict[str, list[dict]] = {k: [] for k in ("medview", "medview-progressive", "peer", "peer-raycast")}
        for rnd in range(REPEATS):
            m = run_render(["medview", "--shade", shade, "--frames", str(FRAMES)])
            runs["medview"].append(m)
            camera = json.dumps(m["camera"])
            runs["medview-progressive"].append(run_render(["medview-progressive", "--shade", shade]))
            for peer in ("peer", "peer-raycast"):
                runs[peer].append(run_render([peer, "--shade", shade, "--camera", camera, "--frames", str(FRAMES)]))
            p = runs["peer"][-1]
            print(f"[bench] shading {shade} run {rnd + 1}: medview first {m['first_render_s']:.3f} s, full "
                  f"{m['full']['fps']:.1f} fps, interacting {m['interactive']['fps']:.1f} fps; progressive first "
                  f"{runs['medview-progressive'][-1]['first_frame_s']:.3f} s; peer first {p['first_render_s']:.3f} s, "
                  f"{p['full']['fps']:.2f} fps; peer ray cast {runs['peer-raycast'][-1]['full']['fps']:.1f} fps; "
                  f"ratio interacting/peer {m['interactive']['fps'] / p['full']['fps']:.1f}x", flush=True)
        results[shade] = runs
    table = render_table(results, env)
    print()
    print(table)
    print(f"[bench] total {time.perf_counter() - started:.0f} s; written to {BENCH / 'render_results.md'} and "
          f"{BENCH / 'render_results.json'}")
    (BENCH / "render_results.md").write_text(table)
    (BENCH / "render_results.json").write_text(json.dumps({"environment": env, "results": results}, indent=1))

    for runs in results.values():  # correctness only: LOD really is a smaller input, and it was used
        for m in runs["medview"]:
            full_voxels = SIZE**3
            lod_voxels = m["lod_dims"][0] * m["lod_dims"][1] * m["lod_dims"][2]
            assert lod_voxels <= 128**3 < full_voxels, m["lod_dims"]
            assert m["interactive"]["frames"] == 3 * FRAMES and m["full"]["frames"] == FRAMES
