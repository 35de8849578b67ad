"""GUI-free core model: geometry, volumes, label maps, tasks and errors (no Qt, VTK or torch)."""

from medview.core.errors import MedviewError
from medview.core.geometry import Geometry
from medview.core.labels import Label, LabelMap
from medview.core.tasks import CancelToken, TaskContext
from medview.core.volume import Volume, VolumeMetadata, WindowPreset

__all__ = [
    "CancelToken",
    "Geometry",
    "Label",
    "LabelMap",
    "MedviewError",
    "TaskContext",
    "Volume",
    "VolumeMetadata",
    "WindowPreset",
]
