"""Shared fixtures: real data from ../shared/data (skipped when absent) and series made by plastimatch."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "radiomics-cases"


@pytest.fixture(autouse=True)
def medview_data_dir(tmp_path_factory, monkeypatch) -> Path:
    """Every test runs with its own ``MEDVIEW_DATA_DIR`` (never the user's recovery files, models or database)."""
    folder = tmp_path_factory.mktemp("medview-data")
    monkeypatch.setenv("MEDVIEW_DATA_DIR", str(folder))
    return folder


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make test installs it)")
    return path


def shared_case(name: str) -> Path:
    """A file of ../shared/data/radiomics-cases, or skip when this clone has no ../shared."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not available (tests with real cases need ../shared/data)")
    return path


def plastimatch_series(volume_file: Path, out_dir: Path, modality: str = "CT", extra: list[str] | None = None) -> Path:
    """Turn a NRRD/NIfTI volume into a DICOM series with plastimatch (an independent DICOM writer)."""
    require_tool("plastimatch")
    cmd = ["plastimatch", "convert", "--input", str(volume_file), "--output-dicom", str(out_dir),
           "--patient-id", "TEST", *(["--modality", modality] if modality != "CT" else []), *(extra or [])]
    subprocess.run(cmd, check=True, capture_output=True)
    return out_dir


def dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm" and p.name.startswith("image"))


@pytest.fixture(scope="session")
def lung1_series(tmp_path_factory) -> Path:
    """The real lung1 CT (512x512x48, 0.57x0.57x5 mm) as a plastimatch DICOM series."""
    src = shared_case("lung1_image.nrrd")
    return plastimatch_series(src, tmp_path_factory.mktemp("lung1") / "dicom")


@pytest.fixture(scope="session")
def brain1_series(tmp_path_factory) -> Path:
    """The real brain1 MR (y direction -1 in the NRRD) as a plastimatch MR series."""
    src = shared_case("brain1_image.nrrd")
    return plastimatch_series(src, tmp_path_factory.mktemp("brain1") / "dicom", modality="MR")


@pytest.fixture(scope="session")
def chest_ct_sample() -> Path:
    """The bundled chest CT (JPEG-LS DICOM series): present in every clone, so tests using it always run."""
    from medview.app.samples import sample_path

    return sample_path("chest_ct")


SPHERE_RADIUS_MM = 20.0
SPHERE_CENTRE_LPS = (0.0, 0.0, 0.0)


@pytest.fixture(scope="session")
def sphere_phantom(tmp_path_factory) -> Path:
    """plastimatch's analytic sphere (r = 20 mm at the LPS origin) as a CT series, 0.8 x 0.8 x 1.25 mm."""
    require_tool("plastimatch")
    out = tmp_path_factory.mktemp("sphere") / "dicom"
    subprocess.run(["plastimatch", "synth", "--pattern", "sphere", "--radius", "20", "--center", "0 0 0",
                    "--dim", "100 100 60", "--spacing", "0.8 0.8 1.25", "--origin", "-39.6 -39.6 -36.875",
                    "--background", "-1000", "--foreground", "100", "--output-type", "short",
                    "--output-dicom", str(out)], check=True, capture_output=True)
    for dose in out.glob("dose*.dcm"):
        dose.unlink()
    return out


@pytest.fixture
def vtk_messages():
    """Collect everything VTK prints (errors, warnings) and fail the test if anything was printed."""
    from vtkmodules.vtkCommonCore import vtkOutputWindow, vtkStringOutputWindow

    previous = vtkOutputWindow.GetInstance()
    buffer = vtkStringOutputWindow()
    vtkOutputWindow.SetInstance(buffer)
    yield buffer
    vtkOutputWindow.SetInstance(previous)
    assert buffer.GetOutput() == "", f"VTK printed: {buffer.GetOutput()}"


def pytest_unconfigure(config) -> None:
    """A session whose tests have all run must end: if the interpreter is still alive 120 s later (a worker
    process waiting on another, a thread that is never joined), print every thread's stack and exit with a
    failure instead of hanging until CI's time limit (it once hung 80 minutes after its last test)."""
    import faulthandler

    faulthandler.dump_traceback_later(120, exit=True)
