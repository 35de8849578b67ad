"""Header-only scan of DICOM folders, files and zip archives into series candidates.

Steps: list files (recursively, zip members included) -> parse headers in parallel -> group by
SeriesInstanceUID -> split each UID by orientation, image size, stack and (when positions repeat)
acquisition -> sort each part along the slice normal -> derive spacing and geometry from the
positions and record what is wrong with the series as warnings.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.core.errors import InputNotFoundError, ResourceLimitError, UnsupportedFormatError
from medview.core.geometry import Geometry
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.dicom.headers import FrameRecord, read_headers, read_headers_batch
from medview.io.dicom.parallel import PoolFailure, disable_pool, pool_available, process_pool
from medview.io.limits import format_bytes, memory_budget_bytes

# Below this many files the process pool costs more than it saves.
PARALLEL_MIN_FILES = 96
_CHUNK = 32
_ORIENTATION_TOL = 1e-3  # direction cosines
_MAX_ZIP_RATIO = 200  # a member inflating more than this is treated as a zip bomb

# Modalities whose single images are projection radiographs or photos, not slices of a volume.
PROJECTION_MODALITIES = {"CR", "DX", "MG", "IO", "PX", "XA", "RF", "US", "SC", "OT", "XC", "GM", "ES", "SM"}


@dataclass
class SeriesInfo:
    """One loadable image series found by :func:`scan_dicom`; holds no pixel data."""

    uid: str  # what to pass as ``series=``: the SeriesInstanceUID, with '.partN' when it was split
    series_uid: str
    kind: str  # 'volume' (slices of a 3D grid) or 'image2d' (radiograph, photo, cine frames)
    modality: str
    description: str
    series_number: int | None
    study_uid: str
    patient_name: str
    patient_id: str
    study_date: str
    geometry: Geometry
    slots: list[FrameRecord | None]  # one per slice index, None where a slice is missing
    warnings: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def n_slices(self) -> int:
        return len(self.slots)

    @property
    def frames(self) -> list[FrameRecord]:
        return [r for r in self.slots if r is not None]

    @property
    def first(self) -> FrameRecord:
        return self.frames[0]

    @property
    def size_xyz(self) -> tuple[int, int, int]:
        return self.geometry.size_xyz

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    @property
    def transfer_syntaxes(self) -> list[str]:
        return sorted({r.transfer_syntax for r in self.frames})

    @property
    def file_count(self) -> int:
        return len({(r.path, r.member) for r in self.frames})

    def orientation_text(self) -> str:
        """The grid's patient axes ('LPS'); for an image without ImageOrientationPatient (a radiograph) its
        PatientOrientation ('L\\F: rows toward L, columns toward F'), since its grid's axes are made up."""
        first = self.first
        if first.orientation is not None:
            return self.geometry.orientation_code()
        po = first.patient_orientation
        if len(po) == 2 and all(po):
            return f"{po[0]}\\{po[1]} (PatientOrientation: rows toward {po[0]}, columns toward {po[1]})"
        return "unknown (no ImageOrientationPatient or PatientOrientation)"

    def summary(self) -> dict[str, Any]:
        """Plain-data description for ``medview info --json``."""
        g = self.geometry
        return {
            "uid": self.uid,
            "series_instance_uid": self.series_uid,
            "kind": self.kind,
            "modality": self.modality,
            "description": self.description,
            "series_number": self.series_number,
            "patient_name": self.patient_name,
            "patient_id": self.patient_id,
            "study_date": self.study_date,
            "size": list(g.size_xyz),
            "spacing_mm": [round(s, 6) for s in g.spacing],
            "origin_mm": [round(o, 6) for o in g.origin],
            "orientation": self.orientation_text(),
            "direction": [round(d, 6) for d in g.direction],
            "files": self.file_count,
            "transfer_syntaxes": self.transfer_syntaxes,
            "photometric": self.first.photometric,
            "warnings": list(self.warnings),
        }


class ScanResult(list):
    """The series found (a list of :class:`SeriesInfo`) plus the files that were skipped and why."""

    def __init__(self, series: Iterable[SeriesInfo] = (), skipped: list[tuple[str, str]] | None = None,
                 source: str = ""):
        super().__init__(series)
        self.skipped: list[tuple[str, str]] = skipped or []
        self.source = source


# -- listing files ------------------------------------------------------------------------------
def list_sources(path: str) -> list[tuple[str, str | None]]:
    """Every candidate file under ``path``: ``(file, None)`` or ``(zip_file, member)``."""
    if not os.path.exists(path):
        raise InputNotFoundError(f"No such file or folder: {path}")
    files: list[str] = []
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs.sort()
            files.extend(os.path.join(root, n) for n in sorted(names))
        if not files:
            raise InputNotFoundError(f"The folder {path} is empty")
    else:
        files = [path]
    out: list[tuple[str, str | None]] = []
    for f in files:
        if f.lower().endswith(".zip") and zipfile.is_zipfile(f):
            out.extend(_zip_members(f))
        else:
            out.append((f, None))
    return out


def _zip_members(path: str) -> list[tuple[str, str | None]]:
    budget = memory_budget_bytes()
    total = 0
    members: list[tuple[str, str | None]] = []
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            total += info.file_size
            if info.compress_size and info.file_size / max(info.compress_size, 1) > _MAX_ZIP_RATIO \
                    and info.file_size > 64 * 1024 * 1024:
                raise ResourceLimitError(
                    f"Zip member {info.filename} inflates {info.file_size / info.compress_size:.0f}-fold "
                    f"to {format_bytes(info.file_size)}; refusing a likely zip bomb", path=path)
            members.append((path, info.filename))
    if total > budget:
        raise ResourceLimitError(
            f"The archive unpacks to {format_bytes(total)}, more than the {format_bytes(budget)} memory budget",
            path=path)
    return members


# -- reading headers ----------------------------------------------------------------------------
def read_all_headers(sources: list[tuple[str, str | None]], task: TaskContext | None = None,
                     parallel: bool | None = None) -> tuple[list[FrameRecord], list[tuple[str, str]]]:
    """Parse every header, in worker processes when there are many files."""
    records: list[FrameRecord] = []
    skipped: list[tuple[str, str]] = []
    n = len(sources)
    use_pool = (n >= PARALLEL_MIN_FILES and pool_available()) if parallel is None else parallel

    def collect(batch_sources: list[tuple[str, str | None]],
                results: list[tuple[list[FrameRecord], str | None]]) -> None:
        for (p, m), (recs, why) in zip(batch_sources, results, strict=True):
            if why is None:
                records.extend(recs)
            else:
                skipped.append((f"{p}!{m}" if m else p, why))

    done = 0
    if use_pool:
        chunks = [sources[i:i + _CHUNK] for i in range(0, n, _CHUNK)]
        futures = []
        try:
            pool = process_pool()
            futures = [pool.submit(read_headers_batch, c) for c in chunks]
            for chunk, fut in zip(chunks, futures, strict=True):
                check_cancel(task)
                collect(chunk, fut.result())
                done += len(chunk)
                report(task, done / n, f"Read {done} of {n} headers")
        except PoolFailure as exc:
            disable_pool(exc)  # worker could not start or died: finish in this process
        finally:
            for fut in futures:
                fut.cancel()
    if done < n:
        for i, (p, m) in enumerate(sources[done:], start=done):
            check_cancel(task)
            recs, why = read_headers(p, m)
            collect([(p, m)], [(recs, why)])
            report(task, (i + 1) / n, f"Read {i + 1} of {n} headers")
    return records, skipped


# -- grouping and geometry ----------------------------------------------------------------------
def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    n = np.cross(row, col)
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else np.array([0.0, 0.0, 1.0])


def _orientation_group(groups: list[tuple[float, ...]], orientation: tuple[float, ...] | None) -> int:
    if orientation is None:
        return -1
    for i, o in enumerate(groups):
        if max(abs(a - b) for a, b in zip(o, orientation, strict=True)) < _ORIENTATION_TOL:
            return i
    groups.append(orientation)
    return len(groups) - 1


def _split_parts(records: list[FrameRecord]) -> list[list[FrameRecord]]:
    """Split one SeriesInstanceUID into parts that each form one image."""
    orientations: list[tuple[float, ...]] = []
    groups: dict[tuple[Any, ...], list[FrameRecord]] = defaultdict(list)
    for r in records:
        o = _orientation_group(orientations, r.orientation)
        positional = r.position is not None and r.orientation is not None
        key = (r.rows, r.columns, r.samples_per_pixel, o, r.stack_key, "LOCALIZER" in r.image_type,
               None if positional else (r.path, r.member))
        groups[key].append(r)
    parts: list[list[FrameRecord]] = []
    for recs in groups.values():
        parts.extend(_split_repeated_positions(recs))
    parts.sort(key=lambda p: (-len(p), p[0].instance_number or 0))
    return parts


def _split_repeated_positions(recs: list[FrameRecord]) -> list[list[FrameRecord]]:
    """Separate acquisitions (or echoes, time points) that repeat the same slice positions."""
    if len(recs) < 2 or recs[0].position is None or recs[0].orientation is None:
        return [recs]
    n = _normal(recs[0].orientation)
    keys = [round(float(np.dot(r.position, n)), 2) for r in recs]  # type: ignore[arg-type]
    if len(set(keys)) == len(keys):
        return [recs]
    by_acq: dict[Any, list[FrameRecord]] = defaultdict(list)
    for r in recs:
        by_acq[r.acquisition_number].append(r)
    if len(by_acq) > 1 and all(
        len({round(float(np.dot(r.position, n)), 2) for r in g}) == len(g) for g in by_acq.values()  # type: ignore[arg-type]
    ):
        return [by_acq[k] for k in sorted(by_acq, key=lambda a: (a is None, a))]
    return [recs]  # the builder reports the duplicates


def _build_series(uid: str, parts_total: int, index: int, recs: list[FrameRecord], source: str) -> SeriesInfo:
    first = recs[0]
    warnings: list[str] = []
    label = f"Series {first.series_number}" if first.series_number is not None else f"Series {uid}"
    ps = first.pixel_spacing
    if ps is None:
        ps = (1.0, 1.0)
        warnings.append("No pixel spacing in the file: distances are in pixels, not mm")
    elif first.spacing_source == "ImagerPixelSpacing":
        warnings.append("Pixel spacing is at the detector (ImagerPixelSpacing), not corrected for magnification")

    positional = first.position is not None and first.orientation is not None
    if not positional:
        recs = sorted(recs, key=lambda r: (r.instance_number or 0, r.frame))
        kind = "image2d"
        direction = np.eye(3)
        if first.orientation is not None:
            row, col = np.array(first.orientation[:3]), np.array(first.orientation[3:])
            direction = np.column_stack([row, col, _normal(first.orientation)])
        geometry = Geometry((len(recs), first.rows, first.columns), (ps[1], ps[0], 1.0),
                            first.position or (0.0, 0.0, 0.0), tuple(direction.reshape(-1)))  # type: ignore[arg-type]
        slots: list[FrameRecord | None] = list(recs)
    else:
        kind = "volume" if (len(recs) > 1 or first.modality not in PROJECTION_MODALITIES) else "image2d"
        slots, geometry, more = _stack_geometry(recs, ps, label)
        warnings.extend(more)

    for note in dict.fromkeys(n for r in recs for n in r.notes):
        warnings.append(note)
    photometric = first.photometric
    if photometric == "MONOCHROME1":
        warnings.append("MONOCHROME1 image: values were inverted so that bright means dense")
    series_id = uid if parts_total == 1 else f"{uid}.part{index + 1}"
    description = first.series_description
    if parts_total > 1:
        what = "localizer" if "LOCALIZER" in first.image_type else f"part {index + 1} of {parts_total}"
        description = f"{description} ({what})" if description else what
    return SeriesInfo(
        uid=series_id, series_uid=uid, kind=kind, modality=first.modality, description=description,
        series_number=first.series_number, study_uid=first.study_uid, patient_name=first.patient_name,
        patient_id=first.patient_id, study_date=first.study_date, geometry=geometry, slots=slots,
        warnings=warnings, source=source,
    )


def _stack_geometry(recs: list[FrameRecord], ps: tuple[float, float], label: str
                    ) -> tuple[list[FrameRecord | None], Geometry, list[str]]:
    """Sort slices along the normal, derive spacing, and find gaps, duplicates and tilt."""
    warnings: list[str] = []
    orientation = recs[0].orientation
    assert orientation is not None
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    row /= np.linalg.norm(row)
    col /= np.linalg.norm(col)
    normal = _normal(orientation)
    if abs(float(np.dot(row, col))) > 1e-3:
        warnings.append("Row and column directions are not perpendicular; geometry is approximate")
    dist = np.array([float(np.dot(r.position, normal)) for r in recs])  # type: ignore[arg-type]
    order = sorted(range(len(recs)), key=lambda i: (dist[i], recs[i].instance_number or 0, recs[i].frame))
    recs = [recs[i] for i in order]
    dist = dist[order]

    # duplicates: same position along the normal
    keep = [0]
    duplicates = 0
    for i in range(1, len(recs)):
        if abs(dist[i] - dist[keep[-1]]) < 1e-3:
            duplicates += 1
        else:
            keep.append(i)
    if duplicates:
        warnings.append(f"{label} has {duplicates} slice(s) at duplicate positions; "
                        "the first of each was kept")
    recs = [recs[i] for i in keep]
    dist = dist[keep]

    first_pos = np.array(recs[0].position)
    axial = abs(normal[2]) > 0.999

    def where(rec: FrameRecord) -> str:
        """A slice's place as a reader sees it: z for axial stacks, else distance along the normal."""
        if axial:
            return f"z={rec.position[2]:.1f}"  # type: ignore[index]
        return f"{float(np.dot(rec.position, normal)):.1f} (along the slice normal)"  # type: ignore[arg-type]

    if len(recs) == 1:
        dz = recs[0].spacing_between_slices or recs[0].slice_thickness or 1.0
        slots: list[FrameRecord | None] = list(recs)
    else:
        gaps = np.diff(dist)
        step = float(np.sort(gaps)[len(gaps) // 2])  # median; np.median imports numpy.ma (20 ms cold)
        counts = np.maximum(np.rint(gaps / step).astype(int), 1)
        missing = int(np.sum(counts - 1))
        regular = np.abs(gaps - counts * step)
        tol = max(0.01 * step, 0.01)
        if missing and np.all(regular < max(0.1 * step, tol)):
            slots = []
            descriptions = []
            for i, rec in enumerate(recs):
                slots.append(rec)
                if i < len(gaps) and counts[i] > 1:
                    slots.extend([None] * (counts[i] - 1))
                    descriptions.append(f"{counts[i] - 1} between {where(recs[i])} and {where(recs[i + 1])} mm")
            warnings.append(
                f"{label} has {missing} missing slice(s): {'; '.join(descriptions)}; "
                "the gap is shown as empty slices so that positions stay exact")
            dz = (dist[-1] - dist[0]) / (len(slots) - 1)
        else:
            slots = list(recs)
            dz = (dist[-1] - dist[0]) / (len(recs) - 1)
            if float(np.max(np.abs(gaps - dz))) > tol:
                warnings.append(
                    f"{label} has non-uniform slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm); "
                    f"the volume uses the mean {dz:.3f} mm, so positions may be off by up to "
                    f"{float(np.max(np.abs(np.cumsum(gaps) - dz * np.arange(1, len(gaps) + 1)))):.2f} mm")
        # gantry tilt: slice positions drift sideways, not along the normal
        offset = np.array(recs[-1].position) - first_pos
        along = float(np.dot(offset, normal))
        sideways = float(np.linalg.norm(offset - along * normal))
        if along != 0 and sideways > 0.01 * max(abs(along), 1.0) and sideways > 0.05:
            angle = math.degrees(math.atan2(sideways, abs(along)))
            warnings.append(f"{label} was acquired with a gantry tilt of {angle:.1f} degrees: slices are "
                            f"sheared by up to {sideways:.1f} mm; geometry ignores the shear")
    direction = np.column_stack([row, col, normal])
    geometry = Geometry((len(slots), recs[0].rows, recs[0].columns), (ps[1], ps[0], float(dz)),
                        tuple(first_pos), tuple(direction.reshape(-1)))  # type: ignore[arg-type]
    return slots, geometry, warnings


def group_series(records: list[FrameRecord], source: str = "") -> list[SeriesInfo]:
    """Group parsed frames into series candidates, largest first within each UID."""
    by_uid: dict[str, list[FrameRecord]] = defaultdict(list)
    for r in records:
        by_uid[r.series_uid].append(r)
    series: list[SeriesInfo] = []
    for uid, recs in by_uid.items():
        parts = _split_parts(recs)
        for i, part in enumerate(parts):
            series.append(_build_series(uid, len(parts), i, part, source))
    series.sort(key=lambda s: (s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
                               s.uid))
    return series


def scan_dicom(path: str, task: TaskContext | None = None, parallel: bool | None = None) -> ScanResult:
    """Scan a DICOM folder, file or zip archive; raise if it holds no DICOM image at all."""
    sources = list_sources(path)
    records, skipped = read_all_headers(sources, task, parallel)
    if not records:
        reasons = defaultdict(int)
        for _, why in skipped:
            reasons[why.split(":")[0]] += 1
        detail = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        raise UnsupportedFormatError(f"No DICOM images found in {path} ({len(skipped)} file(s) skipped: {detail})")
    return ScanResult(group_series(records, source=path), skipped, source=path)
