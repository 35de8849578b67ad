"""A RescaleSlope / RescaleIntercept that is not a number is not applied silently: the series warns.

Source: pydicom's CT_small.dcm (slope 1, intercept -1024) with the value replaced; the expected pixels are
pydicom's own decode (pixel_array) plus the intercept, i.e. what the default slope of 1 gives.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medview
from medview.cli.main import main

CT_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"


def _with_value(tmp_path: Path, keyword: str, value: str) -> Path:
    """CT_small.dcm with ``keyword`` (a DS element) holding ``value`` as written, valid or not."""
    ds = pydicom.dcmread(CT_SMALL)
    setattr(ds, keyword, "7")  # a marker value, then the raw element bytes are replaced
    out = tmp_path / "ct.dcm"
    ds.save_as(out)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + b"DS"
    data = out.read_bytes()
    marker = head + struct.pack("<H", 2) + b"7 "
    assert data.count(marker) == 1
    text = value.encode() + (b" " if len(value) % 2 else b"")
    out.write_bytes(data.replace(marker, head + struct.pack("<H", len(text)) + text))
    return out


@pytest.mark.parametrize("value", ["x", "nan", "inf"])
def test_non_numeric_slope_warns_and_uses_1(tmp_path: Path, value: str) -> None:
    path = _with_value(tmp_path, "RescaleSlope", value)
    volume = medview.open_image(path)
    warnings = [w for w in volume.metadata.warnings if "RescaleSlope" in w]
    assert len(warnings) == 1 and f"'{value}'" in warnings[0] and "not a number" in warnings[0]
    expected = pydicom.dcmread(CT_SMALL).pixel_array.astype(np.float64) - 1024
    np.testing.assert_array_equal(volume.array[0].astype(np.float64), expected)


def test_non_numeric_intercept_warns(tmp_path: Path) -> None:
    volume = medview.open_image(_with_value(tmp_path, "RescaleIntercept", "abc"))
    assert any("RescaleIntercept 'abc' is not a number" in w for w in volume.metadata.warnings)
    np.testing.assert_array_equal(volume.array[0], pydicom.dcmread(CT_SMALL).pixel_array)


def test_cli_shows_the_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _with_value(tmp_path, "RescaleSlope", "x")
    assert main(["info", str(path)]) == 0
    assert "warning: RescaleSlope 'x' is not a number" in capsys.readouterr().out
    assert main(["convert", str(path), str(tmp_path / "out.nii.gz")]) == 0
    err = capsys.readouterr().err
    assert "warning: RescaleSlope 'x' is not a number" in err


def test_valid_values_give_no_warning() -> None:
    volume = medview.open_image(CT_SMALL)
    assert not [w for w in volume.metadata.warnings if "Rescale" in w]
