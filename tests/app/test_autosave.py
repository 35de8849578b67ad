"""Autosave and crash recovery: atomic saves, a recovery offer after kill -9, clean exits leave nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medview.algorithms.label_edit import brush_region, diff_edit, paint
from medview.app.autosave import (
    ENV_RECOVERY_DIR,
    MANIFEST_NAME,
    AutosaveSession,
    discard,
    open_recovery,
    pending_recoveries,
    recover,
    recovery_dir,
)
from medview.app.history import History, history_path_for
from medview.app.label_maps import open_label_map
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap

REPO = Path(__file__).resolve().parents[2]
SHAPE = (40, 160, 160)  # 1M voxels of noise: each save takes long enough to be killed in the middle
GEOMETRY = Geometry(SHAPE, (0.8, 0.8, 2.0), (-64.0, -64.0, 0.0))
TABLE = [Label(1, "liver", (200, 80, 60)), Label(2, "tumour", (0, 200, 0), locked=True)]


def _content(version: int) -> np.ndarray:
    """The labels of one saved version; the version is stamped in the first voxel."""
    array = np.random.default_rng(version).integers(0, 6, SHAPE, dtype=np.uint8)
    array.flat[0] = version % 256
    return array


@pytest.fixture
def recovery_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "recovery"
    monkeypatch.setenv(ENV_RECOVERY_DIR, str(root))
    return root


def _session_with_edits(edits: int = 3) -> tuple[AutosaveSession, LabelMap, History]:
    g = Geometry((6, 30, 30), (0.9, 0.9, 3.0))
    table = [Label(1, "liver"), Label(2, "tumour")]
    lm = LabelMap(np.zeros(g.shape, np.uint8), g, labels=table, source="/s/seg.nii.gz")
    history = History()
    history.register("seg", lm)
    for i in range(edits):
        history.perform("seg", paint(lm, brush_region(g, (3.0 * i + 3, 10.0, 3.0), 2.5), 1 + i % 2))
    return AutosaveSession(), lm, history


def _pretend_crashed(session: AutosaveSession) -> None:
    """Make the manifest look like another process's: same pid, other start time (the pid was reused)."""
    path = session.folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    manifest["process_started"] = 1.0
    path.write_text(json.dumps(manifest))


def test_recovery_dir_is_in_the_user_data_dir_unless_overridden(monkeypatch, tmp_path) -> None:
    import platformdirs

    monkeypatch.delenv(ENV_RECOVERY_DIR, raising=False)
    monkeypatch.delenv("MEDVIEW_DATA_DIR", raising=False)
    assert recovery_dir() == Path(platformdirs.user_data_dir("medview")) / "recovery"
    monkeypatch.setenv("MEDVIEW_DATA_DIR", str(tmp_path / "data"))
    assert recovery_dir() == tmp_path / "data" / "recovery"
    monkeypatch.setenv(ENV_RECOVERY_DIR, str(tmp_path))
    assert recovery_dir() == tmp_path


def test_save_keeps_only_the_latest_pair_and_a_clean_exit_removes_everything(recovery_root) -> None:
    session, lm, history = _session_with_edits()
    assert session.needs_save("seg", history.version)
    first = session.save(lm, "seg", study="CT 1.2.3", history=history, target_id="seg")
    assert not session.needs_save("seg", history.version)
    history.perform("seg", paint(lm, brush_region(lm.geometry, (20.0, 20.0, 3.0), 2.0), 2))
    assert session.needs_save("seg", history.version)
    second = session.save(lm, "seg", study="CT 1.2.3", history=history, target_id="seg")
    assert not first.exists()
    assert sorted(p.name for p in session.folder.iterdir()) == sorted(
        [MANIFEST_NAME, second.name, history_path_for(second).name])
    manifest = json.loads((session.folder / MANIFEST_NAME).read_text())
    entry = manifest["entries"]["seg"]
    assert manifest["pid"] == os.getpid() and entry["recovery_file"] == second.name
    assert entry["study"] == "CT 1.2.3" and entry["labels_source"] == "/s/seg.nii.gz"
    assert pending_recoveries() == []  # this session is alive: nothing to offer
    session.close()
    assert not session.folder.exists() and list(recovery_root.iterdir()) == []
    with pytest.raises(MedviewError, match="closed"):
        session.save(lm, "seg")


def test_leaving_with_an_exception_keeps_the_files(recovery_root) -> None:
    _, lm, _ = _session_with_edits()
    with pytest.raises(RuntimeError), AutosaveSession() as session:
        session.save(lm, "seg")
        raise RuntimeError("crash")
    assert (session.folder / MANIFEST_NAME).exists()
    with AutosaveSession() as clean:
        clean.save(lm, "seg")
    assert not clean.folder.exists()


def test_a_crashed_session_is_offered_opened_with_its_history_and_discarded(recovery_root) -> None:
    session, lm, history = _session_with_edits(edits=3)
    session.save(lm, "seg", study="CT 1.2.3", history=history, target_id="seg")
    states = [lm.array.copy()]
    _pretend_crashed(session)
    (session.folder / ".partial-0123-seg-000002.nii.gz").write_bytes(b"half")  # a write that was killed
    (found,) = pending_recoveries()
    assert found.key == "seg" and found.study == "CT 1.2.3" and found.labels_source == "/s/seg.nii.gz"
    assert "seg.nii.gz on CT 1.2.3, autosaved" in found.describe()
    assert not (session.folder / ".partial-0123-seg-000002.nii.gz").exists()  # tidied
    recovered, recovered_history, message = open_recovery(found)
    assert message is None and np.array_equal(recovered.array, states[0])
    assert [(e.value, e.name) for e in recovered.labels] == [(1, "liver"), (2, "tumour")]
    assert len(recovered_history.undo_descriptions()) == 3
    while recovered_history.can_undo:
        recovered_history.undo()
    assert recovered.array.max() == 0
    assert recover(found) == found.recovery_file  # still in the recovery folder until discarded
    discard(found)
    assert pending_recoveries() == [] and not session.folder.exists()


def test_recover_to_a_destination_copies_labels_and_history(recovery_root, tmp_path) -> None:
    session, lm, history = _session_with_edits(edits=2)
    session.save(lm, "seg", history=history, target_id="seg")
    _pretend_crashed(session)
    (found,) = pending_recoveries()
    with pytest.raises(MedviewError, match="NIfTI"):
        recover(found, tmp_path / "out.nrrd")
    out = recover(found, tmp_path / "out.nii.gz")
    assert out == tmp_path / "out.nii.gz" and pending_recoveries() == []
    reopened = open_label_map(out)
    restored = History.load(history_path_for(out), "seg", reopened)
    restored.undo()
    restored.undo()
    assert reopened.array.max() == 0


def test_a_crashed_session_that_saved_nothing_is_tidied_away(recovery_root) -> None:
    session, lm, _ = _session_with_edits()
    session.save(lm, "seg")
    session.remove("seg")
    _pretend_crashed(session)
    assert pending_recoveries() == [] and not session.folder.exists()


_CHILD = """
from medview.algorithms.label_edit import diff_edit
from medview.app.autosave import AutosaveSession
from medview.app.history import History
from medview.core.labels import LabelMap
from tests.app.test_autosave import GEOMETRY, TABLE, _content

labels = LabelMap(_content(1), GEOMETRY, labels=list(TABLE))
history = History()
history.register("seg", labels)
session = AutosaveSession()
version = 1
while True:
    if version > 1:
        history.perform("seg", diff_edit(labels.array, _content(version), f"Version {version}"))
    session.save(labels, "seg", study="CT 1.2.3", labels_source="/data/seg.nii.gz", history=history,
                 target_id="seg")
    print(version, flush=True)
    version += 1
"""


@pytest.mark.slow
def test_kill_9_during_autosave_20_times_leaves_a_complete_recovery(recovery_root) -> None:
    """A child saves a changing 1M-voxel label map with its history over and over and is SIGKILLed at
    random moments: every time, the next start is offered the session, and its label file reads back
    to a complete saved version (never a truncated one) whose history undoes to the version before."""
    rng = random.Random(9)
    env = {**os.environ, ENV_RECOVERY_DIR: str(recovery_root)}
    interrupted = 0
    for kill in range(20):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first = proc.stdout.readline()
        assert first.strip() == "1", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = [1, *(int(line) for line in proc.stdout.read().split())]
        proc.stdout.close()
        proc.stderr.close()

        (folder,) = [p for p in recovery_root.iterdir() if p.is_dir()]
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        named = {MANIFEST_NAME, manifest["entries"]["seg"]["recovery_file"], manifest["entries"]["seg"]["history_file"]}
        interrupted += any(p.name not in named for p in folder.iterdir())  # a write was cut short

        offers = pending_recoveries()
        assert [(r.pid, r.key, r.labels_source) for r in offers] == [(proc.pid, "seg", "/data/seg.nii.gz")]
        labels, history, message = open_recovery(offers[0])
        assert message is None, f"kill {kill}: {message}"
        version = int(labels.array.flat[0])
        assert version in (done[-1], done[-1] + 1), f"kill {kill}: recovered {version}, child had saved {done}"
        assert np.array_equal(labels.array, _content(version)), f"kill {kill}: version {version} is damaged"
        assert labels.labels[1].name == "tumour" and labels.labels[1].locked
        if version > 1:
            assert history.undo_description == f"Version {version}"
            history.undo()
            assert np.array_equal(labels.array, _content(version - 1))
        discard(offers[0])
        assert list(recovery_root.iterdir()) == []
    assert interrupted >= 1  # some kills did land in the middle of a save


def test_whole_volume_edits_go_through_the_same_session(recovery_root) -> None:
    session, lm, history = _session_with_edits(edits=1)
    history.perform("seg", diff_edit(lm.array, np.ones_like(lm.array), "Fill all"))
    path = session.save(lm, "seg", history=history, target_id="seg")
    reopened = open_label_map(path)
    restored = History.load(history_path_for(path), "seg", reopened)
    assert restored.undo().description == "Fill all" and reopened.array.sum() < lm.array.sum()
    session.close()


def test_a_folder_abandoned_before_its_first_save_is_removed_once_old(recovery_root) -> None:
    young, old = recovery_root / "young", recovery_root / "old"
    for folder in (young, old):
        folder.mkdir(parents=True)
        (folder / ".partial-00-seg-000001.nii.gz").write_bytes(b"")
    os.utime(old, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    assert pending_recoveries() == []
    assert young.exists() and not old.exists()  # a young one may be a session starting up right now
