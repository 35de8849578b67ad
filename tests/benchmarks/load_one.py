"""One benchmark measurement in a fresh process: ``python load_one.py METHOD DIR``.

Prints one JSON line on stdout.  Everything is imported *before* the clock starts; then the baseline
memory is recorded, the load is timed with ``time.perf_counter()`` and memory is sampled while it runs.

Methods
-------
medview             ``medview.open_image(DIR, on_middle_slice=cb)`` (scan + load, fresh process, so the
                    worker pool starts inside the timed region, as for a CLI user)
medview-warm        the same after ``medview.io.dicom.parallel.warm_up()`` (pool started before timing,
                    as in the GUI, which warms it while the window opens)
sitk                SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute`` +
                    ``GetArrayFromImage`` (file discovery is timed: a user has to do it too)
pydicom             the straightforward loop: dcmread every file, sort along the slice normal,
                    ``np.stack([ds.pixel_array * slope + intercept ...])``
floor               read every file's bytes with ``open().read()``, nothing else (the I/O floor)
compare             not timed: load with medview and SimpleITK and compare the voxels (int32)

Memory
------
``peak_extra_bytes``: peak over the load of the summed PSS (proportional set size, from
/proc/PID/smaps_rollup) of this process *and its child processes* (medview's decode workers), minus
the same sum just before the clock starts.  PSS counts pages shared between processes once in total
(forked workers, the shared-memory volume that the workers decode into), so the sum is the memory the
load really costs.  Sampled every ``SAMPLE_S`` seconds from a background thread plus once right after
the load; the sampler's own CPU time is reported (``sampler_cpu_s``).
``main_hwm_extra_bytes``: this process alone, exact: the kernel's resident high-water mark (VmHWM,
reset through /proc/self/clear_refs before the load) minus the resident size before the load.  Falls
back to ``ru_maxrss`` minus the baseline resident size where clear_refs is not writable
(``main_hwm_source`` says which).
"""

from __future__ import annotations

import glob
import json
import os
import resource
import sys
import threading
import time

SAMPLE_S = 0.01  # smaps_rollup costs ~1-2 ms per process on a few hundred MB: 10 ms keeps it to ~10-20 %


# -- memory accounting -----------------------------------------------------------------------------
def _tree_pids(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for path in glob.glob(f"/proc/{pid}/task/*/children"):
            try:
                with open(path) as fh:
                    todo.extend(int(p) for p in fh.read().split())
            except OSError:
                pass
    return pids


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass  # the process ended between listing and reading
    return 0


def _rss_self() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


HAVE_PSS = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")


def tree_memory() -> int:
    if HAVE_PSS:
        return sum(_pss(p) for p in _tree_pids(os.getpid()))
    import psutil  # pragma: no cover - no smaps_rollup (old kernel, not Linux): main process RSS only

    return psutil.Process().memory_info().rss


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class PeakSampler(threading.Thread):
    """Samples the process tree's memory until stopped and keeps the maximum."""

    def __init__(self, interval: float = SAMPLE_S) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self.cpu = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = time.thread_time()
        while True:
            self.peak = max(self.peak, tree_memory())
            self.samples += 1
            if self._stop_event.wait(self.interval):
                break
        self.cpu = time.thread_time() - start

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.peak = max(self.peak, tree_memory())  # the state right after the load


def reset_hwm() -> str:
    """Reset this process's resident high-water mark; return how the main-process peak is measured."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def main_peak(source: str) -> int:
    if source == "VmHWM":
        value = _status_kb("VmHWM")
        if value is not None:
            return value
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# -- the methods -------------------------------------------------------------------------------------
def list_files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))


def load_medview(folder: str, clock: dict) -> tuple[object, dict]:
    import medview
    from medview.io import readers

    extra: dict = {}
    original = readers.load_series

    def timed_load_series(*args, **kwargs):
        extra["scan_s"] = time.perf_counter() - clock["t0"]  # open_image has scanned by now
        return original(*args, **kwargs)

    readers.load_series = timed_load_series

    def on_middle(volume, z):
        extra.setdefault("middle_slice_s", time.perf_counter() - clock["t0"])

    try:
        volume = medview.open_image(folder, on_middle_slice=on_middle)
    finally:
        readers.load_series = original
    extra["dtype"] = str(volume.array.dtype)
    return volume.array, extra


def load_sitk(folder: str, clock: dict) -> tuple[object, dict]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(folder)
    reader.SetFileNames(names)
    image = reader.Execute()
    t_image = time.perf_counter() - clock["t0"]
    array = sitk.GetArrayFromImage(image)
    del image
    return array, {"image_s": t_image, "dtype": str(array.dtype)}


def load_pydicom(folder: str, clock: dict) -> tuple[object, dict]:
    import numpy as np
    import pydicom

    datasets = [pydicom.dcmread(f) for f in list_files(folder)]
    iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, dtype=float), normal)))
    array = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets])
    return array, {"dtype": str(array.dtype)}


def load_floor(folder: str, clock: dict) -> tuple[object, dict]:
    total = 0
    for f in list_files(folder):
        with open(f, "rb") as fh:
            total += len(fh.read())
    return None, {"bytes_read": total}


METHODS = {"medview": load_medview, "medview-warm": load_medview, "sitk": load_sitk,
           "pydicom": load_pydicom, "floor": load_floor}


def compare(folder: str) -> dict:
    """medview's voxels against SimpleITK's (both cast to int32)."""
    import numpy as np

    clock = {"t0": time.perf_counter()}
    mv, _ = load_medview(folder, clock)
    ref, _ = load_sitk(folder, clock)
    result = {"method": "compare", "dir": folder, "medview_shape": list(mv.shape), "sitk_shape": list(ref.shape),
              "medview_dtype": str(mv.dtype), "sitk_dtype": str(ref.dtype)}
    if mv.shape != ref.shape:
        result.update(equal=False, max_abs_diff=None, differing_voxels=None)
    else:
        diff = np.abs(mv.astype(np.int32) - ref.astype(np.int32))
        result.update(equal=bool(not diff.any()), max_abs_diff=int(diff.max()),
                      differing_voxels=int(np.count_nonzero(diff)),
                      checksum_int64=int(mv.astype(np.int64).sum()))
    return result


def measure(method: str, folder: str) -> dict:
    # import everything any method touches, before the baseline
    import numpy as np  # noqa: F401
    import pydicom  # noqa: F401
    import pydicom.pixels  # noqa: F401
    import SimpleITK  # noqa: F401

    import medview
    import medview.io.readers  # noqa: F401
    from medview.io.dicom import parallel

    for plugin_module in ("pyjpegls", "gdcm", "pylibjpeg"):
        try:
            __import__(plugin_module)
        except ImportError:
            pass
    _ = medview.open_image  # resolve the lazy attribute
    warm_pool = method == "medview-warm"
    if warm_pool:
        parallel.warm_up()

    load = METHODS[method]
    hwm_source = reset_hwm()
    base_rss = _rss_self()
    base_tree = tree_memory()
    sampler = PeakSampler()
    sampler.start()
    clock = {"t0": time.perf_counter()}
    array, extra = load(folder, clock)
    seconds = time.perf_counter() - clock["t0"]
    sampler.stop()
    peak_main = main_peak(hwm_source)
    result = {
        "method": method, "dir": folder, "seconds": seconds,
        "peak_extra_bytes": sampler.peak - base_tree,
        "main_hwm_extra_bytes": peak_main - base_rss, "main_hwm_source": hwm_source,
        "memory_source": "tree PSS (smaps_rollup)" if HAVE_PSS else "main RSS (psutil)",
        "samples": sampler.samples, "sampler_cpu_s": sampler.cpu,
        "voxel_bytes": int(array.nbytes) if array is not None else None,
        "shape": list(array.shape) if array is not None else None,
        "workers": parallel.worker_count(), "pid": os.getpid(),
    }
    result.update(extra)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in (*METHODS, "compare"):
        print(f"usage: {argv[0]} {{{'|'.join((*METHODS, 'compare'))}}} DIR", file=sys.stderr)
        return 2
    method, folder = argv[1], argv[2]
    result = compare(folder) if method == "compare" else measure(method, folder)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":  # the guard matters: medview's pool may use forkserver
    sys.exit(main(sys.argv))
