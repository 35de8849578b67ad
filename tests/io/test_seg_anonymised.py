"""DICOM SEG export from anonymised series: type 2 patient/study attributes missing in the source are
written empty (they failed with "'FileDataset' object has no attribute 'PatientBirthDate'"), and
highdicom's warnings become medview's lines instead of leaking to stderr."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from medview.app.samples import sample_path
from medview.io.readers import open_image, scan
from medview.io.seg import read_seg, write_seg
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
REMOVED = ("PatientBirthDate", "PatientSex", "StudyTime")


def _anonymised_copy(folder: Path, patient_name: str | None = None, remove: tuple[str, ...] = REMOVED) -> Path:
    """The bundled sample CT series with the type 2 attributes anonymisers often drop removed (pydicom)."""
    folder.mkdir()
    for source in sorted(Path(sample_path("chest_ct")).iterdir()):
        ds = pydicom.dcmread(source)
        for keyword in remove:
            if keyword in ds:
                delattr(ds, keyword)
        if patient_name is not None:
            ds.PatientName = patient_name
        ds.save_as(folder / source.name)
    first = pydicom.dcmread(next(folder.iterdir()))
    assert not any(k in first for k in remove)
    return folder


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=120)
    return {ln.strip() for ln in (run.stdout + run.stderr).splitlines() if ln.startswith("Error")}


def test_seg_of_a_series_without_type2_patient_attributes_is_written_and_valid(tmp_path: Path) -> None:
    series = _anonymised_copy(tmp_path / "dicom")
    info = scan(series)[0]
    ct = open_image(series)
    from medview.app.label_maps import open_label_map

    tumour = open_label_map(sample_path("chest_ct_label"), reference=ct)
    notes: list[str] = []
    out = tmp_path / "seg.dcm"
    write_seg(tumour, info, out, warnings=notes)
    seg = pydicom.dcmread(out)
    for keyword in REMOVED:  # present, empty (type 2), as the standard allows
        assert keyword in seg and seg[keyword].value in ("", None), keyword
    source = pydicom.dcmread(next(series.iterdir()))
    assert seg.PatientID == source.PatientID and seg.StudyInstanceUID == source.StudyInstanceUID
    # dciodvfy: the SEG has no error that its input did not already have (the input misses the three)
    input_errors = _dciodvfy_errors(next(series.iterdir()))
    assert any("PatientBirthDate" in e for e in input_errors)  # the check would see the problem
    seg_errors = _dciodvfy_errors(out)
    assert seg_errors <= input_errors, f"new errors in the SEG: {sorted(seg_errors - input_errors)}"
    assert not any(k in e for e in seg_errors for k in REMOVED)
    back = read_seg(out, reference=ct)
    assert (back.array > 0).sum() == (tumour.array > 0).sum()


def test_export_seg_cli_prints_only_medviews_lines(tmp_path: Path) -> None:
    """A single-component Patient's Name ('ANONYMOUS', as plastimatch and anonymisers write it) made
    highdicom print a UserWarning with its source path and a URL on stderr."""
    series = _anonymised_copy(tmp_path / "dicom", patient_name="ANONYMOUS", remove=())
    out = tmp_path / "seg.dcm"
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", "from medview.cli.main import main; raise SystemExit(main())",
         "export-seg", str(series), str(sample_path("chest_ct_label")), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    foreign = [ln for ln in run.stderr.splitlines() if ln.strip() and not ln.startswith("medview")]
    assert foreign == [], "library output on stderr:\n" + run.stderr
    assert "DICOM SEG:" in run.stdout and "ANONYMOUS" in run.stdout  # the warning, as medview's own note
    assert pydicom.dcmread(out).PatientName == "ANONYMOUS"


def test_library_warnings_are_collected_not_printed(tmp_path: Path, recwarn) -> None:
    series = _anonymised_copy(tmp_path / "dicom", patient_name="ANONYMOUS")
    ct = open_image(series)
    from medview.app.label_maps import open_label_map

    notes: list[str] = []
    write_seg(open_label_map(sample_path("chest_ct_label"), reference=ct), scan(series)[0], tmp_path / "s.dcm",
              warnings=notes)
    assert len(notes) == 1 and notes[0].startswith("DICOM SEG: ") and "ANONYMOUS" in notes[0]
    assert "https://" not in notes[0]
    assert not [w for w in recwarn if "highdicom" in str(w.filename)]


@pytest.mark.parametrize("keyword", ["PatientName", "PatientID", "AccessionNumber", "StudyID", "StudyDate"])
def test_other_type2_attributes_missing_are_written_empty(tmp_path: Path, keyword: str) -> None:
    folder = tmp_path / "dicom"
    folder.mkdir()
    for source in sorted(Path(sample_path("chest_ct")).iterdir()):
        ds = pydicom.dcmread(source)
        if keyword in ds:
            delattr(ds, keyword)
        ds.save_as(folder / source.name)
    ct = open_image(folder)
    from medview.app.label_maps import open_label_map

    write_seg(open_label_map(sample_path("chest_ct_label"), reference=ct), scan(folder)[0], tmp_path / "s.dcm")
    seg = pydicom.dcmread(tmp_path / "s.dcm")
    assert keyword in seg and seg[keyword].value in ("", None)
