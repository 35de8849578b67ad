"""Benchmark data: a 512 x 512 x 305 CT series, uncompressed and JPEG-LS lossless, made once.

Source: ``../shared/data/radiomics-cases/lung2_image.nrrd`` next to the repository (512 x 512 x 61,
5 mm slices, HU int16), resampled with SimpleITK to 1.0 mm slices (linear, outside = -1024 HU) and
written as DICOM by plastimatch (explicit VR little endian); the JPEG-LS copy is made file by file with
``gdcmconv --jpegls``.  Everything lives in ``.bench/`` (git-ignored) and is reused while its stamp
matches; a partial or outdated copy is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / ".bench"
SOURCE = REPO.parent / "shared" / "data" / "radiomics-cases" / "lung2_image.nrrd"
N_SLICES = 305
SLICE_MM = 1.0
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
STAMP_VERSION = 1
DATASETS = {"uncompressed": "ct_raw", "JPEG-LS": "ct_jpegls"}


def _stamp() -> dict:
    return {"version": STAMP_VERSION, "source": SOURCE.name, "source_size": SOURCE.stat().st_size,
            "slices": N_SLICES, "slice_mm": SLICE_MM}


def _is_current() -> bool:
    try:
        stamp = json.loads((BENCH / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    if stamp != _stamp():
        return False
    return all((BENCH / d).is_dir() and sum(1 for _ in (BENCH / d).iterdir()) == N_SLICES
               for d in DATASETS.values())


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def _generate() -> None:
    import pydicom
    import SimpleITK as sitk

    work = BENCH / f"tmp-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        image = sitk.ReadImage(str(SOURCE))
        sx, sy, _ = image.GetSpacing()
        size = (image.GetSize()[0], image.GetSize()[1], N_SLICES)
        resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                                  (sx, sy, SLICE_MM), image.GetDirection(), -1024, image.GetPixelID())
        nrrd = work / "ct_1mm.nrrd"
        sitk.WriteImage(resampled, str(nrrd))
        raw = work / "ct_raw"
        _run(["plastimatch", "convert", "--input", str(nrrd), "--output-dicom", str(raw), "--patient-id", "BENCH"])
        names = sorted(p.name for p in raw.iterdir())
        if len(names) != N_SLICES:
            raise RuntimeError(f"plastimatch wrote {len(names)} files, expected {N_SLICES}")
        jls = work / "ct_jpegls"
        jls.mkdir()
        with ThreadPoolExecutor(2) as pool:  # each job is a gdcmconv process: 2 run at a time
            list(pool.map(lambda n: _run(["gdcmconv", "--jpegls", str(raw / n), str(jls / n)]), names))
        ts = pydicom.dcmread(jls / names[0], stop_before_pixels=True).file_meta.TransferSyntaxUID
        if ts != JPEGLS_LOSSLESS:
            raise RuntimeError(f"gdcmconv wrote transfer syntax {ts}, expected JPEG-LS lossless")
        for folder in DATASETS.values():
            shutil.rmtree(BENCH / folder, ignore_errors=True)
            (work / folder).rename(BENCH / folder)
        (BENCH / "dataset.json").write_text(json.dumps(_stamp(), indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_datasets() -> dict[str, Path] | str:
    """``{"uncompressed": Path, "JPEG-LS": Path}``, built if needed; or why they cannot be."""
    if not SOURCE.is_file():
        return f"benchmark source data missing: {SOURCE} (the shared radiomics-cases data set)"
    if not _is_current():
        missing = [tool for tool in ("plastimatch", "gdcmconv") if shutil.which(tool) is None]
        if missing:
            return (f"cannot build the benchmark series: {', '.join(missing)} not installed "
                    "(`make bench` installs them)")
        _generate()
    return {name: BENCH / folder for name, folder in DATASETS.items()}


def resampled_sample(out: Path, shape_zyx: tuple[int, int, int]) -> Path:
    """The bundled chest CT resampled (linear, ``scipy.ndimage.zoom``) to ``shape_zyx`` over the same
    extent, edge to edge, saved once as ``out`` (.npz: array, spacing, origin, direction)."""
    import numpy as np
    from scipy import ndimage

    from medview.app.samples import sample_path
    from medview.io.readers import open_image

    if out.exists():
        return out
    BENCH.mkdir(exist_ok=True)
    volume = open_image(sample_path("chest_ct"))
    g = volume.geometry
    factors = [n / m for n, m in zip(shape_zyx, g.shape, strict=True)]
    array = ndimage.zoom(volume.array.astype(np.float32), factors, order=1).round().astype(np.int16)
    scale_xyz = np.array(g.size_xyz, dtype=float) / np.array(shape_zyx[::-1], dtype=float)
    spacing = np.array(g.spacing) * scale_xyz
    origin = g.index_to_world(-0.5 + scale_xyz / 2)  # the first voxel centre of the new grid
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, array=array, spacing=spacing, origin=origin, direction=np.array(g.direction, dtype=float))
    tmp.replace(out)
    return out
