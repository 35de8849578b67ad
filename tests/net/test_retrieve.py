"""Retrieve (issue 18 parts 3 and 5): C-GET and C-MOVE of a 300-slice CT made with plastimatch from a real
Orthanc into the study database, voxels equal to SimpleITK's reading of the source series; a cancelled
retrieve keeps what arrived and the study is marked incomplete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medview.core.errors import CancelledError
from medview.core.tasks import TaskContext
from medview.io.net.nodes import Node
from medview.io.net.retrieve import retrieve
from medview.io.studydb import StudyDatabase
from tests.conftest import require_tool
from tests.net.orthanc import MEDVIEW_AET


@pytest.fixture(scope="module")
def ct300(tmp_path_factory) -> Path:
    """A 300-slice CT (64 x 64, 1 x 1 x 1.5 mm, a bright sphere) written by plastimatch: an independent writer."""
    plastimatch = require_tool("plastimatch")
    folder = tmp_path_factory.mktemp("ct300")
    volume = folder / "synth.mha"
    subprocess.run([plastimatch, "synth", "--output", str(volume), "--dim", "64 64 300", "--spacing", "1 1 1.5",
                    "--pattern", "sphere", "--radius", "40", "--background", "-1000", "--foreground", "300"],
                   check=True, capture_output=True)
    out = folder / "dicom"
    subprocess.run([plastimatch, "convert", "--input", str(volume), "--output-dicom", str(out), "--patient-id",
                    "TEST0300", "--patient-name", "DOE^THREEHUNDRED"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def uploaded(orthanc, ct300) -> str:
    files = sorted(ct300.glob("*.dcm"))
    assert len([f for f in files if pydicom.dcmread(f, stop_before_pixels=True).Modality == "CT"]) == 300
    orthanc.upload(files)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def _node(orthanc) -> Node:
    return Node(name="orthanc", ae_title=orthanc.aet, host="127.0.0.1", port=orthanc.dicom_port,
                local_ae=MEDVIEW_AET)


def _source_voxels(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    ct = max(series, key=lambda uid: len(reader.GetGDCMSeriesFileNames(str(folder), uid)))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ct))
    return sitk.GetArrayFromImage(reader.Execute())


def _retrieved_voxels(study: str) -> np.ndarray:
    from medview.io.readers import open_image

    return open_image(study).array  # the study's UID: opened from the database


@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_a_300_slice_ct_into_the_database(orthanc, uploaded, ct300, method) -> None:
    node = _node(orthanc)
    result = retrieve(node, uploaded, method=method, move_port=orthanc.medview_scp_port)
    assert result["complete"] and result["received"] >= 300 and result["status"] == "0x0000"
    with StudyDatabase() as db:
        study = db.list_studies(study_uid=uploaded)[0]
        assert study["Complete"] and study["NumberOfStudyRelatedInstances"] == result["received"]
        assert study["PatientID"] == "TEST0300"
    np.testing.assert_array_equal(_retrieved_voxels(uploaded), _source_voxels(ct300))
    print(f"\nC-{method.upper()} of {result['received']} instances ({result['bytes'] / 1e6:.1f} MB) in "
          f"{result['seconds']:.2f} s")
    with StudyDatabase() as db:
        db.remove_study(uploaded)


def test_a_cancelled_retrieve_keeps_what_arrived_and_is_marked_incomplete(orthanc, uploaded) -> None:
    task = TaskContext()
    seen: list[float] = []

    def progress(fraction: float, _message: str) -> None:
        seen.append(fraction)
        if fraction > 0.1:
            task.token.cancel()

    task = TaskContext(on_progress=progress, min_interval_s=0.0)
    with pytest.raises(CancelledError):
        retrieve(_node(orthanc), uploaded, method="get", task=task)
    with StudyDatabase() as db:
        study = db.list_studies(study_uid=uploaded)[0]
        assert not study["Complete"] and 0 < study["NumberOfStudyRelatedInstances"] < 300
        db.remove_study(uploaded)


def test_cli_retrieve_prints_where_the_study_is(orthanc, uploaded) -> None:
    address = f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "pacs", "retrieve", address, uploaded, "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["study"] == uploaded and summary["complete"]
    assert "DOE" not in r.stderr and "TEST0300" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "pacs", "retrieve", address, "1.2.3.4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1, r.stderr
