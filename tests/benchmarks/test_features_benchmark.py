"""Radiomics benchmark (issue 7): medview's feature path against PyRadiomics called directly, per case.

Cases: ``lung1`` (CT 512 x 512 x 48) and ``brain1`` (MR 256 x 256 x 25) from ``../shared/data/radiomics-cases``;
a synthetic 200 x 200 x 60 noise volume with a 30 mm ball when those files are missing.  Settings: medview's
bundled ``radiomics_default.yaml`` for every row (first order, shape, GLCM, GLRLM, GLSZM, NGTDM, GLDM).

Rows, each run once per round in a rotated order:

* ``PyRadiomics execute (in memory)``: ``RadiomicsFeatureExtractor(params).execute(image, mask)`` on SimpleITK
  images read beforehand, the extractor built once outside the timing (what a PyRadiomics user writes);
* ``medview compute_features``: the GUI's and batch's entry point on the medview Volume and LabelMap (read
  beforehand): parameter validation, the input checks, the label's box (plus 8 voxels) to SimpleITK when no
  feature can see beyond it (original image, no normalisation or resampling, no diagnostics), ``execute``;
* ``PyRadiomics execute (cropped)``: ``execute`` on the same box cut by SimpleITK itself
  (``LabelShapeStatisticsImageFilter`` bounding box, 8 voxels more, ``RegionOfInterest``), outside the
  timing: how much of medview's time is its own once the crop is taken out of the comparison;
* ``PyRadiomics execute (files)``: ``execute(image_path, mask_path)`` (PyRadiomics reads the files);
* ``medview features_file``: what ``medview features`` does: read both files, open the mask onto the image,
  compute, write the CSV atomically.

An overhead is the median over rounds of medview's time / the matching PyRadiomics row's time *in the same
round*, so load from other processes hits both sides of each ratio alike.  Goal: <= 5 %.  Rounds:
``MEDVIEW_BENCH_FEATURES_REPEATS`` (default 5).  Speed is reported, not enforced; the assertions check that
medview's values are PyRadiomics' values.  Results: printed and written to ``.bench/features_results.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from medview.analysis.features import default_params_path
from medview.app.features import compute_features, features_file
from medview.app.label_maps import open_label_map
from medview.io.readers import open_image

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".bench"
SHARED = REPO.parent / "shared" / "data" / "radiomics-cases"
REPEATS = max(int(os.environ.get("MEDVIEW_BENCH_FEATURES_REPEATS", "5") or 5), 1)
GOAL_OVERHEAD = 0.05
DIRECT_MEM = "PyRadiomics execute (in memory)"
OURS_MEM = "medview compute_features"
DIRECT_CROP = "PyRadiomics execute (cropped)"
DIRECT_FILES = "PyRadiomics execute (files)"
OURS_FILES = "medview features_file"


def _cases(tmp: Path) -> list[tuple[str, Path, Path]]:
    found = [(name, SHARED / f"{name}_image.nrrd", SHARED / f"{name}_label.nrrd") for name in ("lung1", "brain1")]
    found = [c for c in found if c[1].exists() and c[2].exists()]
    if found:
        return found
    rng = np.random.default_rng(0)
    array = rng.normal(40, 30, (60, 200, 200)).astype(np.int16)
    zz, yy, xx = np.mgrid[:60, :200, :200]
    ball = ((xx - 100) * 0.8) ** 2 + ((yy - 100) * 0.8) ** 2 + ((zz - 30) * 2.0) ** 2 <= 30.0 ** 2
    image, mask = sitk.GetImageFromArray(array), sitk.GetImageFromArray(ball.astype(np.uint8))
    for img in (image, mask):
        img.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(image, str(tmp / "phantom_image.nrrd"))
    sitk.WriteImage(mask, str(tmp / "phantom_label.nrrd"))
    return [("phantom", tmp / "phantom_image.nrrd", tmp / "phantom_label.nrrd")]


def _cropped(image, mask, margin: int = 8):
    """The label's bounding box plus ``margin`` voxels, cut by SimpleITK (independently of medview)."""
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(sitk.Cast(mask, sitk.sitkUInt8))
    box = stats.GetBoundingBox(1)  # x, y, z start then x, y, z size
    size = image.GetSize()
    start = [max(0, box[i] - margin) for i in range(3)]
    stop = [min(size[i], box[i] + box[i + 3] + margin) for i in range(3)]
    extent = [b - a for a, b in zip(start, stop, strict=True)]
    return sitk.RegionOfInterest(image, extent, start), sitk.RegionOfInterest(mask, extent, start)


def _rows(extractor, image, mask, volume, labels, image_path: Path, mask_path: Path,
          out_csv: Path) -> dict[str, Callable[[], object]]:
    crop_image, crop_mask = _cropped(image, mask)
    return {
        DIRECT_MEM: lambda: extractor.execute(image, mask, label=1),
        OURS_MEM: lambda: compute_features(volume, labels, 1),
        DIRECT_CROP: lambda: extractor.execute(crop_image, crop_mask, label=1),
        DIRECT_FILES: lambda: extractor.execute(str(image_path), str(mask_path), label=1),
        OURS_FILES: lambda: features_file(image_path, mask_path, out_csv, label=1),
    }


def _direct_values(raw: dict) -> dict[str, float]:
    return {k: float(v) for k, v in raw.items() if not k.startswith("diagnostics_")}


def test_feature_overhead_against_pyradiomics(tmp_path: Path) -> None:
    from radiomics import featureextractor

    params = default_params_path()
    lines = [f"# Radiomics benchmark ({platform.node()}, {os.cpu_count()} CPUs, {REPEATS} rounds)", "",
             "| case | voxels in label | PyRadiomics in memory (s) | medview compute_features (s) | overhead | "
             "PyRadiomics on the cropped box (s) | medview vs that | "
             "PyRadiomics files (s) | medview features_file (s) | overhead |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary: list[tuple[str, float, float]] = []
    for name, image_path, mask_path in _cases(tmp_path):
        image, mask = sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path))
        volume = open_image(image_path)
        labels = open_label_map(mask_path, reference=volume)
        extractor = featureextractor.RadiomicsFeatureExtractor(str(params))
        rows = _rows(extractor, image, mask, volume, labels, image_path, mask_path, tmp_path / f"{name}.csv")
        out_csv = tmp_path / f"{name}.csv"
        # warm-up (imports, caches) and the check that both sides give the same numbers
        direct = _direct_values(rows[DIRECT_MEM]())  # type: ignore[arg-type]
        ours = rows[OURS_MEM]()
        assert _direct_values(rows[DIRECT_CROP]()) == pytest.approx(direct, rel=1e-9)  # the crop changes nothing
        assert list(ours) == list(direct)  # type: ignore[arg-type]
        assert ours == pytest.approx(direct, rel=1e-9)
        assert features_file(image_path, mask_path, out_csv, label=1).features == pytest.approx(direct, rel=1e-9)
        times: dict[str, list[float]] = {k: [] for k in rows}
        names = list(rows)
        for r in range(REPEATS):
            for key in names[r % len(names):] + names[: r % len(names)]:
                start = time.perf_counter()
                rows[key]()
                times[key].append(time.perf_counter() - start)
        mem = statistics.median(o / d for o, d in zip(times[OURS_MEM], times[DIRECT_MEM], strict=True)) - 1.0
        own = statistics.median(o / d for o, d in zip(times[OURS_MEM], times[DIRECT_CROP], strict=True)) - 1.0
        files = statistics.median(o / d for o, d in zip(times[OURS_FILES], times[DIRECT_FILES], strict=True)) - 1.0
        med = {k: statistics.median(v) for k, v in times.items()}
        lines.append(f"| {name} | {labels.voxel_count(1)} | {med[DIRECT_MEM]:.3f} | {med[OURS_MEM]:.3f} | "
                     f"{mem * 100:+.1f} % | {med[DIRECT_CROP]:.3f} | {own * 100:+.1f} % | "
                     f"{med[DIRECT_FILES]:.3f} | {med[OURS_FILES]:.3f} | {files * 100:+.1f} % |")
        summary.append((name, mem, files))
    lines += ["", f"Goal: overhead <= {GOAL_OVERHEAD * 100:.0f} % (median over rounds of the per-round ratio)."]
    for name, mem, files in summary:
        verdict = "meets" if max(mem, files) <= GOAL_OVERHEAD else "misses"
        lines.append(f"- {name}: in memory {mem * 100:+.1f} %, files {files * 100:+.1f} % ({verdict} the goal)")
    text = "\n".join(lines)
    print("\n" + text)
    BENCH.mkdir(exist_ok=True)
    (BENCH / "features_results.md").write_text(text + "\n")
