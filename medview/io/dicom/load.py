"""Pixel loading: one pre-allocated array, filled in place, in parallel, middle slice first.

Native little-endian files are read straight into the volume with ``readinto`` from a thread pool
(file reads and numpy release the GIL).  Compressed files are decoded by pydicom's codec plugins in
the shared process pool, because the decoders hold the GIL.  Each frame's own rescale slope and
intercept are applied while copying, so CT arrives in Hounsfield units.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from pydicom.uid import UID

from medview.core.errors import (
    CorruptFileError,
    DecodeError,
    InconsistentSeriesError,
    ResourceLimitError,
    UnsupportedFormatError,
)
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, VolumeMetadata, WindowPreset
from medview.io.dicom.decode import decode_frames, transfer_syntax_name
from medview.io.dicom.headers import FrameRecord
from medview.io.dicom.parallel import (
    PoolFailure,
    disable_pool,
    isolation_available,
    pool_available,
    process_pool,
    reset_pool,
    worker_count,
)
from medview.io.dicom.scan import SeriesInfo
from medview.io.limits import check_allocation

MiddleSliceCallback = Callable[[Volume, int], None]
# Compressed series with fewer frames than this are not spread over several processes (they are still decoded
# in a worker process: see _load's ``isolate``).
POOL_MIN_FRAMES = 8
# decoder buffers per frame being decoded (the codec's output, pydicom's reshaped copy, a colour conversion)
DECODE_BUFFERS = 3


def _stored_range(rec: FrameRecord) -> tuple[int, int]:
    bits = min(rec.bits_stored, rec.bits_allocated)
    if rec.pixel_representation == 1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def output_dtype(frames: list[FrameRecord]) -> tuple[np.dtype, bool]:
    """The dtype to decode into, and whether each frame must be checked against it.

    Exact rule: the smallest dtype that holds every *possible* stored value after rescale.  Many
    writers declare 16 stored bits with intercept -1024, which strictly needs int32, although real
    CT data spans about -1024..3071 HU.  Such series are decoded into int16 and every frame is
    checked; if a frame does not fit, loading restarts with the exact dtype (see :func:`load_series`).
    """
    first = frames[0]
    if first.samples_per_pixel > 1 or first.has_palette:
        return np.dtype(np.uint8 if first.bits_allocated <= 8 and not first.has_palette else np.uint16), False
    if first.float_pixels or first.modality == "RTDOSE":  # dose in Gy: stored x DoseGridScaling
        return np.dtype(np.float32), False
    lo, hi = np.inf, -np.inf
    for rec in frames:
        if rec.slope != int(rec.slope) or rec.intercept != int(rec.intercept):
            return np.dtype(np.float32), False
        s_lo, s_hi = _stored_range(rec)
        a, b = s_lo * rec.slope + rec.intercept, s_hi * rec.slope + rec.intercept
        lo, hi = min(lo, a, b), max(hi, a, b)
    for dtype in (np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dtype)
        if (dtype is not np.uint8 or first.bits_allocated <= 8) and info.min <= lo and hi <= info.max:
            if dtype is np.int32 and first.bits_allocated == 16:
                return np.dtype(np.int16), True
            return np.dtype(dtype), False
    return np.dtype(np.float32), False


class _DoesNotFitError(Exception):
    """A frame's values do not fit the optimistic int16 output (internal; triggers a restart)."""


def _check_fits(raw: np.ndarray, rec: FrameRecord, dtype: np.dtype) -> None:
    info = np.iinfo(dtype)
    lo, hi = int(raw.min()) * rec.slope + rec.intercept, int(raw.max()) * rec.slope + rec.intercept
    if min(lo, hi) < info.min or max(lo, hi) > info.max:
        raise _DoesNotFitError


def _shared_empty(shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, str] | None:
    """An array backed by an anonymous memory file that worker processes can map (Linux only).

    Workers decode straight into the volume instead of sending each slice back through a pipe
    (measured on 305 JPEG-LS slices: 1.36 s with pickled results, 0.91 s without).  The file has no
    name on disk and disappears when the array is freed.
    """
    if not hasattr(os, "memfd_create"):
        return None
    nbytes = int(np.prod(shape)) * dtype.itemsize
    try:
        fd = os.memfd_create("medview-volume")
        try:
            os.ftruncate(fd, nbytes)
            mapping = mmap.mmap(fd, nbytes)
        finally:
            path = f"/proc/{os.getpid()}/fd/{fd}"
    except OSError:
        return None
    array = np.frombuffer(mapping, dtype=dtype).reshape(shape)
    _SHARED_FDS[path] = fd
    return array, path


def _release_shared(path: str) -> None:
    fd = _SHARED_FDS.pop(path, None)
    if fd is not None:
        os.close(fd)  # the mapping stays valid; memory is freed with the array


_SHARED_FDS: dict[str, int] = {}


def _map_pages(array: np.ndarray) -> None:
    """Map every page of a shared volume the workers filled into this process, here (a loader thread).

    The workers' writes do not map the pages into this process: the first read of each page faults.  A
    sagittal slice reads every page of the volume, so the first one drawn after a load paid ~2,400
    faults on the GUI thread (12 ms for 305 x 512 x 512, 50-70 ms while the workers still ran,
    measured with perf as the event loop's longest stall).  One strided read (numpy drops the GIL in
    it) takes them here instead.
    """
    flat = array.reshape(-1).view(np.uint8)
    np.bitwise_or.reduce(flat[:: mmap.PAGESIZE])


def decode_into_shared(path: str, shape: tuple[int, ...], dtype: str, items: list[tuple[int, FrameRecord]],
                       check: bool) -> list[int]:
    """Worker-process entry point: decode frames of one file into the shared volume."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dt.itemsize
    fd = os.open(path, os.O_RDWR)
    try:
        mapping = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
    try:
        out = np.frombuffer(mapping, dtype=dt).reshape(shape)
        first = items[0][1]
        arrays = decode_frames(first.path, first.member, [rec.frame for _, rec in items], first)
        for (z, rec), arr in zip(items, arrays, strict=True):
            _store(out, z, arr, rec, check)
        del out
    finally:
        with contextlib.suppress(BufferError):  # after an error a traceback may still hold a view of it
            mapping.close()
    return [z for z, _ in items]


def _is_native(rec: FrameRecord) -> bool:
    """Frames read straight from disk: uncompressed little-endian greyscale at a known offset."""
    return (rec.pixel_offset is not None and rec.samples_per_pixel == 1 and not rec.has_palette
            and not rec.float_pixels and rec.bits_allocated in (8, 16, 32))


def _native_dtype(rec: FrameRecord) -> np.dtype:
    kind = "i" if rec.pixel_representation == 1 else "u"
    return np.dtype(f"<{kind}{rec.bits_allocated // 8}")


def _fix_bits(raw: np.ndarray, rec: FrameRecord) -> None:
    """Mask or sign-extend when fewer bits are stored than allocated (in place)."""
    spare = rec.bits_allocated - rec.bits_stored
    if spare <= 0:
        return
    if rec.pixel_representation == 1:
        np.left_shift(raw, spare, out=raw)
        np.right_shift(raw, spare, out=raw)
    else:
        np.bitwise_and(raw, (1 << rec.bits_stored) - 1, out=raw)


def _store(out: np.ndarray, z: int, raw: np.ndarray, rec: FrameRecord, check: bool = False) -> None:
    """Copy one frame into ``out[z]`` applying its rescale."""
    target = out[z]
    if raw.shape != target.shape:
        raise InconsistentSeriesError(
            f"{rec.location} decodes to {raw.shape}, expected {target.shape}")
    if check:
        _check_fits(raw, rec, out.dtype)
    if out.ndim == 4 or (rec.slope == 1 and rec.intercept == 0):
        np.copyto(target, raw, casting="unsafe")
    elif rec.slope == 1 and np.issubdtype(out.dtype, np.integer):
        np.add(raw, int(rec.intercept), out=target, casting="unsafe", dtype=out.dtype)
    else:
        np.multiply(raw, rec.slope, out=target, casting="unsafe")
        target += out.dtype.type(rec.intercept)


class _NativeReader:
    """Reads native frames straight from disk into the output array (thread-safe, one per load)."""

    def __init__(self, out: np.ndarray, check: bool) -> None:
        self.out = out
        self.check = check
        self.local = threading.local()

    def read(self, z: int, rec: FrameRecord) -> None:
        nbytes = rec.frame_bytes
        raw_dtype = _native_dtype(rec)
        direct = raw_dtype == self.out.dtype and rec.slope == 1
        if direct:
            target = self.out[z]
        else:
            buf = getattr(self.local, "buf", None)
            if buf is None or buf.nbytes != nbytes or buf.dtype != raw_dtype:
                buf = np.empty((rec.rows, rec.columns), dtype=raw_dtype)
                self.local.buf = buf
            target = buf
        try:
            with open(rec.path, "rb", buffering=0) as fh:
                fh.seek(rec.pixel_offset or 0)
                got = fh.readinto(memoryview(target).cast("B"))
        except OSError as exc:  # removed, unreadable or on a failing disk since the scan
            raise CorruptFileError(f"Cannot read the pixels of {rec.location}: {exc.strerror or exc}") from None
        if got != nbytes:
            raise CorruptFileError(f"{rec.location} is truncated: its pixel data needs {nbytes} bytes, "
                                   f"only {got} are present")
        _fix_bits(target, rec)
        if direct:
            if self.check:
                _check_fits(target, rec, self.out.dtype)
            if rec.intercept:
                target += raw_dtype.type(rec.intercept)
        else:
            _store(self.out, z, target, rec, self.check)


def _check_sizes(info: SeriesInfo) -> None:
    """Before allocating: consistent frames, and native pixel data that fits inside its file."""
    first = info.first
    for rec in info.frames:
        if (rec.rows, rec.columns, rec.samples_per_pixel, rec.bits_allocated) != \
                (first.rows, first.columns, first.samples_per_pixel, first.bits_allocated):
            raise InconsistentSeriesError(
                f"{rec.location} has {rec.columns}x{rec.rows} pixels, {rec.bits_allocated} bits; the series "
                f"started with {first.columns}x{first.rows}, {first.bits_allocated} bits")
        if rec.bits_allocated not in (1, 8, 16, 32, 64):
            raise UnsupportedFormatError(f"{rec.location}: {rec.bits_allocated} bits per pixel is not supported")
        if not rec.encapsulated and not UID(rec.transfer_syntax).is_deflated:  # deflated files are smaller
            needed = rec.frame_bytes * (rec.frame + 1)
            if needed > rec.file_size:
                raise CorruptFileError(
                    f"{rec.location} claims {rec.columns}x{rec.rows} pixels x {rec.n_frames} frame(s) "
                    f"({needed} bytes) but the file has only {rec.file_size} bytes")


def load_series(info: SeriesInfo, task: TaskContext | None = None,
                on_middle_slice: MiddleSliceCallback | None = None, parallel: bool | None = None) -> Volume:
    """Decode a scanned series into a :class:`Volume` in real units.

    Parameters
    ----------
    info
        A series from :func:`medview.io.dicom.scan.scan_dicom`.
    task
        Progress (per slice) and cancellation.
    on_middle_slice
        Called with the (still filling) volume and the slice index as soon as the middle slice is
        decoded, so a viewer can show it before the rest arrives.
    parallel
        Force (True) or forbid (False) the process pool for compressed data; default: automatic.
    """
    _check_sizes(info)
    dtype, check = output_dtype(info.frames)
    try:
        return _load(info, dtype, check, task, on_middle_slice, parallel)
    except _DoesNotFitError:
        return _load(info, np.dtype(np.int32), False, task, on_middle_slice, parallel)


def _load(info: SeriesInfo, dtype: np.dtype, check: bool, task: TaskContext | None,
          on_middle_slice: MiddleSliceCallback | None, parallel: bool | None) -> Volume:
    first = info.first
    rows, cols = first.rows, first.columns
    shape: tuple[int, ...] = (info.n_slices, rows, cols)
    if first.samples_per_pixel > 1 or first.has_palette:
        shape = (*shape, 3)
    coded_frames = [r for r in info.frames if not _is_native(r)]
    coded_count = len(coded_frames)
    use_pool = (coded_count >= POOL_MIN_FRAMES and pool_available()) if parallel is None else parallel
    # Untrusted compressed data is decoded in a worker process, however few frames: a C/C++ codec that aborts
    # (GDCM's uncaught exceptions) then ends that worker, not medview.  Uncompressed data that pydicom converts
    # (big endian, deflate, palettes) is numpy only and stays here.
    isolate = any(r.encapsulated for r in coded_frames) and isolation_available()
    in_flight = (min(worker_count(), coded_count) if use_pool else 1) if coded_count else 0
    check_allocation(int(np.prod(shape)) * dtype.itemsize + in_flight * DECODE_BUFFERS * first.frame_bytes,
                     f"Series {info.uid} ({'x'.join(map(str, shape))})")
    shared = _shared_empty(shape, dtype) if (use_pool or isolate) and coded_count else None
    try:
        out = shared[0] if shared else np.empty(shape, dtype=dtype)
    except MemoryError:
        raise ResourceLimitError(f"Not enough memory for series {info.uid} ({'x'.join(map(str, shape))})") from None
    metadata = _metadata(info, dtype)
    volume = Volume(out, info.geometry, metadata)

    slots = [(z, rec) for z, rec in enumerate(info.slots) if rec is not None]
    middle = info.n_slices // 2
    slots.sort(key=lambda zr: (abs(zr[0] - middle), zr[0]))  # middle first, then outwards
    total = len(slots)
    done = 0
    middle_sent = False

    count_lock = threading.Lock()
    first_z = slots[0][0]  # the middle slice, or the present slice nearest to it

    def finished(z: int) -> None:
        nonlocal done, middle_sent
        with count_lock:
            done += 1
            n = done
            send_middle = z == first_z and not middle_sent and on_middle_slice is not None
            middle_sent = middle_sent or send_middle
        if send_middle:
            on_middle_slice(volume, z)  # type: ignore[misc]
        report(task, n / total, f"Loaded {n} of {total} slices")

    native = [(z, r) for z, r in slots if _is_native(r)]
    native_set = {z for z, _ in native}
    coded = [(z, r) for z, r in slots if z not in native_set]

    if native:
        reader = _NativeReader(out, check)
        # first the middle slice alone, so it is on screen at once
        z0, r0 = native[0]
        reader.read(z0, r0)
        finished(z0)
        # a few threads, each reading a run of slices: reads overlap on cold storage while the
        # per-slice hand-off stays cheap on a warm page cache
        n_threads = max(2, min(4, worker_count()))
        runs = [native[1 + i::n_threads] for i in range(n_threads)]

        def read_run(run: list[tuple[int, FrameRecord]]) -> None:
            for z, rec in run:
                check_cancel(task)
                reader.read(z, rec)
                finished(z)

        with ThreadPoolExecutor(n_threads) as pool:
            for fut in _completed([pool.submit(read_run, run) for run in runs if run], task):
                fut.result()
    if coded and use_pool and not isolate and coded[0][0] == first_z:
        # the middle slice here and now: the worker processes may still be starting (0.1-0.5 s)
        z0, r0 = coded.pop(0)
        _store(out, z0, decode_frames(r0.path, r0.member, [r0.frame], r0)[0], r0, check)
        finished(z0)
    if coded:
        try:
            _load_coded(coded, out, task, finished, use_pool, check, shared[1] if shared else None, isolate)
        finally:
            if shared:
                _release_shared(shared[1])
        if shared:
            _map_pages(out)

    if any(rec is None for rec in info.slots):
        present = [z for z, rec in enumerate(info.slots) if rec is not None]
        fill = min(out[z].min() for z in present) if out.ndim == 3 else 0  # no copy of the volume
        for z, rec in enumerate(info.slots):
            if rec is None:
                out[z] = fill
    if first.photometric == "MONOCHROME1" and out.ndim == 3:
        _invert(volume, first)
    report(task, 1.0, f"Loaded {info.n_slices} slices", force=True)
    return volume


def _completed(futures: list[Future], task: TaskContext | None):
    """Yield futures as they finish (O(n) overall), checking for cancellation every 50 ms."""
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    for fut in futures:
        fut.add_done_callback(finished.put)
    remaining = len(futures)
    try:
        while remaining:
            check_cancel(task)
            try:
                fut = finished.get(timeout=0.05)
            except queue.Empty:
                continue
            remaining -= 1
            yield fut
    finally:
        for fut in futures:
            fut.cancel()


def _load_coded(coded: list[tuple[int, FrameRecord]], out: np.ndarray, task: TaskContext | None,
                finished: Callable[[int], None], use_pool: bool, check: bool, shared_path: str | None,
                isolate: bool = False) -> None:
    """Decode through pydicom: per file (or per chunk of frames of a multi-frame file).

    ``use_pool`` spreads the work over the worker processes; ``isolate`` decodes in them even when
    ``use_pool`` is off, and a worker that dies then is an error naming the file, never a reason to decode
    the same data in this process."""
    jobs: dict[tuple[str, str | None], list[tuple[int, FrameRecord]]] = defaultdict(list)
    for z, rec in coded:
        jobs[(rec.path, rec.member)].append((z, rec))
    # split big multi-frame files so that every worker gets a share
    batches: list[list[tuple[int, FrameRecord]]] = []
    per_batch = max(1, -(-len(coded) // (worker_count() * 4))) if use_pool else len(coded)
    for items in jobs.values():
        batches.extend(items[i:i + per_batch] for i in range(0, len(items), per_batch))
    remaining = list(batches)
    if use_pool or isolate:
        try:
            _decode_in_pool(batches, remaining, out, task, finished, check, shared_path)
        except BrokenProcessPool as exc:  # a worker died: maybe a codec aborted on one of these files
            reset_pool()
            if not isolate:
                disable_pool(exc)
            else:
                for batch in list(remaining):  # one file at a time, to name the one that kills its worker
                    try:
                        _decode_in_pool([batch], remaining, out, task, finished, check, shared_path)
                    except BrokenProcessPool:
                        reset_pool()
                        rec = batch[0][1]
                        raise DecodeError(
                            f"The {transfer_syntax_name(rec.transfer_syntax)} decoder crashed on {rec.location} "
                            "(its pixel data is damaged or does not match its header); the worker process that "
                            "decoded it was stopped, medview was not") from None
        except PoolFailure as exc:  # the pool could not start
            if isolate:
                raise DecodeError(f"Cannot start a worker process to decode the compressed pixel data of "
                                  f"{remaining[0][0][1].location} safely: {exc}") from None
            disable_pool(exc)  # finish in this process
    for batch in list(remaining):
        check_cancel(task)
        first = batch[0][1]
        arrays = decode_frames(first.path, first.member, [r.frame for _, r in batch], first)
        for (z, rec), arr in zip(batch, arrays, strict=True):
            _store(out, z, arr, rec, check)
            finished(z)


def _decode_in_pool(batches: list[list[tuple[int, FrameRecord]]], remaining: list[list[tuple[int, FrameRecord]]],
                    out: np.ndarray, task: TaskContext | None, finished: Callable[[int], None], check: bool,
                    shared_path: str | None) -> None:
    """Decode ``batches`` in the worker processes; each finished batch is removed from ``remaining``."""
    pool = process_pool()
    if shared_path:
        futures = {pool.submit(decode_into_shared, shared_path, out.shape, out.dtype.str, b, check): b
                   for b in batches}
    else:
        futures = {pool.submit(decode_frames, b[0][1].path, b[0][1].member, [r.frame for _, r in b], b[0][1]): b
                   for b in batches}
    for fut in _completed(list(futures), task):
        batch = futures[fut]
        result = fut.result()
        for (z, rec), arr in zip(batch, result, strict=True):
            if not shared_path:
                _store(out, z, arr, rec, check)
            finished(z)
        remaining.remove(batch)


def _invert(volume: Volume, rec: FrameRecord) -> None:
    """MONOCHROME1 (the minimum stored value is white, PS3.3 C.7.6.3.1.2): make bright mean dense.

    The stored range is mirrored, s -> (2^BitsStored - 1) - s, which depends on the file's declared bits,
    not on the values that happen to occur; after the rescale that is v -> (lo + hi) - v with lo and hi
    the rescaled ends of the stored range.  The standard gives no formula for signed stored values
    (PixelRepresentation 1); its intent, the lowest possible value shown as the highest, is the same
    mirror of their range -2^(b-1) .. 2^(b-1) - 1: s -> -1 - s.  The file's windows are mirrored with it.
    Float pixel data has no stored range: it is mirrored about its own minimum and maximum.
    """
    arr = volume.array
    if rec.float_pixels:
        total = float(arr.min()) + float(arr.max())
    else:
        s_lo, s_hi = _stored_range(rec)
        total = (s_lo + s_hi) * rec.slope + 2 * rec.intercept
    if np.issubdtype(arr.dtype, np.integer):
        total = round(total)
        info = np.iinfo(arr.dtype)
        if total - int(arr.max()) < info.min or total - int(arr.min()) > info.max:
            raise _DoesNotFitError  # loaded again as int32
    np.subtract(arr.dtype.type(total), arr, out=arr)
    volume.metadata.window_presets = [
        WindowPreset(float(total) - w.center, w.width, w.name) for w in volume.metadata.window_presets
    ]


def _array_photometric(rec: FrameRecord) -> str:
    """What the *array* holds: greyscale with bright = dense, or RGB (the file's value is in extra)."""
    return "RGB" if rec.samples_per_pixel > 1 or rec.has_palette else "MONOCHROME2"


def _metadata(info: SeriesInfo, dtype: np.dtype) -> VolumeMetadata:
    first = info.first
    presets: list[WindowPreset] = []
    seen = set()
    for c, w, name in first.windows:
        if (c, w) not in seen:
            seen.add((c, w))
            presets.append(WindowPreset(c, w, name or f"File preset {len(presets) + 1}"))
    units = "HU" if first.modality == "CT" and first.rescale_type in ("HU", "") else first.rescale_type
    return VolumeMetadata(
        modality=first.modality, series_uid=first.series_uid, study_uid=first.study_uid,
        series_description=info.description, series_number=first.series_number,
        patient_name=first.patient_name, patient_id=first.patient_id, study_date=first.study_date,
        photometric=_array_photometric(first), units=units, window_presets=presets,
        warnings=list(info.warnings), source=info.source,
        extra={"transfer_syntaxes": info.transfer_syntaxes, "files": info.file_count,
               "dtype": str(dtype), "kind": info.kind, "file_photometric": first.photometric,
               **_projection_extra(info)},
    )


# 2D projection radiography (PS3.3 C.8: CR, DX, MG, IO, XA, RF, panoramic PX): labelled by their modality
PROJECTION_LABELS = ("CR", "DX", "MG", "IO", "PX", "XA", "RF")


def _projection_extra(info: SeriesInfo) -> dict:
    """For a 2D image: what the viewer calls it instead of a slice plane, and its patient directions.

    ``view_label``: the modality for projection radiographs and for any single image without a position
    in the patient (``"2D image"`` with no modality).  ``patient_frame``: False when the image has no
    ImageOrientationPatient, so its grid's directions are made up and world letters (L/P/S) mean nothing.
    ``patient_orientation``: PatientOrientation's row and column directions (e.g. ``['L', 'F']``).
    """
    first = info.first
    if info.kind != "image2d":
        return {}
    placed = first.orientation is not None
    extra: dict = {"patient_frame": placed}
    if first.modality in PROJECTION_LABELS or not placed:
        extra["view_label"] = first.modality or "2D image"
    if len(first.patient_orientation) == 2 and all(first.patient_orientation):
        extra["patient_orientation"] = [str(v).upper() for v in first.patient_orientation]
    return extra
