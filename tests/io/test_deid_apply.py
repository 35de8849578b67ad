"""De-identification of a data set and a file (issue 19, first part): a real CT (pydicom's CT_small.dcm) with
invented identifiers injected at the top level, in nested sequences and in private attributes; the output's
bytes are scanned for every identifier, UIDs are replaced consistently, the pixels are unchanged and the
de-identification is recorded."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medview.io.deid.apply import Deidentifier, deidentify_file
from medview.io.deid.profile import Options, load_profile

NAME, PID, BIRTH, ACCESSION, DOCTOR = "SMITH^ALICE", "TEST7301", "19610203", "ACC99173", "JONES^ROBERT"
IDENTIFIERS = [b"SMITH", b"ALICE", b"TEST7301", b"19610203", b"ACC99173", b"JONES", b"ROBERT", b"St Elsewhere"]


def _phi_file(tmp_path) -> tuple:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = NAME, PID, BIRTH, ACCESSION
    ds.ReferringPhysicianName, ds.InstitutionName = DOCTOR, "St Elsewhere Hospital"
    ds.StudyDescription = "CT for ALICE SMITH"
    ds.StudyDate = "20240315"
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = ACCESSION, PID
    ds.RequestAttributesSequence = Sequence([request])
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = PID, "St Elsewhere"
    ds.OtherPatientIDsSequence = Sequence([other])
    referenced = Dataset()
    referenced.ReferencedSOPClassUID = ds.SOPClassUID
    referenced.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.ReferencedImageSequence = Sequence([referenced])  # not in the table: walked, its UID replaced
    block = ds.private_block(0x0009, "ACME 1.1", create=True)
    block.add_new(0x01, "LO", NAME)
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    return source, ds


@pytest.fixture
def deidentifier() -> Deidentifier:
    return Deidentifier(load_profile(), Options(), b"k" * 32, record=True)


def test_no_identifier_in_any_output_byte(tmp_path, deidentifier: Deidentifier) -> None:
    source, original = _phi_file(tmp_path)
    assert all(i in source.read_bytes() for i in IDENTIFIERS)  # the injection worked
    target = tmp_path / "out" / "out.dcm"
    out = deidentify_file(str(source), str(target), deidentifier)
    data = target.read_bytes()
    for identifier in IDENTIFIERS:
        assert identifier not in data, identifier
    written = pydicom.dcmread(target)
    assert written.PatientIdentityRemoved == "YES" and written.PatientID == out.PatientID != PID
    assert written.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert np.array_equal(written.pixel_array, original.pixel_array)
    assert written.ImagePositionPatient == original.ImagePositionPatient
    assert written.PixelSpacing == original.PixelSpacing
    assert "StudyDate" in written and written.StudyDate == ""  # Z: present, empty
    assert "OtherPatientIDsSequence" not in written and "RequestAttributesSequence" not in written  # X
    assert not any(e.tag.is_private for e in written)


def test_uids_are_replaced_everywhere_the_same_way(tmp_path, deidentifier: Deidentifier) -> None:
    source, original = _phi_file(tmp_path)
    target = tmp_path / "out.dcm"
    deidentify_file(str(source), str(target), deidentifier)
    written = pydicom.dcmread(target)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert getattr(written, keyword) != getattr(original, keyword) and getattr(written, keyword).startswith("2.25.")
    assert written.file_meta.MediaStorageSOPInstanceUID == written.SOPInstanceUID
    assert written.ReferencedImageSequence[0].ReferencedSOPInstanceUID == written.SOPInstanceUID  # still resolves
    assert written.SOPClassUID == original.SOPClassUID  # a class UID identifies nobody: kept
    again = tmp_path / "again.dcm"
    deidentify_file(str(source), str(again), Deidentifier(load_profile(), Options(), b"k" * 32))
    assert pydicom.dcmread(again).StudyInstanceUID == written.StudyInstanceUID  # same key, same UIDs
    deidentify_file(str(source), str(again), Deidentifier(load_profile(), Options(), b"o" * 32))
    assert pydicom.dcmread(again).StudyInstanceUID != written.StudyInstanceUID


def test_options_retain_and_shift(tmp_path) -> None:
    source, original = _phi_file(tmp_path)
    options = Options(retain_longitudinal_modified_dates=True, retain_uids=True, retain_institution_identity=True)
    target = tmp_path / "out.dcm"
    deidentify_file(str(source), str(target), Deidentifier(load_profile(), options, b"k" * 32))
    written = pydicom.dcmread(target)
    assert written.StudyInstanceUID == original.StudyInstanceUID  # Retain UIDs
    assert written.InstitutionName == "St Elsewhere Hospital"  # Retain Institution Identity
    assert written.StudyDate != "20240315" and len(written.StudyDate) == 8  # Modified Dates: shifted
    codes = [i.CodeValue for i in written.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113110", "113112", "113107"]


def test_a_file_is_never_written_over(tmp_path, deidentifier: Deidentifier) -> None:
    source, _ = _phi_file(tmp_path)
    with pytest.raises(ValueError, match="never writes over"):
        deidentify_file(str(source), str(source), deidentifier)


def test_clean_descriptors_keeps_descriptions_without_the_identities(tmp_path) -> None:
    source, _ = _phi_file(tmp_path)
    ds = pydicom.dcmread(source)
    ds.ImageComments = "Follow-up of Alice Smith (TEST7301), born 1961-02-03, see ACC99173"
    ds.SeriesDescription = "Axial 5mm"
    ds.save_as(source, enforce_file_format=True)
    target = tmp_path / "out.dcm"
    deidentify_file(str(source), str(target), Deidentifier(load_profile(), Options(clean_descriptors=True),
                                                           b"k" * 32))
    data = target.read_bytes()
    for identifier in IDENTIFIERS:
        assert identifier.lower() not in data.lower(), identifier
    written = pydicom.dcmread(target)
    assert written.StudyDescription == "CT for *** ***"
    assert written.ImageComments == "Follow-up of *** *** (***), born ***, see ***"
    assert written.SeriesDescription == "Axial 5mm"  # nothing identifying: kept as it was
    assert "RequestAttributesSequence" in written  # C of a sequence: kept, its items de-identified
    assert "RequestedProcedureID" not in written.RequestAttributesSequence[0]
