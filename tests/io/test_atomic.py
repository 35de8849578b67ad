"""Atomic writes: the target is always a complete old or new version, even when the writer is killed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medview.core.errors import WriteError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.io.atomic import (
    PARTIAL_PREFIX,
    atomic_copy,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    partial_path,
    remove_partials,
)
from medview.io.readers import open_image
from medview.io.writers import write_image

REPO = Path(__file__).resolve().parents[2]
PAYLOAD_BYTES = 6 * 2**20


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_replaces_the_file_and_leaves_nothing_else(tmp_path) -> None:
    target = tmp_path / "a.bin"
    assert atomic_write_bytes(target, b"one") == target
    atomic_write_bytes(target, b"two")
    atomic_write_text(tmp_path / "b.txt", "drei\n")
    assert target.read_bytes() == b"two" and (tmp_path / "b.txt").read_bytes() == b"drei\n"
    assert _names(tmp_path) == ["a.bin", "b.txt"]


def test_a_failing_writer_leaves_the_old_file(tmp_path) -> None:
    target = tmp_path / "labels.nii.gz"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the n")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old" and _names(tmp_path) == ["labels.nii.gz"]
    with pytest.raises(WriteError, match="Nothing was written"), atomic_path(target):
        pass
    assert target.read_bytes() == b"old"


def test_temporary_name_keeps_the_extension_for_format_sniffing_writers(tmp_path) -> None:
    tmp = partial_path(tmp_path / "seg.nii.gz")
    assert tmp.parent == tmp_path and tmp.name.startswith(PARTIAL_PREFIX) and tmp.name.endswith("-seg.nii.gz")
    g = Geometry((3, 4, 5), (0.5, 0.5, 2.0), (1.0, 2.0, 3.0))
    lm = LabelMap(np.arange(60, dtype=np.uint8).reshape(g.shape), g)
    with atomic_path(tmp_path / "seg.nii.gz") as tmp:
        write_image(lm, tmp)
    back = open_image(tmp_path / "seg.nii.gz")
    assert np.array_equal(back.array, lm.array) and back.geometry.is_same_grid(g)
    assert _names(tmp_path) == ["seg.nii.gz"]


def test_missing_folder_and_copy(tmp_path) -> None:
    with pytest.raises(WriteError, match="does not exist"):
        atomic_write_bytes(tmp_path / "nowhere" / "a.bin", b"x")
    (tmp_path / "src.bin").write_bytes(b"payload")
    atomic_copy(tmp_path / "src.bin", tmp_path / "dst.bin")
    assert (tmp_path / "dst.bin").read_bytes() == b"payload"


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_read_only_folder_is_a_clear_error(tmp_path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="not writable"):
            atomic_write_bytes(folder / "a.bin", b"x")
    finally:
        folder.chmod(0o700)


def test_remove_partials_spares_recent_writes_when_asked(tmp_path) -> None:
    stale = tmp_path / f"{PARTIAL_PREFIX}abc-x.bin"
    stale.write_bytes(b"")
    (tmp_path / "x.bin").write_bytes(b"keep")
    assert remove_partials(tmp_path, older_than_s=3600) == []
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert remove_partials(tmp_path, older_than_s=3600) == [stale]
    assert _names(tmp_path) == ["x.bin"]


_WRITER = f"""
import sys
import numpy as np
from medview.io.atomic import atomic_write_bytes
version = 0
while True:
    version += 1
    payload = version.to_bytes(8, "little") + np.random.default_rng(version).bytes({PAYLOAD_BYTES})
    atomic_write_bytes(sys.argv[1], payload)
    print(version, flush=True)
"""


def _expected(version: int) -> bytes:
    return version.to_bytes(8, "little") + np.random.default_rng(version).bytes(PAYLOAD_BYTES)


@pytest.mark.slow
def test_kill_9_while_writing_never_leaves_a_damaged_file(tmp_path) -> None:
    """At least 20 writers killed at random moments: the file is always one complete version, never a mix or
    truncated.  More writers (up to 60) are killed until one kill has landed in the middle of a write: on a
    busy machine the moments between writes can catch all of the first twenty."""
    target = tmp_path / "state.bin"
    rng = random.Random(20)
    interrupted = 0
    for kill in range(60):
        if kill >= 20 and interrupted:
            break
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()  # one complete write: the file now exists in this writer's version
        assert first.strip() == "1", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = [1, *(int(line) for line in proc.stdout.read().split())]
        proc.stdout.close()
        proc.stderr.close()
        data = target.read_bytes()
        version = int.from_bytes(data[:8], "little")
        # the last version reported, or the one being written when the rename had happened but not the print
        assert version in (done[-1], done[-1] + 1), f"kill {kill}: read version {version}, writer had done {done}"
        assert data == _expected(version), f"kill {kill}: version {version} is damaged"
        interrupted += bool(remove_partials(tmp_path))
    assert _names(tmp_path) == ["state.bin"]
    assert interrupted >= 1  # some kills did land in the middle of a write
