from __future__ import annotations

import threading

import numpy as np
import pytest

from medview.core.errors import CancelledError, MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext
from medview.core.volume import Volume, VolumeMetadata, WindowPreset


def test_volume_value_at_world() -> None:
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    v = Volume(arr, Geometry((2, 3, 4), (2.0, 3.0, 5.0), (10.0, 0.0, 0.0)))
    assert v.value_at_world([10 + 2 * 3, 3 * 2, 5 * 1]) == arr[1, 2, 3]
    assert v.value_at_world([-50, 0, 0]) is None


def test_volume_rejects_mismatched_geometry() -> None:
    with pytest.raises(MedviewError, match="does not match"):
        Volume(np.zeros((2, 3, 4)), Geometry((2, 3, 5)))


def test_default_window_prefers_file_presets() -> None:
    g = Geometry((1, 10, 10))
    v = Volume(np.zeros((1, 10, 10)), g, VolumeMetadata(window_presets=[WindowPreset(40, 400, "soft")]))
    assert v.default_window().name == "soft"
    ramp = Volume(np.arange(100, dtype=float).reshape(1, 10, 10), g)
    w = ramp.default_window()
    assert w.low == pytest.approx(np.percentile(np.arange(100), 1)) and w.high == pytest.approx(98.01)


def test_label_map_volume_in_ml() -> None:
    arr = np.zeros((10, 10, 10), np.uint8)
    arr[2:4, 2:7, 1:5] = 3  # 2*5*4 = 40 voxels of 2 mm^3
    lm = LabelMap(arr, Geometry((10, 10, 10), (1.0, 1.0, 2.0)))
    assert lm.present_values() == [3]
    assert lm.volume_ml(3) == pytest.approx(0.08)
    assert lm.label(3).name == "Label 3"
    with pytest.raises(MedviewError, match="No label with value 5"):
        lm.label(5)


def test_label_map_rejects_floats_and_narrows_ints() -> None:
    g = Geometry((1, 2, 2))
    with pytest.raises(MedviewError, match="integers"):
        LabelMap(np.zeros((1, 2, 2), np.float32), g)
    assert LabelMap(np.ones((1, 2, 2), np.int64), g).array.dtype == np.uint8


def test_task_progress_is_throttled_and_cancel_raises() -> None:
    seen: list[tuple[float, str]] = []
    task = TaskContext(on_progress=lambda f, m: seen.append((f, m)), min_interval_s=10.0)
    for i in range(100):
        task.progress(i / 100, "step")
    task.progress(1.0, "done")
    assert seen[0][0] == 0.0 and seen[-1] == (1.0, "done") and len(seen) == 2
    threading.Thread(target=task.token.cancel).start()
    with pytest.raises(CancelledError):
        for _ in range(10_000_000):
            task.check()


def test_label_counts_are_cached_until_changed() -> None:
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[0, :2, :2] = 2
    lm = LabelMap(arr, Geometry((4, 4, 4)))
    assert lm.voxel_counts() == {2: 4}
    lm.array[3, 3, 3] = 5  # an edit in place (paint brush): stale until changed() is called
    assert lm.voxel_counts() == {2: 4}
    lm.changed()
    assert lm.voxel_counts() == {2: 4, 5: 1} and lm.present_values() == [2, 5]


def test_label_counts_follow_region_edits_exactly() -> None:
    """Counts updated from an edited box equal a full recount, through many random edits."""
    import numpy as np

    from medview.core.geometry import Geometry
    from medview.core.labels import LabelMap

    rng = np.random.default_rng(5)
    lm = LabelMap(rng.integers(0, 4, size=(12, 20, 16)).astype(np.uint8), Geometry((12, 20, 16)))
    lm.voxel_counts()
    for _ in range(50):
        z0, y0, x0 = rng.integers(0, 8), rng.integers(0, 15), rng.integers(0, 12)
        box = (slice(z0, z0 + 4), slice(y0, y0 + 5), slice(x0, x0 + 4))
        before = lm.array[box].copy()
        lm.array[box] = rng.integers(0, 6, size=before.shape)
        lm.changed(before, lm.array[box])
        expected = {int(v): int(n) for v, n in enumerate(np.bincount(lm.array.ravel())) if v and n}
        assert lm.voxel_counts() == expected
