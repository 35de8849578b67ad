"""Mutated DICOM files for the fuzz tests: a deterministic generator over real files (no medview import).

Seeds: pydicom's test files (its installed ``data/test_files``), pydicom-data's files that are present
on this machine (found with :func:`pydicom.data.get_testdata_file` with ``download=False``: nothing is
ever downloaded), and one slice of the bundled sample CT (JPEG-LS) transcoded by GDCM into every transfer
syntax medview reads (when ``gdcmconv`` is installed).

Mutation families (``FAMILIES``): byte flips, splices (bytes of another place or file), truncation, wrong
element lengths, lies about Rows / Columns / BitsAllocated / NumberOfFrames / SamplesPerPixel, NaN / inf /
zero geometry, non-numeric numbers, and a wrong transfer syntax.  Case ``i`` of seed ``s`` is always the
same file.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
REPO = Path(__file__).resolve().parents[2]
SAMPLE_SLICE = REPO / "resources" / "samples" / "chest_ct" / "dicom" / "image0024.dcm"
# gdcmconv options -> the transfer syntaxes made from the sample slice
SAMPLE_SYNTAXES = {
    "raw": ["--raw"], "implicit": ["--raw", "--implicit"], "j2k": ["--j2k"], "rle": ["--rle"],
    "jpeg_lossless": ["--jpeg"], "jpegls": None,  # gdcmconv --jpeg is lossless JPEG (process 14)
}
MAX_SEED_BYTES = 2 * 1024 * 1024  # larger seeds make each case slow without finding more
SKIP_SEEDS = {"README.txt", "crayons.icc", "rtplan.dump", "rtstruct.dump", "test1.json", "test_PN.json", "zipMR.gz"}


@dataclass(frozen=True)
class Case:
    name: str  # e.g. "0042-dims-CT_small.dcm"
    family: str
    seed_file: str
    data: bytes


def _local_pydicom_data() -> list[Path]:
    """pydicom-data's files that are on disk (no download is triggered)."""
    try:
        import data_store  # pydicom-data's package
    except ImportError:
        return []
    folder = Path(data_store.__file__).parent / "data"
    found = []
    from pydicom.data import get_testdata_file

    for path in sorted(folder.glob("*.dcm")) if folder.is_dir() else []:
        got = get_testdata_file(path.name, download=False)
        if got and Path(got).is_file() and Path(got).stat().st_size < MAX_SEED_BYTES:
            found.append(Path(got))
    return found


def seed_files(work: Path) -> list[Path]:
    """Every seed file: pydicom's, pydicom-data's local ones, the sample slice in each transfer syntax."""
    seeds = [p for p in sorted(PYDICOM_FILES.glob("*.dcm"))
             if p.name not in SKIP_SEEDS and p.stat().st_size < MAX_SEED_BYTES]
    seeds += _local_pydicom_data()
    gdcmconv = shutil.which("gdcmconv")
    if SAMPLE_SLICE.is_file():
        work.mkdir(parents=True, exist_ok=True)
        for name, argv in SAMPLE_SYNTAXES.items():
            out = work / f"sample_{name}.dcm"
            if argv is None:
                shutil.copy(SAMPLE_SLICE, out)
            elif gdcmconv is None:
                continue
            elif not out.exists():
                subprocess.run([gdcmconv, "--quiet", *argv, str(SAMPLE_SLICE), str(out)], check=True,
                               capture_output=True, timeout=60)
            seeds.append(out)
    return seeds


# -- mutations on bytes -----------------------------------------------------------------------------------
def _body_start(data: bytes) -> int:
    return 132 if data[128:132] == b"DICM" else 0


def flip(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 16, 64])):
        i = rng.randrange(_body_start(data), len(out))
        out[i] = rng.choice([out[i] ^ (1 << rng.randrange(8)), 0x00, 0xFF, rng.randrange(256)])
    return bytes(out)


def splice(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    donor = rng.choice(others) if others else data
    n = rng.choice([4, 16, 256, 4096])
    a = rng.randrange(len(donor))
    chunk = donor[a:a + n]
    at = rng.randrange(_body_start(data), len(data))
    if rng.random() < 0.5:
        return data[:at] + chunk + data[at + len(chunk):]  # overwrite
    return data[:at] + chunk + data[at:]  # insert


def truncate(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    cut = rng.choice([rng.randrange(len(data)), len(data) - rng.randrange(1, 64), len(data) // 2, 140])
    return data[:max(cut, 1)]


def wrong_length(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """Change the length field of an element (found by its explicit VR letters)."""
    out = bytearray(data)
    spots = [i for i in range(_body_start(data), len(data) - 8)
             if data[i + 4:i + 6] in (b"US", b"IS", b"DS", b"UI", b"CS", b"LO", b"OB", b"OW", b"SQ", b"UN")]
    if not spots:  # implicit VR: a 4-byte length after any group 0028 tag
        spots = [i for i in range(_body_start(data), len(data) - 8) if data[i:i + 2] == b"\x28\x00"]
        if not spots:
            return flip(data, rng, [])
        i = rng.choice(spots)
        out[i + 4:i + 8] = struct.pack("<I", rng.choice([0, 1, 3, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF]))
        return bytes(out)
    i = rng.choice(spots)
    if data[i + 4:i + 6] in (b"OB", b"OW", b"SQ", b"UN"):
        out[i + 8:i + 12] = struct.pack("<I", rng.choice([0, 2, 0xFFFFFFFF, 0x7FFFFFFF, len(data)]))
    else:
        out[i + 6:i + 8] = struct.pack("<H", rng.choice([0, 1, 3, 0xFFFF, 0x8000]))
    return bytes(out)


# -- mutations through pydicom ------------------------------------------------------------------------
_PENDING: list[tuple[bytes, bytes]] = []  # (marker written by pydicom, raw text to put in its place)


def _raw(ds: pydicom.Dataset, keyword: str, text: str) -> None:
    """Give ``keyword`` the value ``text`` as written, valid for its VR or not: pydicom writes a valid marker
    number that :func:`_mutate_dataset` then replaces in the bytes (length field included)."""
    marker = f"{77700 + len(_PENDING)}"  # valid IS and DS
    ds[tag_for_keyword(keyword)] = DataElement(tag_for_keyword(keyword), pydicom.datadict.dictionary_VR(
        tag_for_keyword(keyword)), marker)
    value = text.encode("latin-1")
    _PENDING.append(((marker + " ").encode(), value + (b" " if len(value) % 2 else b"")))


def _replace_values(data: bytes) -> bytes:
    out = data
    for marker, value in _PENDING:
        i = out.find(marker)
        if i < 6:
            continue
        for size, start in ((2, i - 2), (4, i - 4)):  # explicit VR short length, or implicit VR
            for order in "<>":
                fmt = order + ("H" if size == 2 else "I")
                if struct.unpack(fmt, out[start:i])[0] == len(marker):
                    out = out[:start] + struct.pack(fmt, len(value)) + value + out[i + len(marker):]
                    break
            else:
                continue
            break
    _PENDING.clear()
    return out


def _binary(ds: pydicom.Dataset, keyword: str, value: int) -> None:
    ds[tag_for_keyword(keyword)] = DataElement(tag_for_keyword(keyword), "US", value & 0xFFFF)


def _mutate_dataset(data: bytes, edit: Callable[[pydicom.Dataset], None]) -> bytes:
    from io import BytesIO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(BytesIO(data), force=True)
        _PENDING.clear()
        edit(ds)
        if ds.file_meta.get("TransferSyntaxUID", "") and "PixelData" in ds:
            ds["PixelData"].is_undefined_length = bool(getattr(ds.file_meta.TransferSyntaxUID, "is_compressed",
                                                               False)) or ds["PixelData"].is_undefined_length
        out = BytesIO()
        try:
            ds.save_as(out, enforce_file_format=False)
        except Exception:
            _PENDING.clear()
            raise
    return _replace_values(out.getvalue())


def dims(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    def edit(ds: pydicom.Dataset) -> None:
        rows, cols = int(ds.get("Rows", 64) or 64), int(ds.get("Columns", 64) or 64)
        choice = rng.choice(["Rows", "Columns", "both", "BitsAllocated", "NumberOfFrames", "SamplesPerPixel",
                             "BitsStored"])
        if choice in ("Rows", "Columns", "both"):
            for kw, n in (("Rows", rows), ("Columns", cols)):
                if choice in (kw, "both"):
                    _binary(ds, kw, rng.choice([0, 1, n + 1, n * 2, n * 16, 65535, max(n // 2, 1)]))
        elif choice == "BitsAllocated":
            _binary(ds, "BitsAllocated", rng.choice([0, 1, 7, 8, 12, 16, 24, 32, 64, 65535]))
        elif choice == "BitsStored":
            _binary(ds, "BitsStored", rng.choice([0, 1, 17, 33, 65535]))
        elif choice == "SamplesPerPixel":
            _binary(ds, "SamplesPerPixel", rng.choice([0, 2, 3, 4, 65535]))
        else:
            _raw(ds, "NumberOfFrames", rng.choice(["2", "3", "100", "5000", "2147483647", "99999999999", "-1", "0",
                                                   "abc", "1\\2", "1e9", "nan", "inf"]))
    return _mutate_dataset(data, edit)


def geometry(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    bad = ["nan", "inf", "-inf", "0", "-1", "1e308", "1e-308"]

    def edit(ds: pydicom.Dataset) -> None:
        choice = rng.choice(["position", "orientation", "spacing", "thickness", "all"])
        if choice in ("position", "all"):
            _raw(ds, "ImagePositionPatient", "\\".join(rng.choice(bad + ["0", "1.5"]) for _ in range(3)))
        if choice in ("orientation", "all"):
            _raw(ds, "ImageOrientationPatient", rng.choice(
                ["0\\0\\0\\0\\0\\0", "1\\0\\0\\1\\0\\0", "nan\\0\\0\\0\\1\\0", "1\\0\\0\\0\\inf\\0", "1\\0\\0",
                 "1e308\\0\\0\\0\\1e308\\0", "-0\\-0\\-0\\1\\0\\0"]))
        if choice in ("spacing", "all"):
            _raw(ds, "PixelSpacing", "\\".join(rng.choice(bad) for _ in range(2)))
        if choice in ("thickness", "all"):
            _raw(ds, rng.choice(["SliceThickness", "SpacingBetweenSlices"]), rng.choice(bad))
    return _mutate_dataset(data, edit)


NUMERIC_KEYWORDS = ["InstanceNumber", "SeriesNumber", "AcquisitionNumber", "WindowCenter", "WindowWidth",
                    "RescaleSlope", "RescaleIntercept", "NumberOfFrames", "SliceThickness", "PixelSpacing",
                    "ImagePositionPatient", "GantryDetectorTilt", "SpacingBetweenSlices"]


def non_numeric(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    def edit(ds: pydicom.Dataset) -> None:
        for keyword in rng.sample(NUMERIC_KEYWORDS, rng.choice([1, 2, 4])):
            _raw(ds, keyword, rng.choice(["abc", "x", "1\\2\\3", "", " ", "--1", "1,5", "\x00\x00", "1e999", "NaN"]))
    return _mutate_dataset(data, edit)


def transfer_syntax(data: bytes, rng: random.Random, _: list[bytes]) -> bytes:
    """Another (or no real) TransferSyntaxUID in the file meta, the dataset's encoding unchanged."""
    head = b"\x02\x00\x10\x00UI"
    i = data.find(head, 128)
    if i < 0:
        raise ValueError("no file meta")
    n = struct.unpack("<H", data[i + 6:i + 8])[0]
    value = rng.choice(["1.2.3", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5",
                        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2",
                        "1.2.840.10008.1.2", "1.2.840.10008.5.1.4.1.1.2", "abc"]).encode()
    value += b"\x00" * (len(value) % 2)
    return data[:i + 6] + struct.pack("<H", len(value)) + value + data[i + 8 + n:]


FAMILIES: dict[str, Callable[[bytes, random.Random, list[bytes]], bytes]] = {
    "flip": flip, "splice": splice, "truncate": truncate, "length": wrong_length, "dims": dims,
    "geometry": geometry, "nonnumeric": non_numeric, "syntax": transfer_syntax,
}


def generate(seeds: list[Path], n: int, seed: int = 0, start: int = 0) -> list[Case]:
    """Cases ``start .. start+n-1`` of generator ``seed``: every family in turn, seeds drawn at random."""
    datas = {p: p.read_bytes() for p in seeds}
    others = list(datas.values())
    families = list(FAMILIES)
    cases = []
    for i in range(start, start + n):
        rng = random.Random(seed * 1_000_003 + i)
        family = families[i % len(families)]
        source = rng.choice(seeds)
        try:
            mutated = FAMILIES[family](datas[source], rng, others)
        except Exception:  # pydicom cannot round-trip this seed: flip its bytes instead
            family = "flip"
            mutated = flip(datas[source], rng, others)
        cases.append(Case(f"{i:05d}-{family}-{source.name}", family, source.name, mutated))
    return cases


def write_cases(cases: list[Case], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        paths.append(path)
    return paths


if __name__ == "__main__":  # pragma: no cover - a look at the families
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        made = generate(seed_files(Path(tmp) / "seeds"), int(sys.argv[1]) if len(sys.argv) > 1 else 16)
        for c in made:
            print(c.name, len(c.data), os.path.basename(c.seed_file))
