"""Every writer medview has goes through the one atomic writer (medview.core.atomic, re-exported by
medview.io.atomic): a write that fails after the new content was produced leaves the old file untouched,
files get the user's umask (or the replaced file's mode), and killed writers' leftovers are removed by the
next save in that folder, never a write in progress and never a file that is not medview's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medview.core import atomic
from medview.core.errors import WriteError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.volume import Volume
from medview.io.atomic import PARTIAL_PREFIX, atomic_path, partial_path, remove_stale_partials

OLD = b"the previous version, which must survive"


def _geometry() -> Geometry:
    return Geometry((6, 8, 10), (0.8, 0.8, 2.0), (-10.0, 5.0, 30.0))


def _labels() -> LabelMap:
    g = _geometry()
    z, y, x = np.ogrid[:6, :8, :10]
    return LabelMap((((z - 3) ** 2 + (y - 4) ** 2 + (x - 5) ** 2) < 9).astype(np.uint8), g)


def _mesh():
    from medview.render.surfaces import label_surface

    return label_surface(_labels(), 1)


def _write_label_csv(path: Path) -> None:
    from medview.algorithms.label_stats import label_statistics, to_csv

    to_csv(label_statistics(_labels()), path)


def _write_measurements(path: Path) -> None:
    from medview.app.measurements import Measurement, MeasurementList

    items = MeasurementList()
    items.add(Measurement("distance", [np.zeros(3), np.array([3.0, 4.0, 0.0])], view="axial"))
    items.to_csv(path)


def _write_detections(path: Path) -> None:
    from medview.core.detections import Detection, DetectionSet

    DetectionSet([Detection((1.0, 2.0, 3.0), 4.0, 0.5)], "ct.nii.gz", "log").to_json(path)


def _write_label_table(path: Path) -> None:
    from medview.app.inference import _write_label_table

    segmentation = path.with_name(path.name.removesuffix("_labels.json") + ".nii.gz")
    written = _write_label_table(_labels(), str(segmentation), {"name": "test"})
    assert Path(written) == path


def _write_nifti(path: Path) -> None:
    from medview.io.writers import write_image

    write_image(Volume(np.arange(480, dtype=np.int16).reshape(6, 8, 10), _geometry()), path)


def _write_mesh(suffix: str):
    def write(path: Path) -> None:
        from medview.render.surfaces import write_mesh

        write_mesh(_mesh(), path)
    write.suffix = suffix
    return write


def _write_picture(path: Path) -> None:
    from medview.io.writers import write_picture

    write_picture(np.full((8, 12), 200, np.uint8), path)


WRITERS = {
    "write_image.nii.gz": ("ct.nii.gz", _write_nifti),
    "write_mesh.stl": ("surface.stl", _write_mesh(".stl")),
    "write_mesh.obj": ("surface.obj", _write_mesh(".obj")),
    "write_mesh.ply": ("surface.ply", _write_mesh(".ply")),
    "label_stats.to_csv": ("stats.csv", _write_label_csv),
    "measurements.to_csv": ("measurements.csv", _write_measurements),
    "detections.to_json": ("detections.json", _write_detections),
    "inference label table": ("seg_labels.json", _write_label_table),
    "write_picture": ("picture.png", _write_picture),
}


def _fail_before_the_rename(monkeypatch) -> None:
    """The new content is complete in its temporary file; then the disk fails (as a kill would stop it)."""
    def broken(path):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(atomic, "fsync_file", broken)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failing_write_leaves_the_old_file_untouched(tmp_path, monkeypatch, writer) -> None:
    name, write = WRITERS[writer]
    target = tmp_path / name
    target.write_bytes(OLD)
    _fail_before_the_rename(monkeypatch)
    with pytest.raises(WriteError, match="Input/output error"):
        write(target)
    assert target.read_bytes() == OLD  # a direct write would have replaced or truncated it
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # and no temporary file is left
    monkeypatch.undo()
    write(target)  # the same writer works when the disk does
    assert target.read_bytes() != OLD and target.stat().st_size > 0


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_new_files_get_the_users_umask_and_replaced_files_keep_their_mode(tmp_path, writer) -> None:
    name, write = WRITERS[writer]
    previous = os.umask(0o022)
    try:
        write(tmp_path / name)
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644  # mkstemp's temporary file was 0600
        os.umask(0o077)
        write(tmp_path / f"private-{name}")
        assert (tmp_path / f"private-{name}").stat().st_mode & 0o777 == 0o600
        (tmp_path / name).chmod(0o664)
        write(tmp_path / name)
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o664  # a replaced file keeps its mode
    finally:
        os.umask(previous)


@pytest.mark.parametrize("extension,data_file", [(".mhd", "labels.zraw"), (".nhdr", "labels.raw.gz")])
def test_header_and_data_formats_name_their_final_data_file(tmp_path, extension, data_file) -> None:
    """MetaImage / detached NRRD: the header named the temporary '.partial-...' data file, which the next
    clean-up would then have deleted; now header and data file have their final names."""
    from medview.io.writers import write_image

    labels = _labels()
    target = tmp_path / f"labels{extension}"
    write_image(labels, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, data_file])
    assert PARTIAL_PREFIX not in target.read_bytes().decode("latin-1")
    import SimpleITK as sitk

    back = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))  # SimpleITK's own reader, not medview's
    assert np.array_equal(back, labels.array)
    # wrapped in a second atomic_path (as the GUI's label save does): still the final names
    with atomic_path(target) as tmp:
        write_image(LabelMap(labels.array * 2, labels.geometry), tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, data_file])
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(target))), labels.array * 2)


def test_write_image_output_is_read_by_nibabel(tmp_path) -> None:
    from medview.io.writers import write_image

    volume = Volume(np.arange(480, dtype=np.int16).reshape(6, 8, 10), _geometry())
    write_image(volume, tmp_path / "ct.nii.gz")
    assert np.array_equal(np.asarray(nib.load(tmp_path / "ct.nii.gz").dataobj).transpose(2, 1, 0), volume.array)


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path) -> None:
    real = tmp_path / "real.json"
    real.write_bytes(OLD)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic.atomic_write_text(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


# -- leftovers of killed writes ------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _partial(folder: Path, pid: int, host: str | None = None, name: str = "labels.nii.gz") -> Path:
    path = folder / f"{PARTIAL_PREFIX}0123456789ab.{pid}.{host or atomic._host_tag()}-{name}"
    path.write_bytes(b"half a file")
    return path


def test_the_next_save_removes_a_killed_writers_partial_but_not_a_write_in_progress(tmp_path) -> None:
    dead = _partial(tmp_path, _dead_pid())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.1)  # its start time is now before the partial's
        in_progress = _partial(tmp_path, sleeper.pid, name="other.nii.gz")
        mine = _partial(tmp_path, os.getpid(), name="mine.nii.gz")  # another thread of this process
        elsewhere = _partial(tmp_path, _dead_pid(), host="ffff" if atomic._host_tag() != "ffff" else "fffe")
        old_style = tmp_path / f"{PARTIAL_PREFIX}0123456789ab-labels.nii.gz"  # an earlier medview's name
        old_style.write_bytes(b"")
        not_ours = [tmp_path / ".partial-notes.txt", tmp_path / "x.partial-0123456789ab.1.abcd-y", tmp_path / "a.nii"]
        for path in not_ours:
            path.write_bytes(b"keep")
        atomic.atomic_write_text(tmp_path / "labels.json", "{}\n")  # the next save in this folder
        assert not dead.exists()
        assert in_progress.exists() and mine.exists() and elsewhere.exists() and old_style.exists()
        assert all(p.exists() for p in not_ours)
        # after a day, leftovers whose writer cannot be checked go too; medview's own names only
        day_ago = time.time() - atomic.STALE_AGE_S - 60
        for path in (elsewhere, old_style, *not_ours):
            os.utime(path, (day_ago, day_ago))
        removed = remove_stale_partials(tmp_path)
        assert sorted(removed) == sorted([elsewhere, old_style])
        assert in_progress.exists() and mine.exists() and all(p.exists() for p in not_ours)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_partials(tmp_path) == [in_progress]  # its writer is gone now


def test_a_reused_process_id_does_not_keep_a_leftover(tmp_path, monkeypatch) -> None:
    leftover = _partial(tmp_path, os.getppid())
    past = time.time() - 3600
    os.utime(leftover, (past, past))  # written an hour ago, by a process that was not yet running then
    monkeypatch.setattr("medview.core.processes.process_started", lambda pid: time.time() - 60)
    assert remove_stale_partials(tmp_path) == [leftover]


def test_partial_names_say_who_writes_them(tmp_path) -> None:
    tmp = partial_path(tmp_path / "seg.nii.gz")
    match = atomic._PARTIAL_NAME.match(tmp.name)
    assert match and int(match["pid"]) == os.getpid() and match["name"] == "seg.nii.gz"
    assert tmp.name.endswith("-seg.nii.gz") and tmp.parent == tmp_path
