"""DICOM networking benchmark: medview's command line against DCMTK's, both as fresh processes, in one run.

* C-STORE send: ``medview pacs send AE@127.0.0.1:PORT FOLDER`` against ``storescu +sd +r`` into one DCMTK
  ``storescp`` receiver this benchmark starts on a free loopback port (its output folder is emptied after
  every run, and every run must have delivered all 300 instances there).
* C-GET retrieve: ``medview pacs retrieve AE@127.0.0.1:PORT STUDY_UID --method get --json`` (into its own
  empty ``MEDVIEW_DATA_DIR``, so it imports into a fresh study database each run) against ``getscu -S`` (into
  its own empty output folder), both from a real Orthanc (tests/net/orthanc.py) holding the study.

Data: a 512 x 512 x 300 CT series (uncompressed int16, about 157 MB) written by plastimatch (``synth`` then
``convert --output-dicom``), made once per session in a temporary folder.  Method: ``MEDVIEW_BENCH_NET_REPEATS``
rounds (default 3); each round times one medview and one DCMTK run, alternating which goes first; each time is
the wall clock of the whole fresh process (``subprocess.run`` between two ``time.perf_counter`` calls), so
interpreter start-up and imports count for medview as process start-up counts for DCMTK.  Printed per tool:
the min-max range and median, MB/s at the median, and the ratio DCMTK time / medview time (> 1: medview is
faster) per round and of the medians; the project's goal is >= 0.5x DCMTK's throughput.  Each run's line also
shows the CPU seconds of the client process and of the server (storescp / Orthanc) during it, to tell which
side limits the transfer.

Nagle: DCMTK 3.6.7 (Debian) leaves Nagle's algorithm on unless ``TCP_NODELAY=1`` is in its environment, and a
DCMTK receiver then waits for the peer's delayed ACK (about 40 ms on Linux) before each C-STORE response goes
out: 300 instances take about 13 s whoever sends, with well under a second of CPU on either side.  medview sets
TCP_NODELAY on its sockets itself (medview/io/net/dimse.py, retrieve.py), so by default every process here runs
with ``TCP_NODELAY=1`` (storescp, storescu, getscu and Orthanc, which links Debian's DCMTK) and DCMTK is
measured at its best; ``MEDVIEW_BENCH_TCP_NODELAY=default`` removes the variable (DCMTK's stock behaviour).

Only correctness is asserted (exit codes 0, all 300 instances arrived in every run), never speed.

Run::

    .venv/bin/python -m pytest -q -s tests/benchmarks/test_network_benchmark.py -p no:cacheprovider
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.conftest import require_tool
from tests.net.orthanc import Orthanc, free_port, orthanc_available, start_orthanc

REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_NET_REPEATS", "3") or 3), 1)
N_SLICES = 300
SIZE = 512
PIXEL_BYTES = SIZE * SIZE * 2  # every received instance holds at least its pixel data
GOAL = 0.5  # medview's throughput at least half DCMTK's
MEDVIEW = Path(sys.executable).with_name("medview")
SCP_AET = "BENCHSCP"
RUN_TIMEOUT_S = 600
TCP_NODELAY = os.environ.get("MEDVIEW_BENCH_TCP_NODELAY", "1").strip()


@pytest.fixture(scope="session")
def ct512(tmp_path_factory) -> Path:
    """The 512 x 512 x 300 CT (1 x 1 x 1.5 mm, a bright sphere, int16) written as DICOM by plastimatch."""
    plastimatch = require_tool("plastimatch")
    folder = tmp_path_factory.mktemp("ct512")
    volume = folder / "synth.mha"
    subprocess.run([plastimatch, "synth", "--output", str(volume), "--dim", f"{SIZE} {SIZE} {N_SLICES}",
                    "--spacing", "1 1 1.5", "--pattern", "sphere", "--radius", "100", "--background", "-1000",
                    "--foreground", "300", "--output-type", "short"], check=True, capture_output=True)
    out = folder / "dicom"
    subprocess.run([plastimatch, "convert", "--input", str(volume), "--output-dicom", str(out), "--patient-id",
                    "BENCH0300", "--patient-name", "BENCH^NETWORK"], check=True, capture_output=True)
    volume.unlink()
    files = _files(out)
    assert len(files) == N_SLICES, f"plastimatch wrote {len(files)} files, expected {N_SLICES}"
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert (first.Modality, first.Rows, first.Columns, first.BitsAllocated) == ("CT", SIZE, SIZE, 16)
    assert first.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    return out


@pytest.fixture(autouse=True)
def dcmtk_nodelay(monkeypatch) -> str:
    """``TCP_NODELAY`` for every DCMTK process (and Orthanc) this benchmark starts; see the module docstring."""
    if TCP_NODELAY in ("", "default"):
        monkeypatch.delenv("TCP_NODELAY", raising=False)
        return "unset (DCMTK's default: Nagle on)"
    monkeypatch.setenv("TCP_NODELAY", TCP_NODELAY)
    return TCP_NODELAY


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _is_instance(path: Path) -> bool:
    """A DICOM file (preamble + ``DICM``) big enough to hold one slice's pixels: not a database, log or config."""
    if path.stat().st_size < PIXEL_BYTES:
        return False
    with open(path, "rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def _instances(folder: Path) -> int:
    return sum(1 for p in _files(folder) if _is_instance(p))


def _megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in _files(folder)) / 1e6


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall clock of one fresh process; a non-zero exit fails the benchmark with the process's output."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=env,
                          stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, (f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")
    return elapsed, proc


def _medview_env(data_dir: Path) -> dict[str, str]:
    if not MEDVIEW.exists():
        pytest.skip(f"{MEDVIEW} is not installed (pip install -e . puts medview's entry point there)")
    return {**os.environ, "MEDVIEW_DATA_DIR": str(data_dir)}


def _rounds(run_medview, run_dcmtk, server_pid: int, server: str) -> dict[str, list[float]]:
    """``REPEATS`` rounds of one run each, medview first in even rounds, DCMTK first in odd ones.  Each line also
    shows the CPU seconds the client process and the server (``server_pid``) spent during the run."""
    times: dict[str, list[float]] = {"medview": [], "DCMTK": []}
    runs = {"medview": run_medview, "DCMTK": run_dcmtk}
    for rnd in range(REPEATS):
        order = ["medview", "DCMTK"] if rnd % 2 == 0 else ["DCMTK", "medview"]
        for tool in order:
            client_cpu, server_cpu = _children_cpu_s(), _process_cpu_s(server_pid)
            seconds, note = runs[tool]()
            client_cpu, server_cpu = _children_cpu_s() - client_cpu, _process_cpu_s(server_pid) - server_cpu
            times[tool].append(seconds)
            print(f"[bench] round {rnd + 1} {tool:7s} {seconds:6.2f} s wall, CPU: client {client_cpu:5.2f} s, "
                  f"{server} {server_cpu:5.2f} s{note}", flush=True)
    return times


def _report(title: str, times: dict[str, list[float]], megabytes: float, dcmtk_name: str, nodelay: str) -> None:
    ours, theirs = times["medview"], times["DCMTK"]
    ratios = [d / m for m, d in zip(ours, theirs, strict=True)]
    ratio = statistics.median(theirs) / statistics.median(ours)
    print(f"\n{title}: {N_SLICES} instances, {megabytes:.1f} MB, {REPEATS} rounds, fresh processes, alternating; "
          f"TCP_NODELAY {nodelay}")
    for label, values in (("medview", ours), (dcmtk_name, theirs)):
        median = statistics.median(values)
        print(f"  {label:9s} {min(values):6.2f}-{max(values):6.2f} s, median {median:6.2f} s "
              f"({megabytes / median:6.1f} MB/s)")
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"  ratio {dcmtk_name} time / medview time: {min(ratios):.2f}-{max(ratios):.2f} per round, "
          f"{ratio:.2f} of the medians (goal >= {GOAL}: {verdict})", flush=True)


def _wait_for_echo(echoscu: str, port: int, process: subprocess.Popen, log: Path, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"storescp exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        if subprocess.run([echoscu, "-aec", SCP_AET, "-to", "2", "127.0.0.1", str(port)],
                          capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"storescp did not answer C-ECHO on port {port} within {timeout_s:.0f} s")


@pytest.fixture
def storescp(tmp_path, dcmtk_nodelay) -> Iterator[tuple[int, Path, int]]:
    """A DCMTK Storage SCP on a free loopback port, writing into its own folder; stopped by its PID."""
    binary, echoscu = require_tool("storescp"), require_tool("echoscu")
    received = tmp_path / "storescp"
    received.mkdir()
    log = tmp_path / "storescp.log"
    port = free_port()
    with open(log, "wb") as handle:
        process = subprocess.Popen([binary, "--output-directory", str(received), "-aet", SCP_AET, str(port)],
                                   stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_for_echo(echoscu, port, process, log)
        yield port, received, process.pid
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def orthanc_with_study(tmp_path, ct512, dcmtk_nodelay) -> Iterator[tuple[Orthanc, str]]:
    """A fresh Orthanc holding the 300-slice study (uploaded over REST); stopped even when the benchmark fails."""
    reason = orthanc_available()
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path / "orthanc")
    try:
        files = _files(ct512)
        server.upload(files)
        uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        stats = server.get_json(f"/studies/{server.get_json('/studies')[0]}/statistics")
        assert int(stats["CountInstances"]) == N_SLICES
        yield server, uid
    finally:
        server.stop()


def test_c_store_send_against_storescu(ct512, storescp, dcmtk_nodelay) -> None:
    storescu = require_tool("storescu")
    port, received, pid = storescp
    megabytes = _megabytes(ct512)

    def collected() -> int:
        count = _instances(received)
        for path in _files(received):
            path.unlink()
        return count

    def run_medview() -> tuple[float, str]:
        with tempfile.TemporaryDirectory() as data:
            seconds, proc = _timed([str(MEDVIEW), "pacs", "send", f"{SCP_AET}@127.0.0.1:{port}", str(ct512)],
                                   env=_medview_env(Path(data)))
        assert f"sent {N_SLICES} file(s)" in proc.stdout, proc.stdout + proc.stderr
        assert (count := collected()) == N_SLICES, f"storescp received {count} of {N_SLICES} from medview"
        return seconds, f"  (medview's own time: {proc.stdout.strip().rsplit(' in ', 1)[-1]})"

    def run_dcmtk() -> tuple[float, str]:
        seconds, _ = _timed([storescu, "-aec", SCP_AET, "+sd", "+r", "127.0.0.1", str(port), str(ct512)])
        assert (count := collected()) == N_SLICES, f"storescp received {count} of {N_SLICES} from storescu"
        return seconds, ""

    print()
    _report("C-STORE send into storescp", _rounds(run_medview, run_dcmtk, pid, "storescp"), megabytes,
            "storescu", dcmtk_nodelay)


def test_c_get_retrieve_against_getscu(ct512, orthanc_with_study, tmp_path, dcmtk_nodelay) -> None:
    getscu = require_tool("getscu")
    server, uid = orthanc_with_study
    address = f"{server.aet}@127.0.0.1:{server.dicom_port}"
    megabytes = _megabytes(ct512)

    def run_medview() -> tuple[float, str]:
        data = Path(tempfile.mkdtemp(dir=tmp_path, prefix="medview-data-"))
        try:
            seconds, proc = _timed([str(MEDVIEW), "pacs", "retrieve", address, uid, "--method", "get", "--json"],
                                   env=_medview_env(data))
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            assert result["complete"] and result["received"] == N_SLICES, result
            count = _instances(data)
            assert count == N_SLICES, f"{count} instances stored under MEDVIEW_DATA_DIR, expected {N_SLICES}"
        finally:
            shutil.rmtree(data, ignore_errors=True)
        return seconds, f"  (medview's own time: {result['seconds']:.2f} s)"

    def run_dcmtk() -> tuple[float, str]:
        out = Path(tempfile.mkdtemp(dir=tmp_path, prefix="getscu-"))
        try:
            seconds, _ = _timed([getscu, "-aec", server.aet, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k",
                                 f"StudyInstanceUID={uid}", "-od", str(out), "127.0.0.1", str(server.dicom_port)])
            count = _instances(out)
            assert count == N_SLICES, f"getscu wrote {count} of {N_SLICES} instances"
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return seconds, ""

    print()
    _report("C-GET retrieve from Orthanc", _rounds(run_medview, run_dcmtk, server.process.pid, "Orthanc"),
            megabytes, "getscu", dcmtk_nodelay)
