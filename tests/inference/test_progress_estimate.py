"""AI progress moves window by window, and the time estimate is cheap next to the run it predicts and close to it.

Measured on the bundled demo model and the bundled chest CT (8 windows at 4 mm): before, all 8 windows were
one MONAI batch, so progress sat at 5 % for the whole run, and the estimate loaded the network and ran two
windows, a large part of a run this short.
"""

from __future__ import annotations

import time

import pytest

from medview.core.tasks import TaskContext
from medview.inference import pipeline, throughput
from medview.inference.cards import load_card
from tests.inference.models import sphere_phantom, torchscript_model

pytest.importorskip("torch")
pytest.importorskip("monai")


def _recorder():
    reports: list[tuple[float, str]] = []
    return reports, TaskContext(on_progress=lambda f, m: reports.append((f, m)), min_interval_s=0.0)


@pytest.fixture(scope="module")
def sample_volume(chest_ct_sample):
    from medview.io.readers import open_image

    return open_image(str(chest_ct_sample))


def _window_reports(reports):
    return [(f, m) for f, m in reports if "window" in m]


def test_progress_moves_with_every_window_on_the_demo_model(sample_volume):
    card = pipeline.find_model("demo-body-lungs")
    windows = pipeline.count_windows(pipeline.model_grid(sample_volume.geometry, card.spacing_mm).shape,
                                     card.patch_size)
    assert windows >= 4 and pipeline.choose_batch_size(card, "cpu") >= windows  # one MONAI batch holds them all
    reports, task = _recorder()
    pipeline.run_model(card, sample_volume, device="cpu", task=task)
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    per_window = _window_reports(reports)
    assert len(per_window) >= windows  # was 1: the whole run was one report
    assert len({f for f, _ in per_window}) >= windows
    assert per_window[0][1].startswith("Running demo-body-lungs: window 1 of ")
    assert "s left" in per_window[0][1]  # the run's own estimate, from the windows done so far


def test_many_windows_report_at_least_progress_steps_times(tmp_path):
    card = load_card(torchscript_model(tmp_path / "m"))
    volume, _ = sphere_phantom()
    windows = pipeline.count_windows(pipeline.model_grid(volume.geometry, card.spacing_mm).shape, card.patch_size)
    batch = pipeline.choose_batch_size(card, "cpu")
    reports, task = _recorder()
    pipeline.run_model(card, volume, device="cpu", task=task)
    per_window = _window_reports(reports)
    assert len(per_window) >= min(windows, pipeline.PROGRESS_STEPS) >= windows / batch
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_estimate_costs_under_a_tenth_of_the_run_and_is_within_a_factor_two(sample_volume):
    """As in the AI panel: a run here, then Estimate, then Run again (each run loads its network)."""
    from medview.app.inference import estimate_volume, infer_volume

    infer_volume("demo-body-lungs", sample_volume, device="cpu")  # the first run here records its throughput
    start = time.perf_counter()
    estimate = estimate_volume("demo-body-lungs", sample_volume, device="cpu")
    cost = time.perf_counter() - start
    start = time.perf_counter()
    infer_volume("demo-body-lungs", sample_volume, device="cpu")
    run = time.perf_counter() - start
    print(f"\nestimate {estimate['seconds']:.2f} s ({estimate['basis']}), cost {cost * 1000:.0f} ms, "
          f"run {run:.2f} s, cost/run {cost / run:.3f}")
    assert estimate["basis"].startswith("measured")
    assert cost < 0.1 * run
    assert run / 2 <= estimate["seconds"] <= run * 2


def test_estimate_before_any_run_times_one_network_call_only(sample_volume, monkeypatch):
    card = pipeline.find_model("demo-body-lungs")
    calls = []
    real = pipeline.time_one_window
    monkeypatch.setattr(pipeline, "time_one_window", lambda c, b: calls.append(1) or real(c, b))
    seconds, basis = pipeline.seconds_per_window(card, "cpu")
    assert calls == [1] and seconds > 0 and basis.startswith("one window")
    throughput.record(card.card_hash, "cpu", 8, 4.0, import_s=3.0)
    assert pipeline.seconds_per_window(card, "cpu") == (0.5, "measured by an earlier run here")
    assert calls == [1]  # the recorded figure: nothing loaded, nothing run
    assert throughput.import_seconds() == 3.0


def test_a_damaged_throughput_file_is_ignored(tmp_path):
    throughput._path().parent.mkdir(parents=True, exist_ok=True)
    throughput._path().write_text("{not json", encoding="utf-8")
    assert throughput.lookup("abc", "cpu") is None
    assert throughput.import_seconds() == throughput.DEFAULT_IMPORT_S
    throughput.record("abc", "cpu", 4, 2.0)
    assert throughput.lookup("abc", "cpu")["seconds_per_window"] == 0.5
