"""Apply the profile to a data set: every attribute of Table E.1-1 with its action, recursively in every item of
every sequence, private attributes removed, UIDs replaced by the keyed mapping, the patient by a pseudonym, and
the de-identification recorded in the data set (PS3.15 E.1.1: Patient Identity Removed, De-identification
Method and its code sequence, CID 7050).

Actions (PS3.15 E.1.1):

* X removes the attribute; Z keeps it empty (a sequence without items); D puts a dummy value of its VR (a
  sequence keeps its items' structure, codes, numbers and mapped UIDs, and every text, name or date in them,
  listed in the table or not, becomes a dummy: a Type 1 sequence stays valid and keeps no free text);
* K keeps it (a sequence is kept, and its items are de-identified like the data set);
* C cleans it: a date or time under Retain Longitudinal Temporal Information with Modified Dates is shifted by
  the patient's offset (intervals between a patient's studies are kept); any other C (Clean Descriptors, Clean
  Structured Content, Clean Graphics, Retain Safe Private) is not implemented yet and is treated as X, the
  conservative end of "replace with values of similar meaning known not to identify";
* U replaces a UID by :func:`medview.io.deid.keys.map_uid` (the same everywhere the key is shared).

Attributes the table does not list are kept (pixel data, geometry), sequences among them walked.  Overlay and
curve groups (60xx, 50xx) are removed whole.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from medview.io.deid.keys import map_uid, pseudonym
from medview.io.deid.profile import Options, Profile

# dummy values by VR (D): valid for the VR, identifying nothing
DUMMY = {"PN": "ANONYMOUS", "LO": "ANONYMIZED", "SH": "ANONYMIZED", "LT": "ANONYMIZED", "ST": "ANONYMIZED",
         "UT": "ANONYMIZED", "UC": "ANONYMIZED", "CS": "ANONYMIZED", "AE": "ANONYMIZED", "DA": "19000101",
         "TM": "000000", "DT": "19000101000000", "AS": "000Y", "IS": "0", "DS": "0", "UR": "", "UI": None}
NUMERIC_VRS = {"US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0, "UV": 0, "SV": 0}
# CID 7050 De-identification Method: (code, meaning) per option; the basic profile first
METHOD_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_longitudinal_modified_dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates "
                                                     "Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}


@dataclass
class Change:
    """What happened to one attribute (for the preview: tag, before, after); ``path`` names the sequence items."""

    path: str
    keyword: str
    action: str
    before: str
    after: str


@dataclass
class Deidentifier:
    """The profile, the options and the key of one run; ``dataset(ds)`` de-identifies ``ds`` in place."""

    profile: Profile
    options: Options
    key: bytes
    pseudonyms: dict[str, str] = field(default_factory=dict)  # real patient ID -> pseudonym (a user's CSV)
    date_offset: Callable[[str], int] | None = None  # patient ID -> days, for modified dates (None: keyed)
    record: bool = False  # keep the list of changes (the GUI's preview); off for speed
    changes: list[Change] = field(default_factory=list)
    _identifiers: re.Pattern | None = field(default=None, repr=False)

    def patient_pseudonym(self, patient_id: str) -> str:
        return self.pseudonyms.get(patient_id.strip()) or pseudonym(patient_id, self.key)

    def offset_days(self, patient_id: str) -> int:
        """The patient's date shift (Modified Dates): keyed, between 1 and 3,650 days back, the same for every
        file of the patient under the key, so intervals between studies are kept."""
        if self.date_offset is not None:
            return self.date_offset(patient_id)
        import hashlib
        import hmac

        digest = hmac.new(self.key, b"dates\0" + patient_id.strip().encode("utf-8"), hashlib.sha256).digest()
        return -(1 + int.from_bytes(digest[:4], "big") % 3650)

    def dataset(self, ds: Dataset) -> Dataset:
        patient_id = str(ds.get("PatientID", "") or "")
        days = self.offset_days(patient_id) if self.options.retain_longitudinal_modified_dates else 0
        self._identifiers = _identifiers(ds) if self.options.clean_descriptors else None
        self._walk(ds, "", days)
        ds.PatientID = self.patient_pseudonym(patient_id)
        ds.PatientName = ds.PatientID  # the pseudonym names the patient too (a viewer's list shows it)
        ds.PatientIdentityRemoved = "YES"
        picked = ["basic", *self.options.picked()]
        ds.DeidentificationMethod = "; ".join(METHOD_CODES[p][1] for p in picked)[:64]
        items = []
        for name in picked:
            code, meaning = METHOD_CODES[name]
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        return ds

    # -- the walk ------------------------------------------------------------------------------------------
    def _walk(self, ds: Dataset, path: str, days: int, dummy_text: bool = False) -> None:
        for elem in list(ds):
            tag = int(elem.tag)
            if tag >> 16 == 0x0002:
                continue  # file meta: rewritten by the writer
            group = tag >> 16
            if 0x5000 <= group <= 0x601E and group % 2 == 0 and (group <= 0x501E or group >= 0x6000):
                # overlays (60xx) and curves (50xx) go whole: the table lists their data, but an overlay plane
                # left without its data is an invalid module, and their labels and descriptions are free text
                del ds[elem.tag]
                continue
            action = self.profile.action(tag, self.options)
            if dummy_text and action is None and elem.VR in DUMMY_IN_ITEMS and tag not in CODE_ATTRIBUTES:
                action = "D"  # inside a dummy sequence: free text the table does not list is not kept either
            if action is None or action == "K" or (action == "U" and elem.VR == "SQ"):
                # kept, or a sequence whose UIDs are replaced (X/Z/U*: Referenced Image Sequence, ...): its items
                # are de-identified like the data set (their UIDs are U rows of the table)
                if elem.VR == "SQ":
                    for i, item in enumerate(elem.value or []):
                        self._walk(item, f"{path}{elem.keyword or elem.tag}[{i}].", days, dummy_text)
                continue
            if action == "C" and elem.VR == "SQ":  # cleaned: kept, its items de-identified attribute by attribute
                for i, item in enumerate(elem.value or []):
                    self._walk(item, f"{path}{elem.keyword or elem.tag}[{i}].", days, dummy_text)
                continue
            before = _text(elem) if self.record else ""
            if action == "C" and elem.VR in TEXT_VRS and self.options.clean_descriptors and self._identifiers:
                elem.value = _clean_text(elem.value, self._identifiers)
                after = _text(elem) if self.record else ""
            elif action == "X" or (action == "C" and not _shiftable(elem, days)):
                # a C this code cannot clean (structured content, graphics, private values): removed
                del ds[elem.tag]
                after = "(removed)"
            elif action == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else ("" if elem.VR not in NUMERIC_VRS else None)
                after = ""
            elif action == "D" and elem.VR == "SQ":
                # a dummy sequence: its items keep their structure (codes, numbers, mapped UIDs) so that a Type 1
                # sequence stays valid, and every text, name and date in them, listed or not, becomes a dummy
                for i, item in enumerate(elem.value or []):
                    self._walk(item, f"{path}{elem.keyword or elem.tag}[{i}].", days, dummy_text=True)
                after = _text(elem) if self.record else ""
            elif action == "D":
                _dummy(elem, self.key)
                after = _text(elem) if self.record else ""
            elif action == "U":
                elem.value = _map_uids(elem.value, self.key)
                after = _text(elem) if self.record else ""
            else:  # C of a date or time under Modified Dates
                elem.value = _shift(elem.VR, elem.value, days)
                after = _text(elem) if self.record else ""
            if self.record:
                self.changes.append(Change(path, elem.keyword or str(elem.tag), action, before, after))


TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
DUMMY_IN_ITEMS = TEXT_VRS | {"PN", "DA", "DT", "TM", "AS", "UR"}
# the attributes of a code (Code Value, Coding Scheme Designator and Version, Code Meaning, Long/URN Code
# Value): identify a concept, not a person; kept inside dummy sequences
CODE_ATTRIBUTES = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080104, 0x00080119, 0x00080120})
# what names a patient or a person in a data set: every PN value, and these (Clean Descriptors removes each from
# the descriptions it keeps)
IDENTIFYING = frozenset({0x00100020, 0x00101000, 0x00080050, 0x00100030, 0x00101040, 0x00102154, 0x00101090,
                         0x00380010})  # patient ID, other IDs, accession, birth date,
# address, telephone, medical record locator, admission ID


def _identifiers(ds: Dataset) -> re.Pattern | None:
    """One pattern matching, case-insensitively, every name part and identifier found anywhere in ``ds``."""
    found: set[str] = set()

    def visit(d: Dataset) -> None:
        for elem in d:
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
            if elem.VR == "PN":
                for v in values:
                    found.update(t for t in re.split(r"[\^=\s,]+", str(v)) if len(t) >= 2)
            elif int(elem.tag) in IDENTIFYING:
                for v in values:
                    text = str(v or "").strip()
                    if len(text) >= 3:
                        found.add(text)
                        if elem.VR == "DA" and len(text) == 8:  # the dates people write
                            found.update({f"{text[:4]}-{text[4:6]}-{text[6:]}", f"{text[6:]}.{text[4:6]}.{text[:4]}",
                                          f"{text[4:6]}/{text[6:]}/{text[:4]}"})
                        found.update(t for t in re.split(r"[\s,]+", text) if len(t) >= 3 and elem.VR != "DA")

    visit(ds)
    if not found:
        return None
    words = sorted(found, key=len, reverse=True)
    return re.compile("|".join(rf"(?<![0-9A-Za-z]){re.escape(w)}(?![0-9A-Za-z])" for w in words), re.IGNORECASE)


def _clean_text(value, pattern: re.Pattern):
    if isinstance(value, MultiValue | list):
        return [pattern.sub("***", str(v)) for v in value]
    return pattern.sub("***", str(value))


def _text(elem: DataElement) -> str:
    if elem.VR == "SQ":
        return f"({len(elem.value or [])} item(s))"
    if elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return f"({len(elem.value or b'')} bytes)"
    return str(elem.value)[:200]


def _map_uids(value, key: bytes):
    if isinstance(value, MultiValue | list | tuple):
        return [map_uid(str(v), key) for v in value]
    return map_uid(str(value or ""), key)


def _dummy(elem: DataElement, key: bytes) -> None:
    if elem.VR == "SQ":
        elem.value = Sequence()
    elif elem.VR == "UI":
        elem.value = _map_uids(elem.value, key)
    elif elem.VR in NUMERIC_VRS:
        elem.value = NUMERIC_VRS[elem.VR]
    elif elem.VR in DUMMY:
        elem.value = DUMMY[elem.VR]
    else:  # binary VRs: no dummy means anything; empty
        elem.value = b""


def _shiftable(elem: DataElement, days: int) -> bool:
    return days != 0 and elem.VR in ("DA", "DT") and bool(elem.value)


def _shift(vr: str, value, days: int):
    """A DA or DT value (or several) moved by ``days``; a value that does not parse is emptied (it could hold
    anything)."""
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for v in values:
        text = str(v)
        try:
            day = dt.datetime.strptime(text[:8], "%Y%m%d").date() + dt.timedelta(days=days)
        except ValueError:
            out.append("")
            continue
        out.append(day.strftime("%Y%m%d") + (text[8:] if vr == "DT" else ""))
    return out if len(out) > 1 else out[0]


def encode_file(ds: Dataset) -> bytes:
    """The de-identified data set as a Part 10 file: the file meta rewritten to match (Media Storage SOP Instance
    UID; no source, sending or receiving AE title or address, no private information)."""
    import io

    meta = ds.file_meta
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
                    "ReceivingApplicationEntityTitle", "SourcePresentationAddress", "SendingPresentationAddress",
                    "ReceivingPresentationAddress", "PrivateInformationCreatorUID", "PrivateInformation"):
        if keyword in meta:
            delattr(meta, keyword)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deidentify_file(source: str, target: str, deidentifier: Deidentifier) -> Dataset:
    """Read ``source``, de-identify it and write it to ``target`` (atomically: a reader never sees half a file;
    ``target`` must not be ``source``).  Returns the de-identified data set."""
    import os

    import pydicom

    from medview.core.atomic import atomic_write_bytes

    if os.path.abspath(source) == os.path.abspath(target):
        raise ValueError("de-identification never writes over its input")
    ds = pydicom.dcmread(source)
    deidentifier.dataset(ds)
    data = encode_file(ds)
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    atomic_write_bytes(target, data)
    return ds
