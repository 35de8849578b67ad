"""The bundled samples open offline, with the geometry and values of their sources."""

from __future__ import annotations

import numpy as np

import medview
from medview.app.samples import sample_path
from medview.core.volume import Volume
from tests.conftest import shared_case


def test_chest_ct_sample_opens_in_hounsfield_units() -> None:
    info = medview.scan(sample_path("chest_ct"))
    assert len(info) == 1 and info[0].transfer_syntaxes == ["1.2.840.10008.1.2.4.80"]  # JPEG-LS lossless
    v = medview.open_image(sample_path("chest_ct"))
    assert v.array.shape == (48, 512, 512) and v.array.dtype == np.int16
    assert v.modality == "CT" and v.metadata.units == "HU" and v.warnings == []
    assert {p.name for p in v.metadata.window_presets} >= {"LUNG", "MEDIASTINUM"}
    notice = (sample_path("chest_ct").parent / "LICENSE.txt").read_text()
    assert "Harvard Medical School" in notice and "Redistribution and use in source and binary forms" in notice


def test_chest_ct_sample_equals_its_source_nrrd() -> None:
    import SimpleITK as sitk

    source = sitk.ReadImage(str(shared_case("lung1_image.nrrd")))
    v = medview.open_image(sample_path("chest_ct"))
    np.testing.assert_array_equal(v.array, sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(v.geometry.origin, source.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(v.geometry.spacing, source.GetSpacing(), atol=1e-3)


def test_tumour_label_lies_on_the_ct_grid() -> None:
    ct = medview.open_image(sample_path("chest_ct"))
    label = medview.open_image(sample_path("chest_ct_label"))
    assert label.geometry.is_same_grid(ct.geometry, tol_mm=1e-3)
    tumour = ct.array[label.array > 0]
    assert 800 < tumour.size < 900
    assert -200 < float(np.median(tumour)) < 100  # soft tissue, not air or bone


def test_middle_slice_of_the_compressed_sample_comes_first() -> None:
    first: list[int] = []

    def on_middle(volume: Volume, z: int) -> None:
        first.append(z)

    medview.open_image(sample_path("chest_ct"), on_middle_slice=on_middle)
    assert first == [24]


def test_brain_sample_and_atlas_share_a_grid() -> None:
    t1 = medview.open_image(sample_path("brain_mr"))
    atlas = medview.open_image(sample_path("brain_mr_atlas"))
    assert t1.geometry.size_xyz == (181, 217, 181)
    assert atlas.geometry.is_same_grid(t1.geometry)
    assert len(np.unique(atlas.array)) == 117  # 116 AAL regions + background
