"""Study database benchmark (issue 18 part 1).

* Index throughput: ``StudyDatabase.import_paths`` of the 512 x 512 x 305 uncompressed CT series (305 files,
  plastimatch) and of the JPEG-LS copy, into a fresh database each round, against a bare loop of
  ``pydicom.dcmread(stop_before_pixels=True)`` over the same files; both warm (page cache), in this one process,
  alternating, ``MEDVIEW_BENCH_DB_REPEATS`` rounds (default 3).  Goals: >= 300 files/s and >= 0.8x the bare loop.
* Open from the database: ``series_infos`` + ``load_info`` of the uncompressed series against reading the files'
  bytes (the I/O floor), and against opening the folder (header scan + load) as before.  Goal: <= 2x the floor.
  Also printed: the floor that makes a new volume, i.e. reading each file's pixel bytes into a freshly allocated
  array of the volume's size -- the kernel zero-fills 160 MB of new pages first (about 20 ms here, as long as
  the plain floor itself, whose buffers malloc recycles between files), which no loader that returns a new
  array avoids.
* Scale: 10,000 studies and 1,000,000 instances generated as rows (not files); the study list's first page, a
  search by name prefix + date range, and the series of one study.  Goal: each < 100 ms.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_DB_REPEATS", "3") or 3), 1)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _bare_loop(files: list[Path]) -> float:
    t = time.perf_counter()
    for f in files:
        pydicom.dcmread(f, stop_before_pixels=True)
    return time.perf_counter() - t


def _import(folder: Path) -> float:
    from medview.io.studydb import StudyDatabase

    with tempfile.TemporaryDirectory() as tmp, StudyDatabase(Path(tmp) / "studies.sqlite") as db:
        t = time.perf_counter()
        result = db.import_paths([folder])
        elapsed = time.perf_counter() - t
        assert result.added == len(_files(folder))
    return elapsed


def _ms(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f} ms"


def test_index_throughput_against_a_bare_pydicom_loop(bench_data) -> None:
    for name in ("uncompressed", "JPEG-LS"):
        folder = bench_data[name]
        files = _files(folder)
        _bare_loop(files)  # both warm: the files are in the page cache
        _import(folder)
        ours, bare = [], []
        for _ in range(REPEATS):
            bare.append(_bare_loop(files))
            ours.append(_import(folder))
        rate = len(files) / statistics.median(ours)
        ratio = statistics.median(bare) / statistics.median(ours)
        print(f"\nindex {name} ({len(files)} files): medview {_ms(ours)} ({rate:.0f} files/s), bare pydicom loop "
              f"{_ms(bare)} ({len(files) / statistics.median(bare):.0f} files/s): {ratio:.2f}x the loop's speed")


def test_open_from_the_database_against_the_io_floor(bench_data) -> None:
    from medview.io.readers import load_info, open_image
    from medview.io.studydb import StudyDatabase

    folder = bench_data["uncompressed"]
    files = _files(folder)
    with tempfile.TemporaryDirectory() as tmp, StudyDatabase(Path(tmp) / "studies.sqlite") as db:
        db.import_paths([folder])
        study = db.list_studies()[0]["StudyInstanceUID"]
        series = db.list_series(study)[0]["SeriesInstanceUID"]
        info = db.series_infos(series)[0]
        shape = (info.n_slices, info.first.rows, info.first.columns)
        floor, new_floor, from_db, from_folder = [], [], [], []
        for _ in range(REPEATS + 1):
            t = time.perf_counter()
            for f in files:
                f.read_bytes()
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = np.empty(shape, dtype=np.int16)
            for z, rec in enumerate(info.slots):
                with open(rec.path, "rb", buffering=0) as fh:
                    fh.seek(rec.pixel_offset or 0)
                    fh.readinto(memoryview(out[z]).cast("B"))
            new_floor.append(time.perf_counter() - t)
            del out
            t = time.perf_counter()
            volume = load_info(db.series_infos(series)[0])
            from_db.append(time.perf_counter() - t)
            del volume
            t = time.perf_counter()
            volume = open_image(str(folder))
            from_folder.append(time.perf_counter() - t)
            del volume
        # the first round warms up
        floor, new_floor, from_db, from_folder = floor[1:], new_floor[1:], from_db[1:], from_folder[1:]
    f, n, d, o = (statistics.median(v) for v in (floor, new_floor, from_db, from_folder))
    print(f"\nopen 512x512x305 uncompressed: from the database {_ms(from_db)} ({d / f:.1f}x the I/O floor "
          f"{_ms(floor)}; {d / n:.2f}x the floor into a new array {_ms(new_floor)}), from the folder "
          f"{_ms(from_folder)} ({o / f:.1f}x)")


def test_queries_on_10000_studies_and_a_million_instances(tmp_path: Path) -> None:
    import sqlite3

    from medview.io.studydb import StudyDatabase

    path = tmp_path / "studies.sqlite"
    with StudyDatabase(path) as db:
        c = db.conn
        t0 = time.perf_counter()
        with c:
            c.executemany("INSERT INTO patients (patient_id, patient_name, birth_date, sex) VALUES (?,?,?,?)",
                          [(f"ID{i:06d}", f"PATIENT{i % 997:03d}^TEST{i}", "19700101", "O") for i in range(5000)])
            c.executemany(
                "INSERT INTO studies (study_uid, patient, study_date, study_time, accession, description, study_id, "
                "referring, modalities, n_series, n_instances, added) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [(f"1.2.3.{i}", 1 + i % 5000, f"20{10 + i % 15:02d}{1 + i % 12:02d}{1 + i % 28:02d}", "120000",
                  f"A{i}", "CT chest", "1", "", "CT", 4, 100, 0.0) for i in range(10_000)])
            c.executemany("INSERT INTO series (series_uid, study, number, description, modality, body_part, "
                          "n_instances) VALUES (?,?,?,?,?,?,?)",
                          [(f"1.2.3.{i}.{k}", 1 + i, k, "axial", "CT", "CHEST", 25) for i in range(10_000)
                           for k in range(4)])

            def instances():
                for s in range(40_000):
                    for k in range(25):
                        yield (1 + s, f"1.2.3.{s}.{k}.9", f"/data/{s}/{k}.dcm", 1000, 0, "1.2.840.10008.1.2.1", k,
                               1, b"")

            c.executemany("INSERT INTO instances (series, sop_uid, path, size, mtime_ns, transfer_syntax, "
                          "instance_number, n_frames, records) VALUES (?,?,?,?,?,?,?,?,?)", instances())
        made = time.perf_counter() - t0
        assert c.execute("SELECT count(*) FROM instances").fetchone()[0] == 1_000_000
    timings: dict[str, list[float]] = {"first page": [], "name prefix + date range": [], "series of a study": []}
    with StudyDatabase(path) as db:
        for _ in range(REPEATS + 2):
            t = time.perf_counter()
            page = db.list_studies(limit=50)
            timings["first page"].append(time.perf_counter() - t)
            t = time.perf_counter()
            hits = db.list_studies(patient_name="patient12", date="20180101-20191231")
            timings["name prefix + date range"].append(time.perf_counter() - t)
            t = time.perf_counter()
            series = db.list_series("1.2.3.4321")
            timings["series of a study"].append(time.perf_counter() - t)
        assert len(page) == 50 and hits and len(series) == 4
    print(f"\n10,000 studies / 1,000,000 instances (rows made in {made:.1f} s), {sqlite3.sqlite_version}:")
    for what, values in timings.items():
        print(f"  {what}: {_ms(values[1:])}")
