"""Header values read straight from raw elements (the scan's fast path) equal pydicom's own conversion.

The reference is pydicom reading the same element: every image keyword the scan uses, on every file that
pydicom ships for its own tests, including its character-set files (Latin-1, UTF-8, ISO 2022 Japanese and
Korean, Greek, Hebrew, Arabic, Cyrillic, person names with ideographic and phonetic groups).
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from medview.io.dicom.headers import TAG, _values

DATA = Path(pydicom.__file__).parent / "data"
FILES = sorted([*DATA.glob("test_files/*.dcm"), *DATA.glob("charset_files/*.dcm")])
# sequences are read through pydicom in both paths; the others are values
KEYWORDS = [kw for kw in TAG if not kw.endswith("Sequence") and kw not in ("RedPaletteColorLookupTableData",
                                                                           "SegmentedRedPaletteColorLookupTableData")]


def _reference(ds: pydicom.Dataset, keyword: str) -> list | None:
    """What pydicom converts the element to, as the list of values medview works with."""
    elem = ds.get(TAG[keyword])
    if elem is None or elem.value is None or elem.value == "":
        return None
    value = elem.value
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [str(v) if isinstance(v, PersonName) else v for v in values]


def _same(fast: list, reference: list, vr: str) -> bool:
    """Equal values; for code strings, numbers as text, UIDs, dates and times leading and trailing spaces
    are not significant (PS3.5 6.2), and medview drops them where pydicom keeps them ('DERIVED ')."""
    if len(fast) != len(reference):
        return False
    for f, r in zip(fast, reference, strict=True):
        if isinstance(r, bytes):
            return False  # never produced by either path for these keywords
        if isinstance(r, int | float) and not isinstance(r, bool):
            if float(f) != float(r):  # DS / IS come back as text from the raw bytes
                return False
        elif str(f) != (str(r).strip(" \x00") if vr in ("CS", "DS", "IS", "UI", "DA", "TM", "AS") else str(r)):
            return False
    return True


def _read(path: Path) -> pydicom.Dataset | None:
    try:
        return pydicom.dcmread(path, defer_size=4096, force=True)
    except Exception:  # a few of pydicom's test files are deliberately broken
        return None


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_fast_header_values_equal_pydicoms(path: Path) -> None:
    fast_ds, ref_ds = _read(path), _read(path)
    if fast_ds is None:
        pytest.skip("pydicom cannot read this test file")
    checked = 0
    for keyword in KEYWORDS:
        raw = fast_ds._dict.get(TAG[keyword])
        try:
            reference = _reference(ref_ds, keyword)
        except Exception:
            continue  # pydicom cannot convert this value (a damaged test file): not a fast-path question
        fast = _values(fast_ds, keyword)
        if reference is None:
            assert fast is None, (keyword, fast)
        else:
            assert fast is not None and _same(fast, reference, dictionary_VR(TAG[keyword])), (keyword, fast, reference)
        checked += isinstance(raw, RawDataElement)
    assert checked or all(fast_ds._dict.get(TAG[k]) is None for k in KEYWORDS)


def test_the_files_cover_the_fast_paths() -> None:
    """The comparison above sees empty values, ASCII and non-ASCII names, and several character sets."""
    names, charsets, empty = set(), set(), 0
    for path in FILES:
        ds = _read(path)
        if ds is None:
            continue
        for keyword in ("PatientName", "PatientID", "SeriesDescription", "SeriesNumber", "RescaleType"):
            elem = ds._dict.get(TAG[keyword])
            if isinstance(elem, RawDataElement):
                empty += not elem.length
                if elem.value and keyword == "PatientName":
                    names.add("ascii" if elem.value.isascii() and b"=" not in elem.value else "other")
        if "SpecificCharacterSet" in ds:
            charsets.add(str(ds.SpecificCharacterSet))
    assert names == {"ascii", "other"} and empty > 0 and len(charsets) >= 8


def test_edge_values_equal_pydicoms(tmp_path: Path) -> None:
    """Values the bundled files lack: person names with empty trailing groups, leading spaces, empty and
    multi-valued elements, NUL padding, in implicit and explicit VR."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    raw_values = {
        "PatientName": [b"Doe^John=", b"Doe^John==", b"Doe^John\\Roe^Jane ", b"  Doe", b"", b"A^B=C^D"],
        "PatientID": [b" 12 ", b"a\\b ", b"x\x00", b""],
        "SeriesDescription": [b"  leading", b"trailing  ", b"\\", b""],
        "SeriesNumber": [b"", b" 7 "],
        "WindowCenter": [b" 40\\400 ", b""],
        "StackID": [b"1 "],
    }
    cases = [dict(zip(raw_values, combo, strict=False)) for combo in zip(*(
        (v * 6)[:6] for v in raw_values.values()), strict=True)]
    checked = 0
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        for i, case in enumerate(cases):
            ds = pydicom.Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = syntax
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            for keyword, value in case.items():
                ds.add_new(TAG[keyword], dictionary_VR(TAG[keyword]), value)
            path = tmp_path / f"{syntax.name}{i}.dcm"
            ds.save_as(path, enforce_file_format=True, implicit_vr=syntax.is_implicit_VR, little_endian=True)
            fast_ds, ref_ds = _read(path), _read(path)
            for keyword in case:
                assert isinstance(fast_ds._dict.get(TAG[keyword]), RawDataElement)
                reference = _reference(ref_ds, keyword)
                fast = _values(fast_ds, keyword)
                vr = dictionary_VR(TAG[keyword])
                assert (fast is None) if reference is None else (fast is not None and _same(fast, reference, vr)), \
                    (keyword, case[keyword], fast, reference)
                checked += 1
    assert checked == 2 * 6 * len(raw_values)
