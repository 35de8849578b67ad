"""The local study database (issue 18 part 1): import, incremental re-import, missing files, queries, the managed
store, cancel and kill -9 mid-import, DICOMDIR and zip, and opening a series from the index.

References: pydicom reading each file (counts, UIDs, tags) and SimpleITK reading the series (geometry,
voxels); never medview's own earlier output.  Patients, IDs and dates here are invented.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medview.app.samples import sample_path
from medview.core.errors import CancelledError
from medview.core.tasks import TaskContext
from medview.io import studydb
from medview.io.studydb import StudyDatabase, StudyDatabaseError

PATIENTS = [("DOE^JANE", "TEST0001", "20240105", "CT"), ("DOE^JOHN", "TEST0002", "20240320", "CT"),
            ("ROE^RICHARD", "TEST0003", "20230711", "MR")]


def _sample_files() -> list[Path]:
    return sorted(Path(sample_path("chest_ct")).glob("*.dcm"))


def _write_study(folder: Path, name: str, pid: str, date: str, modality: str, n: int = 6) -> str:
    """``n`` slices of the sample CT rewritten as another (invented) patient's study; returns its UID."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    for i, src in enumerate(_sample_files()[:n]):
        ds = pydicom.dcmread(src)
        ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality = name, pid, date, modality
        ds.StudyTime, ds.StudyID, ds.InstanceNumber = "101500", "1", i + 1  # a DICOMDIR's records need them
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"slice{i:03d}.dcm", enforce_file_format=True)
    return study


@pytest.fixture
def cohort(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "cohort"
    uids = {pid: _write_study(root / pid, name, pid, date, modality) for name, pid, date, modality in PATIENTS}
    (root / "notes.txt").write_text("not DICOM")
    return root, uids


def _reference_counts(folder: Path) -> dict[str, int]:
    """Instances per StudyInstanceUID, as pydicom reads the files."""
    counts: dict[str, int] = {}
    for f in folder.rglob("*"):
        if f.is_file():
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except Exception:
                continue
            counts[ds.StudyInstanceUID] = counts.get(ds.StudyInstanceUID, 0) + 1
    return counts


def test_import_lists_every_study_with_pydicoms_counts(cohort) -> None:
    root, uids = cohort
    with StudyDatabase() as db:
        result = db.import_paths([root], parallel=False)
        assert result.added == 18 and len(result.skipped) == 1 and sorted(result.studies) == sorted(uids.values())
        studies = {s["StudyInstanceUID"]: s for s in db.list_studies()}
    reference = _reference_counts(root)
    assert {uid: s["NumberOfStudyRelatedInstances"] for uid, s in studies.items()} == reference
    jane = studies[uids["TEST0001"]]
    assert (jane["PatientName"], jane["PatientID"], jane["StudyDate"], jane["ModalitiesInStudy"]) == (
        "DOE^JANE", "TEST0001", "20240105", ["CT"])
    assert db.path == Path(os.environ["MEDVIEW_DATA_DIR"]) / "studies.sqlite"


def test_queries_by_name_id_date_and_modality(cohort) -> None:
    root, _uids = cohort
    with StudyDatabase() as db:
        db.import_paths([root], parallel=False)

        def found(**filters) -> set[str]:
            return {s["PatientID"] for s in db.list_studies(**filters)}

        assert found(patient_name="doe") == {"TEST0001", "TEST0002"}  # a prefix, case-insensitive
        assert found(patient_name="*^J?NE") == {"TEST0001"}
        assert found(patient_name="DOE_") == set()  # '_' is not a wildcard
        assert found(patient_id="TEST0003") == {"TEST0003"}
        assert found(patient_id="TEST000*") == {"TEST0001", "TEST0002", "TEST0003"}
        assert found(date="20240101-20241231") == {"TEST0001", "TEST0002"}
        assert found(date="20240301-") == {"TEST0002"}
        assert found(date="-20231231") == {"TEST0003"}
        assert found(date="20240105") == {"TEST0001"}
        assert found(modality="MR") == {"TEST0003"}
        assert found(patient_name="doe", date="20240301-") == {"TEST0002"}
        assert [s["StudyDate"] for s in db.list_studies()] == ["20240320", "20240105", "20230711"]  # newest first
        assert len(db.list_studies(limit=2)) == 2 and db.count_studies() == 3
        with pytest.raises(StudyDatabaseError):
            db.list_studies(date="2024-01-01")


def test_reimport_reads_only_changed_files_and_marks_vanished_ones(cohort) -> None:
    root, uids = cohort
    with StudyDatabase() as db:
        db.import_paths([root], parallel=False)
        again = db.import_paths([root], parallel=False)
        assert (again.added, again.updated, again.unchanged) == (0, 0, 19)  # the text file is remembered too
        changed = root / "TEST0002" / "slice000.dcm"
        ds = pydicom.dcmread(changed)
        ds.SeriesDescription = "edited"
        ds.save_as(changed)
        os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
        gone = [root / "TEST0001" / "slice004.dcm", root / "TEST0001" / "slice005.dcm"]
        kept = [p.read_bytes() for p in gone]
        for p in gone:
            p.unlink()
        third = db.import_paths([root], parallel=False)
        assert (third.added, third.updated, third.missing) == (0, 1, 2)
        jane = db.list_studies(patient_id="TEST0001")[0]
        assert jane["NumberOfStudyRelatedInstances"] == 4 and jane["MissingInstances"] == 2 and not jane["Complete"]
        series = db.list_series(uids["TEST0001"])[0]
        info = db.series_infos(series["SeriesInstanceUID"])[0]
        assert info.n_slices == 4 and any("missing" in w for w in info.warnings)
        for p, data in zip(gone, kept, strict=True):
            p.write_bytes(data)
        fourth = db.import_paths([root], parallel=False)
        assert fourth.added + fourth.updated == 2 or fourth.unchanged == 19
        assert db.list_studies(patient_id="TEST0001")[0]["Complete"]


def test_a_series_opens_from_the_index_with_simpleitks_geometry_and_voxels(tmp_path: Path) -> None:
    import SimpleITK as sitk

    from medview.io.readers import load_info

    folder = Path(sample_path("chest_ct"))
    with StudyDatabase() as db:
        db.import_paths([folder], parallel=False)
        study = db.list_studies()[0]["StudyInstanceUID"]
        series_uid = db.list_series(study)[0]["SeriesInstanceUID"]
        from medview.io.dicom import headers

        calls = []
        original = headers.read_headers
        headers.read_headers = lambda *a, **k: calls.append(a) or original(*a, **k)
        try:
            info = db.series_infos(series_uid)[0]
        finally:
            headers.read_headers = original
        assert not calls, "opening from the database read headers again"
        volume = load_info(info)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), series_uid))
    image = reader.Execute()
    np.testing.assert_allclose(volume.geometry.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(volume.geometry.origin, image.GetOrigin(), atol=1e-3)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(image))


def test_copy_into_the_store_names_files_by_hash_and_remove_deletes_only_stored_files(tmp_path: Path) -> None:
    src = tmp_path / "incoming"
    study = _write_study(src, "DOE^JANE", "TEST0001", "20240105", "CT", n=3)
    evil = pydicom.dcmread(src / "slice000.dcm")
    with pytest.warns(UserWarning):  # pydicom says the UID is invalid: it is, on purpose
        evil.SOPInstanceUID = "../../../../tmp/evil"  # a UID with path characters never becomes a path
    evil.save_as(src / "slice000.dcm")
    by_reference = tmp_path / "reference"
    other = _write_study(by_reference, "ROE^RICHARD", "TEST0003", "20230711", "MR", n=2)
    with StudyDatabase() as db:
        result = db.import_paths([src], copy=True, parallel=False)
        assert result.added == 3
        db.import_paths([by_reference], parallel=False)
        stored = db.files_of(study)
        store = Path(os.environ["MEDVIEW_DATA_DIR"]) / "store"
        for path in stored:
            p = Path(path)
            assert p.parent.parent == store and len(p.stem) == 64 and p.suffix == ".dcm"
            import hashlib

            assert hashlib.sha256(p.read_bytes()).hexdigest() == p.stem
        assert not Path("/tmp/evil").exists()
        (src / "slice001.dcm").unlink()  # the store's copy stays openable
        assert db.series_infos(db.list_series(study)[0]["SeriesInstanceUID"])[0].n_slices == 3
        assert db.remove_study(study) == 3
        assert not any(Path(p).exists() for p in stored)
        assert db.remove_study(other) == 2
        assert len(list(by_reference.glob("*.dcm"))) == 2  # files indexed by reference are never deleted
        assert db.list_studies() == []
        with pytest.raises(StudyDatabaseError):
            db.remove_study(study)


def test_a_cancelled_import_leaves_a_consistent_database_and_the_next_one_continues(cohort, monkeypatch) -> None:
    root, _uids = cohort
    monkeypatch.setattr(studydb, "CHUNK", 5)
    task = TaskContext()
    seen = []

    def progress(fraction, message):
        seen.append(fraction)
        if len(seen) == 3:  # after the first chunk of 5 files
            task.token.cancel()

    task = TaskContext(on_progress=progress, min_interval_s=0.0)
    with StudyDatabase() as db:
        with pytest.raises(CancelledError):
            db.import_paths([root], task=task, parallel=False)
        indexed = db.conn.execute("SELECT count(*) FROM instances").fetchone()[0]
        assert 0 < indexed < 18
        total = sum(s["NumberOfStudyRelatedInstances"] for s in db.list_studies())
        assert total == indexed  # the counts match the instances that were committed
        rest = db.import_paths([root], parallel=False)
        assert rest.added == 18 - indexed  # only the files the cancelled import had not reached are read
        assert rest.added + rest.unchanged + len(rest.skipped) == 19  # (the text file counts once, either way)
        assert {s["StudyInstanceUID"]: s["NumberOfStudyRelatedInstances"] for s in db.list_studies()} == \
            _reference_counts(root)


def test_kill_9_mid_import_leaves_a_database_the_next_import_completes(tmp_path: Path) -> None:
    root = tmp_path / "many"
    for k in range(20):
        _write_study(root / f"p{k}", f"TEST^P{k}", f"TEST{k:04d}", "20240101", "CT", n=48)
    env = {**os.environ, "MEDVIEW_STUDYDB_CHUNK": "30"}
    db_path = Path(os.environ["MEDVIEW_DATA_DIR"]) / "studies.sqlite"
    killed = 0
    for at_least in (1, 300):  # killed once early, once later on (after the first import's rows)
        proc = subprocess.Popen([sys.executable, "-m", "medview.cli.main", "db", "import", str(root)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            try:
                conn = sqlite3.connect(db_path, timeout=0.1)
                n = conn.execute("SELECT count(*) FROM instances").fetchone()[0]
                conn.close()
            except sqlite3.Error:
                n = 0
            if n >= at_least:
                os.kill(proc.pid, signal.SIGKILL)  # between or inside a chunk's transaction
                killed += 1
                break
            time.sleep(0.005)
        proc.wait()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with StudyDatabase() as db:
        db.import_paths([root], parallel=False)
        counts = {s["StudyInstanceUID"]: s["NumberOfStudyRelatedInstances"] for s in db.list_studies()}
    assert counts == _reference_counts(root) and len(counts) == 20
    assert killed >= 1, "the import finished before it could be killed: make the cohort bigger"


def test_zip_and_dicomdir_media(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    src = tmp_path / "src"
    study = _write_study(src, "DOE^JANE", "TEST0001", "20240105", "CT", n=4)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.glob("*.dcm")):
            zf.write(f, f"CD/{f.name}")
    medium = tmp_path / "medium"
    fs = FileSet()
    for f in sorted(src.glob("*.dcm")):
        fs.add(pydicom.dcmread(f))
    fs.write(medium)
    with StudyDatabase() as db:
        zipped = db.import_paths([archive], parallel=False)
        assert zipped.added == 4 and zipped.studies == [study]
        assert all("!CD/" in p for p in db.files_of(study))
        info = db.series_infos(db.list_series(study)[0]["SeriesInstanceUID"])[0]
        assert info.n_slices == 4
        db.remove_study(study)
        assert archive.exists()
        from_dicomdir = db.import_paths([medium / "DICOMDIR"], parallel=False)
        assert from_dicomdir.added == 4 and from_dicomdir.studies == [study]


def test_cli_import_list_series_remove(cohort) -> None:
    root, uids = cohort

    def medview(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                              timeout=300)

    r = medview("db", "import", str(root), "--json")
    assert r.returncode == 0, r.stderr
    import json

    summary = json.loads(r.stdout)
    assert summary["added"] == 18 and sorted(summary["studies"]) == sorted(uids.values())
    r = medview("db", "list", "--patient-name", "DOE*", "--date", "20240301-20240331", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["PatientID"] for row in rows] == ["TEST0002"]
    r = medview("db", "series", uids["TEST0002"], "--json")
    assert json.loads(r.stdout.splitlines()[0])["NumberOfSeriesRelatedInstances"] == 6
    r = medview("db", "remove", uids["TEST0002"])
    assert r.returncode == 0 and "6 instance" in r.stdout
    for bad in (["db", "import", str(root / "nope")], ["db", "list", "--date", "2024"], ["db", "remove", "1.2.3"]):
        r = medview(*bad)
        assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_every_verb_opens_a_study_or_series_uid_from_the_database(cohort, tmp_path: Path) -> None:
    """``medview info|convert|view STUDY_UID``: the index stands in for the path (no header scan)."""
    import json

    import SimpleITK as sitk

    root, uids = cohort
    with StudyDatabase() as db:
        db.import_paths([root], parallel=False)
        series = db.list_series(uids["TEST0002"])[0]["SeriesInstanceUID"]

    def medview(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medview.cli.main", *args], capture_output=True, text=True,
                              timeout=300)

    r = medview("info", uids["TEST0002"], "--json")
    assert r.returncode == 0, r.stderr
    assert series in r.stdout
    out = tmp_path / "ct.nii.gz"
    r = medview("convert", series, str(out))
    assert r.returncode == 0, r.stderr
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(root / "TEST0002"), series))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))),
                                  sitk.GetArrayFromImage(reader.Execute()))
    r = medview("info", "1.2.3.4.5")
    assert r.returncode == 3 and "nor a study or series in the study database" in r.stderr
    assert json.loads(medview("db", "list", "--json", "--patient-id", "TEST0002").stdout)["PatientID"] == "TEST0002"


def test_batch_takes_its_cohort_from_the_database(cohort, tmp_path: Path) -> None:
    """``medview batch PIPELINE --from-db --patient-name DOE*``: one case per matching study (its largest
    series, opened by UID from the index in the Dask workers), features checked against numpy on the voxels
    pydicom decodes."""
    import csv

    import yaml

    root, _uids = cohort
    with StudyDatabase() as db:
        db.import_paths([root], parallel=False)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "threshold", "params": {"lower": 200}}},
        {"features": {"label": 1, "params": {"featureClass": {"firstorder": ["Maximum"]}}}},
    ]}))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "batch", str(pipeline), "--from-db",
                        "--patient-name", "DOE*", "--out", str(out), "--workers", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    with open(out / "features.csv", newline="") as fh:
        rows = {row["case_id"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {"TEST0001_20240105", "TEST0002_20240320"}
    for case_id, pid in (("TEST0001_20240105", "TEST0001"), ("TEST0002_20240320", "TEST0002")):
        arrays = [pydicom.dcmread(f) for f in sorted((root / pid).glob("*.dcm"))]
        hu = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in arrays])
        maximum = next(v for k, v in rows[case_id].items() if k.endswith("firstorder_Maximum"))
        assert float(maximum) == pytest.approx(float(hu.max()), rel=1e-6)
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "batch", str(pipeline), "--from-db",
                        "--patient-name", "NOBODY", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and "No study in the study database matches" in r.stderr
