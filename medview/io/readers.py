"""Opening images: DICOM (folders, files, zip archives) and the research formats.

``scan(path)`` lists what can be opened without reading pixels; ``open_image(path, series=None)``
reads one image into a :class:`~medview.core.volume.Volume`.  NIfTI, NRRD and MetaImage go through
SimpleITK, which already converts NIfTI's RAS to ITK's LPS: that is the one place the conversion
happens.  PNG/JPEG/TIFF/BMP become single-slice volumes.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medview.core.errors import (
    AmbiguousInputError,
    CorruptFileError,
    InputNotFoundError,
    MedviewError,
    ResourceLimitError,
    SeriesNotFoundError,
    UnsupportedFormatError,
)
from medview.core.geometry import Geometry
from medview.core.modality import UNKNOWN as UNKNOWN_MODALITY
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, VolumeMetadata
from medview.io import nifti
from medview.io.dicom.headers import looks_like_dicom
from medview.io.dicom.load import MiddleSliceCallback, load_series
from medview.io.dicom.scan import ScanResult, SeriesInfo, scan_dicom
from medview.io.limits import check_allocation, format_bytes, memory_budget_bytes
from medview.io.nifti import NiftiLayout

ITK_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img")
PICTURE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class FileImageInfo:
    """What :func:`scan` reports for a NIfTI/NRRD/MHA/picture file (mirrors ``SeriesInfo.summary``)."""

    path: str
    geometry: Geometry
    pixel_type: str
    components: int
    kind: str
    warnings: list[str] = field(default_factory=list)
    modality: str = UNKNOWN_MODALITY  # what the file states (NRRD/MHA key), else "unknown"; never the format
    nifti: NiftiLayout | None = None  # set for .nii/.nii.gz, read by medview.io.nifti rather than SimpleITK

    @property
    def uid(self) -> str:
        return os.path.basename(self.path)

    def summary(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "uid": self.uid, "kind": self.kind, "modality": self.modality, "description": os.path.basename(self.path),
            "size": list(g.size_xyz), "spacing_mm": [round(s, 6) for s in g.spacing],
            "origin_mm": [round(o, 6) for o in g.origin], "orientation": g.orientation_code(),
            "direction": [round(d, 6) for d in g.direction], "pixel_type": self.pixel_type,
            "components": self.components, "files": 1, "warnings": list(self.warnings),
        }


def _is_itk_file(path: str) -> bool:
    return path.lower().endswith(ITK_EXTENSIONS + PICTURE_EXTENSIONS)


def _sniff_dicom(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return looks_like_dicom(fh.read(132))
    except OSError:
        return False


def scan(path: str | os.PathLike[str], task: TaskContext | None = None) -> list[SeriesInfo | FileImageInfo]:
    """List the images at ``path`` (DICOM series or one research-format file) without reading pixels."""
    path = os.fspath(path)
    if not os.path.exists(path):
        indexed = _from_study_database(path)
        if indexed is not None:
            return indexed
        raise InputNotFoundError(f"No such file or folder: {path}"
                                 + (" (nor a study or series in the study database)" if _UID.match(path) else ""))
    if os.path.isfile(path) and _is_itk_file(path):
        return ScanResult([_itk_info(path)], source=path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise CorruptFileError(f"The file {path} is empty (0 bytes)")
    if os.path.isfile(path) and not path.lower().endswith(".zip") and not _sniff_dicom(path):
        raise UnsupportedFormatError(
            f"{path} is not a DICOM file and its extension is not one of "
            f"{', '.join(ITK_EXTENSIONS + PICTURE_EXTENSIONS)}")
    return scan_dicom(path, task)


_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


def scan_studies(uids: list[str], task: TaskContext | None = None) -> ScanResult:
    """The series of several studies (or series) of the study database, in the order given, from the index."""
    found: list = []
    for uid in uids:
        check_cancel(task)
        indexed = _from_study_database(uid)
        if indexed is None:
            raise InputNotFoundError(f"The study database does not know {uid}")
        found.extend(indexed)
    return ScanResult(found, source=" ".join(uids))


def _from_study_database(uid: str) -> ScanResult | None:
    """The series of a study (or the one series) the study database knows by this UID, read from the index
    (no header scan); None when ``uid`` is not a UID or the database does not know it."""
    if not _UID.match(uid):
        return None
    from medview.io.studydb import StudyDatabase, database_path

    if not database_path().exists():
        return None  # never create a database just to look
    with StudyDatabase() as db:
        study = db.study_of(uid)
        if study is None:
            return None
        wanted = [uid] if study != uid else [s["SeriesInstanceUID"] for s in db.list_series(study)]
        found, errors = [], []
        for series_uid in wanted:
            try:
                found.extend(db.series_infos(series_uid))
            except MedviewError as exc:  # every file of this series is missing
                errors.append(exc)
    if not found and errors:
        raise errors[0]
    return ScanResult(found, source=uid)


def open_image(path: str | os.PathLike[str], series: str | None = None, task: TaskContext | None = None,
               on_middle_slice: MiddleSliceCallback | None = None) -> Volume:
    """Read one image from ``path`` into a :class:`Volume` in real units (HU for CT).

    Parameters
    ----------
    path
        DICOM folder, file or zip; or a NIfTI, NRRD, MHA/MHD, PNG, JPEG or TIFF file.
    series
        The ``uid`` of the series to open, as :func:`scan` reports it; needed when the input holds
        several series (else the largest volume is chosen only if it is the sole one).
    """
    path = os.fspath(path)
    found = scan(path, task=None)
    chosen = found[0] if found and isinstance(found[0], FileImageInfo) else select_series(found, series, path)
    return load_info(chosen, task=task, on_middle_slice=on_middle_slice)  # type: ignore[arg-type]


def load_info(info: SeriesInfo | FileImageInfo, task: TaskContext | None = None,
              on_middle_slice: MiddleSliceCallback | None = None) -> Volume:
    """Load one entry of a :func:`scan` result (what the series browser does on double-click)."""
    if isinstance(info, FileImageInfo):
        volume = _read_itk(info, task)
        if on_middle_slice is not None:
            on_middle_slice(volume, volume.geometry.shape[0] // 2)
        return volume
    return load_series(info, task=task, on_middle_slice=on_middle_slice)


def select_series(found: list[SeriesInfo], series: str | None, path: str) -> SeriesInfo:
    """Pick the requested series, or the only one; explain the choice otherwise."""
    if series:
        for s in found:
            if series in (s.uid, s.series_uid) or (s.series_number is not None and series == str(s.series_number)):
                if series == s.series_uid and sum(x.series_uid == series for x in found) > 1:
                    continue  # a split series: the caller must name the part
                return s
        listing = ", ".join(s.uid for s in found[:8])
        raise SeriesNotFoundError(f"Series {series} is not in {path}; it holds: {listing}")
    if len(found) == 1:
        return found[0]
    listing = "; ".join(f"{s.uid} ({s.modality} {s.description or 'no description'}, {s.n_slices} slices)"
                        for s in found[:6])
    raise AmbiguousInputError(f"{path} holds {len(found)} series; choose one with series=...: {listing}")


# -- SimpleITK formats ---------------------------------------------------------------------------
def _gzip_claimed_size(path: str) -> int | None:
    """Uncompressed size from the gzip trailer (modulo 4 GiB; a lower bound)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"\x1f\x8b":
                return None
            fh.seek(-4, os.SEEK_END)
            return struct.unpack("<I", fh.read(4))[0]
    except OSError:
        return None


def _nifti_info(path: str) -> FileImageInfo:
    layout, geometry, warnings = nifti.read_layout(path)
    kind = "image2d" if geometry.shape[0] == 1 else "volume"
    return FileImageInfo(path, geometry, nifti.pixel_type_text(layout), layout.components, kind, warnings,
                         nifti=layout)


def _itk_info(path: str) -> FileImageInfo:
    import SimpleITK as sitk

    if os.path.getsize(path) == 0:
        raise CorruptFileError(f"The file {path} is empty (0 bytes)")
    if nifti.is_nifti_path(path):
        return _nifti_info(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise CorruptFileError(f"Cannot read the header of {path}: {_itk_reason(exc)}") from None
    size = list(reader.GetSize())
    dim = len(size)
    warnings = []
    if dim == 2:
        size.append(1)
    elif dim == 4:
        warnings.append(f"4D image with {size[3]} volumes: only the first is opened")
    elif dim != 3:
        raise UnsupportedFormatError(f"{path} has {dim} dimensions; medview opens 2D and 3D images")
    spacing = list(reader.GetSpacing())[:3] + [1.0] * (3 - min(dim, 3))
    origin = list(reader.GetOrigin())[:3] + [0.0] * (3 - min(dim, 3))
    d = np.array(reader.GetDirection(), dtype=float).reshape(dim, dim)
    direction = np.eye(3)
    k = min(dim, 3)
    direction[:k, :k] = d[:k, :k]
    try:
        geometry = Geometry((size[2], size[1], size[0]), tuple(spacing), tuple(origin), tuple(direction.reshape(-1)))
    except MedviewError as exc:
        raise CorruptFileError(f"{path} has invalid geometry: {exc}") from None
    components = reader.GetNumberOfComponents()
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    itemsize = np.dtype(sitk.GetArrayViewFromImage(sitk.Image(1, 1, reader.GetPixelID())).dtype).itemsize \
        if components == 1 else 8
    needed = size[0] * size[1] * size[2] * components * itemsize
    check_allocation(needed, f"{os.path.basename(path)} ({size[0]}x{size[1]}x{size[2]})")
    claimed = _gzip_claimed_size(path)
    if claimed is not None and path.lower().endswith(".gz") and claimed > memory_budget_bytes():
        raise ResourceLimitError(f"{path} decompresses to {format_bytes(claimed)}, over the memory budget")
    kind = "image2d" if size[2] == 1 or path.lower().endswith(PICTURE_EXTENSIONS) else "volume"
    return FileImageInfo(path, geometry, pixel, components, kind, warnings, modality=_stated_modality(reader))


def _stated_modality(reader) -> str:
    """The modality a NRRD key (``modality:=CT``) or a MetaImage ``Modality = MET_MOD_CT`` states, else
    ``"unknown"``: the file format is never taken for a modality."""
    for key in reader.GetMetaDataKeys():
        if key.strip().lower() in ("modality", "dicom_modality", "0008|0060"):
            value = reader.GetMetaData(key).strip().upper().removeprefix("MET_MOD_")
            if value.isalnum() and 2 <= len(value) <= 16 and value not in ("UNKNOWN", "OTHER"):
                return value
    return UNKNOWN_MODALITY


_SOURCE_PATH = re.compile(r"\S+\.(?:cxx|cpp|cc|hxx|txx|h)(?::\d+)*:?")
_LIBRARY_PREFIX = re.compile(r"^(?:sitk::ERROR|itk::ERROR|ITK ERROR|ERROR):\s*|^\w+\(0x[0-9a-fA-F]+\):\s*"
                             r"|^\[nrrd\]\s*\w+:\s*")


def _itk_reason(exc: Exception) -> str:
    """One plain sentence from a SimpleITK/ITK error: no C++ source paths, object addresses or prefixes."""
    parts = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith("Exception thrown in SimpleITK"):
            continue
        for _ in range(3):
            line = _LIBRARY_PREFIX.sub("", _SOURCE_PATH.sub("", line).strip()).strip()
        if line:
            parts.append(line)
    text = " ".join(parts)
    last = parts[-1] if parts else ""
    if "Unable to determine ImageIO reader" in text:
        return "its header is not recognised (not a NIfTI, NRRD or MetaImage file, or a damaged one)"
    if "File cannot be read" in text or "data not read completely" in text:
        return "its voxel data cannot be read completely (the file is truncated or damaged)"
    return (last or "unreadable")[:300]


def _read_itk(info: FileImageInfo, task: TaskContext | None) -> Volume:
    import SimpleITK as sitk

    report(task, 0.0, f"Reading {os.path.basename(info.path)}", force=True)
    if info.nifti is not None:
        return _volume(info, nifti.read_voxels(info.path, info.nifti, task), task)
    try:
        image = sitk.ReadImage(info.path)
    except RuntimeError as exc:
        raise CorruptFileError(f"Cannot read {info.path}: {_itk_reason(exc)}") from None
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        image = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, 0])
    array = sitk.GetArrayFromImage(image)
    del image
    if (info.components == 1 and array.ndim == 2) or (info.components > 1 and array.ndim == 3):
        array = array[None]
    if info.components > 1 and array.shape[-1] not in (3, 4):
        raise UnsupportedFormatError(f"{info.path} has {info.components} components per voxel; medview shows "
                                     "grey or RGB(A) images")
    if array.dtype == np.float64:
        array = array.astype(np.float32)
    return _volume(info, array, task)


def _volume(info: FileImageInfo, array: np.ndarray, task: TaskContext | None) -> Volume:
    extra: dict = {}
    if info.kind == "image2d":
        extra["kind"] = "image2d"
        if info.path.lower().endswith(PICTURE_EXTENSIONS):
            # a picture has pixels, not a place in the patient: its grid's directions are made up, so the views
            # show no world letters (A/P/L/R) or slice position and name the plane '2D image', not 'Axial'
            extra.update(patient_frame=False, view_label="2D image")
    meta = VolumeMetadata(modality=info.modality, series_description=os.path.basename(info.path),
                          warnings=list(info.warnings), source=info.path,
                          photometric="RGB" if info.components > 1 else "MONOCHROME2", extra=extra)
    report(task, 1.0, "Done", force=True)
    return Volume(np.ascontiguousarray(array), info.geometry, meta)
