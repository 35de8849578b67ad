"""The Features panel as a user drives it: pick a label, Compute, the table fills with PyRadiomics' values
(checked against PyRadiomics called directly), Export CSV writes them, Cancel stops, errors are shown."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.app.viewer import ViewerState
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.volume import Volume, VolumeMetadata
from medview.qt.panels.features import FeaturesPanel
from medview.qt.workers import wait_for_all

SPACING = (0.8, 0.8, 2.0)
ORIGIN = (-20.0, 15.0, -40.0)


@pytest.fixture
def state(tmp_path: Path) -> ViewerState:
    rng = np.random.default_rng(3)
    array = rng.normal(50, 25, (10, 32, 32)).round().astype(np.int16)
    geometry = Geometry((10, 32, 32), SPACING, ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    labels_array = np.zeros((10, 32, 32), np.uint8)
    labels_array[2:8, 6:20, 8:24] = 1
    labels_array[3:6, 22:29, 22:29] = 2
    s = ViewerState()
    s.set_volume(Volume(array, geometry, VolumeMetadata(modality="CT", source=str(tmp_path / "phantom7.nrrd"))))
    s.set_labels(LabelMap(labels_array, geometry, labels=[Label(1, "Tumour"), Label(2, "Node")]))
    return s


@pytest.fixture
def panel(qtbot, state: ViewerState):
    p = FeaturesPanel(state)
    qtbot.addWidget(p)
    p.show()
    yield p
    p.shutdown()
    wait_for_all()


def _direct(state: ViewerState, label: int) -> dict[str, float]:
    from radiomics import featureextractor

    from medview.analysis.features import default_params_path

    image = sitk.GetImageFromArray(state.volume.array)
    mask = sitk.GetImageFromArray(state.labels.array)
    for img in (image, mask):
        img.SetSpacing(SPACING)
        img.SetOrigin(ORIGIN)
    extractor = featureextractor.RadiomicsFeatureExtractor(str(default_params_path()))
    return {k: float(v) for k, v in extractor.execute(image, mask, label=label).items()
            if not k.startswith("diagnostics_")}


def test_compute_fills_the_table_with_pyradiomics_values_and_exports(qtbot, panel: FeaturesPanel,
                                                                     state: ViewerState, tmp_path: Path) -> None:
    from PySide6.QtCore import Qt

    assert [panel.label_box.itemText(i) for i in range(panel.label_box.count())] == ["1: Tumour", "2: Node"]
    panel.label_box.setCurrentIndex(1)
    with qtbot.waitSignal(panel.computed, timeout=120_000) as signal:
        qtbot.mouseClick(panel.compute_button, Qt.MouseButton.LeftButton)
    # the result has reached the panel (not just the worker): the table is filled
    qtbot.waitUntil(lambda: panel.table.rowCount() > 0, timeout=5_000)
    payload = signal.args[0]
    assert payload["label"] == 2 and payload["params"] is None
    direct = _direct(state, 2)
    assert list(payload["features"]) == list(direct)
    assert payload["features"] == pytest.approx(direct, rel=1e-12)
    assert panel.table.rowCount() == len(direct)
    rows = {(panel.table.item(r, 0).text(), panel.table.item(r, 1).text()): panel.table.item(r, 2).text()
            for r in range(panel.table.rowCount())}
    assert float(rows[("glcm", "Contrast")]) == pytest.approx(direct["original_glcm_Contrast"], rel=1e-5)
    assert float(rows[("shape", "VoxelVolume")]) == pytest.approx(
        np.count_nonzero(state.labels.array == 2) * 0.8 * 0.8 * 2.0, rel=1e-5)
    assert not panel.cancel_button.isEnabled() and panel.compute_button.isEnabled()

    out = panel.export_csv(str(tmp_path / "features.csv"))
    assert out is not None
    with open(out, newline="") as fh:
        written = list(csv.DictReader(fh))
    assert len(written) == 1 and written[0]["case_id"] == "phantom7" and written[0]["label"] == "2"
    assert {k: float(v) for k, v in written[0].items() if k not in ("case_id", "label")} == direct


def test_parameter_file_and_errors_are_reported(qtbot, panel: FeaturesPanel, tmp_path: Path) -> None:
    params = tmp_path / "firstorder.yaml"
    params.write_text("featureClass:\n  firstorder: [Mean]\nsetting:\n  binWidth: 10\n")
    assert panel.choose_params(str(params)) == str(params)
    panel.label_box.setCurrentIndex(0)
    worker = panel.compute()
    assert worker is not None
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=120_000)
    assert panel.table.item(0, 1).text() == "Mean"
    mean = panel.state.volume.array[panel.state.labels.array == 1].mean()
    assert float(panel.table.item(0, 2).text()) == pytest.approx(mean, rel=1e-5)

    # a label map edited so the chosen label vanished: the job fails with a one-line message in the panel
    panel.state.labels.array[panel.state.labels.array == 2] = 0
    panel.state.labels.changed()
    panel.state.emit("labels")
    assert panel.label_box.count() == 1
    panel.state.labels.array[:] = 0
    panel.state.labels.changed()
    panel.label_box.blockSignals(True)  # the chooser still offers label 1, as it would between two events
    worker = panel.compute()
    qtbot.waitUntil(lambda: worker.done and panel.compute_button.isEnabled(), timeout=60_000)
    assert "empty" in panel.status.text()


def test_cancel_ends_the_job(qtbot, panel: FeaturesPanel) -> None:
    worker = panel.compute()
    assert worker is not None and panel.cancel_button.isEnabled()
    panel.cancel()
    qtbot.waitUntil(lambda: worker.done and not panel.cancel_button.isEnabled(), timeout=60_000)
    # the process's result (or, without a pool, the in-thread one) is dropped: the table stays empty
    assert panel.status.text() == "Cancelled." and panel.table.rowCount() == 0
    assert panel.compute_button.isEnabled()
