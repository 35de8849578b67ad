"""DICOM SEG from the File menu: export the labels on screen, open a SEG back (issue 17, item 22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from medview.core.labels import Label, LabelMap
from medview.qt.main_window import MainWindow


def _open(qtbot, window: MainWindow, path: Path):
    with qtbot.waitSignal(window.load_finished, timeout=60_000) as blocker:
        window.open_path(str(path))
    return blocker.args[0]


def _menu_texts(window: MainWindow, title: str) -> list[str]:
    menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == title)
    return [a.text().replace("&", "") for a in menu.actions()]


def test_file_menu_exports_the_labels_as_seg_and_opens_it_back(qtbot, window: MainWindow, chest_ct_sample: Path,
                                                                tmp_path: Path) -> None:
    texts = _menu_texts(window, "File")
    assert "Export labels as DICOM SEG..." in texts
    assert "Open label map or segmentation (SEG)..." in texts
    volume = _open(qtbot, window, chest_ct_sample)
    array = np.zeros(volume.geometry.shape, np.uint8)
    array[20:24, 200:230, 150:170] = 1
    array[30:32, 300:310, 300:320] = 2
    window.state.set_labels(LabelMap(array, volume.geometry, [Label(1, "Tumour", (255, 0, 0)),
                                                              Label(2, "Node", (0, 255, 0))]))
    out = tmp_path / "seg.dcm"
    with qtbot.waitSignal(window.seg_exported, timeout=60_000):
        window.export_seg(str(out), description="Reader's labels")
    # read with pydicom alone: a SEG referencing the series on screen, one segment per label
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.SeriesDescription == "Reader's labels"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == volume.metadata.series_uid
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["Tumour", "Node"]
    per_segment = {1: 0, 2: 0}
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        per_segment[number] += int(frame.sum())
    assert per_segment == {1: int((array == 1).sum()), 2: int((array == 2).sum())}
    # open it back through the window: the same voxels and names
    window.state.set_labels(None)
    assert window.state.labels is None or not window.state.labels.present_values()
    window.open_labels(str(out))
    qtbot.waitUntil(lambda: window.state.labels is not None and window.state.labels.present_values() == [1, 2],
                    timeout=60_000)
    np.testing.assert_array_equal(window.state.labels.array, array)
    assert {e.value: e.name for e in window.state.labels.labels} == {1: "Tumour", 2: "Node"}


def test_seg_export_of_a_non_dicom_image_says_why(qtbot, window: MainWindow, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    from medview.core.geometry import Geometry
    from medview.core.volume import Volume
    from medview.io.writers import write_image

    image = Volume(np.zeros((4, 8, 8), np.int16), Geometry((4, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0),
                                                           (1, 0, 0, 0, 1, 0, 0, 0, 1)))
    path = write_image(image, tmp_path / "image.nii.gz")
    _open(qtbot, window, Path(path))
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text: shown.append(text))
    window.choose_seg_output()
    assert len(shown) == 1 and "not read from DICOM" in shown[0]
    assert not list(tmp_path.glob("*.dcm"))
