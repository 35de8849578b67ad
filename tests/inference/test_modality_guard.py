"""A model (or a radiograph) made for CT is not run on another modality, or on an image that does not say its
modality, without the user's explicit word: CLI flag, API parameter; values far outside the card's range warn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from medview.app import inference, rendering
from medview.app import pipeline as batch_pipeline
from medview.cli.main import main
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.modality import ModalityMismatchError, modality_matches
from medview.core.volume import Volume, VolumeMetadata
from medview.inference import cards, pipeline
from tests.conftest import shared_case

DEMO = "demo-body-lungs"


def _mr_series(folder: Path, shape=(8, 32, 32)) -> Path:
    """A small MR series written with pydicom (Modality MR, invented patient), a bright block in the middle."""
    folder.mkdir(parents=True)
    nz, ny, nx = shape
    pixels = np.full(shape, 20, np.uint16)
    pixels[2:6, 8:24, 8:24] = 900
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:03d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "Test^Guard", "GUARD01"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-16.0, -16.0, float(2 * k)]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels[k].tobytes()
        ds.save_as(folder / f"{k:03d}.dcm", enforce_file_format=True)
    return folder


def _volume(modality: str, values: np.ndarray | None = None) -> Volume:
    array = values if values is not None else np.full((8, 24, 24), -800.0, np.float32)
    return Volume(array.astype(np.float32), Geometry(array.shape, (2.0, 2.0, 4.0)),
                  VolumeMetadata(modality=modality, units="HU" if modality == "CT" else ""))


def test_the_demo_cards_modality_and_intensity_range() -> None:
    card = cards.find_model(DEMO, verify_weights=False)
    assert card.modality == "CT" and card.intensity_range == (-1024.0, 3071.0)
    assert card.summary()["intensity_range"] == [-1024.0, 3071.0]


@pytest.mark.parametrize(("actual", "matches"), [("CT", True), ("ct", True), ("MR", False), ("", False),
                                                 ("unknown", False), ("UNKNOWN", False), (None, False)])
def test_only_a_stated_equal_modality_matches(actual, matches) -> None:
    assert modality_matches("CT", actual) is matches


def test_cli_refuses_the_ct_model_on_the_brain1_mr(tmp_path: Path, capsys) -> None:
    brain = shared_case("brain1_image.nrrd")  # an MR whose NRRD does not say so
    out = tmp_path / "labels.nii.gz"
    assert main(["infer", DEMO, str(brain), str(out), "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert "made for CT" in err and "unknown modality" in err and "--allow-modality-mismatch" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not inference.label_table_path(out).exists()


def test_cli_refuses_an_mr_series_unless_allowed(tmp_path: Path, capsys) -> None:
    series = _mr_series(tmp_path / "mr")
    out = tmp_path / "labels.nii.gz"
    assert main(["infer", DEMO, str(series), str(out), "--device", "cpu"]) == 3
    err = capsys.readouterr().err
    assert "this image is MR" in err and "--allow-modality-mismatch" in err
    assert not out.exists()
    pytest.importorskip("torch")
    assert main(["infer", DEMO, str(series), str(out), "--device", "cpu", "--allow-modality-mismatch"]) == 0
    captured = capsys.readouterr()
    assert out.exists() and "warning: The model demo-body-lungs is made for CT images; this image is MR" in captured.err


def test_cli_radiograph_refuses_an_mr_series_unless_allowed(tmp_path: Path, capsys) -> None:
    series = _mr_series(tmp_path / "mr")
    png = tmp_path / "ap.png"
    assert main(["drr", str(series), str(png)]) == 3
    err = capsys.readouterr().err
    assert "A virtual radiograph is made for CT images; this image is MR" in err and "--allow-modality-mismatch" in err
    assert not png.exists()
    assert main(["drr", str(series), str(png), "--allow-modality-mismatch"]) == 0
    assert png.exists() and "warning: A virtual radiograph is made for CT" in capsys.readouterr().err


def test_radiograph_api_refuses_an_image_of_unknown_modality(tmp_path: Path) -> None:
    from medview.io.writers import write_image

    nrrd = Path(write_image(_volume("CT"), tmp_path / "ct.nrrd"))  # NRRD keeps no modality
    with pytest.raises(ModalityMismatchError, match="unknown modality"):
        rendering.virtual_radiograph(str(nrrd), str(tmp_path / "ap.png"))
    result = rendering.virtual_radiograph(str(nrrd), str(tmp_path / "ap.png"), allow_modality_mismatch=True)
    assert result.warnings and "made for CT" in result.warnings[0]
    assert rendering.check_radiograph_input(_volume("CT")) == []


@pytest.mark.parametrize("modality", ["MR", "unknown", ""])
def test_api_refuses_another_modality_before_running_anything(modality, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(pipeline, "run_model", never)
    with pytest.raises(ModalityMismatchError, match="Nothing was run"):
        inference.infer_volume(DEMO, _volume(modality), device="cpu")


def test_api_parameter_runs_it_and_the_replay_step_says_so() -> None:
    pytest.importorskip("torch")
    labels = inference.infer_volume(DEMO, _volume("MR"), device="cpu", allow_modality_mismatch=True)
    assert labels.provenance["step"] == {"infer": {"model": DEMO, "device": "cpu", "allow_modality_mismatch": True}}
    plain = inference.infer_volume(DEMO, _volume("CT"), device="cpu")  # a CT needs no word
    assert plain.provenance["step"] == {"infer": {"model": DEMO, "device": "cpu"}}


def test_a_pipeline_step_carries_the_permission() -> None:
    def load(params: dict):
        return batch_pipeline.Pipeline.from_dict({"medview_pipeline": 1,
                                                  "steps": [{"infer": {"model": DEMO, **params}}]})

    assert load({"allow_modality_mismatch": True}).steps[0].params["allow_modality_mismatch"] is True
    with pytest.raises(MedviewError, match="'allow_modality_mismatch' must be true or false"):
        load({"allow_modality_mismatch": "yes"})


def test_values_far_outside_the_cards_range_warn() -> None:
    card = cards.find_model(DEMO, verify_weights=False)
    assert pipeline.intensity_warning(card, _volume("CT")) is None
    padded = np.full((8, 24, 24), 40.0, np.float32)
    padded[:, :4, :] = -3024.0  # padding outside the scan circle: a sixth of the voxels
    assert pipeline.intensity_warning(card, _volume("CT", padded)) is None
    scaled = np.full((8, 24, 24), 40_000.0, np.float32)  # e.g. values in other units
    scaled[:, :4, :] = 0.0
    warning = pipeline.intensity_warning(card, _volume("CT", scaled))
    assert warning is not None and "83% of the image's values lie far outside" in warning
    assert "-1024 to 3071" in warning and "0 to 40000 HU" in warning
    assert inference.check_model_input(card, _volume("CT", scaled)) == [warning]
    assert inference.input_problems(DEMO, _volume("CT", scaled)) == {"modality": None, "intensity": warning,
                                                                      "task": "segmentation"}


@pytest.mark.parametrize(("value", "message"), [([0, 1, 2], "list of 2 numbers"), ([5, 1], "low < high"),
                                                ("wide", "list of 2 numbers")])
def test_a_bad_intensity_range_on_a_card_is_refused(tmp_path: Path, value, message) -> None:
    import shutil

    folder = tmp_path / "demo"
    shutil.copytree(cards.find_model(DEMO, verify_weights=False).folder, folder)
    data = json.loads((folder / "model.json").read_text())
    data["intensity_range"] = value
    (folder / "model.json").write_text(json.dumps(data))
    with pytest.raises(MedviewError, match=f"'intensity_range' .*{message}"):
        cards.load_card(folder, verify_weights=False)


def test_the_mr_series_reads_as_mr(tmp_path: Path) -> None:
    """The made series is what the tests above take it for (pydicom reads it back as MR)."""
    series = _mr_series(tmp_path / "mr")
    assert {pydicom.dcmread(f).Modality for f in series.iterdir()} == {"MR"}
    from medview.io.readers import open_image

    assert open_image(str(series)).modality == "MR"
