"""compute_features on medview objects equals PyRadiomics on the files, also where medview must not crop
the study to the label's box (filtered image types that see beyond it, whole-image normalisation)."""

from __future__ import annotations

import pytest

from medview.app.features import compute_features
from medview.app.label_maps import open_label_map
from medview.io.readers import open_image
from tests.conftest import shared_case

radiomics = pytest.importorskip("radiomics")


@pytest.mark.parametrize("params", [
    {"imageType": {"Original": {}, "LoG": {"sigma": [2.0, 4.0]}, "Wavelet": {}},
     "featureClass": {"firstorder": ["Mean", "Energy", "90Percentile"]},
     "setting": {"binWidth": 25, "label": 1}},
    {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": ["Contrast", "Correlation"]},
     "setting": {"binWidth": 25, "label": 1, "normalize": True, "normalizeScale": 100}},
    {"imageType": {"Original": {}}, "featureClass": {"firstorder": ["Mean"], "shape": ["MeshVolume"]},
     "setting": {"binWidth": 25, "label": 1, "resampledPixelSpacing": [1.0, 1.0, 1.0],
                 "interpolator": "sitkBSpline"}},
], ids=["log-wavelet", "normalised", "resampled"])
def test_whole_image_settings_give_pyradiomics_values(params) -> None:
    from radiomics import featureextractor

    image_path, label_path = shared_case("brain1_image.nrrd"), shared_case("brain1_label.nrrd")
    volume = open_image(image_path)
    ours = compute_features(volume, open_label_map(label_path, reference=volume), 1, params=params)
    extractor = featureextractor.RadiomicsFeatureExtractor(params)
    direct = {k: float(v) for k, v in extractor.execute(str(image_path), str(label_path), label=1).items()
              if not k.startswith("diagnostics_")}
    assert list(ours) == list(direct) and len(ours) >= 2
    assert ours == pytest.approx(direct, rel=1e-9)
