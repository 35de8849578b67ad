"""One benchmark measurement in a fresh process: ``python load_one.py METHOD DIR [--memory]``.

Prints one JSON line on stdout.  What the method needs is imported *before* the clock starts; then the
load is timed with ``time.perf_counter()``.

Methods
-------
medview        ``medview.open_image(DIR, on_middle_slice=cb)`` (scan + load) in a fresh process, so
               medview's worker pool starts inside the timed region, as for a command-line user
medview-warm   the same after ``medview.io.dicom.parallel.warm_up()``: pool started before the clock,
               as in the GUI, which warms it while its window opens
sitk           SimpleITK: ``ImageSeriesReader.GetGDCMSeriesFileNames`` + ``Execute`` +
               ``GetArrayFromImage`` (file discovery is timed: a user has to do it too)
pydicom        the straightforward loop: dcmread every file, sort along the slice normal,
               ``np.stack([ds.pixel_array * slope + intercept ...])``
floor          read every file's bytes with ``open().read()``, nothing else (the I/O floor)
compare        not timed: medview's voxels and geometry against SimpleITK's

Memory
------
Always (free, exact, this process only): ``main_hwm_extra_bytes`` = the kernel's resident high-water
mark (VmHWM, reset through /proc/self/clear_refs just before the load) minus the resident size just
before the load; where clear_refs is not writable, ``ru_maxrss`` minus that baseline
(``main_hwm_source`` says which).  This misses memory held by child processes, and medview's decode
workers write the volume into shared memory that this process has not touched yet.

With ``--memory`` (the benchmark's warm-up run, whose time is discarded): ``peak_extra_bytes`` covers
the whole process tree -- this process and its children (medview's workers): the sum of their PSS
without shared-memory pages (/proc/PID/smaps_rollup; PSS splits pages shared after a fork, so nothing
is counted twice) plus the allocated size of every memfd or /dev/shm file they hold open or mapped
(medview's shared volume counts once, mapped or not), minus the same sum just before the clock starts;
peak over samples every ``SAMPLE_S`` s plus one right after the load.  The sampler is a separate
process started before the baseline and excluded from the tree: a sampler *thread* would change what
is measured (medview's pool uses fork in a single-threaded process and forkserver otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import subprocess
import sys
import time

SAMPLE_S = 0.02  # one sample reads smaps_rollup and maps of ~3 processes: a few ms


# -- memory accounting -----------------------------------------------------------------------------
def _tree_pids(root: int, exclude: int | None = None) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid == exclude:
            continue
        pids.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo.extend(int(p) for p in fh.read().split())
            except OSError:
                pass
    return pids


def _private_pss(pid: int) -> int:
    """PSS without shared-memory pages (those are counted by :func:`_shared_objects`)."""
    pss = shmem = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
                elif line.startswith("Pss_Shmem:"):
                    shmem = int(line.split()[1]) * 1024
    except OSError:
        pass  # the process ended between listing and reading
    return pss - shmem


def _shared_objects(pid: int, found: dict[tuple[int, int], int]) -> None:
    """Shared-memory files (memfd, /dev/shm) that ``pid`` holds open or mapped: inode -> allocated bytes.

    Counted from the file's own allocation, whether or not a process maps the pages at the moment
    (medview's workers map the volume only while they decode into it).
    """
    candidates = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = f"/proc/{pid}/fd/{fd}"
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if target.startswith(("/memfd:", "/dev/shm/")):
                candidates.append(link)
        with open(f"/proc/{pid}/maps") as fh:
            for line in fh:
                if "/memfd:" in line or "/dev/shm/" in line:
                    candidates.append(f"/proc/{pid}/map_files/{line.split(None, 1)[0]}")
    except OSError:
        return
    for link in candidates:
        try:
            st = os.stat(link)
        except OSError:
            continue
        found[(st.st_dev, st.st_ino)] = st.st_blocks * 512


HAVE_SMAPS = os.path.exists("/proc/self/smaps_rollup")
MEMORY_SOURCE = ("process tree: PSS without shmem (smaps_rollup) + allocated size of memfd and /dev/shm files"
                 if HAVE_SMAPS else "main process RSS (psutil; no smaps_rollup here)")


def tree_memory(root: int, exclude: int | None = None) -> int:
    if not HAVE_SMAPS:  # pragma: no cover - old kernel or not Linux
        import psutil

        return psutil.Process(root).memory_info().rss
    shared: dict[tuple[int, int], int] = {}
    total = 0
    for pid in _tree_pids(root, exclude):
        total += _private_pss(pid)
        _shared_objects(pid, shared)
    return total + sum(shared.values())


def sampler_main(root: int) -> None:
    """``load_one.py --sample PID``: sample PID's tree between 'start' and 'stop' on stdin."""
    me = os.getpid()
    print("ready", flush=True)
    sys.stdin.readline()  # 'start'
    cpu0 = time.process_time()
    base = peak = tree_memory(root, me)
    samples = 1
    print("started", flush=True)
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], SAMPLE_S)
        peak = max(peak, tree_memory(root, me))
        samples += 1
        if ready:
            sys.stdin.readline()  # 'stop' (the sample just taken is the state right after the load)
            break
    print(json.dumps({"base": base, "peak": peak, "final": tree_memory(root, me), "samples": samples,
                      "sampler_cpu_s": time.process_time() - cpu0}), flush=True)


class TreeSampler:
    """The helper process that samples this process's tree (see the module docstring)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sample", str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self) -> None:
        self.proc.stdin.write("start\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "started"

    def stop(self) -> dict:
        self.proc.stdin.write("stop\n")
        self.proc.stdin.flush()
        result = json.loads(self.proc.stdout.readline())
        self.proc.wait()
        return result


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss_self() -> int:
    value = _status_bytes("VmRSS")
    if value is None:  # pragma: no cover - not Linux
        import psutil

        return psutil.Process().memory_info().rss
    return value


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
        value = _status_bytes("VmHWM")
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
    original = getattr(readers, "load_series", None)

    def timed_load_series(*args, **kwargs):
        extra["scan_s"] = time.perf_counter() - clock["t0"]  # open_image has scanned by now
        return original(*args, **kwargs)

    def on_middle(volume, z):
        extra.setdefault("middle_slice_s", time.perf_counter() - clock["t0"])

    if original is not None:
        readers.load_series = timed_load_series  # only to split scan from load; no work added
    try:
        volume = medview.open_image(folder, on_middle_slice=on_middle)
    finally:
        if original is not None:
            readers.load_series = original
    extra["dtype"] = str(volume.array.dtype)
    extra["geometry"] = {"spacing": list(volume.geometry.spacing), "origin": list(volume.geometry.origin),
                         "direction": list(volume.geometry.direction)}
    return volume.array, extra


def load_sitk(folder: str, clock: dict) -> tuple[object, dict]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(folder)
    reader.SetFileNames(names)
    image = reader.Execute()
    t_image = time.perf_counter() - clock["t0"]
    geometry = {"spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
                "direction": list(image.GetDirection())}
    array = sitk.GetArrayFromImage(image)
    del image
    return array, {"image_s": t_image, "dtype": str(array.dtype), "geometry": geometry}


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
    """medview's voxels (cast to int32) and geometry against SimpleITK's."""
    import numpy as np

    clock = {"t0": time.perf_counter()}
    mv, mv_extra = load_medview(folder, clock)
    ref, ref_extra = load_sitk(folder, clock)
    result = {"method": "compare", "dir": folder, "medview_shape": list(mv.shape), "sitk_shape": list(ref.shape),
              "medview_dtype": str(mv.dtype), "sitk_dtype": str(ref.dtype)}
    if mv.shape != ref.shape:
        result.update(equal=False, max_abs_diff=None, differing_voxels=None)
    else:
        diff = np.abs(mv.astype(np.int32) - ref.astype(np.int32))
        result.update(equal=bool(not diff.any()), max_abs_diff=int(diff.max()),
                      differing_voxels=int(np.count_nonzero(diff)),
                      sum_int64=int(mv.sum(dtype=np.int64)), min=int(mv.min()), max=int(mv.max()))
    g1, g2 = mv_extra["geometry"], ref_extra["geometry"]
    result["geometry_max_diff"] = max(abs(a - b) for key in ("spacing", "origin", "direction")
                                      for a, b in zip(g1[key], g2[key], strict=True))
    result["geometry_equal"] = result["geometry_max_diff"] < 1e-3
    return result


def _import_for(method: str) -> None:
    """Import what ``method`` needs, and only that (a forked worker pool shares the parent's heap)."""
    if method == "floor":
        return
    import numpy  # noqa: F401

    if method == "sitk":
        import SimpleITK  # noqa: F401

        return
    import pydicom
    import pydicom.pixels  # noqa: F401 - the decoder registry

    for plugin_module in ("jpeg_ls", "gdcm", "pylibjpeg", "libjpeg", "openjpeg", "rle"):  # codec plugins
        with contextlib.suppress(ImportError):
            __import__(plugin_module)
    if method.startswith("medview"):
        import medview
        import medview.io.dicom.decode
        import medview.io.dicom.load
        import medview.io.readers

        _ = medview.open_image  # resolve the lazy attribute


def measure(method: str, folder: str, sample_memory: bool) -> dict:
    _import_for(method)
    workers = None
    if method.startswith("medview"):
        from medview.io.dicom import parallel

        workers = parallel.worker_count()
        if method == "medview-warm":
            parallel.warm_up()

    load = METHODS[method]
    sampler = TreeSampler() if sample_memory else None
    hwm_source = reset_hwm()
    base_rss = _rss_self()
    if sampler:
        sampler.start()
    clock = {"t0": time.perf_counter()}
    array, extra = load(folder, clock)
    seconds = time.perf_counter() - clock["t0"]
    peak_main = main_peak(hwm_source)
    result = {
        "method": method, "dir": folder, "seconds": seconds, "sampled_memory": sample_memory,
        "main_hwm_extra_bytes": peak_main - base_rss, "main_hwm_source": hwm_source,
        "voxel_bytes": int(array.nbytes) if array is not None else None,
        "shape": list(array.shape) if array is not None else None,
        "workers": workers, "pid": os.getpid(),
    }
    if sampler:
        mem = sampler.stop()
        result.update({
            "peak_extra_bytes": mem["peak"] - mem["base"], "final_extra_bytes": mem["final"] - mem["base"],
            "memory_source": MEMORY_SOURCE, "samples": mem["samples"], "sampler_cpu_s": mem["sampler_cpu_s"],
        })
    extra.pop("geometry", None)
    result.update(extra)
    return result


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--sample":
        sampler_main(int(argv[2]))
        return 0
    args = [a for a in argv[1:] if a != "--memory"]
    if len(args) != 2 or args[0] not in (*METHODS, "compare"):
        print(f"usage: {argv[0]} {{{'|'.join((*METHODS, 'compare'))}}} DIR [--memory]", file=sys.stderr)
        return 2
    method, folder = args
    result = compare(folder) if method == "compare" else measure(method, folder, "--memory" in argv)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":  # the guard matters: medview's pool may use forkserver
    sys.exit(main(sys.argv))
