"""kill -9 at random moments while `medview convert` / `medview labels refine` write over an existing output.

Each verb is killed 10 times with fixed seeds: half at a random moment of the whole run, half at a random
moment after its write has started (a ``.partial-*`` file has appeared), so some kills land in the middle
of the write on any machine.  After every kill the output must be whole: byte for byte the file that was
there before the run, or the complete new output (which nibabel reads).  The next complete run leaves no
``.partial-*`` file behind.  Before the atomic writer, SimpleITK truncated the output first: 10 of 10
kills of `convert` left it empty.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.io.atomic import PARTIAL_PREFIX

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KILLS = 10
POLL_S = 0.001


def _partials(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(PARTIAL_PREFIX))


def _medview(*args: str) -> list[str]:
    return [sys.executable, "-c", "from medview.cli.main import main; raise SystemExit(main())", *args]


def _run(args: list[str], folder: Path) -> tuple[float, float]:
    """Run to the end; returns (seconds its partial file existed, i.e. the write, seconds of the whole run)."""
    start = time.monotonic()
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    began = ended = None
    while proc.poll() is None:
        present = bool(_partials(folder))
        if began is None and present:
            began = time.monotonic()
        elif began is not None and ended is None and not present:
            ended = time.monotonic()
        time.sleep(POLL_S)
    total = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    write_s = (ended or time.monotonic()) - began if began is not None else 0.0
    return max(write_s, 0.002), total


def _kill_repeatedly(args: list[str], output: Path, reference: bytes) -> int:
    """KILLS runs killed at random moments; returns how many kills left the write unfinished.

    More runs (up to 3 x KILLS) are killed until two kills have landed mid-write: on a loaded machine the
    write's moment is hard to hit."""
    folder = output.parent
    write_s, total = _run(args, folder)  # the write's timing on this machine
    mid_write = 0
    for kill in range(3 * KILLS):
        if kill >= KILLS and mid_write >= 2:
            break
        rng = random.Random(1700 + kill)
        before = output.read_bytes()
        known = set(_partials(folder))  # leftovers of earlier kills (the new run may remove them)
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        if kill % 2 == 0:  # any moment of the run
            time.sleep(rng.uniform(0.0, total))
        else:  # a moment of the write itself
            while proc.poll() is None and not set(_partials(folder)) - known and time.monotonic() - start < 60:
                time.sleep(POLL_S)
            time.sleep(rng.uniform(0.0, 0.7 * write_s))
        proc.send_signal(signal.SIGKILL)  # a no-op when it has already finished (never a reused pid)
        proc.wait()
        mid_write += bool(set(_partials(folder)) - known)  # its own partial is there: killed before the rename
        after = output.read_bytes()
        whole = after in (before, reference)
        assert whole, (
            f"kill {kill}: {output.name} is {len(after)} bytes, neither the previous file ({len(before)} bytes) "
            f"nor the complete new one ({len(reference)} bytes)")
        image = nib.load(output)
        assert np.asarray(image.dataobj).size == int(np.prod(image.shape)), f"kill {kill}: unreadable"
    return mid_write


def _reference(args: list[str], folder: Path, name: str) -> bytes:
    folder.mkdir()
    out = folder / name
    subprocess.run([*args[:-1], str(out)], cwd=REPO, check=True, capture_output=True)
    return out.read_bytes()


def _old_output(path: Path, shape: tuple[int, int, int], dtype) -> bytes:
    """A different, valid previous version of the output, written with nibabel (not medview)."""
    data = np.random.default_rng(5).integers(0, 3, size=shape).astype(dtype)
    nib.save(nib.Nifti1Image(data, np.diag([0.9, 0.9, 2.0, 1.0])), path)
    return path.read_bytes()


def _check(args: list[str], output: Path, reference: bytes) -> None:
    mid_write = _kill_repeatedly(args, output, reference)
    assert mid_write >= 2, "fewer than two kills landed in the middle of a write: the harness tested too little"
    _run(args, output.parent)  # the next complete run there
    assert _partials(output.parent) == [], "a killed write's partial file was left behind"
    assert output.read_bytes() == reference


def test_convert_killed_mid_write_keeps_the_previous_output(tmp_path: Path, chest_ct_sample: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "ct.nii.gz"
    old = _old_output(output, (64, 64, 8), np.int16)
    args = _medview("convert", str(chest_ct_sample), str(output))
    reference = _reference(args, tmp_path / "ref", output.name)
    assert reference != old
    _check(args, output, reference)
    # the reference is the sample itself, as nibabel reads it: 512 x 512 x 48 int16
    assert nib.load(output).shape == (512, 512, 48)


def test_labels_refine_killed_mid_write_keeps_the_previous_output(tmp_path: Path) -> None:
    from medview.io.writers import write_image

    shape = (64, 384, 384)  # written uncompressed (9.4 MB) so that the write itself lasts long enough to hit
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ball = ((z - 32) * 4.0) ** 2 + (y - 192.0) ** 2 + (x - 192.0) ** 2 < 120.0**2
    noise = np.random.default_rng(3).random(shape) < 0.02  # islands for the filter to work on
    labels = LabelMap((ball | noise).astype(np.uint8), Geometry(shape, (1.0, 1.0, 2.5), (0.0, 0.0, 0.0)))
    source = tmp_path / "labels.nii.gz"
    write_image(labels, source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "refined.nii"
    old = _old_output(output, (32, 32, 8), np.uint8)
    args = _medview("labels", "refine", "remove-islands", str(source), str(output))
    reference = _reference(args, tmp_path / "ref", output.name)
    assert reference != old
    _check(args, output, reference)
