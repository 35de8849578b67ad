"""Data augmentation: random flips, rotations, resizes, elastic warps and intensity jitter.

Two entry points:

* :func:`augment` makes ``n`` randomly augmented copies of a :class:`~medview.core.volume.Volume` and,
  optionally, its :class:`~medview.core.labels.LabelMap`.  Every geometric step is defined in patient
  space (LPS, mm), so it means the same thing on any grid: anisotropic, flipped or oblique.  Image and
  label go through the *same* random draws and the same sampling grid (image bilinear, label nearest), so
  they stay aligned.  What each copy received is returned as a plain dict (JSON-ready).
* :func:`training_transforms` is the patch-sampling MONAI composition used to train the bundled demo model
  (``packaging/models/train_demo_model.py``).  It is kept bit-for-bit as it was, so the weights stay
  reproducible from the script.

How :func:`augment` works, per copy (the steps in this order):

1. **Flip**: each patient axis named in ``AugmentSpec.flip_axes`` (``"lr"``, ``"ap"``, ``"si"``) is flipped
   with ``flip_prob``: content is reflected across the plane through the centre of the field of view
   perpendicular to that patient axis, so ``"lr"`` moves the patient's left side to the right in world
   coordinates whatever the array order, axis signs or obliquity.  When an index axis lies along the patient
   axis (within 0.08 degrees) this is MONAI ``Flipd`` on that array axis (read from the geometry's direction
   matrix): exact, no interpolation.  On an oblique grid the reflection joins the sampling grid of step 2.
2. **Rotation, resize and elastic warp**, composed into one sampling grid and one interpolation (MONAI
   ``Resample``, i.e. ``torch.nn.functional.grid_sample``; image bilinear, label nearest):

   * rotation by angles drawn uniformly in ``+-rotate_deg`` about the patient L-R, A-P and S-I axes
     (world x, y, z) through the centre of the field of view; the matrix is
     ``R = Rz(si) @ Ry(ap) @ Rx(lr)`` (rotations about fixed world axes, L-R first) and content at world
     point ``q`` moves to ``c + R (q - c)``;
   * resize: a factor ``f`` from ``resize_range`` (or a fixed ``resize_shape``) changes the grid to
     ``round(shape * f)`` voxels with ``spacing = old_spacing * old_shape / new_shape``: the same field of
     view edge to edge (first voxel's outer corner to last voxel's outer corner), same direction and the
     same centre.  Because the origin is the *centre* of the first voxel it moves by
     ``direction @ ((new_spacing - old_spacing) / 2)``.  Structures stay where they are in world space;
     only the sampling density changes.  Axes of one voxel (2D images) are never resized;
   * elastic warp: a smooth random displacement field in world mm: white noise on a coarse lattice,
     Gaussian-smoothed with a correlation length ``sigma`` (mm, from ``elastic_sigma_mm``), scaled so each
     world component has RMS ``magnitude`` (mm, from ``elastic_magnitude_mm``), interpolated to every
     voxel.  Defined in mm rather than voxels (as MONAI's ``Rand3DElasticd`` is) so a 5 mm slice
     spacing does not make the warp five times stronger along z.

   Voxels that sample outside the input get the image's minimum (air for CT) and label 0.  Single-slice
   images stay in their plane (the out-of-plane sampling coordinate is held at the slice).
3. **Intensity jitter** (image only): ``I' = lo + (I - lo) * (1 + a) + b * (hi - lo)`` with ``a`` drawn in
   ``+-intensity_scale`` and ``b`` in ``+-intensity_shift``, where ``lo``/``hi`` are the 1st/99th
   percentiles of the input, so both are fractions of the image's own intensity range (contrast scaled
   about the background level, then shifted).
4. **Gaussian noise** (image only): standard deviation ``noise_std * (hi - lo)``.

Data types: a float image comes back as float32; an integer image (CT in HU stored as int16, 8-bit
pictures) keeps its type, rounded and clipped to the type's range.  Labels keep their dtype and values:
nearest-neighbour sampling can only drop values, never invent them.  Large volumes are sampled in slabs
with float32 grids (about 100 MB of working memory besides the input and output).

Determinism: ``seed`` feeds a :class:`numpy.random.SeedSequence` spawned into one independent stream per
copy, so the same seed gives the same copies, copy ``i`` does not depend on ``n``, and copies differ from
each other.  torch and MONAI only interpolate; they draw nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume, subsample

PATIENT_AXES = {"lr": 0, "ap": 1, "si": 2}  # patient axis name -> world (LPS) axis
_SLAB_VOXELS = 2_000_000  # output voxels sampled per grid_sample call (grid: 24 MB float32)


@dataclass(frozen=True)
class AugmentSpec:
    """What :func:`augment` may do, with probabilities and ranges (see the module docstring).

    Attributes
    ----------
    flip_axes
        Patient axes that may be flipped: any of ``"lr"``, ``"ap"``, ``"si"``; each independently with
        ``flip_prob``.
    rotate_deg
        Largest absolute rotation (degrees) about the L-R, A-P and S-I axes; drawn uniformly, applied
        with ``rotate_prob``.
    resize_range
        ``(low, high)`` grid-size factor; one factor for all axes, applied with ``resize_prob``.
    resize_shape
        A fixed output shape ``(z, y, x)``: every copy is resized to it (``resize_range`` then unused).
    elastic_sigma_mm, elastic_magnitude_mm
        Ranges of the warp's correlation length and RMS displacement per world axis, both in mm; applied
        with ``elastic_prob``.
    intensity_scale, intensity_shift
        Largest contrast change and offset, as fractions of the image's 1st-99th percentile range;
        applied with ``intensity_prob``.
    noise_std
        Gaussian noise standard deviation as a fraction of that range; applied with ``noise_prob``.
    """

    flip_axes: tuple[str, ...] = ("lr",)
    flip_prob: float = 0.5
    rotate_deg: tuple[float, float, float] = (10.0, 10.0, 10.0)
    rotate_prob: float = 0.8
    resize_range: tuple[float, float] = (0.85, 1.15)
    resize_prob: float = 0.5
    resize_shape: tuple[int, int, int] | None = None
    elastic_sigma_mm: tuple[float, float] = (12.0, 24.0)
    elastic_magnitude_mm: tuple[float, float] = (0.0, 2.0)
    elastic_prob: float = 0.5
    intensity_scale: float = 0.1
    intensity_shift: float = 0.05
    intensity_prob: float = 0.5
    noise_std: float = 0.0
    noise_prob: float = 0.0

    def __post_init__(self) -> None:
        axes = tuple(str(a).lower() for a in self.flip_axes)
        bad = [a for a in axes if a not in PATIENT_AXES]
        if bad:
            raise MedviewError(f"Unknown flip axis {bad[0]!r}: use lr, ap or si")
        object.__setattr__(self, "flip_axes", axes)
        for name in ("flip_prob", "rotate_prob", "resize_prob", "elastic_prob", "intensity_prob", "noise_prob"):
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise MedviewError(f"{name} must be a probability between 0 and 1, got {value}")
            object.__setattr__(self, name, value)
        rot = tuple(float(v) for v in self.rotate_deg)
        if len(rot) != 3 or any(not 0 <= v <= 180 for v in rot):
            raise MedviewError(f"rotate_deg needs three angles between 0 and 180 degrees, got {self.rotate_deg}")
        object.__setattr__(self, "rotate_deg", rot)
        for name, low in (("resize_range", 0.0), ("elastic_sigma_mm", 0.0), ("elastic_magnitude_mm", None)):
            pair = tuple(float(v) for v in getattr(self, name))
            ok = len(pair) == 2 and bool(np.all(np.isfinite(pair))) and pair[0] <= pair[1]
            ok = ok and (pair[0] >= 0 if low is None else pair[0] > low)
            if not ok:
                raise MedviewError(f"{name} needs (low, high) with 0 < low <= high, got {getattr(self, name)}")
            object.__setattr__(self, name, pair)
        if self.resize_shape is not None:
            shape = tuple(int(v) for v in self.resize_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise MedviewError(f"resize_shape needs three positive sizes (z, y, x), got {self.resize_shape}")
            object.__setattr__(self, "resize_shape", shape)
        for name, upper in (("intensity_scale", 1.0), ("intensity_shift", np.inf), ("noise_std", np.inf)):
            value = float(getattr(self, name))
            if not (np.isfinite(value) and 0.0 <= value < upper):
                raise MedviewError(f"{name} must be a fraction >= 0{' and < 1' if upper == 1.0 else ''}, got {value}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


# -- geometry helpers -----------------------------------------------------------------------------------
def flip_array_axis(geometry: Geometry, patient_axis: str) -> int:
    """Array axis (0 = z, 1 = y, 2 = x) whose index direction is closest to ``patient_axis`` (lr/ap/si)."""
    world = PATIENT_AXES[patient_axis]
    d = np.abs(geometry.direction_matrix)
    # Greedy assignment as in Geometry.acquisition_frame, so that lr, ap and si never share an index axis.
    used: set[int] = set()
    assignment: dict[int, int] = {}
    for k in np.argsort(-np.max(d, axis=1)):
        i = next(int(i) for i in np.argsort(-d[int(k), :]) if int(i) not in used)
        used.add(i)
        assignment[int(k)] = i
    return 2 - assignment[world]  # index axis x (0) is array axis 2


def rotation_matrix(angles_deg: Sequence[float]) -> np.ndarray:
    """``Rz(si) @ Ry(ap) @ Rx(lr)``: rotations about the fixed world L-R, A-P, S-I axes, L-R first."""
    ax, ay, az = np.radians(np.asarray(angles_deg, dtype=float))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def resized_geometry(geometry: Geometry, shape: Sequence[int]) -> Geometry:
    """The grid with ``shape`` (z, y, x) covering the same field of view, edge to edge, as ``geometry``."""
    new_xyz = np.array(tuple(shape)[::-1], dtype=float)
    old_xyz = np.array(geometry.size_xyz, dtype=float)
    spacing = np.array(geometry.spacing) * old_xyz / new_xyz
    origin = np.array(geometry.origin) + geometry.direction_matrix @ ((spacing - np.array(geometry.spacing)) / 2)
    return Geometry(tuple(int(v) for v in shape), tuple(spacing), tuple(origin), geometry.direction)


def fov_center(geometry: Geometry) -> np.ndarray:
    """World position (LPS mm) of the centre of the field of view."""
    return geometry.index_to_world((np.array(geometry.size_xyz, dtype=float) - 1) / 2)


# -- drawing the parameters --------------------------------------------------------------------------------
def _draw(rng: np.random.Generator, spec: AugmentSpec, geometry: Geometry) -> dict[str, Any]:
    """One copy's parameters, drawn in a fixed order (JSON-ready)."""
    p: dict[str, Any] = {}
    p["flip"] = [a for a in spec.flip_axes if rng.random() < spec.flip_prob]
    angles = [float(rng.uniform(-m, m)) for m in spec.rotate_deg]
    p["rotate_deg"] = angles if rng.random() < spec.rotate_prob and any(spec.rotate_deg) else None
    factor = float(rng.uniform(*spec.resize_range))
    if spec.resize_shape is not None:
        p["resize_shape"] = list(spec.resize_shape)
    elif rng.random() < spec.resize_prob and spec.resize_range != (1.0, 1.0):
        p["resize_shape"] = [1 if n == 1 else max(2, round(n * factor)) for n in geometry.shape]
        p["resize_factor"] = factor
    else:
        p["resize_shape"] = None
    sigma, magnitude = float(rng.uniform(*spec.elastic_sigma_mm)), float(rng.uniform(*spec.elastic_magnitude_mm))
    elastic = rng.random() < spec.elastic_prob and magnitude > 0
    p["elastic"] = {"sigma_mm": sigma, "magnitude_mm": magnitude,
                    "seed": int(rng.integers(2**31))} if elastic else None
    a, b = float(rng.uniform(-1, 1) * spec.intensity_scale), float(rng.uniform(-1, 1) * spec.intensity_shift)
    p["intensity"] = {"scale": a, "shift": b} if rng.random() < spec.intensity_prob and (a or b) else None
    noise = rng.random() < spec.noise_prob and spec.noise_std > 0
    p["noise"] = {"std_fraction": spec.noise_std, "seed": int(rng.integers(2**31))} if noise else None
    return p


# -- the elastic field ---------------------------------------------------------------------------------------
def _interp_matrix(n_out: int, n_nodes: int) -> np.ndarray:
    """(n_out, n_nodes) linear interpolation weights from nodes spanning the first to the last voxel."""
    w = np.zeros((n_out, n_nodes), dtype=np.float32)
    if n_nodes == 1:
        w[:, 0] = 1.0
        return w
    t = np.arange(n_out) * (n_nodes - 1) / max(n_out - 1, 1)
    i0 = np.minimum(np.floor(t).astype(int), n_nodes - 2)
    frac = (t - i0).astype(np.float32)
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i0 + 1] += frac
    return w


def _elastic_lattice(geometry: Geometry, sigma_mm: float, magnitude_mm: float, seed: int
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Coarse displacement field (3 world components, mm) on a lattice over ``geometry`` and the
    per-array-axis interpolation matrices that spread it onto the voxels."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    cell_mm = sigma_mm / 3.0  # three lattice cells per sigma resolve the Gaussian well
    nodes, sigmas, weights = [], [], []
    for axis, n in enumerate(geometry.shape):  # array order z, y, x
        spacing = geometry.spacing[2 - axis]
        extent = (n - 1) * spacing
        count = 1 if n == 1 else min(n, max(2, int(np.ceil(extent / cell_mm)) + 1))
        nodes.append(count)
        step = extent / (count - 1) if count > 1 else 1.0
        sigmas.append(sigma_mm / step if count > 1 else 0.0)
        weights.append(_interp_matrix(n, count))
    # Noise on a margin of 3 sigma around the lattice so the edges are as smooth as the middle.
    pad = [int(np.ceil(3 * s)) for s in sigmas]
    noise = rng.standard_normal((3, *[c + 2 * p for c, p in zip(nodes, pad, strict=True)])).astype(np.float32)
    field = np.empty((3, *nodes), dtype=np.float32)
    core = tuple(slice(p, p + c) for p, c in zip(pad, nodes, strict=True))
    for c in range(3):
        smooth = ndimage.gaussian_filter(noise[c], sigma=sigmas, mode="wrap")
        field[c] = smooth[core]
        rms = float(np.sqrt(np.mean(smooth.astype(np.float64) ** 2)))
        field[c] *= magnitude_mm / rms if rms > 0 else 0.0
    return field, weights


def _elastic_slab(field: np.ndarray, weights: list[np.ndarray], z0: int, z1: int) -> np.ndarray:
    """Displacement (mm, world components) at the voxels of output slices ``z0:z1``: (3, nz, ny, nx)."""
    wz, wy, wx = weights
    rows = wz[z0:z1]
    used = np.flatnonzero(rows.any(axis=0))  # the lattice planes these slices interpolate from
    l0, l1 = int(used[0]), int(used[-1]) + 1
    out = np.einsum("zl,clyx->czyx", rows[:, l0:l1], field[:, l0:l1])  # (3, nz, Ly, Lx): small
    out = np.matmul(wy, out)  # (3, nz, ny, Lx)
    return (out.reshape(-1, out.shape[-1]) @ wx.T).reshape(*out.shape[:-1], wx.shape[0])  # one BLAS call


# -- resampling ----------------------------------------------------------------------------------------------
def _grid_map(src: Geometry, dst: Geometry, inverse: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a, b, p)`` with rows in array order (z, y, x): the centred source voxel coordinate that output voxel
    ``j = (x, y, z)`` samples is ``a @ j + b + p @ d`` for a world displacement ``d`` (mm).

    Output voxel ``j`` lies at world ``w = o' + M' j``; content moved by ``q -> c + L (q - c)`` is sampled at
    ``c + L^-1 (w - c) + d``, whose source index is ``M^-1 (that - o)``, centred by ``(n - 1) / 2`` for MONAI.
    """
    to_index = np.linalg.inv(src.direction_matrix * np.array(src.spacing)[None, :])
    linear = np.eye(3) if inverse is None else inverse
    centre = fov_center(src)
    size = np.array(src.size_xyz, dtype=float)
    a = to_index @ linear @ (dst.direction_matrix * np.array(dst.spacing)[None, :])
    b = to_index @ (centre + linear @ (np.array(dst.origin) - centre) - np.array(src.origin)) - (size - 1) / 2
    p = to_index.copy()
    flat = size == 1  # single-slice images stay in their plane
    a[flat], b[flat], p[flat] = 0.0, 0.0, 0.0
    return a[::-1].copy(), b[::-1].copy(), p[::-1].copy()


def _source_grid(mapping: tuple[np.ndarray, np.ndarray, np.ndarray], dst: Geometry,
                 displacement: np.ndarray | None, z0: int, z1: int) -> np.ndarray:
    """MONAI ``Resample`` grid for output slices ``z0:z1``: centred source voxel coordinates, (3, nz, ny, nx)
    float32 ordered (z, y, x); built by broadcasting, so no float64 array of the slab's size is made."""
    a, b, p = mapping
    _, ny, nx = dst.shape
    z, y, x = np.arange(z0, z1, dtype=float), np.arange(ny, dtype=float), np.arange(nx, dtype=float)
    grid = np.empty((3, z1 - z0, ny, nx), dtype=np.float32)
    for r in range(3):
        grid[r] = (a[r, 2] * z).astype(np.float32)[:, None, None]
        grid[r] += (a[r, 1] * y).astype(np.float32)[None, :, None]
        grid[r] += (a[r, 0] * x + b[r]).astype(np.float32)[None, None, :]
        if displacement is not None:
            for k in range(3):
                if p[r, k]:
                    grid[r] += np.float32(p[r, k]) * displacement[k]
    return grid


def _resample(arrays: dict[str, Any], src: Geometry, dst: Geometry, inverse: np.ndarray | None,
              elastic: dict | None, task: TaskContext | None) -> dict[str, np.ndarray]:
    """Sample the (1, z, y, x) float32 tensors in ``arrays`` on ``dst`` through one grid: image bilinear
    (zeros outside: the caller shifted the fill value to 0), label nearest."""
    import torch
    from monai.transforms import Resample

    field = weights = None
    if elastic is not None:
        field, weights = _elastic_lattice(dst, elastic["sigma_mm"], elastic["magnitude_mm"], elastic["seed"])
    # float32: MONAI's default would convert the whole input to float64 for every slab
    samplers = {"image": Resample(mode="bilinear", padding_mode="zeros", dtype=torch.float32),
                "label": Resample(mode="nearest", padding_mode="zeros", dtype=torch.float32)}
    mapping = _grid_map(src, dst, inverse)
    nz, ny, nx = dst.shape
    slab = max(1, _SLAB_VOXELS // (ny * nx))
    out = {key: np.empty(dst.shape, dtype=np.float32) for key in arrays}
    with torch.no_grad():
        for z0 in range(0, nz, slab):
            check_cancel(task)
            z1 = min(nz, z0 + slab)
            disp = _elastic_slab(field, weights, z0, z1) if field is not None else None
            grid = torch.from_numpy(_source_grid(mapping, dst, disp, z0, z1))
            for key, tensor in arrays.items():
                out[key][z0:z1] = np.asarray(samplers[key](tensor, grid))[0]
    return out


# -- intensity ------------------------------------------------------------------------------------------------
def intensity_range(volume: Volume) -> tuple[float, float]:
    """1st and 99th percentiles of a regular subsample (the reference for intensity fractions)."""
    lo, hi = (float(v) for v in np.percentile(subsample(volume.array), [1.0, 99.0]))
    return lo, (hi if hi > lo else lo + 1.0)


def _finish_image(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(np.float32, copy=False)


# -- public API -------------------------------------------------------------------------------------------------
def augment_one(volume: Volume, labels: LabelMap | None, params: dict[str, Any],
                task: TaskContext | None = None) -> tuple[Volume, LabelMap | None]:
    """Apply one copy's drawn ``params`` (as :func:`augment` records them) to ``volume`` and ``labels``."""
    import torch
    from monai.transforms import Flipd

    src = volume.geometry
    lo, hi = intensity_range(volume)
    fill = float(np.min(volume.array))
    # The image enters shifted so that its fill value is 0: grid_sample pads with zeros.
    shifted = volume.array.astype(np.float32)  # one float32 copy, shifted in place
    shifted -= np.float32(fill)
    data: dict[str, Any] = {"image": torch.from_numpy(shifted[None])}
    if labels is not None:
        data["label"] = torch.from_numpy(labels.array.astype(np.float32)[None])
    axes, reflection = [], np.eye(3)
    for name in params["flip"]:
        world_axis, array_axis = PATIENT_AXES[name], flip_array_axis(src, name)
        if abs(src.direction_matrix[world_axis, 2 - array_axis]) > 1 - 1e-6:
            axes.append(array_axis)  # the index axis lies along the patient axis: an exact re-indexing
        else:
            reflection[world_axis, world_axis] = -1.0  # oblique: reflect in world space while resampling
    if axes:
        data = Flipd(keys=list(data), spatial_axis=sorted(axes))(data)
        data = {key: value.as_subclass(torch.Tensor) for key, value in data.items()}  # no MetaTensor overhead
    # content moves by q -> c + R F (q - c): reflections F first, then the rotation R
    linear = None if params["rotate_deg"] is None else rotation_matrix(params["rotate_deg"])
    if not np.array_equal(reflection, np.eye(3)):
        linear = reflection if linear is None else linear @ reflection
    inverse = None if linear is None else np.linalg.inv(linear)
    dst = resized_geometry(src, params["resize_shape"]) if params["resize_shape"] is not None else src
    if inverse is not None or params["elastic"] is not None or dst is not src:
        arrays = _resample(data, src, dst, inverse, params["elastic"], task)
    else:
        arrays = {key: np.asarray(value)[0] for key, value in data.items()}
    image = arrays["image"]
    image += np.float32(fill)
    if params["intensity"] is not None:
        a, b = params["intensity"]["scale"], params["intensity"]["shift"]
        image -= np.float32(lo)
        image *= np.float32(1.0 + a)
        image += np.float32(lo + b * (hi - lo))
    if params["noise"] is not None:
        noise_rng = np.random.default_rng(params["noise"]["seed"])
        image += noise_rng.standard_normal(image.shape, dtype=np.float32) * np.float32(
            params["noise"]["std_fraction"] * (hi - lo))
    metadata = replace(volume.metadata, warnings=list(volume.metadata.warnings), extra=dict(volume.metadata.extra))
    metadata.extra["steps"] = [*volume.metadata.extra.get("steps", []),
                               {"operation": "augment", "kind": "augment", "library": "monai", "params": params}]
    out_volume = Volume(_finish_image(image, volume.array.dtype), dst, metadata)
    out_labels = None
    if labels is not None:
        table = [Label(e.value, e.name, e.color, e.visible, e.opacity, e.locked) for e in labels.labels]
        out_labels = LabelMap(np.rint(arrays["label"]).astype(labels.array.dtype), dst, table, source=labels.source)
    return out_volume, out_labels


def iter_augment(volume: Volume, labels: LabelMap | None = None, n: int = 10, seed: int = 0,
                 spec: AugmentSpec | None = None, task: TaskContext | None = None
                 ) -> Iterator[tuple[Volume, LabelMap | None, dict[str, Any]]]:
    """Like :func:`augment`, one copy at a time (for writing each copy before making the next)."""
    spec = spec or AugmentSpec()
    n = int(n)
    if n < 1:
        raise MedviewError(f"The number of augmented copies must be at least 1, got {n}")
    if volume.is_color:
        raise MedviewError("Augmentation works on grey-scale images; this one is colour")
    if labels is not None and not labels.geometry.is_same_grid(volume.geometry):
        raise MedviewError("The label map is not on the image's grid; resample it onto the image first")
    streams = np.random.SeedSequence(int(seed)).spawn(n)
    for i, stream in enumerate(streams):
        report(task, i / n, f"Augmenting copy {i + 1} of {n}")
        params = _draw(np.random.default_rng(stream), spec, volume.geometry)
        out_volume, out_labels = augment_one(volume, labels, params, task)
        params = {"index": i, **params, "shape": list(out_volume.geometry.shape),
                  "spacing": list(out_volume.geometry.spacing), "origin": list(out_volume.geometry.origin)}
        yield out_volume, out_labels, params
    report(task, 1.0, f"Augmented {n} copies", force=True)


def augment(volume: Volume, labels: LabelMap | None = None, n: int = 10, seed: int = 0,
            spec: AugmentSpec | None = None, task: TaskContext | None = None
            ) -> list[tuple[Volume, LabelMap | None, dict[str, Any]]]:
    """``n`` randomly augmented copies of ``volume`` (and ``labels``, moved through the same draws).

    Parameters
    ----------
    volume
        Grey-scale image (any dtype; integer images keep their dtype, see the module docstring).
    labels
        Optional label map on ``volume``'s grid.
    n, seed
        Number of copies and the random seed (the same seed gives the same copies).
    spec
        What may be applied; :class:`AugmentSpec` defaults otherwise.

    Returns
    -------
    list of (Volume, LabelMap or None, dict)
        Each copy, its labels on the identical grid, and the parameters applied (JSON-ready): ``flip`` (patient
        axes), ``rotate_deg`` (lr, ap, si), ``resize_shape``/``resize_factor``, ``elastic`` (sigma_mm,
        magnitude_mm, seed), ``intensity`` (scale, shift fractions), ``noise``, and the output grid.
    """
    return list(iter_augment(volume, labels, n, seed, spec, task))


# -- the demo model's training transform ---------------------------------------------------------------------
def training_transforms(keys: Sequence[str] = ("image", "label"), patch: Sequence[int] = (48, 48, 48),
                        seed: int = 0, scale: float = 0.15):
    """The MONAI composition that trains ``demo-body-lungs`` (``packaging/models/train_demo_model.py``).

    Applied to channel-first tensors ``{keys[0]: image (1, z, y, x), keys[1]: label (1, z, y, x)}`` on the model's
    4 mm LPS grid: left-right flip (array x) p=0.5; affine p=0.8 with rotation up to 10 degrees about each array
    axis, scaling ``1 +- scale`` and translation up to 4 voxels (image bilinear, label nearest, zeros outside);
    pad to ``patch``; a random ``patch`` crop; intensity scale +-10 % p=0.5 and shift +-0.05 p=0.5 on the image.
    Random state seeded with ``seed``.  Kept exactly as the weights were trained (same transforms, order,
    parameters and seeding) so a re-run of the training script reproduces them; the array-space rotation is
    fine there because that grid is isotropic and patient-aligned.
    """
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandSpatialCropd,
        SpatialPadd,
    )

    keys = list(keys)
    image_key = keys[0]
    modes = ["bilinear"] + ["nearest"] * (len(keys) - 1)  # image first, then label(s)
    patch = tuple(int(v) for v in patch)
    transform = Compose([
        RandFlipd(keys, prob=0.5, spatial_axis=2),  # left-right (x)
        RandAffined(keys, prob=0.8, rotate_range=[np.radians(10)] * 3, scale_range=[scale] * 3,
                    translate_range=[4, 4, 4], mode=modes, padding_mode="zeros"),
        SpatialPadd(keys, spatial_size=patch, mode="constant"),
        RandSpatialCropd(keys, roi_size=patch, random_size=False),
        RandScaleIntensityd(image_key, factors=0.1, prob=0.5),
        RandShiftIntensityd(image_key, offsets=0.05, prob=0.5),
    ])
    transform.set_random_state(seed=seed)
    return transform
