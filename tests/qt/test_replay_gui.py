"""A pipeline exported from the GUI replays, on a cohort through Dask, to the outputs the GUI produced.

The user opens a case, filters it, segments it, refines the labels and computes features in the real
window's panels, then Analysis > Export pipeline.  ``medview batch`` (a LocalCluster with one worker)
runs that file on a cohort holding the same case; its exported image, label map and features table must
equal what the GUI shows, exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from medview.core.geometry import Geometry
from medview.core.volume import Volume, VolumeMetadata
from medview.io.writers import write_image
from medview.qt.main_window import MainWindow

pytest.importorskip("radiomics")
pytest.importorskip("distributed")

FEATURE_PARAMS = """\
imageType: {Original: {}}
featureClass: {firstorder: [], shape: []}
setting: {binWidth: 25, label: 1}
"""


def _case(folder: Path) -> Path:
    """A CT-like phantom: two spheres (one large, one tiny island) in noise, on an anisotropic grid."""
    rng = np.random.default_rng(7)
    g = Geometry((30, 48, 48), (0.9, 0.9, 1.5), (-20.0, -20.0, -20.0))
    z, y, x = np.indices(g.shape)
    big = (x - 24) ** 2 * 0.81 + (y - 22) ** 2 * 0.81 + (z - 15) ** 2 * 2.25 <= 10.0 ** 2
    tiny = (x - 40) ** 2 + (y - 40) ** 2 + (z - 5) ** 2 <= 1.0
    array = rng.normal(0, 40, g.shape) + 300 * (big | tiny)
    return Path(write_image(Volume(array.astype(np.int16), g, VolumeMetadata(modality="CT", units="HU")),
                            folder / "phantom.nii.gz"))


def test_pipeline_exported_from_the_gui_replays_to_the_same_outputs(qtbot, window: MainWindow, tmp_path: Path
                                                                    ) -> None:
    from medview.app.batch import run_batch
    from medview.io.readers import open_image

    image_path = _case(tmp_path)
    params_file = tmp_path / "features.yaml"
    params_file.write_text(FEATURE_PARAMS)
    with qtbot.waitSignal(window.load_finished, timeout=60_000):
        window.open_path(str(image_path))

    editing = window.editing
    form = editing.filters.select("median")
    form.set_value("radius", 1.0)
    with qtbot.waitSignal(editing.filters.finished, timeout=60_000):
        editing.filters.run()
    form = editing.segmentation.select("threshold")
    form.set_value("lower", 150.0)
    form.set_value("upper", 3000.0)
    with qtbot.waitSignal(editing.segmentation.finished, timeout=60_000):
        editing.segmentation.run()
    form = editing.refine.select("remove-islands")
    form.set_value("min_size_mm3", 20.0)
    with qtbot.waitSignal(editing.refine.finished, timeout=60_000):
        editing.refine.run()

    features_panel = window.analysis.features
    features_panel.refresh_labels()
    features_panel.set_params(str(params_file))
    with qtbot.waitSignal(features_panel.computed, timeout=120_000) as blocker:
        features_panel.compute()
    gui_features = blocker.args[0]["features"]

    pipeline_path = tmp_path / "tuned.yaml"
    assert window.analysis.export_pipeline(str(pipeline_path)) == str(pipeline_path)
    doc = yaml.safe_load(pipeline_path.read_text())
    assert [next(iter(s)) for s in doc["steps"]] == ["filter", "segment", "refine", "features"]
    # the cohort run also writes the image and labels it ended with, to compare with the GUI's
    doc["steps"].append({"export": {"image": True, "labels": True, "format": "nii.gz"}})
    pipeline_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cohort = tmp_path / "cohort.csv"
    cohort.write_text(f"case_id,image\nphantom,{image_path}\n")

    summary = run_batch(str(pipeline_path), str(cohort), str(tmp_path / "out"), workers=1, progress=False)
    assert summary["ok"] == 1 and summary["failed"] == 0

    case_dir = tmp_path / "out" / "cases" / "phantom"
    exported = sorted(p.name for p in case_dir.iterdir())
    image_out = next(case_dir / n for n in exported if n.endswith(".nii.gz") and "label" not in n)
    labels_out = next(case_dir / n for n in exported if n.endswith(".nii.gz") and "label" in n)
    state = window.state
    np.testing.assert_array_equal(open_image(str(image_out)).array, state.volume.array)
    np.testing.assert_array_equal(open_image(str(labels_out)).array, state.labels.array)
    assert state.labels.array.max() == 1 and 0 < state.labels.array.sum() < state.labels.array.size

    import pandas as pd

    table = pd.read_csv(summary["features_csv"])
    row = table[table["case_id"] == "phantom"].iloc[0]
    compared = 0
    for name, value in gui_features.items():
        if name in row.index:
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
            compared += 1
    assert compared == len(gui_features) > 20
