"""Bad input never crashes, hangs, blows the memory budget or prints library noise (issue 17, fuzz section).

``test_fuzz_cases`` runs 300 mutated files (fixed seed, every mutation family of
:mod:`tests.io.fuzz_mutations`) through ``medview info`` and ``medview convert`` in one subprocess
(:mod:`tests.io.fuzz_runner`, each run forked from it).  The long run (thousands, not in ``make test``)::

    .venv/bin/python -m tests.io.fuzz_runner --cases 3000 --seed 1

The other tests pin each kind of failure the fuzz found, on real pydicom files, through the real command
where a failure would kill the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medview
from medview.core.errors import CorruptFileError, DecodeError, MedviewError, UnsupportedFormatError
from tests.conftest import REPO
from tests.io import fuzz_mutations as fm
from tests.io.fuzz_runner import ALLOWANCE_MB, BUDGET_MB, OWN_LINE, TIME_LIMIT_S

MEDVIEW = Path(sys.executable).parent / "medview"
FILES = fm.PYDICOM_FILES


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "MEDVIEW_MEMORY_BUDGET_MB": str(BUDGET_MB), **extra}


def _edited(tmp_path: Path, source: str, name: str = "case.dcm", **values: str | int) -> Path:
    """``source`` (a pydicom test file) with elements replaced: str values as written (valid or not), int as US."""
    def edit(ds: pydicom.Dataset) -> None:
        for keyword, value in values.items():
            if isinstance(value, int):
                fm._binary(ds, keyword, value)
            else:
                fm._raw(ds, keyword, value)

    out = tmp_path / name
    out.write_bytes(fm._mutate_dataset((FILES / source).read_bytes(), edit))
    return out


def _medview(*argv: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(MEDVIEW), *argv], capture_output=True, text=True, timeout=timeout, env=_env(**env))


def _only_own_lines(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert all(OWN_LINE.match(line) for line in lines), err
    assert "Traceback" not in err


# -- the fuzz ---------------------------------------------------------------------------------------------
def test_fuzz_cases(tmp_path: Path) -> None:
    summary_path, failed_path = tmp_path / "summary.json", tmp_path / "failed.json"
    done = subprocess.run([sys.executable, "-m", "tests.io.fuzz_runner", "--cases", "300", "--seed", "0", "--quiet",
                           "--summary", str(summary_path), "--json", str(failed_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900, env=_env())
    assert summary_path.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    failed = json.loads(failed_path.read_text())
    details = "\n".join(f"{f['problem']}: {f['verb']} {f['case']}: {f['stderr'][-400:]}" for f in failed[:10])
    assert summary["runs"] == 600
    assert summary["failed"] == 0, f"{summary}\n{details}"
    assert summary["deaths"] == 0 and summary["tracebacks"] == 0 and summary["over_time_limit"] == 0
    assert summary["max_seconds"] <= TIME_LIMIT_S
    assert summary["max_peak_mb"] <= BUDGET_MB + ALLOWANCE_MB
    assert summary["exit_0"] > 100 and summary["exit_3"] > 100  # both readable and refused files were made


def test_every_family_makes_different_files(tmp_path: Path) -> None:
    seeds = fm.seed_files(tmp_path / "seeds")
    cases = fm.generate(seeds, 80, seed=0)
    assert {c.family for c in cases} == set(fm.FAMILIES)
    assert cases == fm.generate(seeds, 80, seed=0)  # fixed seeds: the same files every time
    by_seed = {c.seed_file: c for c in cases}
    assert all(c.data != (FILES / c.seed_file).read_bytes() for c in by_seed.values() if (FILES / c.seed_file).exists())


def test_real_commands_on_a_sample_of_cases(tmp_path: Path) -> None:
    """A few cases through the installed ``medview`` command itself (a fresh interpreter each)."""
    seeds = fm.seed_files(tmp_path / "seeds")
    paths = fm.write_cases(fm.generate(seeds, 16, seed=0, start=96), tmp_path / "cases")
    out = tmp_path / "out"
    out.mkdir()
    for path in paths:
        for argv in (["info", str(path)], ["convert", str(path), str(out / "x.nii.gz")]):
            start = time.monotonic()
            done = _medview(*argv, timeout=30)
            assert time.monotonic() - start < 30
            assert done.returncode in (0, 3), (argv, done.stderr)
            _only_own_lines(done.stderr)
            assert sum(line.startswith("medview: error:") for line in done.stderr.splitlines()) == \
                (1 if done.returncode == 3 else 0)
    assert sorted(os.listdir(tmp_path / "cases")) == sorted(p.name for p in paths)  # nothing written beside them


# -- the failures it found -------------------------------------------------------------------------------
def test_a_codec_that_aborts_ends_a_worker_not_medview(tmp_path: Path) -> None:
    """Any C/C++ abort inside a decoder (here: os.abort() in place of the decode) is one line, exit 3."""
    code = f"""
import os, sys
import medview.io.dicom.decode as decode
decode._decode_one = lambda *args: os.abort()
from medview.cli.main import main
sys.exit(main(["convert", {str(FILES / "MR_small_jpeg_ls_lossless.dcm")!r}, {str(tmp_path / "out.nii.gz")!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "decoder crashed on" in done.stderr and "MR_small_jpeg_ls_lossless.dcm" in done.stderr
    _only_own_lines(done.stderr)
    assert not (tmp_path / "out.nii.gz").exists()


def test_jpeg_whose_header_disagrees_with_the_dicom_header(tmp_path: Path) -> None:
    """BitsAllocated 32 on 8-bit JPEG: GDCM threw an uncaught C++ exception (the process aborted)."""
    path = _edited(tmp_path, "SC_rgb_jpeg_gdcm.dcm", BitsAllocated=32)
    done = _medview("convert", str(path), str(tmp_path / "out.nii.gz"))
    assert done.returncode == 3, done.stderr
    assert "32 bits allocated" in done.stderr and "8-bit samples" in done.stderr
    _only_own_lines(done.stderr)


@pytest.mark.parametrize(("source", "kind"), [("MR_small_jp2klossless.dcm", "JPEG 2000"),
                                              ("MR_small_jpeg_ls_lossless.dcm", "JPEG")])
def test_rows_and_columns_checked_against_the_codestream(tmp_path: Path, source: str, kind: str) -> None:
    path = _edited(tmp_path, source, Rows=65535, Columns=4096)
    with pytest.raises(CorruptFileError, match=rf"says 4096x65535 pixels.*its {kind} data holds 64x64 pixels"):
        medview.open_image(path)


def test_rle_segments_checked_against_the_header(tmp_path: Path) -> None:
    path = _edited(tmp_path, "MR_small_RLE.dcm", BitsAllocated=32)  # 2 segments hold 16-bit samples
    with pytest.raises(CorruptFileError, match=r"2 segment.*expected 4"):
        medview.open_image(path)


@pytest.mark.parametrize("source", ["CT_small.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm"])
def test_number_of_frames_larger_than_the_data_is_refused_at_once(tmp_path: Path, source: str) -> None:
    """2147483647 frames: one record per frame was made (a hang, then the memory for them)."""
    path = _edited(tmp_path, source, NumberOfFrames="2147483647")
    start = time.monotonic()
    done = _medview("info", str(path), timeout=30)
    assert time.monotonic() - start < TIME_LIMIT_S
    assert done.returncode == 3 and "NumberOfFrames is 2147483647" in done.stderr, done.stderr
    _only_own_lines(done.stderr)


def test_compressed_number_of_frames_must_have_its_fragments(tmp_path: Path) -> None:
    path = _edited(tmp_path, "MR_small_jpeg_ls_lossless.dcm", NumberOfFrames="50")
    with pytest.raises(UnsupportedFormatError, match="NumberOfFrames is 50 but its pixel data holds 1 frame"):
        medview.scan(path)


@pytest.mark.parametrize("values", [
    {"ImagePositionPatient": "nan\\0\\0"}, {"ImagePositionPatient": "inf\\-inf\\0"},
    {"ImageOrientationPatient": "0\\0\\0\\0\\0\\0"}, {"ImageOrientationPatient": "1\\0\\0\\1\\0\\0"},
    {"PixelSpacing": "nan\\1"}, {"PixelSpacing": "1\\inf"}, {"SliceThickness": "inf"},
    {"InstanceNumber": "abc"}, {"NumberOfFrames": "1\\2"}, {"NumberOfFrames": "inf"},
    {"PixelSpacing": "1e-308\\1e-308"}, {"SliceThickness": "1e-308"}, {"PixelSpacing": "1e300\\1"},
])
def test_nan_inf_zero_geometry_and_non_numbers_still_open(tmp_path: Path, values: dict[str, str]) -> None:
    """'cannot convert float NaN to integer', 'Singular matrix', 'invalid literal for int()', MultiValue;
    and each still converts (a 1e-308 mm spacing made SimpleITK's matrix singular when writing)."""
    from medview.io.writers import write_image

    for source in ("CT_small.dcm", "MR_small_RLE.dcm"):
        path = _edited(tmp_path, source, name=f"x_{source}", **values)
        volume = medview.open_image(path)
        write_image(volume, tmp_path / f"{source}.nii.gz")
        expected = pydicom.dcmread(FILES / source).pixel_array
        assert volume.array.shape[-2:] == expected.shape
        assert all(np.isfinite(volume.geometry.spacing)) and all(np.isfinite(volume.geometry.origin))
        assert abs(np.linalg.det(np.reshape(volume.geometry.direction, (3, 3)))) > 0.5


def test_unknown_transfer_syntax_is_one_clear_error(tmp_path: Path) -> None:
    data = (FILES / "CT_small.dcm").read_bytes()
    import random

    path = tmp_path / "ts.dcm"
    for _ in range(50):  # the family draws the UID: take the draw that gives 1.2.3
        out = fm.transfer_syntax(data, random.Random(_), [])
        if b"1.2.3\x00" in out[:400]:
            path.write_bytes(out)
            break
    with pytest.raises(UnsupportedFormatError, match=r"transfer syntax '1\.2\.3' is not one medview knows"):
        medview.scan(path)


def test_palette_image_without_its_palette(tmp_path: Path) -> None:
    ds = pydicom.dcmread(FILES / "examples_palette.dcm")
    for keyword in ("GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
                    "RedPaletteColorLookupTableDescriptor"):  # the red data stays: it says 'a palette image'
        delattr(ds, keyword)
    ds.save_as(tmp_path / "p.dcm")
    with pytest.raises(DecodeError, match="PALETTE COLOR image whose palette cannot be used"):
        medview.open_image(tmp_path / "p.dcm")


def test_library_warnings_are_not_printed(tmp_path: Path) -> None:
    """pydicom's UserWarnings (with their source paths) came before medview's line."""
    (case,) = fm.generate([FILES / "MR_small_RLE.dcm"], 1, seed=0, start=2)  # truncated: 'End of file reached ...'
    assert case.family == "truncate"
    (tmp_path / "cut.dcm").write_bytes(case.data)
    for argv in (["info", str(tmp_path / "cut.dcm")], ["convert", str(tmp_path / "cut.dcm"), str(tmp_path / "o.nrrd")]):
        done = _medview(*argv)
        assert done.returncode in (0, 3)
        _only_own_lines(done.stderr)
        assert "UserWarning" not in done.stderr


def test_errors_are_medview_errors_in_process(tmp_path: Path) -> None:
    """The in-process API raises MedviewError (what the GUI shows in a dialog) for every kind above."""
    for values in ({"BitsAllocated": 32}, {"Rows": 65535}, {"NumberOfFrames": "99999999999"}):
        path = _edited(tmp_path, "MR_small_RLE.dcm", **values)
        with pytest.raises(MedviewError):
            medview.open_image(path)


def test_rle_claiming_65535_x_65535_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget that allows the 8 GB volume, the decoder still never sees a frame that cannot fill it (the
    fuzz saw such runs grow to 3.5 GB before they were killed)."""
    import resource

    monkeypatch.setenv("MEDVIEW_MEMORY_BUDGET_MB", "100000")
    path = _edited(tmp_path, "MR_small_RLE.dcm", Rows=65535, Columns=65535)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with pytest.raises(CorruptFileError, match="too short for 65535x65535 pixels"):
        medview.open_image(path)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < max(before, 1) + 512 * 1024  # KB
