"""The LoG blob search computed once on the whole grid (layers in worker processes) finds exactly what
scikit-image's ``blob_log`` finds slab by slab (the old implementation, kept as
:func:`medview.algorithms.detect.tiled_candidates`), on a real CT: the same candidates in the same order and
the same scores.  Before, the sample CT's detection took 154 s on the CLI and 465 s in the GUI; the slabs
recomputed about 3 times the grid (margins of 4 sigma on 44-plane slabs), the 4D maximum filter ran over the
whole scale space, and in the GUI everything held the GIL in a worker thread.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import medview.algorithms.detect as detect
from medview.app.detection import detect_volume, pool_layers
from medview.core.volume import Volume

TUMOUR_LPS = (-21.4, -121.1, -611.3)  # the sample's strongest candidate, a 14 mm nodule


@pytest.fixture(scope="module")
def ct_crop(chest_ct_sample) -> Volume:
    """The bundled chest CT around the tumour: 16 slices (80 mm) x 128 x 128 voxels (73 mm)."""
    from medview.io.readers import open_image

    volume = open_image(str(chest_ct_sample))
    i, j, k = (int(v) for v in np.rint(volume.geometry.world_to_index(TUMOUR_LPS)))
    lo = [max(k - 8, 0), max(j - 64, 0), max(i - 64, 0)]
    array = volume.array[lo[0]:lo[0] + 16, lo[1]:lo[1] + 128, lo[2]:lo[2] + 128]
    return Volume(np.ascontiguousarray(array), volume.geometry.subgrid(lo, array.shape), volume.metadata)


def test_layer_equals_blob_logs_own_formula_bit_for_bit():
    rng = np.random.default_rng(3)
    image = ndi.gaussian_filter(rng.random((30, 41, 37)).astype(np.float32), 1.5)
    for sigma in detect.blob_log_sigmas(0.8, 9.0, 6):
        ours = detect.log_layer(image, sigma)
        theirs = -ndi.gaussian_laplace(image, sigma) * np.mean(sigma) ** 2  # skimage.feature.blob_log's line
        assert ours.dtype == theirs.dtype == np.float32
        assert np.array_equal(ours, theirs)


def _reference(monkeypatch, slabs: bool):
    """detect_blobs with the old search (blob_log slab by slab), several slabs when ``slabs``."""
    if slabs:
        monkeypatch.setattr(detect, "CUBE_BUDGET", 3_000_000)

    def old(iso, sigmas, threshold, layers=None, task=None, span=(0.15, 0.85)):
        ratio = float(sigmas[1] / sigmas[0])
        return detect.tiled_candidates(iso, sigmas, ratio, threshold, "log", task)

    monkeypatch.setattr(detect, "log_candidates", old)


def _same(a, b) -> None:
    assert len(a) == len(b) > 3
    for x, y in zip(a, b, strict=True):
        assert x.center_lps == pytest.approx(y.center_lps, abs=1e-9)
        assert x.score == pytest.approx(y.score, abs=1e-12)
        assert x.diameter_mm == pytest.approx(y.diameter_mm, abs=1e-9)


@pytest.mark.parametrize("slabs", [False, True])
def test_same_candidates_in_the_same_order_as_blob_log_on_a_ct(ct_crop, monkeypatch, slabs):
    candidates = []
    real = detect.log_candidates
    monkeypatch.setattr(detect, "log_candidates", lambda *a, **k: candidates.append(real(*a, **k)) or candidates[-1])
    new = detect.detect_blobs(ct_crop)
    with monkeypatch.context() as m:
        _reference(m, slabs)
        if slabs:
            tiles = []
            real_tiles = detect._tiles
            m.setattr(detect, "_tiles", lambda *a: tiles.append(real_tiles(*a)) or tiles[-1])
        old = detect.detect_blobs(ct_crop)
        if slabs:
            assert len(tiles[0]) >= 2  # slabs with margins, as on the whole CT
    assert len(candidates[0]) > 20
    _same(new, old)
    tumour = np.array(new.detections[0].center_lps)
    assert np.linalg.norm(tumour - TUMOUR_LPS) < 1.5  # the tumour first, as before


def test_the_app_path_computes_the_layers_in_worker_processes_with_the_same_result(ct_crop, monkeypatch):
    from medview.io.dicom import parallel

    if not parallel.pool_available():
        pytest.skip("no worker pool here (one CPU)")
    computed_here = []
    monkeypatch.setattr(detect, "serial_layers", lambda *a: computed_here.append(1) or iter(()))
    through_pool = detect_volume(ct_crop, "blob", (4.0, 30.0))
    assert not computed_here  # every layer came from a worker
    monkeypatch.undo()
    _same(through_pool, detect.detect_blobs(ct_crop))


def test_the_scale_space_is_computed_once_per_voxel_and_scale(ct_crop, monkeypatch):
    """The old slabs recomputed their 4-sigma margins: on the sample CT about 3.3 times the grid's layers."""
    sizes = []
    real = detect.log_layer
    monkeypatch.setattr(detect, "log_layer", lambda image, sigma: sizes.append(image.size) or real(image, sigma))
    monkeypatch.setattr(detect, "CUBE_BUDGET", 3_000_000)  # as small a budget as the slab test uses
    grids = []
    real_iso = detect._isotropic
    monkeypatch.setattr(detect, "_isotropic", lambda *a: grids.append(real_iso(*a)) or grids[-1])
    detect.detect_blobs(ct_crop)
    iso = grids[0][0]
    assert len(sizes) == 15 and set(sizes) == {iso.size}


def test_pool_layers_hand_over_every_layer_in_order():
    rng = np.random.default_rng(5)
    image = rng.random((12, 20, 18)).astype(np.float32)
    sigmas = detect.blob_log_sigmas(0.9, 3.0, 5)
    got = list(pool_layers(image, sigmas))
    assert len(got) == 5
    for layer, sigma in zip(got, sigmas, strict=True):
        assert np.array_equal(layer, detect.log_layer(image, sigma))
