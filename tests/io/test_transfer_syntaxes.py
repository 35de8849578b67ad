"""Every DICOM transfer syntax medview claims to read, checked against one real CT series.

Source: 6 consecutive slices (z 20..25), cropped to 256x256, of the lung1 chest CT in
``../shared/data/radiomics-cases`` (the repository's sibling folder; the tests skip when it is absent),
written as an uncompressed explicit-VR little-endian CT series by ``plastimatch convert``.  Each file
is then transcoded by an independent tool (DCMTK or GDCM, never medview) and the series is opened
again with :func:`medview.open_image`:

* lossless syntaxes must give the source volume bit for bit (same dtype, same values, same geometry);
* lossy syntaxes must agree with pydicom's own decode + modality LUT of the transcoded files, and
  stay within an error bound against the source that was measured once and written down below;
* ``SeriesInfo.transfer_syntaxes`` must name the expected UID, which proves the transcoding happened.

The source itself is checked against SimpleITK's reading of the NRRD it was made from, so the chain
NRRD -> plastimatch -> medview is anchored to an independent reader.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import medview

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
LUNG = DATA / "radiomics-cases" / "lung1_image.nrrd"

# crop of lung1 (x, y, z index ranges): 256x256 pixels around the mediastinum, 6 slices of 5 mm
CROP = (slice(128, 384), slice(128, 384), slice(20, 26))

EXPLICIT_LE = "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Syntax:
    """One transfer syntax and how an external tool produces it from the source files."""

    name: str
    uid: str
    argv: tuple[str, ...]  # the command; the input and output file names are appended
    lossless: bool
    # lossy only: bounds on |medview(transcoded) - medview(source)| in HU
    max_mean_abs: float | None = None
    max_p99: float | None = None
    near: int | None = None  # JPEG-LS NEAR parameter: the bound on the error in stored units

    @property
    def tool(self) -> str:
        return self.argv[0]


NEAR = 3

SYNTAXES = [
    Syntax("implicit_vr_le", "1.2.840.10008.1.2", ("dcmconv", "+ti"), True),
    # the source is already explicit VR LE; rewriting it with DCMTK still checks a second writer
    Syntax("explicit_vr_le", EXPLICIT_LE, ("dcmconv", "+te"), True),
    Syntax("explicit_vr_be", "1.2.840.10008.1.2.2", ("dcmconv", "+tb"), True),
    Syntax("deflated_explicit_le", "1.2.840.10008.1.2.1.99", ("dcmconv", "+td"), True),
    # JPEG baseline holds 8-bit samples only.  dcmcjpeg makes the 8-bit variant itself, as real
    # archives do: per image it maps the stored range onto 0..255 and writes a new RescaleSlope
    # (8.03 or 16.06 HU per step on these slices, i.e. different slopes within one series) and
    # RescaleIntercept, then compresses at IJG quality 90.  The error therefore includes the 8-bit
    # requantisation.  Measured (DCMTK 3.6.7): mean |error| 8.49 HU, p99 30.8 HU, max 81 HU.
    Syntax("jpeg_baseline_8bit", "1.2.840.10008.1.2.4.50", ("dcmcjpeg", "+eb"), False,
           max_mean_abs=12.0, max_p99=45.0),
    # JPEG extended, 12 bits: dcmcjpeg shifts the data into 12 unsigned bits (intercept -2047),
    # IJG quality 90.  Measured: mean |error| 1.35 HU, p99 5.0 HU, max 13 HU.
    Syntax("jpeg_extended_12bit", "1.2.840.10008.1.2.4.51", ("dcmcjpeg", "+ee"), False,
           max_mean_abs=2.0, max_p99=8.0),
    Syntax("jpeg_lossless_p14", "1.2.840.10008.1.2.4.57", ("dcmcjpeg", "+el"), True),
    Syntax("jpeg_lossless_sv1", "1.2.840.10008.1.2.4.70", ("dcmcjpeg", "+e1"), True),
    Syntax("jpeg_ls_lossless", "1.2.840.10008.1.2.4.80", ("dcmcjpls", "+el"), True),
    # dcmcjpls refuses near-lossless for signed pixel data (this CT has PixelRepresentation 1), so
    # GDCM encodes it, NEAR = 3, slope stays 1.  Measured: max |error| 3 stored units = 3 HU,
    # mean |error| 1.70 HU, p99 3 HU.
    Syntax("jpeg_ls_near_lossless", "1.2.840.10008.1.2.4.81",
           ("gdcmconv", "--quiet", "--jpegls", "--lossy", "-e", str(NEAR)), False,
           max_mean_abs=2.5, max_p99=float(NEAR), near=NEAR),
    Syntax("jpeg2000_lossless", "1.2.840.10008.1.2.4.90", ("gdcmconv", "--quiet", "--j2k"), True),
    # GDCM/OpenJPEG irreversible wavelet at a 10:1 target compression ratio.
    # Measured: mean |error| 2.75 HU, p99 10 HU, max 24 HU.
    Syntax("jpeg2000_lossy", "1.2.840.10008.1.2.4.91", ("gdcmconv", "--quiet", "--j2k", "--lossy", "-r", "10"),
           False, max_mean_abs=4.0, max_p99=15.0),
    Syntax("rle_lossless", "1.2.840.10008.1.2.5", ("dcmcrle",), True),
]

LOSSLESS = [pytest.param(s, id=s.name) for s in SYNTAXES if s.lossless]
LOSSY = [pytest.param(s, id=s.name) for s in SYNTAXES if not s.lossless]
# everything that medview cannot read straight from disk goes through pydicom's decoders
CODED = [pytest.param(s, id=s.name) for s in SYNTAXES if s.uid not in ("1.2.840.10008.1.2", EXPLICIT_LE)]


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lung_crop():
    """The cropped lung1 CT as SimpleITK reads it from the NRRD (the independent reference)."""
    if not LUNG.is_file():
        pytest.skip(f"shared test data not found: {LUNG}")
    sitk = pytest.importorskip("SimpleITK")
    image = sitk.ReadImage(str(LUNG))
    return image[CROP]


@pytest.fixture(scope="module")
def source_dir(lung_crop, tmp_path_factory) -> Path:
    """An uncompressed explicit-VR little-endian CT series written by plastimatch."""
    if shutil.which("plastimatch") is None:
        pytest.skip("plastimatch is not installed")
    import SimpleITK as sitk

    work = tmp_path_factory.mktemp("ts_source")
    nrrd = work / "small.nrrd"
    sitk.WriteImage(lung_crop, str(nrrd))
    out = work / "dicom"
    _run(["plastimatch", "convert", "--input", str(nrrd), "--output-dicom", str(out)])
    files = sorted(out.glob("*.dcm"))
    assert len(files) == 6, f"plastimatch wrote {len(files)} files"
    return out


@pytest.fixture(scope="module")
def reference(source_dir):
    return medview.open_image(source_dir)


@pytest.fixture(scope="module")
def transcode(source_dir, tmp_path_factory):
    """A function: Syntax -> folder holding the source series in that transfer syntax (cached)."""
    made: dict[str, Path] = {}

    def get(syntax: Syntax) -> Path:
        if syntax.name in made:
            return made[syntax.name]
        if shutil.which(syntax.tool) is None:
            pytest.skip(f"{syntax.tool} is not installed")
        out = tmp_path_factory.mktemp(f"ts_{syntax.name}")
        for f in sorted(source_dir.glob("*.dcm")):
            _run([*syntax.argv, str(f), str(out / f.name)])
        made[syntax.name] = out
        return out

    return get


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def _pydicom_volume(folder: Path, stored: bool = False) -> np.ndarray:
    """pydicom's decode of every file, sorted by z, with each file's own modality LUT (float64)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    datasets = [pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm"))]
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # axial slices, identity direction
    if stored:
        return np.stack([ds.pixel_array.astype(np.int64) for ds in datasets])
    return np.stack([np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64) for ds in datasets])


def _only_series(folder: Path):
    found = medview.scan(folder)
    assert len(found) == 1, [s.uid for s in found]
    return found[0]


# -- the source ---------------------------------------------------------------------------------
def test_source_series_matches_the_nrrd(source_dir, reference, lung_crop):
    import SimpleITK as sitk

    info = _only_series(source_dir)
    assert info.transfer_syntaxes == [EXPLICIT_LE]
    assert info.modality == "CT"
    assert info.n_slices == 6
    expected = sitk.GetArrayFromImage(lung_crop)  # (z, y, x) int16 HU
    assert reference.array.shape == (6, 256, 256)
    np.testing.assert_array_equal(reference.array, expected)
    g = reference.geometry
    np.testing.assert_allclose(g.spacing, lung_crop.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(g.origin, lung_crop.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(g.direction, lung_crop.GetDirection(), atol=1e-6)
    assert reference.metadata.modality == "CT"


# -- lossless -----------------------------------------------------------------------------------
@pytest.mark.parametrize("syntax", LOSSLESS)
def test_lossless_syntax_is_bit_exact(syntax: Syntax, transcode, reference):
    folder = transcode(syntax)
    info = _only_series(folder)
    assert info.transfer_syntaxes == [syntax.uid]
    assert info.n_slices == 6

    vol = medview.open_image(folder)
    assert vol.array.dtype == reference.array.dtype
    assert vol.array.shape == reference.array.shape
    assert np.array_equal(vol.array, reference.array), \
        f"{int(np.count_nonzero(vol.array != reference.array))} voxels differ"
    assert vol.geometry == reference.geometry
    assert vol.metadata.modality == "CT"


# -- lossy --------------------------------------------------------------------------------------
@pytest.mark.parametrize("syntax", LOSSY)
def test_lossy_syntax_within_tolerance(syntax: Syntax, transcode, reference, source_dir):
    folder = transcode(syntax)
    info = _only_series(folder)
    assert info.transfer_syntaxes == [syntax.uid]

    vol = medview.open_image(folder)
    assert vol.array.shape == reference.array.shape
    assert vol.geometry == reference.geometry

    # medview applies each file's own rescale exactly as pydicom does (the JPEG baseline files
    # carry different slopes); float32 output, so compare with float32 precision
    np.testing.assert_allclose(vol.array, _pydicom_volume(folder), rtol=1e-6, atol=1e-3)

    err = np.abs(vol.array.astype(np.float64) - reference.array.astype(np.float64))
    mean_abs, p99 = float(err.mean()), float(np.percentile(err, 99))
    assert mean_abs <= syntax.max_mean_abs, f"mean |error| {mean_abs:.2f} HU"
    assert p99 <= syntax.max_p99, f"99th percentile |error| {p99:.2f} HU"

    if syntax.near is not None:
        # JPEG-LS near-lossless guarantees |error| <= NEAR in stored units; the slope is 1 here, so
        # stored units are HU
        stored_err = np.abs(_pydicom_volume(folder, stored=True) - _pydicom_volume(source_dir, stored=True))
        assert int(stored_err.max()) <= syntax.near
        assert float(err.max()) <= syntax.near


# -- the process pool ---------------------------------------------------------------------------
@pytest.mark.parametrize("syntax", CODED)
def test_process_pool_decodes_the_same(syntax: Syntax, transcode):
    """Series of 8+ coded slices are decoded in worker processes into shared memory; 6 slices are
    decoded in-process by default.  Forcing the pool must not change a single voxel."""
    from medview.io.dicom.load import load_series

    folder = transcode(syntax)
    info = _only_series(folder)
    in_process = load_series(info, parallel=False)
    pooled = load_series(info, parallel=True)
    assert pooled.array.dtype == in_process.array.dtype
    assert np.array_equal(pooled.array, in_process.array)


def test_a_pooled_volume_is_mapped_in_before_it_is_returned(transcode):
    """Workers decode into shared memory; the loader maps its pages into this process before returning, so
    the first slice across all of them (a sagittal view, on the GUI thread) does not fault them in one by one
    (2,400 faults, 12-50 ms for a 305-slice CT)."""
    import resource

    from medview.io.dicom.load import load_series

    info = _only_series(transcode(next(s for s in SYNTAXES if s.name == "jpeg_ls_lossless")))
    pooled = load_series(info, parallel=True)
    assert pooled.array.nbytes >= 1 << 19 and not pooled.array.flags.owndata  # a shared mapping, 192+ pages
    sagittal = pooled.array[:, :, pooled.array.shape[2] // 2]  # a column of every row: reads every page
    copy = np.ones(sagittal.shape, sagittal.dtype)  # written now, so the copy below allocates nothing
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    np.copyto(copy, sagittal)
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    assert np.array_equal(copy, sagittal) and copy.any()
    # unmapped, the pages fault in a few at a time as the copy reaches them: 15-18 faults here; mapped, 0-4
    # (the interpreter's own allocations between the two counts)
    assert faults <= 8, f"{faults} page faults reading one sagittal slice"


def _imported(names: tuple[str, ...]) -> dict[str, bool]:
    """Run in a worker: which of ``names`` that process has imported."""
    return {name: sys.modules.get(name) is not None for name in names}


def test_fork_server_workers_decode_without_download_helpers(monkeypatch, transcode):
    """The GUI's workers come from a fork server that preloads pydicom and the codecs but not pydicom's
    optional download helpers (requests, tqdm: 0.1 s of the server's start); they still parse and decode."""
    from medview.io.dicom import parallel
    from medview.io.dicom.load import load_series

    info = _only_series(transcode(next(s for s in SYNTAXES if s.name == "jpeg_ls_lossless")))
    in_process = load_series(info, parallel=False)
    parallel.shutdown()
    monkeypatch.setattr(parallel, "_FORKSERVER_ONLY", True)  # as after configure(): Qt runs threads
    try:
        pool = parallel.process_pool()
        assert parallel.start_method() == "forkserver"
        loaded = pool.submit(_imported, ("requests", "tqdm", "pydicom", "medview.io.dicom.decode")).result(timeout=120)
        assert loaded == {"requests": False, "tqdm": False, "pydicom": True, "medview.io.dicom.decode": True}
        pooled = load_series(info, parallel=True)
        assert np.array_equal(pooled.array, in_process.array)
        assert "medview.io.dicom.worker_imports" not in sys.modules  # medview's own process keeps requests
    finally:
        parallel.shutdown()


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_workers_end_when_medview_dies(method: str) -> None:
    """A crash (here ``os._exit``) of the process that started the decode workers must not leave them
    behind: a forked worker holds both ends of the pool's pipes and used to wait for work forever."""
    import os
    import time

    code = f"""
import os, sys
from medview.io.dicom import parallel
if {method == "forkserver"}:
    parallel.prefer_forkserver()
parallel.warm_up()
pool = parallel.process_pool()
pids = sorted(set(pool.submit(os.getpid).result() for _ in range(8)))
assert parallel.start_method() == {method!r}, parallel.start_method()
print(" ".join(map(str, pids)), flush=True)
os._exit(9)
"""
    env = {**os.environ, "MEDVIEW_WORKERS": "2"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 9, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert pids and os.getpid() not in pids

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10.0
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in pids if alive(p)]
    for p in left:  # do not leave them to the next test either
        os.kill(p, 9)
    assert not left, f"workers {left} outlived the process that started them"


# -- a real JPEG Extended 12-bit file -------------------------------------------------------------
def _gdcm_decode(path: str) -> np.ndarray:
    """GDCM's own decode (its IJG 12-bit build, the library behind ``gdcmconv --raw``), not through pydicom."""
    gdcm = pytest.importorskip("gdcm")
    reader = gdcm.ImageReader()
    reader.SetFileName(path)
    assert reader.Read(), f"GDCM cannot read {path}"
    image = reader.GetImage()
    assert image.GetPixelFormat().GetBitsAllocated() == 16
    buffer = image.GetBuffer().encode("utf-8", "surrogateescape")  # python-gdcm returns the bytes as str
    cols, rows = image.GetDimension(0), image.GetDimension(1)
    return np.frombuffer(buffer, dtype="<u2").reshape(rows, cols)


def test_pydicom_jpeg_lossy_12bit_file(tmp_path):
    """pydicom's JPEG-lossy.dcm (NM1_JPLY of the NEMA WG04 set, JPEG Extended 12-bit) writes Se = 0 in its
    start-of-scan header where a sequential DCT scan must have 63.  IJG's libjpeg (dcmdjpeg, GDCM) warns
    and decodes it; pylibjpeg-libjpeg refused it and pydicom's GDCM plugin refuses every 12-bit JPEG.
    medview must decode it, matching GDCM's decode within the JPEG standard's IDCT tolerance (1 unit), and
    bit for bit pydicom's repaired copy of the same file (JPGExtended.dcm: only that byte differs)."""
    import pydicom
    from pydicom.data import get_testdata_file

    path = get_testdata_file("JPEG-lossy.dcm")
    info = _only_series(Path(path))
    assert info.transfer_syntaxes == ["1.2.840.10008.1.2.4.51"]
    vol = medview.open_image(path)
    assert vol.array.shape == (1, 1024, 256)

    reference = _gdcm_decode(path).astype(np.int64)
    ours = vol.array[0].astype(np.int64)
    assert int(np.abs(ours - reference).max()) <= 1
    assert float(np.abs(ours - reference).mean()) < 0.05
    assert ours.max() == reference.max() == 264

    fixed = pydicom.dcmread(get_testdata_file("JPGExtended.dcm"))
    np.testing.assert_array_equal(ours, fixed.pixel_array)

    if shutil.which("dcmdjpeg"):  # DCMTK's IJG decode to uncompressed, read back by pydicom
        plain = tmp_path / "plain.dcm"
        _run(["dcmdjpeg", path, str(plain)])
        dcmtk = pydicom.dcmread(plain).pixel_array.astype(np.int64)
        np.testing.assert_array_equal(dcmtk, reference)  # the two IJG builds agree exactly


def test_scan_header_repair_touches_only_broken_sequential_scans():
    """The repair changes nothing in a valid stream, nor in a progressive one (where Se < 63 is legal)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.encaps import generate_frames

    from medview.io.dicom.jpeg_markers import repair_sequential_scans

    def first_frame(name: str) -> bytes:
        ds = pydicom.dcmread(get_testdata_file(name))
        return next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))

    broken, fixed = first_frame("JPEG-lossy.dcm"), first_frame("JPGExtended.dcm")
    assert repair_sequential_scans(broken) == fixed
    assert repair_sequential_scans(fixed) is None
    progressive = bytearray(fixed)
    sof = progressive.find(b"\xff\xc1")
    progressive[sof + 1] = 0xC2  # the same headers, declared progressive
    assert repair_sequential_scans(bytes(progressive)) is None
    assert repair_sequential_scans(b"not a jpeg") is None
    sos = broken.find(b"\xff\xda")
    assert repair_sequential_scans(broken[:sos + 8]) is None  # cut inside the scan header
