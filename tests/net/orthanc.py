"""A throw-away Orthanc (Debian's /usr/sbin/Orthanc) for the network tests, and its REST API through urllib.

:func:`start_orthanc` writes a JSON configuration into a temporary folder (its own storage and index, free
ports on 127.0.0.1 for DICOM and HTTP, the DICOMweb plugin, no authentication, no remote access), starts
Orthanc with ``subprocess.Popen`` (output into ``orthanc.log`` there) and waits until ``GET /system`` answers.
:meth:`Orthanc.stop` ends it by its PID (terminate, wait, kill).  The default ports 4242/8042 are never used:
a system service may hold them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AET = "ORTHANCTEST"
MEDVIEW_AET = "MEDVIEW"


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that nothing listens on right now (bind each to port 0, read
    it; all are held until every one is chosen, so they differ, then closed)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def write_config(folder: Path, dicom_port: int, http_port: int, medview_scp_port: int) -> Path:
    storage = folder / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "medview-test",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected (tested)
        "DicomCheckModalityHost": False,
        # medview's Storage SCP, so that C-MOVE can name it as destination
        "DicomModalities": {"medview": [MEDVIEW_AET, "127.0.0.1", medview_scp_port]},
        "DicomModalitiesInDatabase": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,  # 1.9.0+
        "DicomAlwaysAllowGet": True,  # 1.9.0+
        "DicomAlwaysAllowMove": True,  # 1.9.7+
        "DicomScpTimeout": 10,
        "DicomScuTimeout": 5,
        "UnknownSopClassAccepted": False,
        "StableAge": 1,
        "SaveJobs": False,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 10,
        "DicomThreadsCount": 4,
        "OverwriteInstances": False,
        "StorageAccessOnFind": "Always",
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                     "Host": "127.0.0.1", "Ssl": False},
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


@dataclass
class Orthanc:
    """A running test Orthanc: where it listens, its folder and log, and REST helpers."""

    folder: Path
    dicom_port: int
    http_port: int
    medview_scp_port: int  # the port Orthanc's DicomModalities gives AE "MEDVIEW" (C-MOVE destination)
    process: subprocess.Popen | None = None
    started_in_s: float = 0.0
    _log_handle: object = field(default=None, repr=False)
    aet: str = AET
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- REST ---------------------------------------------------------------------------------------------
    def request(self, method: str, path: str, data: bytes | None = None, content_type: str | None = None,
                timeout: float = 30.0) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.read()

    def get_json(self, path: str):
        return json.loads(self.request("GET", path))

    def upload(self, paths) -> list[str]:
        """POST each DICOM file to /instances; returns the Orthanc instance IDs."""
        ids = []
        for path in paths:
            answer = json.loads(self.request("POST", "/instances", Path(path).read_bytes(), "application/dicom"))
            if answer.get("Status") not in ("Success", "AlreadyStored"):
                raise RuntimeError(f"Orthanc did not store {path}: {answer}")
            ids.append(answer["ID"])
        return ids

    def studies(self) -> list[str]:
        return self.get_json("/studies")

    def instances(self) -> list[str]:
        return self.get_json("/instances")

    def instance_file(self, instance_id: str) -> bytes:
        return self.request("GET", f"/instances/{instance_id}/file")

    def instance_tags(self, instance_id: str) -> dict:
        return self.get_json(f"/instances/{instance_id}/simplified-tags")

    def clear(self) -> None:
        """Delete every patient (and so every study, series and instance)."""
        for patient in self.get_json("/patients"):
            self.request("DELETE", f"/patients/{patient}")

    # --- process ------------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> None:
        config = write_config(self.folder, self.dicom_port, self.http_port, self.medview_scp_port)
        self._log_handle = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.monotonic()
        self.process = subprocess.Popen([ORTHANC, str(config)], stdout=self._log_handle, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=self.folder)
        deadline = t0 + timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise RuntimeError(f"Orthanc exited with code {code} at start-up; log tail:\n"
                                   f"{self.log_tail()}")
            try:  # a short timeout per try: something else may hold the port and never answer
                system = json.loads(self.request("GET", "/system", timeout=1.0))
                if system.get("DicomAet") == self.aet:
                    self.started_in_s = time.monotonic() - t0
                    return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = str(exc)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer GET /system within {timeout_s:.0f} s ({last_error}); "
                           f"log tail:\n{self.log_tail()}")

    def stop(self) -> None:
        """End the process by its PID: terminate, wait, kill if it does not stop."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None


def orthanc_available() -> str | None:
    """Why the Orthanc tests cannot run here, or None."""
    if not os.path.exists(ORTHANC):
        return f"{ORTHANC} is not installed (make test installs the orthanc package)"
    if not os.path.exists(DICOMWEB_PLUGIN):
        return f"{DICOMWEB_PLUGIN} is not installed (make test installs orthanc-dicomweb)"
    return None


def start_orthanc(folder: Path) -> Orthanc:
    dicom_port, http_port, scp_port = free_ports(3)
    server = Orthanc(folder=folder, dicom_port=dicom_port, http_port=http_port, medview_scp_port=scp_port)
    server.start()
    return server


def make_ct_series(folder: Path, *, patient_name: str, patient_id: str, study_date: str, slices: int = 3,
                   birth_date: str = "19700101", description: str = "TEST CT", modality: str = "CT",
                   study_uid: str | None = None, accession: str = "", size: int = 8, seed: int = 0) -> list[Path]:
    """A small CT series (``slices`` slices of ``size`` x ``size`` int16 pixels, explicit VR little endian) for
    an invented patient, written with pydicom; returns the files in slice order."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    frame_uid = generate_uid()
    rng = np.random.default_rng(seed)
    files = []
    for index in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = birth_date
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = study_date
        ds.StudyTime = "101500"
        ds.SeriesDate = study_date
        ds.AccessionNumber = accession
        ds.StudyID = "1"
        ds.StudyDescription = description
        ds.SeriesDescription = f"{description} series"
        ds.ReferringPhysicianName = ""
        ds.Modality = modality
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(index) * 2.5]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [0.5, 0.5]
        ds.SliceThickness = 2.5
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = size
        ds.Columns = size
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        if modality == "CT":
            ds.RescaleIntercept = -1024.0
            ds.RescaleSlope = 1.0
        pixels = rng.integers(-1000, 2000, size=(size, size), dtype=np.int16)
        ds.PixelData = pixels.tobytes()
        path = folder / f"slice{index:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def run_pacs(argv: list[str]) -> int:
    """``medview pacs ...`` in this process, as medview.cli.main runs a verb module (MedviewError -> one line)."""
    from medview.cli import main as cli_main
    from medview.cli import pacs_cmd
    from medview.core.errors import MedviewError

    if "pacs" in cli_main.VERB_MODULES:
        return cli_main.main(["pacs", *argv])
    parser = argparse.ArgumentParser(prog="medview")
    pacs_cmd.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["pacs", *argv])
    try:
        return pacs_cmd.run(args, None)
    except MedviewError as exc:
        print(f"medview: error: {exc}", file=sys.stderr)
        return exc.exit_code
