"""A PHI corpus for the de-identification tests (issue 19): real files (pydicom's test files: CT, MR with
overlays, enhanced multi-frame MR, RT plan and dose, a DICOM SEG, a 12-lead ECG, a JPEG 2000 CT) into which
invented identifiers are injected where they occur in practice: patient, physician and operator names (with ^
components, and in ISO_IR 100 with accents), IDs, birth date, address, accession number, institution, in nested
sequences (Request Attributes, Referenced Patient, Other Patient IDs, an SR-style content sequence), private
attributes of two creators, free text (Study Description, Image Comments), and the file meta's source AE title.
``TOKENS`` lists what must not appear in any output byte, in every arrangement a reader would write it."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

FILES = ["CT_small.dcm", "MR_small.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm", "emri_small.dcm", "rtplan.dcm",
         "rtdose.dcm", "liver.dcm", "waveform_ecg.dcm", "693_J2KR.dcm"]
NAME = "SMITH^ALICE^Q"
ACCENTED = "MÜLLER^JÖRG"
PID, OTHER_ID, BIRTH, ACCESSION = "TEST5501", "TEST5502", "19580407", "ACC55019"
DOCTOR, OPERATOR = "JONES^ROBERT", "PETERSEN^INGRID"
ADDRESS, INSTITUTION = "12 Harbour Lane Springfield", "Mercy Westfield Hospital"
# what must not be found in any output byte (case-insensitive); names in every arrangement
TOKENS = ["SMITH", "ALICE", "Alice Smith", "Smith^Alice", "MÜLLER".encode("latin-1"), "MÜLLER".encode(),
          "MULLER", "JÖRG".encode("latin-1"), PID, OTHER_ID, BIRTH, "1958-04-07", ACCESSION, "JONES", "ROBERT",
          "PETERSEN", "INGRID", "Harbour Lane", "Springfield", "Mercy Westfield", "ALICESMITH"]


def _person(name: str) -> Dataset:
    item = Dataset()
    item.PatientName, item.PatientID = name, OTHER_ID
    return item


def inject(ds: Dataset) -> Dataset:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PID, BIRTH
    ds.PatientAddress, ds.AccessionNumber = ADDRESS, ACCESSION
    ds.ReferringPhysicianName, ds.OperatorsName, ds.PerformingPhysicianName = DOCTOR, OPERATOR, ACCENTED
    ds.InstitutionName, ds.InstitutionAddress = INSTITUTION, ADDRESS
    ds.StudyDescription = "CT for ALICE SMITH"
    ds.ImageComments = f"patient {PID} born {BIRTH}"
    ds.OtherPatientIDsSequence = Sequence([_person(ACCENTED)])
    ds.ReferencedPatientSequence = Sequence([_person(NAME)])
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = ACCESSION, PID
    request.RequestedProcedureDescription = "for Alice Smith"
    ds.RequestAttributesSequence = Sequence([request])
    content = Dataset()
    content.ValueType, content.TextValue = "TEXT", "Reported to Dr ROBERT JONES for Alice Smith"
    content.PersonName = DOCTOR
    ds.ContentSequence = Sequence([content])
    for group, creator in ((0x0011, "ACME MEDICAL 1.0"), (0x0013, "OTHER VENDOR")):
        block = ds.private_block(group, creator, create=True)
        block.add_new(0x01, "LO", f"{NAME} {PID}")
        block.add_new(0x02, "UN", f"{BIRTH} {ADDRESS}".encode())
    ds.file_meta.SourceApplicationEntityTitle = "ALICESMITH"
    return ds


def build(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in FILES:
        ds = inject(pydicom.dcmread(get_testdata_file(name)))
        target = folder / name
        ds.save_as(target, enforce_file_format=True)
        out.append(target)
    return out


def leaks(data: bytes) -> list[str]:
    """The tokens found in ``data`` (case-insensitive)."""
    low = data.lower()
    found = []
    for token in TOKENS:
        raw = token if isinstance(token, bytes) else token.encode("latin-1")
        if raw.lower() in low:
            found.append(raw.decode("latin-1"))
    return found
