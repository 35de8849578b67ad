"""Label maps as DICOM Segmentation (SEG) objects, written and read through highdicom.

A medview :class:`~medview.core.labels.LabelMap` holds one label per voxel; a DICOM SEG holds one
binary mask per *segment*.  :func:`write_seg` turns every label value present into one segment
(numbered 1..n in ascending label value; DICOM requires consecutive segment numbers) and writes only
the frames that contain that segment.  The label value itself is kept in each segment's free-text
Segment Description as ``medview label value N`` so that value-coded label maps (atlases) come back
with their values; SEGs from other software are read with segment number = label value.

:func:`read_seg` maps the SEG's frames onto a reference image's slices by their Image Position
(Patient), or, without a reference, builds a grid from the SEG's own plane positions and
Spacing Between Slices.  Problems found while reading (a fractional SEG thresholded, a SEG drawn on
another series) are returned in a ``warnings`` list set on the returned LabelMap instance
(``label_map.warnings``); :class:`LabelMap` itself has no such field.

highdicom and its dependencies are imported inside the functions so that ``import medview`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medview.core.errors import (
    CorruptFileError,
    InputNotFoundError,
    MedviewError,
    UnsupportedFormatError,
    WriteError,
)
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap, default_color
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume
from medview.io.atomic import atomic_path
from medview.io.dicom.headers import FrameRecord, looks_like_dicom, open_source, read_headers
from medview.io.dicom.scan import SeriesInfo, group_series

SEG_SOP_CLASS_UIDS = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
}
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
_VALUE_NOTE = "medview label value {}"
# Type 2 attributes of the Patient and General Study modules that the SEG copies from its source images
# (PS3.3 C.7.1.1, C.7.2.1): anonymised data often lacks them; the SEG then holds them empty, as the
# standard allows for type 2, instead of failing.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                 "AccessionNumber", "StudyID", "ReferringPhysicianName")
_VALUE_RE = re.compile(r"^medview label value (\d+)$")
# Label names that describe an abnormality get the SNOMED CT "lesion" codes, everything else "tissue".
_LESION_WORDS = ("tumour", "tumor", "lesion", "nodule", "mass", "cancer", "metasta", "neoplasm", "gtv")
_GRID_TOL_VOXELS = 0.1  # how far (in voxels) a SEG frame may sit from a reference slice


class SegGridMismatchError(MedviewError):
    """The SEG's frames do not lie on the slices of the reference image (it can still be resampled)."""


# -- helpers ----------------------------------------------------------------------------------
def _describe_grid(geometry: Geometry) -> str:
    sx, sy, sz = geometry.spacing
    nx, ny, nz = geometry.size_xyz
    ox, oy, oz = geometry.origin
    return (f"{nx}x{ny}x{nz} voxels of {sx:.3g} x {sy:.3g} x {sz:.3g} mm, first voxel at "
            f"({ox:.1f}, {oy:.1f}, {oz:.1f}) mm, orientation {geometry.orientation_code()}")


def is_seg_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a DICOM file whose SOP class or modality says it is a Segmentation."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as fh:
            if not looks_like_dicom(fh.read(132)):
                return False
        ds = _read_header(path, None, tags=["SOPClassUID", "Modality"])
    except (OSError, ValueError, EOFError, TypeError, AttributeError):
        return False
    return str(ds.get("SOPClassUID", "")) in SEG_SOP_CLASS_UIDS or str(ds.get("Modality", "")) == "SEG"


def _read_header(path: str, member: str | None, tags: list[str] | None = None):
    """pydicom header (no pixel data) of a file or zip member."""
    import pydicom

    with open_source(path, member) as fp:
        head = fp.read(132)
        fp.seek(0)
        force = not (len(head) >= 132 and head[128:132] == b"DICM")
        return pydicom.dcmread(fp, stop_before_pixels=True, force=force, specific_tags=tags)


def _segment_codes(name: str) -> tuple[Any, Any]:
    from pydicom.sr.codedict import codes

    if any(word in name.lower() for word in _LESION_WORDS):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion
    return codes.SCT.Tissue, codes.SCT.Tissue


def _content_label(text: str) -> str:
    """A valid Content Label (CS: upper case, digits, underscore; at most 16; no trailing underscore)."""
    label = re.sub(r"[^A-Z0-9]+", "_", text.upper()).strip("_")[:16].rstrip("_")
    return label or "SEGMENTATION"


def _lo(text: str) -> str:
    """A valid LO value: no backslash or control characters, at most 64 characters."""
    return re.sub(r"[\\\x00-\x1f]", " ", text).strip()[:64] or "Unnamed"


# -- writing ----------------------------------------------------------------------------------
def _series_from_paths(paths: Sequence[str | os.PathLike[str]], geometry: Geometry) -> SeriesInfo:
    """Group source files into series and return the one the label map was drawn on."""
    files = [os.fspath(p) for p in paths]
    if not files:
        raise MedviewError("No source images were given: a DICOM SEG must reference the images it was drawn on")
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise InputNotFoundError(f"{len(missing)} of {len(files)} source image file(s) are missing "
                                 f"(first: {missing[0]}); the SEG must reference the images it was drawn on")
    records: list[FrameRecord] = []
    skipped: list[str] = []
    for f in files:  # structure sets, reports or SEGs listed with the images are passed over
        recs, why = read_headers(f)
        records.extend(recs)
        if why is not None:
            skipped.append(f"{os.path.basename(f)}: {why}")
    if not records:
        raise UnsupportedFormatError(f"None of the {len(files)} source file(s) is a DICOM image "
                                     f"({'; '.join(skipped[:3])})")
    candidates = group_series(records, source=os.path.dirname(files[0]))
    for series in candidates:
        if _same_grid(geometry, series.geometry):
            return series
    found = "; ".join(f"{s.uid}: {_describe_grid(s.geometry)}" for s in candidates[:3])
    raise MedviewError(f"The label map ({_describe_grid(geometry)}) is not on the grid of the source images "
                       f"({found}); resample it onto the series before saving it as DICOM SEG")


def _same_grid(a: Geometry, b: Geometry) -> bool:
    return a.is_same_grid(b, tol_mm=max(1e-2, _GRID_TOL_VOXELS * min(min(a.spacing), min(b.spacing))))


def _source_datasets(info: SeriesInfo, task: TaskContext | None) -> list[tuple[list[int], Any, list[int], int]]:
    """Per source file: the slice indices it holds, its header, their frame numbers in the file, its frame count."""
    by_file: dict[tuple[str, str | None], list[tuple[int, FrameRecord]]] = {}
    for z, rec in enumerate(info.slots):
        if rec is not None:
            by_file.setdefault((rec.path, rec.member), []).append((z, rec))
    missing = [p for p, _ in by_file if not os.path.isfile(p)]
    if missing:
        raise InputNotFoundError(
            f"{len(missing)} of {len(by_file)} source file(s) of series {info.uid} are missing (first: {missing[0]}); "
            "the SEG must reference the images it was drawn on: open the study from where it is now")
    out = []
    for i, ((path, member), items) in enumerate(by_file.items()):
        check_cancel(task)
        try:
            ds = _read_header(path, member)
        except Exception as exc:  # unreadable since the scan: say which file
            raise CorruptFileError(f"Cannot read the source image {path}: {exc}") from None
        out.append(([z for z, _ in items], ds, [rec.frame for _, rec in items], items[0][1].n_frames))
        report(task, 0.3 * (i + 1) / len(by_file), f"Read {i + 1} of {len(by_file)} source headers")
    return out


@contextlib.contextmanager
def _library_warnings(into: list[str] | None):
    """Turn highdicom's and pydicom's warnings (Python warnings and log records) into medview's own lines.

    They would otherwise reach stderr with a source path and a URL; ``into`` receives one short line per
    distinct message (its first sentence), or they are dropped when ``into`` is None.
    """
    import logging
    import warnings

    seen: list[str] = []

    def note(text: str) -> None:
        first = re.split(r"(?<=[.!?])\s", str(text).strip(), maxsplit=1)[0].rstrip(".")
        if first and first not in seen:
            seen.append(first)

    class _Note(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            note(record.getMessage())

    handler = _Note(logging.WARNING)
    loggers = [logging.getLogger(name) for name in ("highdicom", "pydicom")]
    propagate = [lg.propagate for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            note(w.message)
    finally:
        for lg, flag in zip(loggers, propagate, strict=True):
            lg.removeHandler(handler)
            lg.propagate = flag
        if into is not None:
            into.extend(f"DICOM SEG: {text}" for text in seen)


def write_seg(
    label_map: LabelMap,
    source_series: SeriesInfo | Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    description: str = "Segmentation",
    manufacturer: str = "medview",
    algorithm_type: str = "MANUAL",
    algorithm_name: str | None = None,
    algorithm_version: str | None = None,
    algorithm_family: Any = None,
    property_codes: Mapping[int, tuple[Any, Any]] | None = None,
    series_number: int | None = None,
    content_creator: str | None = None,
    task: TaskContext | None = None,
    warnings: list[str] | None = None,
) -> str:
    """Write ``label_map`` as a binary DICOM Segmentation that references the images it was drawn on.

    Parameters
    ----------
    label_map
        The labels; must lie on the grid of ``source_series`` (same voxels within 0.1 voxel).
    source_series
        The scanned series (:func:`medview.io.readers.scan`) or the paths of its DICOM files.  Only the
        headers are read; pixel data is not decoded.
    path
        Output file (conventionally ``.dcm``).  Written to a temporary file in the same folder and
        moved into place, so a failure never leaves a partial file.
    description
        Series Description and Content Description of the SEG.
    manufacturer
        Manufacturer of the software that made the segmentation.
    algorithm_type
        ``MANUAL``, ``SEMIAUTOMATIC`` or ``AUTOMATIC``; the latter two need ``algorithm_name``.
    algorithm_name, algorithm_version, algorithm_family
        Identification of the algorithm (family: a ``pydicom.sr.coding.Code`` from CID 7162; default
        "Artificial Intelligence" for AUTOMATIC and "Manual Processing" for SEMIAUTOMATIC).
    property_codes
        Optional ``{label value: (category Code, type Code)}``; by default labels whose names say
        tumour/lesion/nodule... are coded SCT "Morphologically Abnormal Structure" / "Lesion", the rest
        SCT "Tissue" / "Tissue".  The label's name is the Segment Label either way.
    series_number
        Series Number of the SEG (default: the source's number + 1000).
    warnings
        A list that receives what highdicom and pydicom warned about while building and writing the SEG
        (e.g. a single-component Patient's Name copied from the source), one line each; those warnings
        are never printed.  Source images without the type 2 patient and study attributes the SEG copies
        (PatientBirthDate, PatientSex, StudyTime, ...: anonymised data) give them empty in the SEG.

    Returns
    -------
    str
        The path written.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import medview

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise WriteError(f"{path} is a folder; give the name of the SEG file to write")
    if not os.path.isdir(folder):
        raise WriteError(f"The output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise WriteError(f"The output folder {folder} is not writable")
    algorithm_type = str(algorithm_type).upper()
    if algorithm_type not in ALGORITHM_TYPES:
        raise MedviewError(f"Algorithm type must be one of {', '.join(ALGORITHM_TYPES)}, got {algorithm_type!r}")
    if algorithm_type != "MANUAL" and not algorithm_name:
        raise MedviewError(f"An {algorithm_type} segmentation needs the name of the algorithm that made it")

    values = label_map.present_values()
    if not values:
        raise MedviewError("The label map is empty (no labelled voxel): there is nothing to save as DICOM SEG")
    info = source_series if isinstance(source_series, SeriesInfo) else \
        _series_from_paths(source_series, label_map.geometry)
    if not _same_grid(label_map.geometry, info.geometry):
        raise MedviewError(
            f"The label map is not on the grid of series {info.uid}: the labels have "
            f"{_describe_grid(label_map.geometry)}, the series {_describe_grid(info.geometry)}; "
            "resample the labels onto the series before saving them as DICOM SEG")
    if info.modality == "SEG" or any(r.sop_class_uid in SEG_SOP_CLASS_UIDS for r in info.frames):
        raise MedviewError(f"Series {info.uid} is itself a segmentation; a SEG must reference the images")
    present_z = {z for z, rec in enumerate(info.slots) if rec is not None}
    labelled_z = np.flatnonzero(label_map.array.reshape(label_map.array.shape[0], -1).any(axis=1))
    orphan = [int(z) for z in labelled_z if int(z) not in present_z]
    if orphan:
        raise MedviewError(
            f"Labels lie on slice(s) {', '.join(str(z + 1) for z in orphan[:5])} where series {info.uid} has no "
            "image (missing slices); a SEG can only reference existing images: erase those labels first")

    sources = _source_datasets(info, task)
    if len(sources) > 1 and any(n_frames > 1 for *_, n_frames in sources):
        raise UnsupportedFormatError(f"Series {info.uid} spreads over several multi-frame files; "
                                     "medview writes SEGs for single-frame series or one multi-frame file")

    # label values -> consecutive segment numbers 1..n (a label-map-style array for highdicom)
    lut = np.zeros(int(values[-1]) + 1, dtype=np.uint8 if len(values) < 256 else np.uint16)
    lut[np.asarray(values)] = np.arange(1, len(values) + 1)
    if len(sources) == 1 and sources[0][3] > 1:  # one multi-frame file: frames in the file's order
        zs, _, frame_idx, n_frames = sources[0]
        pixels = np.zeros((n_frames, *label_map.array.shape[1:]), dtype=lut.dtype)
        pixels[np.asarray(frame_idx)] = lut[label_map.array[np.asarray(zs)]]
    else:
        pixels = lut[label_map.array[np.asarray([zs[0] for zs, *_ in sources])]]
    datasets = [ds for _, ds, *_ in sources]
    for ds in datasets:  # our own header reads, never written back to the source files
        for keyword in _TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")

    family = algorithm_family
    if family is None:
        family = codes.cid7162.ArtificialIntelligence if algorithm_type == "AUTOMATIC" \
            else codes.cid7162.ManualProcessing
    algorithm = None
    if algorithm_type != "MANUAL":
        algorithm = hd.AlgorithmIdentificationSequence(
            name=_lo(algorithm_name or ""), family=family, version=_lo(algorithm_version or medview.__version__),
            source=_lo(manufacturer))
    names = {entry.value: entry for entry in label_map.labels}
    descriptions = []
    for number, value in enumerate(values, start=1):
        entry = names.get(value) or Label(value, f"Label {value}", default_color(value))
        category, kind = (property_codes or {}).get(value) or _segment_codes(entry.name)
        segment = hd.seg.SegmentDescription(
            segment_number=number, segment_label=_lo(entry.name), segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=algorithm_type, algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*(min(max(float(c), 0.0), 255.0) for c in entry.color)),
        )
        segment.SegmentDescription = _VALUE_NOTE.format(value)
        descriptions.append(segment)
    check_cancel(task)
    report(task, 0.4, "Encoding the segmentation", force=True)
    source_number = info.series_number if info.series_number is not None else 0
    with _library_warnings(warnings):
        try:
            seg = hd.seg.Segmentation(
                source_images=datasets, pixel_array=pixels, segmentation_type="BINARY",
                segment_descriptions=descriptions, series_instance_uid=hd.UID(),
                series_number=series_number if series_number is not None else source_number + 1000,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer=_lo(manufacturer),
                manufacturer_model_name="medview", software_versions=medview.__version__, device_serial_number="1",
                content_description=_lo(description), content_label=_content_label(description),
                content_creator_name=content_creator, series_description=_lo(description),
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise MedviewError(f"Cannot build a DICOM SEG on series {info.uid}: {exc}") from None
    check_cancel(task)
    report(task, 0.9, f"Writing {os.path.basename(path)}", force=True)
    with _library_warnings(warnings), atomic_path(path) as tmp:  # temporary file, fsync, rename
        seg.save_as(tmp, enforce_file_format=True)
    report(task, 1.0, "Done", force=True)
    return path


# -- reading ----------------------------------------------------------------------------------
def _item(group: Any, keyword: str) -> Any:
    seq = getattr(group, keyword, None) if group is not None else None
    return seq[0] if seq else None


def _frame_macro(seg: Any, index: int, keyword: str) -> Any:
    """A functional group item for one frame: its per-frame item, else the shared one."""
    per_frame = getattr(seg, "PerFrameFunctionalGroupsSequence", None)
    group = per_frame[index] if per_frame is not None and index < len(per_frame) else None
    return _item(group, keyword) or _item(_item(seg, "SharedFunctionalGroupsSequence"), keyword)


def _open_seg(path: str):
    """Check that ``path`` is a SEG and parse it with highdicom."""
    import highdicom as hd
    from pydicom.errors import InvalidDicomError

    if not os.path.isfile(path):
        raise InputNotFoundError(f"No such file: {path}")
    if os.path.getsize(path) == 0:
        raise CorruptFileError(f"The file {path} is empty (0 bytes)")
    with open(path, "rb") as fh:
        if not looks_like_dicom(fh.read(132)):
            raise UnsupportedFormatError(f"{os.path.basename(path)} is not a DICOM file, so not a DICOM SEG")
    try:
        header = _read_header(path, None, tags=["SOPClassUID", "Modality"])
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise CorruptFileError(f"Cannot read the DICOM header of {path}: {exc}") from None
    sop_class = str(header.get("SOPClassUID", ""))
    modality = str(header.get("Modality", ""))
    if sop_class not in SEG_SOP_CLASS_UIDS and modality != "SEG":
        from pydicom.uid import UID

        what = UID(sop_class).name if sop_class else "a DICOM object without SOP class"
        raise UnsupportedFormatError(
            f"{os.path.basename(path)} is {what} (modality {modality or 'unknown'}), not a DICOM Segmentation "
            "(SEG); open it as an image, or choose the SEG file")
    try:
        return hd.seg.segread(path)
    except Exception as exc:  # highdicom raises many types for malformed objects
        raise CorruptFileError(f"{os.path.basename(path)} claims to be a DICOM SEG but cannot be read: "
                               f"{type(exc).__name__}: {exc}") from None


def _segment_table(seg: Any) -> tuple[dict[int, int], list[Label]]:
    """Segment number -> label value, and the label table (names, colours from CIELab)."""
    import highdicom as hd

    numbers: list[int] = []
    values: list[int | None] = []
    labels: dict[int, Label] = {}
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        match = _VALUE_RE.match(str(item.get("SegmentDescription", "")).strip())
        numbers.append(number)
        values.append(int(match.group(1)) if match else None)
        color = default_color(number)
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None and len(lab) == 3:
            with contextlib.suppress(ValueError, TypeError):
                rgb = hd.color.CIELabColor.from_dicom_value([int(v) for v in lab]).to_rgb(clip=True)
                color = tuple(round(float(c)) for c in rgb)  # type: ignore[assignment]
        labels[number] = Label(number, str(item.get("SegmentLabel", "")) or f"Segment {number}", color)
    stored = [v for v in values if v is not None]
    use_values = len(stored) == len(values) and len(set(stored)) == len(stored) and all(0 < v < 65536
                                                                                      for v in stored)
    mapping = {n: (v if use_values else n) for n, v in zip(numbers, values, strict=True)}  # type: ignore[misc]
    if max(mapping.values(), default=0) > 65535:
        raise UnsupportedFormatError(f"The SEG has {len(numbers)} segments; a label map holds at most 65535")
    table = []
    for number in sorted(labels, key=lambda n: mapping[n]):
        entry = labels[number]
        entry.value = mapping[number]
        table.append(entry)
    return mapping, table


def _frames_info(seg: Any) -> tuple[list[np.ndarray | None], list[int], np.ndarray | None, tuple[float, float]]:
    """Per frame: position (LPS mm) and segment number; the shared orientation and (row, column) spacing."""
    n = int(getattr(seg, "NumberOfFrames", 1) or 1)
    labelmap_type = str(getattr(seg, "SegmentationType", "")) == "LABELMAP"
    positions: list[np.ndarray | None] = []
    segments: list[int] = []
    orientation: np.ndarray | None = None
    spacing: tuple[float, float] | None = None
    for i in range(n):
        pos = getattr(_frame_macro(seg, i, "PlanePositionSequence"), "ImagePositionPatient", None)
        positions.append(np.array([float(v) for v in pos]) if pos is not None and len(pos) == 3 else None)
        ident = _frame_macro(seg, i, "SegmentIdentificationSequence")
        segments.append(0 if labelmap_type else int(getattr(ident, "ReferencedSegmentNumber", 1)))
        ori = getattr(_frame_macro(seg, i, "PlaneOrientationSequence"), "ImageOrientationPatient", None)
        if ori is not None and len(ori) == 6:
            o = np.array([float(v) for v in ori])
            if orientation is None:
                orientation = o
            elif np.max(np.abs(o - orientation)) > 1e-3:
                raise UnsupportedFormatError("The SEG's frames have different orientations; medview reads SEGs "
                                             "whose frames form one stack of parallel slices")
        measures = _frame_macro(seg, i, "PixelMeasuresSequence")
        ps = getattr(measures, "PixelSpacing", None)
        if spacing is None and ps is not None and len(ps) == 2:
            spacing = (float(ps[0]), float(ps[1]))
    return positions, segments, orientation, spacing or (1.0, 1.0)


def _own_grid(seg: Any, positions: list[np.ndarray | None], orientation: np.ndarray | None,
              spacing: tuple[float, float]) -> tuple[Geometry, list[int]]:
    """A grid from the SEG's plane positions; returns it and each frame's slice index."""
    rows, cols = int(seg.Rows), int(seg.Columns)
    if orientation is None or any(p is None for p in positions):
        if len({tuple(p) for p in positions if p is not None}) > 1:
            raise UnsupportedFormatError("The SEG's frames have positions but no orientation")
        origin = positions[0] if positions and positions[0] is not None else np.zeros(3)
        return Geometry((1, rows, cols), (spacing[1], spacing[0], 1.0), tuple(origin)), [0] * len(positions)
    row, col = orientation[:3] / np.linalg.norm(orientation[:3]), orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    pos = np.array(positions, dtype=float)
    dist = pos @ normal
    distinct = np.unique(np.round(dist, 3))
    measures = _frame_macro(seg, 0, "PixelMeasuresSequence")
    step = float(getattr(measures, "SpacingBetweenSlices", 0) or 0)
    if step <= 0:
        gaps = np.diff(distinct)
        step = float(gaps.min()) if gaps.size else float(getattr(measures, "SliceThickness", 0) or 1.0)
    first = pos[int(np.argmin(dist))]
    k = (dist - dist.min()) / step
    if np.max(np.abs(k - np.rint(k)), initial=0) > _GRID_TOL_VOXELS:
        raise UnsupportedFormatError(f"The SEG's frames are not regularly spaced ({step:.3g} mm steps expected); "
                                     "open it onto the image it was drawn on instead")
    sideways = (pos - first) - np.outer(dist - dist.min(), normal)
    if np.max(np.linalg.norm(sideways, axis=1), initial=0) > _GRID_TOL_VOXELS * min(spacing):
        raise UnsupportedFormatError("The SEG's frames are sheared (not stacked along their normal); open it onto "
                                     "the image it was drawn on instead")
    index = [int(v) for v in np.rint(k)]
    geometry = Geometry((max(index) + 1, rows, cols), (spacing[1], spacing[0], step), tuple(first),
                        tuple(np.column_stack([row, col, normal]).reshape(-1)))
    return geometry, index


def _reference_slices(seg: Any, name: str, reference: Volume, positions: list[np.ndarray | None],
                      orientation: np.ndarray | None, spacing: tuple[float, float]) -> list[int]:
    """Each frame's slice index on the reference grid; SegGridMismatchError if a frame is off its slices."""
    g = reference.geometry
    rows, cols = int(seg.Rows), int(seg.Columns)
    where = (f"{name} ({cols}x{rows} pixels of {spacing[1]:.3g} x {spacing[0]:.3g} mm) does not lie on the "
             f"slices of the open image ({_describe_grid(g)})")
    if (rows, cols) != g.shape[1:]:
        raise SegGridMismatchError(where)
    if orientation is None or any(p is None for p in positions):
        if g.shape[0] == 1:
            return [0] * len(positions)
        raise SegGridMismatchError(f"{where}: its frames have no position in the patient")
    row, col = orientation[:3] / np.linalg.norm(orientation[:3]), orientation[3:] / np.linalg.norm(orientation[3:])
    pos = np.array(positions, dtype=float)
    last = pos + row * spacing[1] * (cols - 1) + col * spacing[0] * (rows - 1)  # centre of the last pixel
    first_idx, last_idx = g.world_to_index(pos), g.world_to_index(last)
    z = np.rint(first_idx[:, 2])
    expected_first = np.column_stack([np.zeros_like(z), np.zeros_like(z), z])
    expected_last = np.column_stack([np.full_like(z, cols - 1), np.full_like(z, rows - 1), z])
    error = max(np.max(np.abs(first_idx - expected_first), initial=0),
                np.max(np.abs(last_idx - expected_last), initial=0))
    if error > _GRID_TOL_VOXELS:
        raise SegGridMismatchError(f"{where}: frames are up to {error:.2f} voxels off")
    outside = int(np.sum((z < 0) | (z >= g.shape[0])))
    if outside:
        raise SegGridMismatchError(f"{where}: {outside} frame(s) lie beyond the first or last slice")
    return [int(v) for v in z]


def read_seg(path: str | os.PathLike[str], reference: Volume | None = None,
             task: TaskContext | None = None) -> LabelMap:
    """Read a DICOM SEG into a :class:`LabelMap` (one label per segment).

    Parameters
    ----------
    path
        The SEG file.
    reference
        The image the segmentation belongs to: frames are placed on its slices by their Image Position
        (Patient).  Raises :class:`SegGridMismatchError` when they do not lie on its voxels (the caller may
        then read without a reference and resample).  Without a reference the grid spans the SEG's frames.

    Returns
    -------
    LabelMap
        With the segments' names and colours as the label table and an extra ``warnings`` attribute
        (list of str): a fractional SEG thresholded at 50 %, a SEG made on another series, ...

    Raises
    ------
    MedviewError
        Not a SEG, unreadable, or segments that overlap (a label map holds one label per voxel).
    """
    path = os.fspath(path)
    report(task, 0.0, f"Reading {os.path.basename(path)}", force=True)
    seg = _open_seg(path)
    warnings: list[str] = []
    kind = str(getattr(seg, "SegmentationType", "BINARY"))
    if kind not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise UnsupportedFormatError(f"{os.path.basename(path)} has segmentation type {kind!r}; medview reads "
                                     "BINARY, FRACTIONAL and LABELMAP")
    if getattr(seg, "is_tiled", False) and str(getattr(seg, "DimensionOrganizationType", "")) == "TILED_FULL":
        raise UnsupportedFormatError(f"{os.path.basename(path)} is a tiled (slide microscopy) segmentation")
    mapping, table = _segment_table(seg)
    positions, segments, orientation, spacing = _frames_info(seg)
    if reference is not None:
        geometry = reference.geometry
        slices = _reference_slices(seg, os.path.basename(path), reference, positions, orientation, spacing)
        ref_series = {str(item.SeriesInstanceUID) for item in getattr(seg, "ReferencedSeriesSequence", [])}
        if reference.metadata.series_uid and ref_series and reference.metadata.series_uid not in ref_series:
            warnings.append(f"{os.path.basename(path)} was drawn on series {', '.join(sorted(ref_series))}, not on "
                            f"the open series {reference.metadata.series_uid}; it was placed by patient position")
    else:
        geometry, slices = _own_grid(seg, positions, orientation, spacing)

    max_value = max(mapping.values(), default=1)
    out = np.zeros(geometry.shape, dtype=np.uint8 if max_value < 256 else np.uint16)
    threshold = 1
    if kind == "FRACTIONAL":
        top = int(getattr(seg, "MaximumFractionalValue", 255) or 255)
        threshold = top // 2 + 1 if top > 1 else 1
        warnings.append(f"{os.path.basename(path)} holds fractional segments: voxels at 50 % or more were kept")
    segment_lut = np.zeros(max(mapping, default=0) + 1, dtype=out.dtype)
    for number, value in mapping.items():
        segment_lut[number] = value
    overlaps: dict[tuple[int, int], list[int]] = {}
    names = {entry.value: entry.name for entry in table}
    n = len(slices)
    for i, (z, number) in enumerate(zip(slices, segments, strict=True)):
        check_cancel(task)
        frame = np.asarray(seg.get_stored_frame(i, as_index=True))
        target = out[z]
        if kind == "LABELMAP":  # frames hold segment numbers; one label per pixel by construction
            if int(frame.max(initial=0)) >= segment_lut.size:
                raise CorruptFileError(f"Frame {i + 1} of {os.path.basename(path)} holds segment number "
                                       f"{int(frame.max())}, which the SEG does not describe")
            present = frame > 0
            target[present] = segment_lut[frame[present]]
        else:
            mask = frame >= threshold
            value = mapping.get(number)
            if value is None:
                raise CorruptFileError(f"Frame {i + 1} of {os.path.basename(path)} refers to segment {number}, "
                                       "which the SEG does not describe")
            clash = mask & (target != 0) & (target != value)
            if clash.any():
                for other in np.unique(target[clash]):
                    a, b = sorted((int(other), int(value)))
                    entry = overlaps.setdefault((a, b), [0, z, z])
                    entry[0] += int(np.count_nonzero(target[clash] == other))
                    entry[1], entry[2] = min(entry[1], z), max(entry[2], z)
            target[mask] = value
        report(task, (i + 1) / max(n, 1), f"Read {i + 1} of {n} frames")
    if overlaps:
        parts = [f"'{names.get(a, a)}' and '{names.get(b, b)}' share {count} voxel(s) on slice(s) {lo + 1}-{hi + 1}"
                 for (a, b), (count, lo, hi) in sorted(overlaps.items())]
        raise MedviewError(f"The segments of {os.path.basename(path)} overlap ({'; '.join(parts)}): a label map "
                           "holds one label per voxel, so they cannot be opened together")
    labels = LabelMap(out, geometry, labels=table, source=path)
    labels.warnings = warnings  # type: ignore[attr-defined]
    return labels
