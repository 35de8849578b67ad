"""Volume-rendering transfer-function presets, stored as data in ``resources/presets/transfer_functions.json``.

A preset is a colour ramp, a scalar-opacity ramp, an optional gradient-opacity ramp, a blend mode
(composite, maximum or minimum intensity) and lighting.  CT presets are in Hounsfield units.  Presets
marked ``"relative": true`` give every value as a fraction of an intensity range measured on the volume
(between two percentiles), because MR and uncalibrated data have no absolute units; :func:`resolve_preset`
turns them into absolute values for one volume, and everything downstream (the scene, the transfer
function editor) only ever sees absolute points.

File format (see the file's ``_about``)::

    {"version": 1,
     "defaults": {"CT": "ct-bone", "*": "mr-default"},
     "presets": {"ct-bone": {"name": "CT Bone", "blend": "composite",
                             "colour": [[HU, r, g, b], ...], "opacity": [[HU, alpha], ...],
                             "gradient_opacity": [[HU/mm, alpha], ...],            (optional)
                             "shading": true, "ambient": 0.2, "diffuse": 0.9, "specular": 0.3,
                             "specular_power": 10, "relative": false, "percentiles": [1, 99.5]}}}
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
from vtkmodules.vtkRenderingCore import vtkColorTransferFunction, vtkVolumeProperty

from medview.core.errors import MedviewError
from medview.core.resources import preset_path
from medview.core.volume import subsample

__all__ = ["BLEND_MODES", "ColourPoint", "OpacityPoint", "TransferFunctionPreset", "apply_preset",
           "colour_function", "default_preset_name", "get_preset", "list_presets", "load_presets",
           "opacity_function", "preset_file", "relative_range", "resolve_preset", "validate_colour_points",
           "validate_opacity_points"]

PRESET_FILE = "transfer_functions.json"
BLEND_MODES = ("composite", "maximum", "minimum")

ColourPoint = tuple[float, float, float, float]
"""``(value, r, g, b)``: value in data units (HU for CT), colour components in 0..1."""
OpacityPoint = tuple[float, float]
"""``(value, alpha)``: value in data units (or gradient magnitude per mm), alpha in 0..1."""


@dataclass(frozen=True)
class TransferFunctionPreset:
    """One volume-rendering preset.

    Attributes
    ----------
    key
        Identifier used in code and settings (``'ct-bone'``).
    name
        Display name (``'CT Bone'``).
    blend_mode
        ``'composite'``, ``'maximum'`` or ``'minimum'`` (intensity projection).
    colour_points, opacity_points
        Ramps sorted by value; values in data units, or fractions of a range when ``relative``.
    gradient_opacity_points
        Opacity against gradient magnitude (data units per mm), or None for none.
    shading
        Lighting on (needs gradients: slower first render on the CPU ray caster).
    ambient, diffuse, specular, specular_power
        Phong lighting coefficients.
    relative
        Values are fractions (0..1) of the intensity range between ``percentiles`` of the volume.
    percentiles
        ``(low, high)`` percentiles (0..100) defining that range.
    modalities
        Modalities the preset is meant for (informational, for menus).
    """

    key: str
    name: str
    blend_mode: str
    colour_points: tuple[ColourPoint, ...]
    opacity_points: tuple[OpacityPoint, ...]
    gradient_opacity_points: tuple[OpacityPoint, ...] | None = None
    shading: bool = True
    ambient: float = 0.2
    diffuse: float = 0.8
    specular: float = 0.2
    specular_power: float = 10.0
    relative: bool = False
    percentiles: tuple[float, float] = (1.0, 99.5)
    modalities: tuple[str, ...] = ()


# -- validation -------------------------------------------------------------------------------------------
def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MedviewError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _unit_interval(value: float, where: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise MedviewError(f"{where}: {value:g} is outside 0..1")
    return value


def _check_sorted(values: list[float], where: str) -> None:
    if not values:
        raise MedviewError(f"{where}: needs at least one point")
    for a, b in itertools.pairwise(values):
        if b < a:
            raise MedviewError(f"{where}: points must be sorted by value ({b:g} comes after {a:g})")


def validate_colour_points(points: Sequence[Sequence[float]], where: str = "colour points") -> tuple[ColourPoint, ...]:
    """Check ``(value, r, g, b)`` points (r, g, b in 0..1, sorted by value) and return them as tuples.

    Raises
    ------
    MedviewError
        With ``where`` and the offending point in the message.
    """
    out: list[ColourPoint] = []
    if isinstance(points, str | bytes) or not isinstance(points, Sequence | np.ndarray):
        raise MedviewError(f"{where}: expected a list of [value, r, g, b] points")
    for i, p in enumerate(points):
        if isinstance(p, str | bytes) or not isinstance(p, Sequence | np.ndarray) or len(p) != 4:
            raise MedviewError(f"{where} #{i + 1}: expected [value, r, g, b], got {p!r}")
        value = _number(p[0], f"{where} #{i + 1} value")
        rgb = [_unit_interval(_number(c, f"{where} #{i + 1} colour"), f"{where} #{i + 1} colour") for c in p[1:]]
        out.append((value, rgb[0], rgb[1], rgb[2]))
    _check_sorted([p[0] for p in out], where)
    return tuple(out)


def validate_opacity_points(points: Sequence[Sequence[float]],
                            where: str = "opacity points") -> tuple[OpacityPoint, ...]:
    """Check ``(value, alpha)`` points (alpha in 0..1, sorted by value) and return them as tuples."""
    out: list[OpacityPoint] = []
    if isinstance(points, str | bytes) or not isinstance(points, Sequence | np.ndarray):
        raise MedviewError(f"{where}: expected a list of [value, opacity] points")
    for i, p in enumerate(points):
        if isinstance(p, str | bytes) or not isinstance(p, Sequence | np.ndarray) or len(p) != 2:
            raise MedviewError(f"{where} #{i + 1}: expected [value, opacity], got {p!r}")
        value = _number(p[0], f"{where} #{i + 1} value")
        alpha = _unit_interval(_number(p[1], f"{where} #{i + 1} opacity"), f"{where} #{i + 1} opacity")
        out.append((value, alpha))
    _check_sorted([p[0] for p in out], where)
    return tuple(out)


def _parse_preset(key: str, raw: Any) -> TransferFunctionPreset:
    where = f"Transfer-function preset {key!r}"
    if not isinstance(raw, dict):
        raise MedviewError(f"{where}: expected an object, got {type(raw).__name__}")
    missing = [k for k in ("name", "blend", "colour", "opacity") if k not in raw]
    if missing:
        raise MedviewError(f"{where} is missing {', '.join(missing)}")
    blend = raw["blend"]
    if blend not in BLEND_MODES:
        raise MedviewError(f"{where}: blend mode {blend!r} is not one of {', '.join(BLEND_MODES)}")
    relative = raw.get("relative", False)
    if not isinstance(relative, bool):
        raise MedviewError(f"{where}: 'relative' must be true or false")
    colour = validate_colour_points(raw["colour"], f"{where} colour")
    opacity = validate_opacity_points(raw["opacity"], f"{where} opacity")
    gradient = raw.get("gradient_opacity")
    gradient_points = None if gradient is None else validate_opacity_points(gradient, f"{where} gradient_opacity")
    if relative:
        for v in [p[0] for p in colour] + [p[0] for p in opacity]:
            _unit_interval(v, f"{where} (relative) value")
    pct = raw.get("percentiles", [1.0, 99.5])
    if not isinstance(pct, list) or len(pct) != 2:
        raise MedviewError(f"{where}: 'percentiles' must be [low, high]")
    low, high = (_number(v, f"{where} percentile") for v in pct)
    if not 0.0 <= low < high <= 100.0:
        raise MedviewError(f"{where}: percentiles must satisfy 0 <= low < high <= 100, got {low:g}, {high:g}")
    lighting = {k: _number(raw.get(k, default), f"{where} {k}") for k, default in
                (("ambient", 0.2), ("diffuse", 0.8), ("specular", 0.2), ("specular_power", 10.0))}
    for k in ("ambient", "diffuse", "specular"):
        _unit_interval(lighting[k], f"{where} {k}")
    if not isinstance(raw.get("shading", True), bool):
        raise MedviewError(f"{where}: 'shading' must be true or false")
    modalities = raw.get("modalities", [])
    if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
        raise MedviewError(f"{where}: 'modalities' must be a list of modality codes")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise MedviewError(f"{where}: 'name' must be a non-empty text")
    return TransferFunctionPreset(
        key=key, name=raw["name"], blend_mode=blend, colour_points=colour, opacity_points=opacity,
        gradient_opacity_points=gradient_points, shading=raw.get("shading", True), relative=relative,
        percentiles=(low, high), modalities=tuple(modalities), **lighting)


@dataclass(frozen=True)
class _PresetFile:
    presets: dict[str, TransferFunctionPreset]
    defaults: dict[str, str]


_CACHE: dict[tuple[str, int, int], _PresetFile] = {}


def preset_file() -> Path:
    """The bundled preset file (``resources/presets/transfer_functions.json``)."""
    return preset_path(PRESET_FILE)


def _load(path: Path | None) -> _PresetFile:
    path = Path(path) if path is not None else preset_file()
    try:
        stat = path.stat()
    except OSError as exc:
        raise MedviewError(f"The transfer-function preset file is missing: {exc.strerror}", path=str(path)) from None
    cache_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MedviewError(f"The transfer-function preset file is not valid JSON (line {exc.lineno}, column "
                           f"{exc.colno}: {exc.msg})", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MedviewError(f"The transfer-function preset file cannot be read: {exc}", path=str(path)) from None
    try:
        parsed = _parse_file(raw)
    except MedviewError as exc:
        raise MedviewError(str(exc), path=str(path)) from None
    _CACHE.clear()  # one file in use at a time; a changed file replaces the old entry
    _CACHE[cache_key] = parsed
    return parsed


def _parse_file(raw: Any) -> _PresetFile:
    if not isinstance(raw, dict) or not isinstance(raw.get("presets"), dict) or not raw["presets"]:
        raise MedviewError("The transfer-function preset file needs a non-empty 'presets' object")
    presets = {key: _parse_preset(key, value) for key, value in raw["presets"].items()}
    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise MedviewError("'defaults' in the transfer-function preset file must map modalities to preset names")
    for modality, key in defaults.items():
        if key not in presets:
            raise MedviewError(f"Default preset {key!r} for modality {modality!r} is not defined")
    return _PresetFile(presets, dict(defaults))


def load_presets(path: Path | None = None) -> dict[str, TransferFunctionPreset]:
    """All presets of a file (default: the bundled one), by key, in file order.

    Raises
    ------
    MedviewError
        The file is missing, is not JSON, or a preset is malformed (the message names it).
    """
    return dict(_load(path).presets)


def list_presets(path: Path | None = None) -> list[str]:
    """Preset keys in file order (``['ct-bone', 'ct-soft-tissue', ...]``)."""
    return list(_load(path).presets)


def get_preset(name: str, path: Path | None = None) -> TransferFunctionPreset:
    """The preset called ``name`` (its key); MedviewError listing the known keys if there is none."""
    presets = _load(path).presets
    if name not in presets:
        raise MedviewError(f"No transfer-function preset called {name!r}; presets: {', '.join(presets)}")
    return presets[name]


def default_preset_name(modality: str, path: Path | None = None) -> str:
    """The preset key to use first for a modality (``'CT'`` -> ``'ct-bone'``); ``'*'`` entry otherwise."""
    loaded = _load(path)
    key = loaded.defaults.get((modality or "").upper(), loaded.defaults.get("*"))
    return key if key is not None else next(iter(loaded.presets))


# -- from a preset to VTK ------------------------------------------------------------------------------------
def relative_range(preset: TransferFunctionPreset, array: np.ndarray) -> tuple[float, float]:
    """The intensity range ``(low, high)`` a relative preset's fractions map to, for this array.

    Percentiles of a regular subsample (fast on any size).  Absolute presets return the data's min
    and max, which nothing needs but which keeps the function total.
    """
    sample = subsample(np.asarray(array))
    if preset.relative:
        low, high = (float(v) for v in np.percentile(sample, preset.percentiles))
    else:
        low, high = float(np.min(sample)), float(np.max(sample))
    if not high > low:
        high = low + 1.0
    return low, high


def resolve_preset(preset: TransferFunctionPreset, data_range: tuple[float, float]) -> TransferFunctionPreset:
    """A copy with absolute values: relative fractions mapped linearly onto ``data_range`` (low, high).

    Gradient-opacity magnitudes of a relative preset are fractions of ``high - low`` per mm.
    An absolute preset is returned unchanged.
    """
    if not preset.relative:
        return preset
    low, high = float(data_range[0]), float(data_range[1])
    span = high - low if high > low else 1.0

    def at(f: float) -> float:
        return low + f * span

    gradient = None if preset.gradient_opacity_points is None else tuple(
        (g * span, a) for g, a in preset.gradient_opacity_points)
    return replace(preset, relative=False,
                   colour_points=tuple((at(v), r, g, b) for v, r, g, b in preset.colour_points),
                   opacity_points=tuple((at(v), a) for v, a in preset.opacity_points),
                   gradient_opacity_points=gradient)


def colour_function(points: Sequence[ColourPoint],
                    function: vtkColorTransferFunction | None = None) -> vtkColorTransferFunction:
    """Fill (or create) a ``vtkColorTransferFunction`` with absolute ``(value, r, g, b)`` points."""
    ctf = function if function is not None else vtkColorTransferFunction()
    ctf.RemoveAllPoints()
    ctf.SetClamping(True)  # values beyond the ends take the end colours
    for value, r, g, b in validate_colour_points(points):
        ctf.AddRGBPoint(value, r, g, b)
    return ctf


def opacity_function(points: Sequence[OpacityPoint],
                     function: vtkPiecewiseFunction | None = None) -> vtkPiecewiseFunction:
    """Fill (or create) a ``vtkPiecewiseFunction`` with absolute ``(value, opacity)`` points."""
    pwf = function if function is not None else vtkPiecewiseFunction()
    pwf.RemoveAllPoints()
    pwf.SetClamping(True)
    for value, alpha in validate_opacity_points(points):
        pwf.AddPoint(value, alpha)
    return pwf


def apply_preset(preset: TransferFunctionPreset, volume_property: vtkVolumeProperty,
                 data_range: tuple[float, float] | None = None) -> TransferFunctionPreset:
    """Set a preset's transfer functions and lighting on a ``vtkVolumeProperty``.

    Parameters
    ----------
    preset
        Absolute or relative preset.
    volume_property
        Receives colour, scalar opacity, gradient opacity (or none) and lighting; the functions already
        on the property are refilled in place so that mappers holding them see the change.
    data_range
        ``(low, high)`` in data units, needed for relative presets (see :func:`relative_range`).

    Returns
    -------
    TransferFunctionPreset
        The absolute preset that was applied (what an editor should show).  The blend mode is not a
        property setting: the caller sets it on the mapper.
    """
    if preset.relative:
        if data_range is None:
            raise MedviewError(f"Preset {preset.key!r} is relative to the intensity range: give a data range")
        preset = resolve_preset(preset, data_range)
    ctf = volume_property.GetRGBTransferFunction(0)
    volume_property.SetColor(colour_function(preset.colour_points, ctf))
    pwf = volume_property.GetScalarOpacity(0)
    volume_property.SetScalarOpacity(opacity_function(preset.opacity_points, pwf))
    if preset.gradient_opacity_points:
        gof = volume_property.GetStoredGradientOpacity(0)
        volume_property.SetGradientOpacity(opacity_function(preset.gradient_opacity_points, gof))
        volume_property.DisableGradientOpacityOff()
    else:
        volume_property.DisableGradientOpacityOn()
    volume_property.SetShade(int(preset.shading))
    volume_property.SetAmbient(preset.ambient)
    volume_property.SetDiffuse(preset.diffuse)
    volume_property.SetSpecular(preset.specular)
    volume_property.SetSpecularPower(preset.specular_power)
    return preset
