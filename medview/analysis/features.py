"""Radiomics features of a labelled region with PyRadiomics 3.0.1, on SimpleITK images.

Why a layer over ``RadiomicsFeatureExtractor``: PyRadiomics validates parameters late and in pykwalify's
multi-line words, reports an absent label or a grid mismatch as a generic ``ValueError``, logs at INFO on
every call and mixes diagnostics into the feature values.  Here parameters are checked before any pixel
is read (one-line :class:`~medview.core.errors.MedviewError`), the image and mask are checked for the
usual mistakes (not 3D, colour, other grid, empty or absent label: the message lists the values that are
there), values and diagnostics come back apart, and progress/cancel are reported between feature classes.
The numbers are PyRadiomics' own: the extraction itself is ``RadiomicsFeatureExtractor.execute``.

Parameters
    A PyRadiomics parameter file (YAML or JSON, PyRadiomics' schema: ``imageType`` / ``featureClass`` /
    ``setting``), a dict of the same shape, or ``None`` for medview's bundled
    ``resources/presets/radiomics_default.yaml`` (binWidth 25, no resampling, no normalisation, label 1,
    sitkBSpline, original image; first order, 3D shape, GLCM, GLRLM, GLSZM, NGTDM, GLDM).

shape2D
    PyRadiomics computes 2D shape features of a 3D image only with ``force2D: true`` and a label that is
    one slice thick along ``force2Ddimension``.  With the default parameters (``None``, or a file that
    lists no ``featureClass`` at all, which PyRadiomics reads as "every class") medview adds shape2D
    when the label is one slice thick (a 2D image, or a region drawn on one slice), turning on ``force2D``
    along the slice axis for that call (texture matrices then use in-plane neighbours, which is all a
    one-slice region has), and leaves it out otherwise.  A parameter file that lists shape2D explicitly gets
    it or a clear error saying why it cannot be computed.

Logging
    PyRadiomics' ``radiomics`` logger is set to WARNING for the duration of a call and restored after;
    its warnings are collected into :attr:`FeatureResult.warnings` (its own stderr handler is muted meanwhile,
    so each warning is reported once, by the caller).  pykwalify's logger is silenced while
    parameters are validated (its errors become the one-line message).  No other logger is touched.

Note that PyRadiomics applies the ``geometryTolerance`` setting, when given, as SimpleITK's global default
coordinate/direction tolerance (a process-wide side effect of the library).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.resources import preset_path
from medview.core.tasks import TaskContext, check_cancel, report

if TYPE_CHECKING:
    import SimpleITK as sitk

__all__ = ["DEFAULT_PARAMS_FILE", "FEATURE_CLASSES", "FeatureResult", "RadiomicsParams", "default_params_path",
           "extract", "extract_features", "load_params", "split_feature_name"]

DEFAULT_PARAMS_FILE = "radiomics_default.yaml"
FEATURE_CLASSES = ("firstorder", "shape", "shape2D", "glcm", "glrlm", "glszm", "ngtdm", "gldm")
# Derived images PyRadiomics makes per image type (for the progress estimate only).
_WAVELET_IMAGES_3D = 8


def default_params_path() -> Path:
    """The bundled parameter file (``resources/presets/radiomics_default.yaml``)."""
    return preset_path(DEFAULT_PARAMS_FILE)


# -- parameters ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RadiomicsParams:
    """Validated PyRadiomics parameters.

    ``all_classes``: the parameters name no feature class (the bundled default spells them out but is
    treated the same way): every class runs and shape2D is added only where it applies (module notes).
    """

    image_types: dict[str, dict[str, Any]]
    feature_classes: dict[str, list[str] | None]
    settings: dict[str, Any]
    voxel_settings: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the file read, or None for a dict
    all_classes: bool = False

    def to_pyradiomics(self) -> dict[str, Any]:
        """The dict ``RadiomicsFeatureExtractor`` takes (same content as the file)."""
        data: dict[str, Any] = {"imageType": {k: dict(v) for k, v in self.image_types.items()},
                                "featureClass": {k: (list(v) if v is not None else None)
                                                 for k, v in self.feature_classes.items()},
                                "setting": dict(self.settings)}
        if self.voxel_settings:
            data["voxelSetting"] = dict(self.voxel_settings)
        return data

    @property
    def label(self) -> int:
        return int(self.settings.get("label", 1))


@contextlib.contextmanager
def _quiet(name: str, level: int) -> Iterator[logging.Logger]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield logger
    finally:
        logger.setLevel(previous)


def _schema_message(exc: BaseException) -> str:
    """pykwalify's error text ("Validation failed: ... - Key 'x' was not defined. Path: '/setting'") in one line."""
    text = getattr(exc, "msg", None) or str(exc)
    parts = [p.strip(" -\t") for p in str(text).replace("\r", "").split("\n")]
    parts = [p for p in parts if p and not re.match(r"(schema )?validation failed", p, re.IGNORECASE)
             and not p.startswith("<SchemaError")]
    line = "; ".join(parts) if parts else str(exc).strip()
    line = re.sub(r"\s+", " ", line)
    line = line.replace("Key '", "key '").replace(" was not defined", " is not a PyRadiomics parameter")
    return line[:400]


def _validate(data: Any, where: str) -> dict[str, Any]:
    """Check ``data`` against PyRadiomics' own schema (pykwalify), raising a one-line MedviewError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MedviewError(f"{where}: PyRadiomics parameters must be a mapping with imageType/featureClass/setting, "
                           f"got {type(data).__name__}")
    unknown = [k for k in data if k not in ("imageType", "featureClass", "setting", "voxelSetting")]
    if unknown:
        raise MedviewError(f"{where}: unknown section(s) {', '.join(map(str, unknown))}; "
                           "PyRadiomics parameters have imageType, featureClass, setting (and voxelSetting)")
    classes = data.get("featureClass") or {}
    if isinstance(classes, dict):
        bad = [str(c) for c in classes if c not in FEATURE_CLASSES]
        if bad:
            raise MedviewError(f"{where}: unknown feature class(es) {', '.join(bad)}; "
                               f"PyRadiomics has {', '.join(FEATURE_CLASSES)}")
    import pykwalify.core
    from pykwalify.errors import PyKwalifyException
    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    with _quiet("pykwalify", logging.CRITICAL + 1), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pykwalify loads PyRadiomics' checks with load_module
        try:
            core = pykwalify.core.Core(source_data=data, schema_files=[schema_file], extensions=[schema_funcs])
            checked = core.validate(raise_exception=True)
        except (PyKwalifyException, ValueError, TypeError) as exc:
            raise MedviewError(f"{where}: invalid PyRadiomics parameters: {_schema_message(exc)}") from None
    return dict(checked or {})


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise InputNotFoundError(f"The parameter file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MedviewError(f"The parameter file {path} cannot be read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise MedviewError(f"The parameter file {path.name} is not valid JSON: {exc.msg} at line {exc.lineno}",
                               path=str(path)) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise MedviewError(f"The parameter file {path.name} is not valid YAML: {problem}{where}",
                           path=str(path)) from None


def load_params(params: str | os.PathLike[str] | Mapping[str, Any] | RadiomicsParams | None = None
                ) -> RadiomicsParams:
    """Read and validate PyRadiomics parameters: a YAML/JSON file, a mapping, or ``None`` for the bundled default.

    Files are validated once and remembered by path, modification time and size.

    Raises :class:`MedviewError` (one line) for a missing or malformed file, an unknown section, feature
    class, feature or setting, or a value PyRadiomics' schema refuses.
    """
    if isinstance(params, RadiomicsParams):
        return params
    default = params is None
    if isinstance(params, Mapping):
        return _parse(dict(params), None, "The parameters", default=False)
    if not default and not isinstance(params, (str, os.PathLike)):
        raise MedviewError(f"PyRadiomics parameters must be a file, a dict or None, got {type(params).__name__}")
    path = default_params_path() if default else Path(os.fspath(params))  # type: ignore[arg-type]
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, default)
    except OSError:
        key = None
    with _CACHE_LOCK:
        cached = _FILE_CACHE.get(key) if key is not None else None
    if cached is not None:
        return cached
    parsed = _parse(_read_file(path), str(path), f"The parameter file {path.name}", default=default)
    if key is not None:
        with _CACHE_LOCK:
            _FILE_CACHE[key] = parsed
            while len(_FILE_CACHE) > 32:
                _FILE_CACHE.pop(next(iter(_FILE_CACHE)))
    return parsed


def _parse(data: Any, source: str | None, where: str, default: bool) -> RadiomicsParams:
    checked = _validate(data, where)
    classes = checked.get("featureClass") or {}
    image_types = checked.get("imageType") or {"Original": {}}
    return RadiomicsParams(
        image_types={str(k): dict(v or {}) for k, v in image_types.items()},
        feature_classes={str(k): (list(v) if v is not None else None) for k, v in classes.items()}
        or {c: None for c in FEATURE_CLASSES},
        settings=dict(checked.get("setting") or {}),
        voxel_settings=dict(checked.get("voxelSetting") or {}),
        source=source, all_classes=default or not classes)


# Validated parameter files by (path, modification time, size): pykwalify takes ~30 ms a file, as much as the
# whole extraction of a small region.  The cached objects are never modified (callers copy what they change).
_FILE_CACHE: dict[tuple, RadiomicsParams] = {}
_CACHE_LOCK = threading.Lock()


# -- extraction ----------------------------------------------------------------------------------------------
@dataclass
class FeatureResult:
    """Feature values (``<imageType>_<class>_<feature>`` -> float, PyRadiomics' order) and, apart, its
    diagnostics (versions, settings, image and mask summaries) and the warnings it logged."""

    values: dict[str, float]
    diagnostics: dict[str, Any]
    label: int
    warnings: list[str] = field(default_factory=list)
    params_source: str | None = None


def split_feature_name(name: str) -> tuple[str, str, str]:
    """``original_glcm_Contrast`` -> ``("original", "glcm", "Contrast")`` (image types like ``log-sigma-1-0-mm-3D``
    and ``wavelet-LLH`` keep their dashes)."""
    parts = name.split("_", 2)
    if len(parts) != 3:
        return ("", "", name)
    return parts[0], parts[1], parts[2]


def _grid_text(image: sitk.Image) -> str:
    size = "x".join(str(n) for n in image.GetSize())
    spacing = " x ".join(f"{s:.4g}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.4g}" for o in image.GetOrigin())
    return f"{size} voxels of {spacing} mm at ({origin})"


def _check_inputs(image: sitk.Image, mask: sitk.Image, label: int, settings: dict[str, Any]) -> np.ndarray:
    """``mask == label`` as a numpy array (z, y, x), after the checks PyRadiomics would make late or vaguely."""
    import SimpleITK as sitk

    for what, img in (("image", image), ("mask", mask)):
        if not isinstance(img, sitk.Image):
            raise MedviewError(f"The {what} must be a SimpleITK image, got {type(img).__name__}")
        if img.GetDimension() != 3:
            raise MedviewError(f"Radiomics needs a 3D {what} (a 2D image is a volume of one slice); "
                               f"this one is {img.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MedviewError("Radiomics works on grey-scale images; this one is colour")
    if mask.GetNumberOfComponentsPerPixel() != 1:
        raise MedviewError("The mask must be a label map with one value per voxel")
    if not settings.get("correctMask", False):
        tol = settings.get("geometryTolerance") or 1e-6  # SimpleITK's default, relative to the voxel spacing
        same = (image.GetSize() == mask.GetSize()
                and np.allclose(image.GetSpacing(), mask.GetSpacing(), rtol=0, atol=tol * max(image.GetSpacing()))
                and np.allclose(image.GetOrigin(), mask.GetOrigin(), rtol=0, atol=tol * max(image.GetSpacing()))
                and np.allclose(image.GetDirection(), mask.GetDirection(), rtol=0, atol=max(tol, 1e-6)))
        if not same:
            raise MedviewError(f"The mask's grid ({_grid_text(mask)}) differs from the image's ({_grid_text(image)}); "
                               "resample the mask onto the image (medview features and the Features panel do) "
                               "or set correctMask: true")
    values = sitk.GetArrayViewFromImage(mask)
    if not np.issubdtype(values.dtype, np.integer) and not np.all(np.mod(values, 1) == 0):
        raise MedviewError("The mask is not a label map: it holds non-integer values")
    inside = values == label
    if not inside.any():
        present = np.unique(values)
        present = [int(v) for v in present if v != 0]
        if not present:
            raise MedviewError("The mask is empty: it holds no labelled voxel")
        shown = ", ".join(str(v) for v in present[:20]) + (" ..." if len(present) > 20 else "")
        raise MedviewError(f"Label {label} is not in the mask; the labels present are {shown}")
    return inside


def _extent(inside: np.ndarray) -> tuple[int, int, int]:
    """The bounding-box size in voxels along (z, y, x) of the True voxels of ``inside``."""
    sizes = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(np.any(inside, axis=others))
        sizes.append(int(hit[-1] - hit[0] + 1))
    return sizes[0], sizes[1], sizes[2]


def _plan_shape2d(params: RadiomicsParams, inside: np.ndarray, label: int) -> tuple[dict, dict, list[str]]:
    """(feature classes, settings) for this mask, deciding shape2D as the module notes say."""
    classes = dict(params.feature_classes)
    settings = dict(params.settings)
    notes: list[str] = []
    extent_zyx = _extent(inside)
    if params.all_classes:
        classes.pop("shape2D", None)
        if extent_zyx[0] == 1 and not settings.get("force2D", False) and extent_zyx[2] > 1:
            settings["force2D"], settings["force2Ddimension"] = True, 0
        dim = int(settings.get("force2Ddimension", 0))
        # PyRadiomics 3.0.1 needs the label one voxel thick along numpy axis ``dim`` and wider than one voxel
        # along the image axis ``dim`` (its extractor reads the bounding box in x, y, z order)
        if settings.get("force2D", False) and extent_zyx[dim] == 1 and extent_zyx[::-1][dim] > 1:
            classes["shape2D"] = None
        return classes, settings, notes
    if "shape2D" in classes:
        dim = int(settings.get("force2Ddimension", 0))
        axis = ("slice (z)", "row (y)", "column (x)")[dim]
        if not settings.get("force2D", False):
            raise MedviewError("shape2D features need the setting force2D: true (PyRadiomics computes 2D shape "
                               "only on one slice); remove shape2D or set force2D")
        if extent_zyx[dim] != 1:
            raise MedviewError(f"shape2D features need a label one voxel thick along force2Ddimension {dim} "
                               f"({axis}); label {label} spans {extent_zyx[dim]} voxels there")
        if extent_zyx[::-1][dim] <= 1:
            raise MedviewError(f"shape2D features cannot be computed for label {label}: PyRadiomics 3.0.1 also needs "
                               f"it wider than one voxel along image axis {dim}")
    return classes, settings, notes


def _count_images(image_types: dict[str, dict[str, Any]], settings: dict[str, Any]) -> int:
    total = 0
    for name, custom in image_types.items():
        if name == "Wavelet":
            total += _WAVELET_IMAGES_3D
        elif name == "LoG":
            total += max(1, len((custom or {}).get("sigma", settings.get("sigma")) or []))
        else:
            total += 1
    return total


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            message = record.getMessage().strip().splitlines()[0]
            if message not in self.messages:
                self.messages.append(message)


def _library_message(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _apply(extractor: Any, params: RadiomicsParams, classes: dict[str, list[str] | None],
           settings: dict[str, Any]) -> None:
    """What ``RadiomicsFeatureExtractor._applyParams`` does after its pykwalify validation (PyRadiomics 3.0.1),
    without validating again: default settings updated with the file's, the image types and feature classes."""
    merged = extractor._getDefaultSettings()
    merged.update(settings)
    merged.update(params.voxel_settings)
    extractor.settings = merged
    extractor.enabledImagetypes = {k: dict(v) for k, v in params.image_types.items()} or {"Original": {}}
    extractor.enabledFeatures = {k: (list(v) if v is not None else None) for k, v in classes.items()}
    if merged.get("binCount") is not None:
        logging.getLogger("radiomics.featureextractor").warning(
            "Fixed bin Count enabled! However, we recommend using a fixed bin Width.")
    extractor._setTolerance()


def extract(image: sitk.Image, mask: sitk.Image, label: int | None = None,
            params: str | os.PathLike[str] | dict[str, Any] | RadiomicsParams | None = None,
            task: TaskContext | None = None) -> FeatureResult:
    """Radiomics features of the voxels of ``mask == label`` in ``image`` (PyRadiomics ``execute``).

    Parameters
    ----------
    image, mask
        3D SimpleITK images on the same grid (size, spacing in mm, origin, direction).
    label
        The label value; ``None``: the parameters' ``label`` setting (1 unless set).
    params
        Parameter file (YAML/JSON), dict, :class:`RadiomicsParams`, or ``None`` for the bundled default.
    task
        Progress is reported between feature classes; cancelling raises
        :class:`~medview.core.errors.CancelledError` at the next class.

    Returns
    -------
    FeatureResult
        ``values`` in PyRadiomics' order, diagnostics apart.  Raises :class:`MedviewError` for bad input.
    """
    report(task, 0.0, "Checking the parameters")
    parsed = load_params(params)
    label = parsed.label if label is None else int(label)
    if label <= 0:
        raise MedviewError(f"The label value must be a positive integer, got {label}")
    inside = _check_inputs(image, mask, label, parsed.settings)
    classes, settings, notes = _plan_shape2d(parsed, inside, label)
    del inside
    settings["label"] = label
    check_cancel(task)

    from radiomics import featureextractor

    texture = [c for c in classes if not c.startswith("shape")]
    steps = 1 + _count_images(parsed.image_types, settings) * max(1, len(texture))
    done = [0]

    def step(message: str) -> None:
        done[0] += 1
        report(task, min(0.99, done[0] / steps), message)

    class _Extractor(featureextractor.RadiomicsFeatureExtractor):
        """PyRadiomics' extractor, reporting progress and checking cancel between feature classes."""

        def computeShape(self, *args: Any, **kwargs: Any):  # noqa: N802 (PyRadiomics' name)
            check_cancel(task)
            out = super().computeShape(*args, **kwargs)
            step("Shape features")
            return out

        def computeFeatures(self, image, mask, imageTypeName, **kwargs):  # noqa: N802
            everything = self.enabledFeatures
            out: dict[str, Any] = {}
            try:
                for name, names in everything.items():
                    if name.startswith("shape"):
                        continue
                    check_cancel(task)
                    self.enabledFeatures = {name: names}
                    out.update(super().computeFeatures(image, mask, imageTypeName, **kwargs))
                    step(f"{imageTypeName} {name}")
            finally:
                self.enabledFeatures = everything
            return out

    collector = _Collector()
    with _quiet("radiomics", logging.WARNING) as logger:
        # PyRadiomics' own stderr handler would print each warning too: they are reported from .warnings
        own = [(h, h.level) for h in logger.handlers]
        for h, _ in own:
            h.setLevel(logging.CRITICAL + 1)
        logger.addHandler(collector)
        try:
            extractor = _Extractor()  # PyRadiomics' defaults, then the parameters validated above
            _apply(extractor, parsed, classes, settings)
            try:
                raw = extractor.execute(image, mask, label=label)
            except (ValueError, RuntimeError, IndexError) as exc:
                raise MedviewError(f"PyRadiomics could not compute features of label {label}: "
                                   f"{_library_message(exc)}") from None
        finally:
            logger.removeHandler(collector)
            for h, level in own:
                h.setLevel(level)
    features: dict[str, float] = {}
    diagnostics: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("diagnostics_"):
            diagnostics[key] = value.tolist() if isinstance(value, np.ndarray) else value
        else:
            features[key] = float(value)
    report(task, 1.0, f"{len(features)} features")
    return FeatureResult(features, diagnostics, label, [*notes, *collector.messages], parsed.source)


def extract_features(image: sitk.Image, mask: sitk.Image, label: int | None = None,
                     params: str | os.PathLike[str] | dict[str, Any] | RadiomicsParams | None = None,
                     task: TaskContext | None = None) -> dict[str, float]:
    """Only the feature values of :func:`extract` (ordered ``<imageType>_<class>_<feature>`` -> float)."""
    return extract(image, mask, label, params, task).values
