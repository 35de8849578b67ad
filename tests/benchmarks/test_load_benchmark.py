"""Load benchmark: medview against SimpleITK, a plain pydicom loop and the I/O floor, in one run.

Every measurement is a fresh process (``load_one.py``), so imports, worker start-up and peak memory
are honest.  Per data set: one comparison run (medview's voxels and geometry against SimpleITK's),
then one warm-up round of every method with memory sampling on (this round also warms the page
cache; its times are discarded), then ``MEDVIEW_BENCH_REPEATS`` (default 5) timed rounds without the
sampler, the method order rotated each round; the tables show medians.  Only correctness is asserted:
speed and memory are reported against the goals, not enforced.
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

from .dataset import BENCH, REPO

LOAD_ONE = Path(__file__).with_name("load_one.py")
REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_REPEATS", "5") or 5), 1)
METHODS = ["medview", "medview-warm", "sitk", "pydicom", "floor"]
LABELS = {"medview": "medview", "medview-warm": "medview (warm pool)", "sitk": "SimpleITK",
          "pydicom": "pydicom loop", "floor": "floor (read bytes)"}
GOAL_SITK = {"uncompressed": 0.33, "JPEG-LS": 0.5}
GOAL_FLOOR = 2.0
GOAL_MIDDLE_S = 0.3
GOAL_MEMORY = 1.3


def run_one(method: str, folder: Path, memory: bool = False) -> dict:
    cmd = [sys.executable, str(LOAD_ONE), method, str(folder)] + (["--memory"] if memory else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def summarize(name: str, timed: dict[str, list[dict]], memory: dict[str, dict]) -> dict[str, dict]:
    rows = {}
    sitk = _median(timed["sitk"], "seconds")
    floor = _median(timed["floor"], "seconds")
    for method in METHODS:
        runs, mem = timed[method], memory[method]
        median = _median(runs, "seconds")
        voxel = mem.get("voxel_bytes")
        rows[method] = {
            "dataset": name, "method": method, "label": LABELS[method], "median_s": median,
            "min_s": min(r["seconds"] for r in runs), "max_s": max(r["seconds"] for r in runs),
            "x_sitk": median / sitk, "x_floor": median / floor,
            "middle_slice_s": _median(runs, "middle_slice_s"), "scan_s": _median(runs, "scan_s"),
            "load_s": _median([{"x": r["seconds"] - r["scan_s"]} for r in runs if "scan_s" in r], "x"),
            "peak_extra_bytes": mem.get("peak_extra_bytes"), "voxel_bytes": voxel, "dtype": mem.get("dtype"),
            "peak_x_voxels": mem["peak_extra_bytes"] / voxel if voxel else None,
            "main_peak_x_voxels": _median(runs, "main_hwm_extra_bytes") / voxel if voxel else None,
            "runs": [r["seconds"] for r in runs],
        }
    rows["sitk"]["image_s"] = _median(timed["sitk"], "image_s")  # up to Execute(), before GetArrayFromImage
    return rows


def render(rows: list[dict], checks: dict[str, dict], env: dict) -> str:
    out = [
        f"## Load benchmark: 512 x 512 x 305 CT, {env['cpus']} CPUs, medview workers: {env['workers']}",
        "",
        f"Median of {REPEATS} timed runs, each a fresh process (imports done before the clock; page cache "
        "warm: each data set's first round is a discarded warm-up that also samples memory).",
        "",
        "| dataset | method | median s | range s | x SimpleITK | x floor | middle slice s | scan s | pixels s "
        "| peak extra MB | peak / voxel bytes | main-process peak / voxel bytes | result dtype |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        peak_mb = None if r["peak_extra_bytes"] is None else r["peak_extra_bytes"] / 2**20
        out.append(
            f"| {r['dataset']} | {r['label']} | {_fmt(r['median_s'])} | {r['min_s']:.3f}-{r['max_s']:.3f} "
            f"| {_fmt(r['x_sitk'], '.2f')} | {_fmt(r['x_floor'], '.1f')} | {_fmt(r['middle_slice_s'])} "
            f"| {_fmt(r['scan_s'])} | {_fmt(r['load_s'])} | {_fmt(peak_mb, '.0f')} | {_fmt(r['peak_x_voxels'], '.2f')} "
            f"| {_fmt(r['main_peak_x_voxels'], '.2f')} | {r['dtype'] or '-'} |")
    out += [
        "",
        "* time: medview = `open_image` (scan + load) in a fresh process, its worker pool starting inside the "
        "timed region (the command-line case); warm pool = `parallel.warm_up()` before the clock (the GUI case). "
        "SimpleITK = `GetGDCMSeriesFileNames` + `Execute` + `GetArrayFromImage`. pydicom loop = dcmread all, "
        "sort along the normal, `np.stack(pixel_array * slope + intercept)`. floor = `open().read()` of every "
        "file (for JPEG-LS: the compressed bytes).",
        "* middle slice: time until medview's `on_middle_slice` callback fires; scan s: time until the header "
        "scan is done and pixel loading (`load_series`) starts; pixels s: the rest (median of per-run differences).",
        f"* peak extra: {env['memory_source']}, peak over the load minus the level before it (warm-up run, "
        "sampled every 20 ms from a helper process); / voxel bytes of the method's own result "
        "(SimpleITK returns int32, the pydicom loop float64, medview int16). main-process peak: VmHWM "
        "(exact, reset before the load) minus the RSS before it, this process only -- it misses the workers "
        "and the shared volume they decode into.",
        "",
        "### Goals (medview, fresh process; warm pool in brackets)",
        "",
    ]
    by = {(r["dataset"], r["method"]): r for r in rows}

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    for name, goal in GOAL_SITK.items():
        cold, warm = by[(name, "medview")], by[(name, "medview-warm")]
        execute_only = cold["median_s"] / by[(name, "sitk")]["image_s"]
        out.append(f"- {name}: time <= {goal}x SimpleITK: {cold['x_sitk']:.2f}x ({warm['x_sitk']:.2f}x) "
                   f"**{verdict(cold['x_sitk'] <= goal)}**; against SimpleITK without `GetArrayFromImage` "
                   f"({by[(name, 'sitk')]['image_s']:.3f} s): {execute_only:.2f}x")
    for name in GOAL_SITK:
        cold, warm = by[(name, "medview")], by[(name, "medview-warm")]
        note = ""
        if name != "uncompressed":
            note = " -- the floor reads only the compressed bytes; decoding is not in it"
        pixels = cold["load_s"] / by[(name, "floor")]["median_s"] if cold["load_s"] is not None else None
        out.append(f"- {name}: time <= {GOAL_FLOOR:g}x the floor: {cold['x_floor']:.1f}x ({warm['x_floor']:.1f}x) "
                   f"**{verdict(cold['x_floor'] <= GOAL_FLOOR)}**{note}; pixel loading alone (scan excluded): "
                   f"{_fmt(pixels, '.1f', 'x')}")
    for name in GOAL_SITK:
        cold, warm = by[(name, "medview")], by[(name, "medview-warm")]
        out.append(f"- {name}: middle slice <= {GOAL_MIDDLE_S} s: {cold['middle_slice_s']:.3f} s "
                   f"({warm['middle_slice_s']:.3f} s) **{verdict(cold['middle_slice_s'] <= GOAL_MIDDLE_S)}**")
    for name in GOAL_SITK:
        cold, warm = by[(name, "medview")], by[(name, "medview-warm")]
        out.append(f"- {name}: peak memory <= {GOAL_MEMORY}x voxel bytes: {cold['peak_x_voxels']:.2f}x "
                   f"({warm['peak_x_voxels']:.2f}x) **{verdict(cold['peak_x_voxels'] <= GOAL_MEMORY)}**")
    out += ["", "### Correctness (medview against SimpleITK: voxels cast to int32, spacing/origin/direction)", ""]
    for name, c in checks.items():
        ok = c["equal"] and c["geometry_equal"]
        detail = (f"{c['medview_shape']} medview {c['medview_dtype']} vs SimpleITK {c['sitk_dtype']}, "
                  f"differing voxels {c['differing_voxels']}, max |diff| {c['max_abs_diff']}, "
                  f"geometry max diff {c['geometry_max_diff']:.2g}")
        out.append(f"- {name}: **{'OK' if ok else 'MISMATCH'}** ({detail})")
    out += ["", f"Software: Python {env['python']}, pydicom {env['pydicom']}, SimpleITK {env['sitk']}, "
            f"numpy {env['numpy']}; {env['platform']}; {env['date']}", ""]
    return "\n".join(out)


def environment() -> dict:
    import numpy
    import pydicom
    import SimpleITK

    from medview.io.dicom.parallel import worker_count

    from .load_one import MEMORY_SOURCE

    return {"python": platform.python_version(), "pydicom": pydicom.__version__,
            "sitk": SimpleITK.Version_VersionString(), "numpy": numpy.__version__,
            "platform": platform.platform(), "cpus": os.cpu_count(), "workers": worker_count(),
            "memory_source": MEMORY_SOURCE, "repeats": REPEATS,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def test_load_benchmark(bench_data: dict[str, Path]) -> None:
    started = time.perf_counter()
    env = environment()
    checks: dict[str, dict] = {}
    rows: list[dict] = []
    raw: dict[str, dict] = {}
    print()
    for name, folder in bench_data.items():
        checks[name] = run_one("compare", folder)
        print(f"[bench] {name}: medview vs SimpleITK voxels "
              f"{'OK' if checks[name]['equal'] and checks[name]['geometry_equal'] else 'MISMATCH'}", flush=True)
        memory = {}
        for method in METHODS:  # warm-up round: memory sampled, time discarded
            memory[method] = run_one(method, folder, memory=True)
            print(f"[bench] {name:12s} {method:13s} warm-up {memory[method]['seconds']:7.3f} s (discarded), "
                  f"peak extra {memory[method]['peak_extra_bytes'] / 2**20:6.0f} MB", flush=True)
        timed: dict[str, list[dict]] = {m: [] for m in METHODS}
        for rnd in range(REPEATS):
            order = METHODS[rnd % len(METHODS):] + METHODS[:rnd % len(METHODS)]
            for method in order:
                result = run_one(method, folder)
                timed[method].append(result)
                print(f"[bench] {name:12s} {method:13s} run {rnd + 1}  {result['seconds']:7.3f} s", flush=True)
        summary = summarize(name, timed, memory)
        rows.extend(summary.values())
        raw[name] = {"dir": str(folder), "compare": checks[name], "memory_runs": memory, "timed_runs": timed,
                     "summary": summary}
    table = render(rows, checks, env)
    print()
    print(table)
    print(f"[bench] total {time.perf_counter() - started:.0f} s; written to {BENCH / 'results.md'} and "
          f"{BENCH / 'results.json'}")
    (BENCH / "results.md").write_text(table)
    (BENCH / "results.json").write_text(json.dumps({"environment": env, "datasets": raw}, indent=1))

    for name, c in checks.items():
        assert c["equal"], f"{name}: medview's voxels differ from SimpleITK's: {c}"
        assert c["geometry_equal"], f"{name}: medview's geometry differs from SimpleITK's: {c}"
