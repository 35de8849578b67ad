"""Independent references: dcm2niix (geometry and voxels through NIfTI) and SimpleITK's series reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from medview.core.geometry import ras_to_lps_affine
from medview.core.volume import Volume
from tests.conftest import require_tool


def dcm2niix(folder: Path, out_dir: Path) -> list[Path]:
    """Convert with dcm2niix; returns the NIfTI files it wrote (sorted)."""
    require_tool("dcm2niix")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcm2niix", "-o", str(out_dir), "-f", "ref", "-z", "n", "-b", "n", str(folder)],
                   check=True, capture_output=True)
    return sorted(out_dir.glob("ref*.nii"))


def index_map_to(volume: Volume, affine_lps: np.ndarray) -> np.ndarray:
    """4x4 matrix from medview (x, y, z) indices to the other image's indices; must be a signed permutation."""
    m = np.linalg.inv(affine_lps) @ volume.geometry.affine
    rot = np.rint(m[:3, :3])
    assert np.allclose(m[:3, :3], rot, atol=1e-4), f"index axes are not aligned:\n{m}"
    assert np.allclose(m[:3, 3], np.rint(m[:3, 3]), atol=1e-3), f"index offsets are not integers: {m[:3, 3]}"
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.rint(m[:3, 3])
    return out


def compare_with_nifti(volume: Volume, nifti: Path, tol_mm: float = 1e-3,
                       skip_slices: set[int] | None = None) -> None:
    """Assert the NIfTI (read by nibabel, RAS) places every voxel where medview does, with equal values."""
    import nibabel as nib

    img = nib.load(str(nifti))
    ref = np.asanyarray(img.dataobj)
    affine_lps = ras_to_lps_affine(img.affine)
    m = index_map_to(volume, affine_lps)
    size = np.array(volume.geometry.size_xyz)
    corners = np.array([[x, y, z] for x in (0, size[0] - 1) for y in (0, size[1] - 1) for z in (0, size[2] - 1)],
                       dtype=float)
    ours = volume.geometry.index_to_world(corners)
    theirs_idx = (m[:3, :3] @ corners.T).T + m[:3, 3]
    theirs = (affine_lps[:3, :3] @ theirs_idx.T).T + affine_lps[:3, 3]
    np.testing.assert_allclose(ours, theirs, atol=tol_mm)
    # bring the reference into medview's (z, y, x) order: our axis a is their axis perm[a]
    rot = m[:3, :3].astype(int)
    perm = [int(np.nonzero(rot[:, a])[0][0]) for a in range(3)]
    ref = ref.reshape(ref.shape[:3])
    theirs_xyz = np.transpose(ref, perm)
    for a in range(3):
        if rot[perm[a], a] < 0:
            theirs_xyz = np.flip(theirs_xyz, axis=a)
    theirs = np.transpose(theirs_xyz, (2, 1, 0))
    assert theirs.shape == volume.array.shape, (theirs.shape, volume.array.shape)
    keep = [z for z in range(volume.geometry.shape[0]) if z not in (skip_slices or set())]
    np.testing.assert_array_equal(volume.array[keep], theirs[keep])


def sitk_series(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels (z, y, x) and LPS affine from SimpleITK's ImageSeriesReader."""
    import SimpleITK as sitk

    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image), affine
