"""DetectionSet: schema, exact JSON round trip, atomic writes, bad input."""

from __future__ import annotations

import json
import math

import pytest

from medview.core.detections import COORDINATES, FORMAT, Detection, DetectionSet
from medview.core.errors import CorruptFileError, InputNotFoundError, MedviewError, WriteError


def _sample() -> DetectionSet:
    return DetectionSet(
        [
            Detection((-21.437, -121.0513, -611.3), 14.1234567, 0.7041234567891, "nodule candidate",
                      (-28.49, -128.1, -618.4, -14.38, -113.99, -604.2)),
            Detection((0.1, 0.2, 0.3), None, -1e-9, "mass", None),
            Detection((1 / 3, 2 / 3, math.pi), 6.0, 1.0),
        ],
        source="chest_ct/dicom", method="blob-log", params={"min_diameter": 4.0, "window": (-800.0, 0.0)},
    )


def test_json_round_trip_is_exact(tmp_path):
    original = _sample()
    path = original.to_json(tmp_path / "detections.json")
    loaded = DetectionSet.from_json(path)
    assert loaded == original
    assert [d.center_lps for d in loaded] == [d.center_lps for d in original]
    assert loaded.params == {"min_diameter": 4.0, "window": [-800.0, 0.0]}  # tuples stored as JSON lists
    assert loaded.detections[1].diameter_mm is None and loaded.detections[1].box_lps is None


def test_file_follows_the_documented_schema(tmp_path):
    path = _sample().to_json(tmp_path / "d.json")
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT == "medview-detections"
    assert data["coordinates"] == COORDINATES == "LPS mm"
    assert data["version"] == 1
    first = data["detections"][0]
    assert set(first) == {"center_lps", "diameter_mm", "score", "label", "box_lps"}
    assert first["center_lps"] == [-21.437, -121.0513, -611.3]
    assert len(first["box_lps"]) == 6


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "d.json"
    _sample().to_json(path)
    before = path.read_bytes()

    import medview.core.detections as module

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(module.os, "replace", failing_replace)
    with pytest.raises(WriteError, match="No space left"):
        DetectionSet([Detection((9.0, 9.0, 9.0))]).to_json(path)
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["d.json"]


def test_bad_output_paths(tmp_path):
    with pytest.raises(WriteError, match="is a folder"):
        _sample().to_json(tmp_path)
    with pytest.raises(WriteError, match="does not exist"):
        _sample().to_json(tmp_path / "missing" / "d.json")


def test_bad_files_raise_medview_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        DetectionSet.from_json(tmp_path / "nothing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    with pytest.raises(CorruptFileError):
        DetectionSet.from_json(broken)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CorruptFileError, match="Not a medview detections file"):
        DetectionSet.from_json(other)
    ras = tmp_path / "ras.json"
    ras.write_text(json.dumps({"format": FORMAT, "version": 1, "coordinates": "RAS mm", "detections": []}))
    with pytest.raises(CorruptFileError, match="LPS mm"):
        DetectionSet.from_json(ras)


@pytest.mark.parametrize("kwargs", [
    {"center_lps": (0.0, float("nan"), 0.0)},
    {"center_lps": (0.0, 0.0)},
    {"center_lps": (0.0, 0.0, 0.0), "diameter_mm": -3.0},
    {"center_lps": (0.0, 0.0, 0.0), "diameter_mm": float("inf")},
    {"center_lps": (0.0, 0.0, 0.0), "score": float("nan")},
    {"center_lps": (0.0, 0.0, 0.0), "box_lps": (1.0, 0.0, 0.0, 0.0, 1.0, 1.0)},
    {"center_lps": (0.0, 0.0, 0.0), "box_lps": (0.0, 0.0, 0.0, 1.0, 1.0)},
])
def test_invalid_detections_are_refused(kwargs):
    with pytest.raises(MedviewError):
        Detection(**kwargs)


def test_parameters_must_be_json_values():
    with pytest.raises(MedviewError, match="JSON"):
        DetectionSet([], params={"mask": object()})
    with pytest.raises(MedviewError, match="JSON"):
        DetectionSet([], params={"threshold": float("nan")})


def test_sorted_by_score():
    ranked = _sample().sorted_by_score()
    assert [d.score for d in ranked] == [1.0, 0.7041234567891, -1e-9]
