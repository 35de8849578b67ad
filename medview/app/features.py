"""Radiomics commands shared by the GUI's Features panel, ``medview features`` and batch pipelines.

:func:`compute_features` is the one entry point for a study in memory: it hands the volume and label map
to :mod:`medview.analysis.features` (PyRadiomics) as SimpleITK images on the volume's exact geometry.
:func:`features_file` reads an image and a mask (a mask on another grid is resampled onto the image with
nearest neighbour and a warning), computes, and writes a CSV with one row per case::

    case_id,label,original_shape_Elongation,...,original_ngtdm_Strength

so that the files of a cohort concatenate into one table (same header, one line each).  Values are written
with full float precision (``repr``), so reading the CSV back gives the computed numbers exactly.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medview.core.errors import MedviewError, WriteError
from medview.core.geometry import mask_box
from medview.core.labels import LabelMap
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume

__all__ = ["FeaturesFileResult", "case_id_for", "choose_label", "compute_feature_result", "compute_features",
           "features_csv_text", "features_file", "write_features_csv"]


def choose_label(labels: LabelMap, label: int | None) -> int:
    """``label`` if the map holds it; ``None``: the map's only non-zero label.  Errors list the values present."""
    present = labels.present_values()
    shown = ", ".join(str(v) for v in present[:20]) + (" ..." if len(present) > 20 else "")
    if not present:
        raise MedviewError("The label map is empty: it holds no labelled voxel")
    if label is None:
        if len(present) != 1:
            raise MedviewError(f"The label map holds several labels ({shown}); choose one with --label")
        return present[0]
    if int(label) not in present:
        raise MedviewError(f"Label {label} is not in the label map; the labels present are {shown}")
    return int(label)


def compute_feature_result(volume: Volume, labels: LabelMap, label: int | None = 1,
                           params: str | os.PathLike[str] | dict[str, Any] | None = None,
                           task: TaskContext | None = None):
    """Like :func:`compute_features`, returning the full :class:`~medview.analysis.features.FeatureResult`
    (values, diagnostics, PyRadiomics' warnings)."""
    from medview.algorithms.sitk_bridge import to_sitk
    from medview.analysis.features import extract

    if volume.is_color:
        raise MedviewError("Radiomics works on grey-scale images; this one is colour")
    if not labels.geometry.is_same_grid(volume.geometry):
        raise MedviewError("The label map is not on the image's grid; open it onto the image first "
                           "(medview.app.label_maps.open_label_map resamples it)")
    chosen = choose_label(labels, label)
    box = _label_box(labels, chosen, params)
    box = box or (slice(None),) * 3
    geometry = volume.geometry.subgrid([s.start or 0 for s in box], volume.array[box].shape)
    # the label map shares the volume's grid: give both the same geometry, bit for bit
    image = to_sitk(volume.array[box], geometry)
    mask = to_sitk(labels.array[box], geometry)
    return extract(image, mask, label=chosen, params=params, task=task)


CROP_MARGIN = 8  # voxels kept around the label's box (PyRadiomics itself pads its crop by 5)


def _label_box(labels: LabelMap, label: int, params) -> tuple[slice, slice, slice] | None:
    """The label's bounding box plus a margin, when no feature can depend on voxels outside it: original
    image only (no LoG/wavelet filter reaching outside), no whole-image normalisation, no resampling, no
    diagnostics (they hash the whole image).  Then PyRadiomics gets only that box instead of a copy of
    the whole study, with the same values (tests compare every feature with PyRadiomics on the files)."""
    from medview.analysis.features import load_params

    p = load_params(params)
    s = p.settings
    if (set(p.image_types) != {"Original"} or s.get("normalize") or s.get("resampledPixelSpacing")
            or s.get("additionalInfo") or s.get("correctMask")):
        return None
    box = mask_box(labels.array == label, CROP_MARGIN)
    if box is None:  # pragma: no cover - choose_label has checked the label is present
        return None
    return tuple(slice(max(lo, 0), min(hi, n)) for (lo, hi), n in zip(box, labels.array.shape, strict=True))


def compute_features(volume: Volume, labels: LabelMap, label: int | None = 1,
                     params: str | os.PathLike[str] | dict[str, Any] | None = None,
                     task: TaskContext | None = None) -> dict[str, float]:
    """Radiomics features (PyRadiomics) of ``labels == label`` in ``volume``.

    Parameters
    ----------
    volume, labels
        The study and a label map on its grid.
    label
        Label value; ``None``: the label map's only non-zero label.
    params
        PyRadiomics parameter file (YAML/JSON) or dict; ``None``: medview's bundled default
        (``resources/presets/radiomics_default.yaml``).

    Returns
    -------
    dict
        ``<imageType>_<class>_<feature>`` -> value, in PyRadiomics' order (diagnostics left out).
    """
    return compute_feature_result(volume, labels, label, params, task).values


# -- files -----------------------------------------------------------------------------------------------------
def case_id_for(path: str | os.PathLike[str]) -> str:
    """A case's id from its image path: the file name without its image extension(s), or the folder name."""
    p = Path(os.path.abspath(os.fspath(path)))
    name = p.name
    for ext in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".zip", ".dcm", ".png", ".jpg", ".jpeg",
                ".tif", ".tiff"):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def features_csv_text(rows: list[dict[str, Any]]) -> str:
    """CSV text of cases (``{"case_id", "label", **features}``), one row each; the header is the first row's
    keys (rows with other feature sets add their columns at the end; a missing value is empty)."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else (repr(float(row[c])) if isinstance(row[c], float)
                                                          else row[c]) for c in columns])
    return out.getvalue()


def write_features_csv(path: str | os.PathLike[str], rows: list[dict[str, Any]]) -> Path:
    """Write :func:`features_csv_text` atomically (the old file stays whole if anything fails)."""
    from medview.io.atomic import atomic_write_text

    return atomic_write_text(path, features_csv_text(rows))


@dataclass
class FeaturesFileResult:
    """What ``medview features`` wrote."""

    output: Path
    case_id: str
    label: int
    features: dict[str, float]
    params: str | None  # the parameter file used (the bundled one by default)
    warnings: list[str] = field(default_factory=list)


def features_file(image_path: str | os.PathLike[str], mask_path: str | os.PathLike[str],
                  out_csv: str | os.PathLike[str], params: str | os.PathLike[str] | dict[str, Any] | None = None,
                  label: int | None = None, series: str | None = None,
                  task: TaskContext | None = None) -> FeaturesFileResult:
    """``medview features``: read an image and its mask, compute radiomics features, write a one-row CSV.

    ``label`` ``None``: the label the parameter file sets (when it is not medview's bundled default), else
    the mask's only non-zero label.  The mask is opened onto the image's grid (resampled with a warning when
    it differs).  Parameters are validated before any image is read.
    """
    from medview.analysis.features import default_params_path, load_params
    from medview.app.label_maps import label_map_warnings, open_label_map
    from medview.io.readers import open_image

    out_csv = Path(os.path.abspath(os.fspath(out_csv)))
    if not out_csv.parent.is_dir():
        raise WriteError(f"The output folder {out_csv.parent} does not exist")
    parsed = load_params(params)  # a bad parameter file is reported before minutes of reading
    if (label is None and parsed.source is not None and Path(parsed.source) != default_params_path()
            and "label" in parsed.settings):
        label = int(parsed.settings["label"])
    report(task, 0.0, "Reading the image")
    volume = open_image(image_path, series=series)
    report(task, 0.2, "Reading the mask")
    labels = open_label_map(mask_path, reference=volume)
    chosen = choose_label(labels, label)

    def sub_progress(fraction: float, message: str) -> None:
        report(task, 0.3 + 0.65 * fraction, message)

    inner = None
    if task is not None:
        inner = TaskContext(on_progress=sub_progress, token=task.token, min_interval_s=0.0)
    result = compute_feature_result(volume, labels, chosen, parsed, task=inner)
    case_id = case_id_for(image_path)
    written = write_features_csv(out_csv, [{"case_id": case_id, "label": chosen, **result.values}])
    report(task, 1.0, f"{len(result.values)} features")
    warnings = [*volume.warnings, *label_map_warnings(labels), *result.warnings]
    return FeaturesFileResult(written, case_id, chosen, result.values, parsed.source, warnings)
