"""``anonymize``: de-identify files, folders, zip archives or a study of the database into a new folder
(issue 19), shared by the CLI and, later, the GUI.

One file at a time (memory stays flat over any number of files): read, refuse or mask burned-in text, apply the
profile (:mod:`medview.io.deid.apply`), write atomically under a name made from hashes of the new UIDs (never a
tag value).  A file that cannot be read or de-identified is reported and skipped; the summary lists them.  The
output folder must be new (missing or empty) and may not lie inside an input; the optional mapping of real
patient IDs to pseudonyms is written where the user says, never inside the output.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.deid.apply import Deidentifier, encode_file
from medview.io.deid.keys import load_key
from medview.io.deid.pixels import BurnedInTextError, Rect, apply_masks, burned_in_reason, masks_for
from medview.io.deid.profile import RETAIN, Options, load_profile


class AnonymizeError(MedviewError):
    """The run cannot start: a bad output folder, a missing input, an unreadable pseudonym list."""


def options_from(retain: list[str] | None) -> Options:
    unknown = [r for r in retain or [] if r not in RETAIN]
    if unknown:
        raise AnonymizeError(f"Unknown --retain {unknown[0]!r}: choose from {', '.join(RETAIN)}")
    return Options(**{RETAIN[r]: True for r in retain or []})


def read_pseudonyms(path: str) -> dict[str, str]:
    """A CSV of ``real_id,pseudonym`` rows (a header row naming them is skipped)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise AnonymizeError(f"Cannot read the pseudonym list {path}: {exc.strerror or exc}") from None
    out: dict[str, str] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not row[1].strip():
            raise AnonymizeError(f"{path}, row {number}: expected two columns, real ID and pseudonym")
        if number == 1 and row[0].strip().lower() in ("patientid", "patient_id", "real_id", "id"):
            continue
        out[row[0].strip()] = row[1].strip()
    return out


def _check_output(out_dir: Path, inputs: list[str], map_out: str | None) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise AnonymizeError(f"The output folder {out_dir} exists and is not empty: give a new folder (de-identified "
                             "files are never written over others)")
    resolved = out_dir.resolve()
    for item in inputs:
        if os.path.exists(item):
            source = Path(item).resolve()
            if resolved == source or source in resolved.parents:
                raise AnonymizeError(f"The output folder {out_dir} is inside the input {item}: give a folder "
                                     "elsewhere")
    if map_out is not None:
        target = Path(map_out).resolve()
        if target == resolved or resolved in target.parents:
            raise AnonymizeError("The mapping of real IDs to pseudonyms may not be written inside the output "
                                 f"folder {out_dir}: it would travel with the de-identified files")


def _sources(inputs: list[str], read: bool = True) -> Iterator[tuple[str, Any]]:
    """(a name for reports, a path or a readable file object) for every file under the inputs, one at a time (a
    zip member is read when its turn comes); with ``read=False`` the names only (to count them)."""
    from medview.io.studydb import files_or_studies

    for item in files_or_studies(inputs):
        path = Path(item)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                yield str(f), str(f)
        elif zipfile.is_zipfile(path) if path.is_file() else False:
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if not member.is_dir():
                        yield f"{path}:{member.filename}", io.BytesIO(archive.read(member)) if read else None
        elif path.is_file():
            yield str(path), str(path)
        else:
            raise InputNotFoundError(f"No such file, folder or study in the database: {item}")


def _check_complete(ds) -> None:
    """A truncated file reads without error up to where it ends: an image without its pixels, or with fewer
    bytes than its rows, columns, samples, bits and frames need, is reported, not written."""
    from pydicom.uid import UID

    sop_name = UID(str(ds.get("SOPClassUID", ""))).name
    is_image = "Image Storage" in sop_name or "Rows" in ds
    if not is_image:
        return
    if "Rows" not in ds or "Columns" not in ds:
        raise AnonymizeError(f"a {sop_name} file without Rows and Columns (truncated?)")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise AnonymizeError("the file ends before its pixel data (truncated?)")
    if "PixelData" in ds and not ds.file_meta.TransferSyntaxUID.is_compressed:
        need = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) *
                int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("BitsAllocated", 16)) + 7) // 8
        if len(ds.PixelData) < need:
            raise AnonymizeError(f"the pixel data holds {len(ds.PixelData)} bytes, its image needs {need} (truncated?)")


def _name(ds) -> str:
    def short(value: str, n: int) -> str:
        return hashlib.sha256(value.encode()).hexdigest()[:n]

    return os.path.join(short(str(ds.get("StudyInstanceUID", "")), 12), short(str(ds.get("SeriesInstanceUID", "")),
                                                                                12),
                        short(str(ds.get("SOPInstanceUID", "")), 20) + ".dcm")


def anonymize(inputs: list[str], out_dir: str, options: Options | None = None, key_file: str | None = None,
              pseudonyms: Mapping[str, str] | None = None, map_out: str | None = None,
              masks: Mapping[tuple[str, int, int], list[Rect]] | None = None,
              task: TaskContext | None = None) -> dict[str, Any]:
    """De-identify every file under ``inputs`` into the new folder ``out_dir``; the summary as a plain dict
    (``written``, ``failed``: [(name, reason)], ``skipped`` non-DICOM files, ``seconds``, ``output``)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from medview.core.atomic import atomic_write_bytes

    out = Path(out_dir)
    _check_output(out, inputs, map_out)
    for item in inputs:
        from medview.io.studydb import knows_uid

        if not os.path.exists(item) and not knows_uid(item):
            raise InputNotFoundError(f"No such file, folder or study in the database: {item}")
    deid = Deidentifier(load_profile(), options or Options(), load_key(key_file), dict(pseudonyms or {}))
    started = time.perf_counter()
    written, skipped = 0, 0
    failed: list[tuple[str, str]] = []
    seen_patients: dict[str, str] = {}
    total = sum(1 for _ in _sources(inputs, read=False))
    out.mkdir(parents=True, exist_ok=True)
    for index, (name, source) in enumerate(_sources(inputs)):
        check_cancel(task)
        try:
            ds = pydicom.dcmread(source)
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise InvalidDicomError("no SOP Class UID")
        except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError):
            skipped += 1
            continue
        try:
            _check_complete(ds)
            reason = burned_in_reason(ds)
            if reason is not None:
                rects = masks_for(ds, masks or {})
                if rects is None:
                    raise BurnedInTextError(f"may show burned-in text ({reason}); give a mask for "
                                            f"{ds.get('Modality', '?')} {ds.get('Columns', '?')}x{ds.get('Rows', '?')}")
                apply_masks(ds, rects)
            real_id = str(ds.get("PatientID", "") or "")
            deid.dataset(ds)
            seen_patients.setdefault(real_id, str(ds.PatientID))
            data = encode_file(ds)
            target = out / _name(ds)
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
            written += 1
        except MedviewError as exc:
            failed.append((name, str(exc)))
        except Exception as exc:  # one bad file must not end the run; the summary names it
            # the type only: a library's message may quote the file's values (a name, an ID)
            failed.append((name, f"could not be de-identified ({type(exc).__name__})"))
        report(task, (index + 1) / max(total, 1), f"{index + 1} of {total} files")
    if map_out is not None and seen_patients:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["real_id", "pseudonym"])
        writer.writerows(sorted(seen_patients.items()))
        Path(map_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(map_out, rows.getvalue().encode("utf-8"))
    return {"output": str(out), "written": written, "failed": failed, "skipped": skipped,
            "patients": len(seen_patients), "seconds": time.perf_counter() - started,
            "options": (options or Options()).picked(), "profile_edition": deid.profile.edition}
