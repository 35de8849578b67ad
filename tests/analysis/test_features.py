"""Radiomics features (PyRadiomics through medview) against independent references: analytic values of
plastimatch's sphere, numpy on the masked voxels of the real cases, and PyRadiomics called directly on
``sitk.ReadImage`` of the same files; plus parameter validation and the error messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import stats

from medview.analysis.features import (
    FEATURE_CLASSES,
    default_params_path,
    extract,
    extract_features,
    load_params,
    split_feature_name,
)
from medview.app.features import compute_features
from medview.app.label_maps import open_label_map
from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import LabelMap
from medview.io.readers import open_image
from tests.conftest import SPHERE_RADIUS_MM, shared_case

CASES = ("lung1", "lung2", "brain1", "brain2", "breast1")
SHAPE_ONLY = {"featureClass": {"shape": None}}


def _direct(image: sitk.Image, mask: sitk.Image, params, label: int = 1) -> dict[str, float]:
    """PyRadiomics' extractor as its documentation shows it, values only."""
    from radiomics import featureextractor

    extractor = featureextractor.RadiomicsFeatureExtractor(str(params) if isinstance(params, Path) else params)
    result = extractor.execute(image, mask, label=label)
    return {k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")}


# -- the sphere -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sphere_features(sphere_phantom: Path) -> tuple[dict[str, float], LabelMap]:
    volume = open_image(sphere_phantom)
    # HU 100 inside, -1000 outside: any threshold between selects the voxels whose centres lie in the sphere
    labels = LabelMap((volume.array > -450).astype(np.uint8), volume.geometry)
    return compute_features(volume, labels, 1, SHAPE_ONLY), labels


def test_sphere_volume_is_the_analytic_volume(sphere_features) -> None:
    features, labels = sphere_features
    analytic = 4.0 / 3.0 * math.pi * SPHERE_RADIUS_MM ** 3  # 33,510 mm^3
    # measured: voxel volume 33,504 mm^3 (-0.02 %), mesh volume 33,467 mm^3 (-0.13 %) with 0.8x0.8x1.25 mm voxels
    assert features["original_shape_VoxelVolume"] == pytest.approx(labels.voxel_count(1) * 0.8 * 0.8 * 1.25)
    assert features["original_shape_VoxelVolume"] == pytest.approx(analytic, rel=0.005)
    assert features["original_shape_MeshVolume"] == pytest.approx(analytic, rel=0.005)


def test_sphere_surface_area_and_sphericity(sphere_features) -> None:
    from skimage.measure import marching_cubes, mesh_surface_area

    features, labels = sphere_features
    area = features["original_shape_SurfaceArea"]
    analytic = 4.0 * math.pi * SPHERE_RADIUS_MM ** 2  # 5,026.5 mm^2
    # The mesh of a voxelised sphere follows the voxel staircase: its area is larger than the smooth sphere's
    # (measured 5,538 mm^2, +10.2 %).  It can never be smaller: by the isoperimetric inequality no closed surface
    # enclosing the mesh's volume has less area than the sphere of that volume, so sphericity <= 1.
    volume = features["original_shape_MeshVolume"]
    assert area >= (36.0 * math.pi * volume ** 2) ** (1.0 / 3.0)
    assert analytic < area < 1.12 * analytic
    # The same marching-cubes surface (level 0.5 on the mask) from scikit-image, an independent implementation
    vertices, faces, _, _ = marching_cubes(np.pad(labels.array, 1).astype(np.float32), 0.5,
                                           spacing=labels.geometry.spacing[::-1])
    assert area == pytest.approx(mesh_surface_area(vertices, faces), rel=1e-6)
    # Sphericity = area of the sphere of the mesh's volume / mesh area: measured 0.907, by the bias above
    assert 0.89 < features["original_shape_Sphericity"] <= 1.0
    assert features["original_shape_Sphericity"] == pytest.approx(
        (36.0 * math.pi * volume ** 2) ** (1.0 / 3.0) / area, rel=1e-9)


def test_sphere_axis_lengths_and_diameter(sphere_features) -> None:
    features, _ = sphere_features
    r = SPHERE_RADIUS_MM
    # PyRadiomics' axis lengths are 4 sqrt(eigenvalue) of the voxel-position covariance; a solid ball's
    # variance along any axis is r^2/5, so all three are 4 r / sqrt(5) = 35.78 mm (measured 35.79 / 35.77)
    for axis in ("Major", "Minor", "Least"):
        assert features[f"original_shape_{axis}AxisLength"] == pytest.approx(4 * r / math.sqrt(5), rel=0.003)
    assert features["original_shape_Elongation"] == pytest.approx(1.0, abs=0.005)
    assert features["original_shape_Flatness"] == pytest.approx(1.0, abs=0.005)
    # mesh vertices lie within half a voxel diagonal (0.85 mm) of the sphere's surface
    half_diagonal = 0.5 * math.sqrt(0.8 ** 2 + 0.8 ** 2 + 1.25 ** 2)
    assert abs(features["original_shape_Maximum3DDiameter"] - 2 * r) <= 2 * half_diagonal


# -- first order on the real cases against numpy -----------------------------------------------------------------
def _pyradiomics_moment(x: np.ndarray, k: int) -> float:
    return float(np.mean((x - x.mean()) ** k))


@pytest.mark.parametrize("case", CASES)
def test_first_order_equals_numpy_on_the_masked_voxels(case: str) -> None:
    image_path, mask_path = shared_case(f"{case}_image.nrrd"), shared_case(f"{case}_label.nrrd")
    volume = open_image(image_path)
    labels = open_label_map(mask_path, reference=volume)
    features = compute_features(volume, labels, 1, {"featureClass": {"firstorder": None}})
    x = volume.array[labels.array == 1].astype(np.float64)
    assert x.size > 0
    spacing = np.prod(volume.geometry.spacing)
    expected = {
        "Mean": x.mean(), "Minimum": x.min(), "Maximum": x.max(), "Median": np.median(x),
        "Variance": x.var(), "Range": np.ptp(x),
        "Energy": np.sum(x ** 2),  # voxelArrayShift 0: the values as they are
        "TotalEnergy": np.sum(x ** 2) * spacing,
        "RootMeanSquared": np.sqrt(np.mean(x ** 2)),
        "10Percentile": np.percentile(x, 10), "90Percentile": np.percentile(x, 90),
        "InterquartileRange": np.percentile(x, 75) - np.percentile(x, 25),
        "MeanAbsoluteDeviation": np.mean(np.abs(x - x.mean())),
        # PyRadiomics: m3 / m2^1.5 and m4 / m2^2 with population moments (kurtosis not minus 3)
        "Skewness": stats.skew(x, bias=True), "Kurtosis": stats.kurtosis(x, fisher=False, bias=True),
    }
    for name, value in expected.items():
        assert features[f"original_firstorder_{name}"] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert features["original_firstorder_Skewness"] == pytest.approx(
        _pyradiomics_moment(x, 3) / _pyradiomics_moment(x, 2) ** 1.5, rel=1e-9)


@pytest.mark.parametrize("case", ("lung1", "brain1", "breast1"))
def test_compute_features_equals_pyradiomics_on_the_files(case: str) -> None:
    """Every feature of the default parameters, from medview's Volume/LabelMap, equals PyRadiomics reading
    the files itself (brain1 has a y direction of -1: the geometry must be handed over exactly)."""
    image_path, mask_path = shared_case(f"{case}_image.nrrd"), shared_case(f"{case}_label.nrrd")
    volume = open_image(image_path)
    labels = open_label_map(mask_path, reference=volume)
    ours = compute_features(volume, labels)
    theirs = _direct(sitk.ReadImage(str(image_path)), sitk.ReadImage(str(mask_path)), default_params_path())
    assert list(ours) == list(theirs)
    assert len(ours) > 100
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


# -- parameters ---------------------------------------------------------------------------------------------------
def test_default_parameter_file_states_the_settings() -> None:
    params = load_params(None)
    assert params.source == str(default_params_path())
    s = params.settings
    assert (s["binWidth"], s["resampledPixelSpacing"], s["normalize"], s["label"], s["interpolator"]) == (
        25, None, False, 1, "sitkBSpline")
    assert set(params.feature_classes) == set(FEATURE_CLASSES) - {"shape2D"}
    assert params.image_types == {"Original": {}}
    assert params.all_classes


def test_yaml_and_json_files_load(tmp_path: Path) -> None:
    data = {"imageType": {"Original": {}, "LoG": {"sigma": [2.0]}}, "featureClass": {"firstorder": ["Mean"]},
            "setting": {"binWidth": 10, "label": 2}}
    (tmp_path / "p.json").write_text(json.dumps(data))
    (tmp_path / "p.yaml").write_text("imageType:\n  Original: {}\n  LoG: {sigma: [2.0]}\n"
                                     "featureClass:\n  firstorder: [Mean]\nsetting:\n  binWidth: 10\n  label: 2\n")
    for name in ("p.json", "p.yaml"):
        params = load_params(tmp_path / name)
        assert params.settings == {"binWidth": 10, "label": 2}
        assert params.feature_classes == {"firstorder": ["Mean"]}
        assert params.image_types == {"Original": {}, "LoG": {"sigma": [2.0]}}
        assert params.label == 2 and not params.all_classes


@pytest.mark.parametrize(("content", "words"), [
    ("setting: [binWidth: 25\n", "not valid YAML"),
    ("featureClass:\n  texture: ~\n", "unknown feature class(es) texture"),
    ("featureClass:\n  glcm: [Contrastt]\n", "unrecognized features"),
    ("setting:\n  binWidht: 25\n", "binWidht"),
    ("setting:\n  binWidth: -5\n", "binWidth"),
    ("imageType:\n  Blur: {}\n", "Image Type Blur is not recognized"),
    ("settings:\n  binWidth: 25\n", "unknown section(s) settings"),
])
def test_bad_parameter_files_give_one_line(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(content)
    with pytest.raises(MedviewError) as info:
        load_params(path)
    message = str(info.value)
    assert words in message and "\n" not in message and "params.yaml" in message


def test_missing_parameter_file() -> None:
    with pytest.raises(MedviewError, match="does not exist"):
        load_params("/nonexistent/params.yaml")


# -- error cases on images --------------------------------------------------------------------------------------------
def _small_case(seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(100, 20, (12, 20, 20)).astype(np.float32))
    array = np.zeros((12, 20, 20), np.uint8)
    array[3:9, 5:15, 5:15] = 1
    array[4:6, 6:9, 6:9] = 3
    mask = sitk.GetImageFromArray(array)
    for img in (image, mask):
        img.SetSpacing((0.7, 0.7, 2.0))
        img.SetOrigin((-10.0, 5.0, 30.0))
    return image, mask


def test_absent_label_lists_the_present_ones() -> None:
    image, mask = _small_case()
    with pytest.raises(MedviewError, match=r"Label 2 is not in the mask; the labels present are 1, 3"):
        extract_features(image, mask, label=2, params=SHAPE_ONLY)


def test_empty_mask_and_other_grid_and_2d_are_refused() -> None:
    image, mask = _small_case()
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    with pytest.raises(MedviewError, match="mask is empty"):
        extract_features(image, empty, params=SHAPE_ONLY)
    moved = sitk.Image(mask)
    moved.SetOrigin((-10.0, 5.0, 32.0))
    with pytest.raises(MedviewError, match=r"grid .* differs") as info:
        extract_features(image, moved, params=SHAPE_ONLY)
    assert "\n" not in str(info.value)
    with pytest.raises(MedviewError, match="3D"):
        extract_features(image[:, :, 4], mask[:, :, 4], params=SHAPE_ONLY)


def test_values_and_diagnostics_are_apart_and_match_pyradiomics() -> None:
    image, mask = _small_case()
    result = extract(image, mask, label=3)
    assert result.label == 3 and not result.diagnostics  # the default file leaves the costly diagnostics out
    import yaml

    with_info = yaml.safe_load(Path(default_params_path()).read_text())
    with_info["setting"]["additionalInfo"] = True
    kept = extract(image, mask, label=3, params=with_info)
    assert kept.diagnostics and not any(k.startswith("diag") for k in kept.values) and kept.values == result.values
    assert all(isinstance(v, float) for v in result.values.values())
    assert result.values == pytest.approx(_direct(image, mask, default_params_path(), label=3), rel=1e-12)
    assert split_feature_name("original_glcm_Contrast") == ("original", "glcm", "Contrast")


def test_one_slice_label_gets_shape2d_by_default_and_explicit_shape2d_is_checked() -> None:
    image, mask = _small_case()
    array = np.zeros((12, 20, 20), np.uint8)
    array[5, 4:14, 6:12] = 1  # a 10 x 6 rectangle on one slice
    flat = sitk.GetImageFromArray(array)
    flat.CopyInformation(mask)
    values = extract_features(image, flat)
    assert values["original_shape2D_PixelSurface"] == pytest.approx(10 * 6 * 0.7 * 0.7)
    assert "original_shape_VoxelVolume" in values
    # a 3D label: no shape2D by default, and a parameter file asking for it is told why it cannot have it
    assert not any("shape2D" in k for k in extract_features(image, mask))
    with pytest.raises(MedviewError, match="force2D"):
        extract_features(image, mask, params={"featureClass": {"shape2D": None}})
    with pytest.raises(MedviewError, match="one voxel thick"):
        extract_features(image, mask, params={"featureClass": {"shape2D": None}, "setting": {"force2D": True}})


def test_cancel_stops_between_classes() -> None:
    from medview.core.errors import CancelledError
    from medview.core.tasks import TaskContext

    image, mask = _small_case()
    seen: list[str] = []
    task = TaskContext(min_interval_s=0.0)

    def progress(fraction: float, message: str) -> None:
        seen.append(message)
        if message.startswith("Shape"):
            task.token.cancel()

    task.on_progress = progress
    with pytest.raises(CancelledError):
        extract(image, mask, task=task)
    assert seen[-1].startswith("Shape")


def test_radiomics_logger_level_is_restored() -> None:
    import logging

    logger = logging.getLogger("radiomics")
    before = logger.level
    image, mask = _small_case()
    extract_features(image, mask, params=SHAPE_ONLY)
    assert logger.level == before


def test_geometry_of_volume_is_kept(tmp_path: Path) -> None:
    """A volume with an oblique direction: compute_features hands the exact grid to PyRadiomics."""
    from medview.core.volume import Volume

    image, mask = _small_case(1)
    c, s = math.cos(0.3), math.sin(0.3)
    direction = (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)
    for img in (image, mask):
        img.SetDirection(direction)
    geometry = Geometry((12, 20, 20), image.GetSpacing(), image.GetOrigin(), direction)
    volume = Volume(sitk.GetArrayFromImage(image), geometry)
    labels = LabelMap(sitk.GetArrayFromImage(mask), geometry)
    ours = compute_features(volume, labels, 3, SHAPE_ONLY)
    assert ours == pytest.approx(_direct(image, mask, SHAPE_ONLY, label=3), rel=1e-12)


def test_an_edited_parameter_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("setting:\n  binWidth: 10\n")
    assert load_params(path).settings["binWidth"] == 10
    path.write_text("setting:\n  binWidth: 5\n  label: 3\n")  # validated files are remembered by mtime and size
    assert load_params(path).settings == {"binWidth": 5, "label": 3}
    path.write_text("setting:\n  binWidth: -5\n  label: 3\n")
    with pytest.raises(MedviewError, match="binWidth"):
        load_params(path)
