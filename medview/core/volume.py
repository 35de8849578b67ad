"""An image volume in real units on a :class:`~medview.core.geometry.Geometry`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry


@dataclass(frozen=True)
class WindowPreset:
    """A display window: centre and width in the volume's units (HU for CT)."""

    center: float
    width: float
    name: str = ""

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclass
class VolumeMetadata:
    """What is known about where a volume came from.  Patient identifiers live only here."""

    modality: str = ""
    series_uid: str = ""
    study_uid: str = ""
    series_description: str = ""
    series_number: int | None = None
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    photometric: str = "MONOCHROME2"
    units: str = ""
    window_presets: list[WindowPreset] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def subsample(array: np.ndarray, max_voxels: int = 2_000_000) -> np.ndarray:
    """A regular subsample of at most about ``max_voxels`` voxels (colour averaged to grey), for
    statistics that must stay fast on any volume size."""
    step = max(1, int(np.ceil((array.size / max_voxels) ** (1 / 3))))
    sample = array[::step, ::step, ::step]
    return sample.mean(axis=-1) if sample.ndim == 4 else sample


class Volume:
    """A 3D image: ``array`` indexed ``(z, y, x)`` (``(z, y, x, c)`` for colour), in real units.

    CT values are Hounsfield units after each slice's rescale slope and intercept; single 2D images
    (radiographs, photos) are volumes with one slice.
    """

    def __init__(self, array: np.ndarray, geometry: Geometry, metadata: VolumeMetadata | None = None):
        if array.ndim not in (3, 4):
            raise MedviewError(f"A volume array must be 3D (z, y, x) or 4D with colour, got {array.ndim}D")
        if tuple(array.shape[:3]) != geometry.shape:
            raise MedviewError(f"Array shape {array.shape[:3]} does not match geometry shape {geometry.shape}")
        if array.ndim == 4 and array.shape[3] not in (3, 4):
            raise MedviewError(f"Colour volumes need 3 or 4 channels, got {array.shape[3]}")
        self.array = array
        self.geometry = geometry
        self.metadata = metadata or VolumeMetadata()

    # -- convenience --------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def is_color(self) -> bool:
        return self.array.ndim == 4

    @property
    def is_2d(self) -> bool:
        return self.geometry.shape[0] == 1

    @property
    def modality(self) -> str:
        return self.metadata.modality

    @property
    def warnings(self) -> list[str]:
        return self.metadata.warnings

    def value_at_world(self, point_lps: np.ndarray | list[float]) -> float | np.ndarray | None:
        """Nearest-voxel value at an LPS point (mm), or None outside the grid."""
        idx = np.rint(self.geometry.world_to_index(point_lps)).astype(int)
        if not self.geometry.contains_index(idx):
            return None
        x, y, z = (int(v) for v in idx)
        value = self.array[z, y, x]
        return value if self.is_color else float(value)

    def default_window(self) -> WindowPreset:
        """The file's first preset, else a robust 1st-99th percentile window of the data."""
        if self.metadata.window_presets:
            return self.metadata.window_presets[0]
        return self.percentile_window(1.0, 99.0, "Auto 1-99%")

    def percentile_window(self, low: float, high: float, name: str) -> WindowPreset:
        """Window between two intensity percentiles of a regular subsample (MR, uncalibrated data)."""
        lo, hi = (float(v) for v in np.percentile(subsample(self.array), [low, high]))
        if hi <= lo:
            hi = lo + 1.0
        return WindowPreset(center=(lo + hi) / 2.0, width=hi - lo, name=name)

    def with_array(self, array: np.ndarray) -> Volume:
        """A new volume on the same geometry with the metadata copied."""
        return Volume(array, self.geometry, replace(self.metadata, warnings=list(self.metadata.warnings)))

    def __repr__(self) -> str:
        g = self.geometry
        return (
            f"Volume({self.metadata.modality or '?'} {g.size_xyz[0]}x{g.size_xyz[1]}x{g.size_xyz[2]} "
            f"{self.array.dtype}, spacing={tuple(round(s, 4) for s in g.spacing)} mm, "
            f"orientation={g.orientation_code()})"
        )
