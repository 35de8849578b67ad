"""A cohort of compressed DICOM series (JPEG-LS, JPEG 2000, RLE) through ``medview batch`` on a real scheduler.

Dask's worker processes are daemonic, and a daemonic process may not start children: medview's decode
pool failed there with "daemonic processes are not allowed to have children" on every compressed case.
The series are 10 slices (more than the loader's in-process limit, so the pool would be used) of the
bundled JPEG-LS chest CT, transcoded by GDCM (never medview).  The features are checked against numpy over
pydicom's own decode of the source files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import yaml
from pydicom.pixels import apply_modality_lut

from medview.io.dicom.load import POOL_MIN_FRAMES
from tests.analysis.cohort_data import write_csv
from tests.conftest import require_tool

SLICES = range(20, 30)
LOWER_HU = 300.0  # bone: the threshold step's label 1


@pytest.fixture(scope="module")
def compressed_cohort(chest_ct_sample: Path, tmp_path_factory) -> Path:
    gdcmconv = require_tool("gdcmconv")
    folder = tmp_path_factory.mktemp("compressed_cohort")
    sources = [chest_ct_sample / f"image{i:04d}.dcm" for i in SLICES]
    assert len(sources) >= POOL_MIN_FRAMES
    rows = []
    for name, argv in (("jpegls", None), ("j2k", ["--j2k"]), ("rle", ["--rle"])):
        series = folder / name
        series.mkdir()
        for src in sources:
            if argv is None:
                shutil.copy(src, series / src.name)
            else:
                subprocess.run([gdcmconv, "--quiet", *argv, str(src), str(series / src.name)], check=True,
                               capture_output=True, timeout=60)
        rows.append({"case_id": name, "image": name})
    write_csv(folder / "cohort.csv", rows)
    (folder / "pipeline.yaml").write_text(yaml.safe_dump({"medview_pipeline": 1, "steps": [
        {"segment": {"method": "threshold", "params": {"lower": LOWER_HU}}},
        {"features": {"label": 1, "params": {"featureClass": {"firstorder": ["Mean", "Maximum"]},
                                             "setting": {"additionalInfo": False}}}},
    ]}))
    return folder


def _reference(folder: Path) -> tuple[float, float]:
    """Mean and maximum HU of the voxels >= LOWER_HU, from pydicom's decode and modality LUT."""
    hu = np.stack([apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
                   for ds in (pydicom.dcmread(f) for f in sorted(folder.glob("*.dcm")))])
    inside = hu[hu >= LOWER_HU]
    return float(inside.mean()), float(inside.max())


def test_compressed_series_on_a_local_cluster(compressed_cohort: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from medview.app.batch import run_batch

    monkeypatch.setenv("MEDVIEW_WORKERS", "2")  # the workers would use a decode pool of 2 processes
    for name in ("jpegls", "j2k", "rle"):  # the transcoding happened
        ts = pydicom.dcmread(next((compressed_cohort / name).glob("*.dcm")), stop_before_pixels=True)
        assert ts.file_meta.TransferSyntaxUID == {"jpegls": "1.2.840.10008.1.2.4.80", "j2k": "1.2.840.10008.1.2.4.90",
                                                  "rle": "1.2.840.10008.1.2.5"}[name]
    out = tmp_path / "out"
    summary = run_batch(compressed_cohort / "pipeline.yaml", compressed_cohort / "cohort.csv", out, workers=2,
                        progress=False)
    errors = pd.read_csv(out / "errors.csv")
    assert summary["ok"] == 3 and summary["failed"] == 0, errors.to_dict("records")
    assert summary["workers"] == 2
    table = pd.read_csv(out / "features.csv").set_index("case_id")
    mean, maximum = _reference(compressed_cohort / "jpegls")
    for name in ("jpegls", "j2k", "rle"):  # all lossless: the same numbers
        assert table.loc[name, "status"] == "ok"
        assert table.loc[name, "original_firstorder_Mean"] == pytest.approx(mean, rel=1e-6)
        assert table.loc[name, "original_firstorder_Maximum"] == pytest.approx(maximum)
        record = json.loads((out / "cases" / name / "case.json").read_text())
        assert record["status"] == "ok"
