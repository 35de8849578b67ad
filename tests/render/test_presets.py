"""Transfer-function presets: the bundled file loads, every preset gives valid VTK functions, bad files fail
with a MedviewError that says what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from vtkmodules.vtkRenderingCore import vtkVolumeProperty

from medview.core.errors import MedviewError
from medview.render.presets import (
    apply_preset,
    colour_function,
    default_preset_name,
    get_preset,
    list_presets,
    load_presets,
    opacity_function,
    preset_file,
    relative_range,
    resolve_preset,
)

REQUIRED = {"ct-bone": "composite", "ct-soft-tissue": "composite", "ct-lung": "composite",
            "ct-angio": "composite", "mr-default": "composite", "mip": "maximum", "minip": "minimum"}


def test_bundled_file_has_the_required_presets():
    presets = load_presets()
    assert set(REQUIRED) <= set(presets)
    assert list_presets() == list(presets)
    for key, blend in REQUIRED.items():
        preset = get_preset(key)
        assert preset.key == key and preset.name.strip()
        assert preset.blend_mode == blend
    # CT presets are absolute (HU); MR and the projections are relative to the volume's range
    assert not any(get_preset(k).relative for k in ("ct-bone", "ct-soft-tissue", "ct-lung", "ct-angio"))
    assert get_preset("mr-default").relative


def test_defaults_per_modality():
    assert default_preset_name("CT") == "ct-bone"
    assert default_preset_name("ct") == "ct-bone"
    assert default_preset_name("MR") == "mr-default"
    assert default_preset_name("") in list_presets()
    assert default_preset_name("XA") in list_presets()


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_every_preset_makes_valid_vtk_functions(key):
    preset = get_preset(key)
    data_range = (-1024.0, 3071.0) if not preset.relative else (12.0, 812.0)
    prop = vtkVolumeProperty()
    applied = apply_preset(preset, prop, data_range)
    assert not applied.relative
    ctf, pwf = prop.GetRGBTransferFunction(0), prop.GetScalarOpacity(0)
    assert ctf.GetSize() == len(preset.colour_points)
    assert pwf.GetSize() == len(preset.opacity_points)
    lo, hi = applied.opacity_points[0][0], applied.opacity_points[-1][0]
    for value in np.linspace(lo - 100, hi + 100, 57):
        rgb = ctf.GetColor(value)
        assert all(0.0 <= c <= 1.0 for c in rgb)
        assert 0.0 <= pwf.GetValue(value) <= 1.0
    assert max(a for _, a in applied.opacity_points) > 0  # something is visible
    assert bool(prop.GetShade()) == preset.shading
    assert prop.GetAmbient() == pytest.approx(preset.ambient)
    assert prop.GetDiffuse() == pytest.approx(preset.diffuse)
    assert prop.GetSpecular() == pytest.approx(preset.specular)
    assert bool(prop.GetDisableGradientOpacity()) == (preset.gradient_opacity_points is None)
    if preset.relative:  # fractions land inside the given range, in order
        values = [v for v, *_ in applied.colour_points]
        assert data_range[0] <= min(values) and max(values) <= data_range[1]
        assert values == sorted(values)


def test_ct_bone_hides_soft_tissue_and_shows_bone():
    prop = vtkVolumeProperty()
    apply_preset(get_preset("ct-bone"), prop)
    pwf = prop.GetScalarOpacity(0)
    assert pwf.GetValue(-1000) == 0.0 and pwf.GetValue(40) == 0.0  # air and muscle transparent
    assert pwf.GetValue(700) > 0.5  # cortical bone opaque


def test_relative_preset_maps_fractions_onto_percentiles():
    preset = get_preset("mr-default")
    array = np.arange(100_000, dtype=np.float32).reshape(10, 100, 100)
    low, high = relative_range(preset, array)
    expected = np.percentile(array, preset.percentiles)
    assert low == pytest.approx(expected[0], rel=0.02) and high == pytest.approx(expected[1], rel=0.02)
    resolved = resolve_preset(preset, (100.0, 300.0))
    for (f, *_), (v, *_) in zip(preset.opacity_points, resolved.opacity_points, strict=True):
        assert v == pytest.approx(100.0 + 200.0 * f)
    with pytest.raises(MedviewError, match="relative"):
        apply_preset(preset, vtkVolumeProperty())  # no range given


def test_functions_refill_in_place():
    ctf = colour_function([(0, 0, 0, 0), (100, 1, 1, 1)])
    same = colour_function([(-5, 1, 0, 0), (5, 0, 1, 0), (10, 0, 0, 1)], ctf)
    assert same is ctf and ctf.GetSize() == 3
    pwf = opacity_function([(0, 0.0), (1, 1.0)])
    assert pwf.GetValue(0.5) == pytest.approx(0.5)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(MedviewError, match="ct-bone"):
        get_preset("no-such-preset")


def _write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "tf.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _good() -> dict:
    return json.loads(preset_file().read_text())


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["presets"]["ct-bone"]["opacity"].reverse(), "sorted"),
    (lambda d: d["presets"]["ct-bone"]["colour"][1].__setitem__(1, 1.7), "outside 0..1"),
    (lambda d: d["presets"]["ct-bone"]["opacity"][1].__setitem__(1, -0.2), "outside 0..1"),
    (lambda d: d["presets"]["ct-bone"].pop("opacity"), "missing opacity"),
    (lambda d: d["presets"]["ct-bone"].__setitem__("blend", "average"), "blend mode"),
    (lambda d: d["presets"]["ct-bone"]["colour"][0].pop(), r"\[value, r, g, b\]"),
    (lambda d: d["presets"]["ct-bone"]["opacity"][0].__setitem__(0, "low"), "finite number"),
    (lambda d: d["presets"]["mr-default"]["opacity"][-1].__setitem__(0, 1.5), "relative"),
    (lambda d: d["presets"]["mr-default"].__setitem__("percentiles", [90, 10]), "percentiles"),
    (lambda d: d["defaults"].__setitem__("CT", "ct-nothing"), "ct-nothing"),
    (lambda d: d.__setitem__("presets", {}), "presets"),
])
def test_broken_file_gives_medview_error(tmp_path, mutate, message):
    data = _good()
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(MedviewError, match=message) as info:
        load_presets(path)
    assert str(path) in str(info.value)  # the message says which file


def test_invalid_json_and_missing_file(tmp_path):
    path = _write(tmp_path, '{"presets": {"x": [1, 2,]}}')
    with pytest.raises(MedviewError, match=r"not valid JSON.*line 1"):
        load_presets(path)
    with pytest.raises(MedviewError, match="missing"):
        load_presets(tmp_path / "absent.json")


def test_a_fixed_file_is_read_again(tmp_path):
    data = _good()
    data["presets"]["ct-bone"]["name"] = "Bone (site)"
    path = _write(tmp_path, data)
    assert get_preset("ct-bone", path).name == "Bone (site)"
    assert get_preset("ct-bone").name == "CT Bone"  # the bundled file is unaffected
