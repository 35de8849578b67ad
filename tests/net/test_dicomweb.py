"""DICOMweb (issue 18 part 3) against Orthanc's DICOMweb plugin: QIDO-RS search by ID, name wildcard, date range
and modality; WADO-RS retrieve into the study database with voxels equal to pydicom's reading of the sources;
STOW-RS send checked byte for byte (pixel data) through Orthanc's REST API; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medview.io.net import dicomweb
from medview.io.net.dicomweb import WebServer
from medview.io.net.nodes import NetworkError
from medview.io.studydb import StudyDatabase
from tests.net.orthanc import make_ct_series


@pytest.fixture(scope="module")
def web(orthanc, tmp_path_factory):
    root = tmp_path_factory.mktemp("web")
    series = {
        "TEST0101": make_ct_series(root / "a", patient_name="DOE^JANE", patient_id="TEST0101", study_date="20240105",
                                   slices=6, seed=1),
        "TEST0102": make_ct_series(root / "b", patient_name="DOE^JOHN", patient_id="TEST0102", study_date="20240320",
                                   slices=4, seed=2),
        "TEST0103": make_ct_series(root / "c", patient_name="ROE^RICHARD", patient_id="TEST0103",
                                   study_date="20230711", slices=3, modality="MR", seed=3),
    }
    for files in series.values():
        orthanc.upload(files)
    return WebServer(f"{orthanc.url}/dicom-web"), series, orthanc


def test_qido_search(web) -> None:
    server, series, _ = web

    def ids(**filters) -> set[str]:
        return {row["PatientID"] for row in dicomweb.find(server, **filters)}

    assert ids() == {"TEST0101", "TEST0102", "TEST0103"}
    assert ids(patient_id="TEST0102") == {"TEST0102"}
    assert ids(patient_name="DOE*") == {"TEST0101", "TEST0102"}
    # names with the component separator (urllib3 sends ^ as %5E, which Orthanc 1.10.1 does not decode)
    assert ids(patient_name="DOE^JANE") == {"TEST0101"}
    assert ids(patient_name="doe^j*") == {"TEST0101", "TEST0102"}
    assert ids(patient_name="DOE^JOHN*") == {"TEST0102"}
    assert ids(date="20240101-20241231") == {"TEST0101", "TEST0102"}
    assert ids(date="20240301-") == {"TEST0102"}
    assert ids(modality="MR") == {"TEST0103"}
    study = str(pydicom.dcmread(series["TEST0101"][0]).StudyInstanceUID)
    rows = dicomweb.find(server, "series", study_uid=study)
    assert len(rows) == 1 and rows[0]["NumberOfSeriesRelatedInstances"] == 6 and rows[0]["Modality"] == "CT"


def test_wado_retrieve_into_the_database(web) -> None:
    server, series, _ = web
    files = series["TEST0101"]
    study = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    result = dicomweb.retrieve(server, study)
    assert result["received"] == 6 and result["complete"]
    from medview.io.readers import open_image

    volume = open_image(study)  # from the database
    reference = np.stack([pydicom.dcmread(f).pixel_array.astype(np.float64) * 1.0 - 1024.0 for f in files])
    np.testing.assert_array_equal(volume.array.astype(np.float64), reference)
    with StudyDatabase() as db:
        assert db.list_studies(study_uid=study)[0]["Complete"]
    with pytest.raises(NetworkError, match=r"HTTP 404|no instance"):
        dicomweb.retrieve(server, "1.2.3.4.5.6")


def test_stow_send_arrives_intact(web, tmp_path: Path) -> None:
    server, _, orthanc = web
    files = make_ct_series(tmp_path / "new", patient_name="POE^EDGAR", patient_id="TEST0199", study_date="20241111",
                           slices=5, seed=9)
    before = set(orthanc.instances())
    result = dicomweb.send(server, [tmp_path / "new"])
    assert result["sent"] == 5
    new = set(orthanc.instances()) - before
    assert len(new) == 5
    sent = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f).PixelData for f in files}
    import io

    for instance in new:
        ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
        assert ds.PixelData == sent[ds.SOPInstanceUID]


def test_cli_and_errors(web) -> None:
    server, series, _ = web

    def medview(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "medview.cli.main", "web", *args], capture_output=True,
                              text=True, timeout=300)

    r = medview("find", server.url, "--patient-name", "ROE*", "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["PatientID"] for line in r.stdout.splitlines()] == ["TEST0103"]
    study = str(pydicom.dcmread(series["TEST0102"][0]).StudyInstanceUID)
    r = medview("retrieve", server.url, study, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["study"] == study, r.stderr
    for bad in (["find", "http://127.0.0.1:1/dicom-web"], ["find", "ftp://x"], ["find", server.url + "/nope"]):
        r = medview(*bad)
        assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "DOE" not in r.stderr
