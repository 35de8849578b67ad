"""``medview anonymize IN OUT`` (issue 19): a folder with a CT series of an invented patient, a non-DICOM file, a
truncated DICOM file and an ultrasound image without Burned In Annotation.  The CT comes out with none of the
identifiers in any byte, the US image is refused with its reason, the broken file is named, exit code 3; the
mapping of real IDs to pseudonyms is written where asked and refused inside the output; a second run with the
same key gives the same UIDs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pydicom

from tests.io.test_deid_pixels import _us
from tests.net.orthanc import make_ct_series

MEDVIEW = Path(sys.executable).with_name("medview")
NAME, PID = "WRIGHT^ORVILLE", "TEST8801"


def _run(*args: str, data: Path) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([str(MEDVIEW), "anonymize", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MEDVIEW_DATA_DIR": str(data)})


def _folder(root: Path) -> Path:
    src = root / "in"
    make_ct_series(src / "ct", patient_name=NAME, patient_id=PID, study_date="20240501", slices=4, size=16,
                   accession="ACC8801", description="CT for ORVILLE WRIGHT")
    (src / "notes.txt").write_text("not DICOM")
    whole = (src / "ct" / "slice000.dcm").read_bytes()
    (src / "broken.dcm").write_bytes(whole[: len(whole) // 3])
    us = _us()
    us.PatientName, us.PatientID = NAME, PID
    us.save_as(src / "us.dcm", enforce_file_format=True)
    return src


def test_a_folder_is_anonymized_and_failures_are_named(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    out, mapping = tmp_path / "out", tmp_path / "private" / "map.csv"
    r = _run(str(src), str(out), "--map-out", str(mapping), "--json", data=tmp_path / "data")
    assert r.returncode == 3, r.stderr
    summary = json.loads(r.stdout)
    assert summary["written"] == 4 and summary["skipped"] == 1, summary
    failed = dict(summary["failed"])
    assert set(failed) == {str(src / "us.dcm"), str(src / "broken.dcm")}, failed
    assert "burned-in text" in failed[str(src / "us.dcm")] and "US" in failed[str(src / "us.dcm")]
    assert "Traceback" not in r.stderr and "failed: " in r.stderr
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == 4
    for f in files:
        data = f.read_bytes()
        for identifier in (b"WRIGHT", b"ORVILLE", PID.encode(), b"ACC8801"):
            assert identifier not in data, (f, identifier)
        assert NAME.split("^")[0] not in str(f)
    rows = list(csv.reader(mapping.open()))
    assert rows[0] == ["real_id", "pseudonym"] and rows[1][0] == PID
    assert pydicom.dcmread(files[0]).PatientID == rows[1][1]
    for message in (r.stderr, r.stdout):  # the run's own words name no patient
        assert "WRIGHT" not in message and PID not in message

    again = tmp_path / "again"
    r2 = _run(str(src / "ct"), str(again), data=tmp_path / "data")
    assert r2.returncode == 0, r2.stderr
    assert sorted(p.relative_to(again) for p in again.rglob("*.dcm")) == [p.relative_to(out) for p in files]


def test_bad_outputs_and_inputs_are_refused(tmp_path: Path) -> None:
    src = _folder(tmp_path)
    data = tmp_path / "data"
    r = _run(str(src), str(src / "inside"), data=data)
    assert r.returncode == 3 and "inside the input" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    r = _run(str(src), str(tmp_path / "full"), data=data)
    assert r.returncode == 3 and "not empty" in r.stderr
    r = _run(str(src), str(tmp_path / "o"), "--map-out", str(tmp_path / "o" / "map.csv"), data=data)
    assert r.returncode == 3 and "inside the output" in r.stderr
    r = _run(str(tmp_path / "missing"), str(tmp_path / "o2"), data=data)
    assert r.returncode == 3 and "No such file" in r.stderr
    r = _run(str(src / "ct"), str(tmp_path / "o3"), "--key-file", str(tmp_path / "nokey"), data=data)
    assert r.returncode == 3 and "does not exist" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr,))


def test_building_the_parser_imports_no_dicom_library() -> None:
    """Every medview command builds the whole parser; the anonymize verb's choices imported pydicom there
    (0.3 s on every command, `medview --help` included)."""
    code = ("import sys, medview.cli.main as m; m.build_parser(); "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('pydicom', 'pynetdicom', 'numpy')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pydicom" not in r.stdout, r.stdout
