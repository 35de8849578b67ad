"""Surface meshes of label maps and iso-surfaces of volumes, in world LPS millimetres.

Every mesh leaves this module with its points in DICOM patient LPS mm, so it lines up with the volume
renderer, the slice planes and the measurements without any prop matrix.  The pipeline is the one
3D Slicer uses for closed surfaces of segments:

1. crop the grid to the structure (plus a margin of background, so the surface is closed even where
   the structure touches the edge of the image),
2. contour: :class:`vtkDiscreteFlyingEdges3D` for a label value, :class:`vtkFlyingEdges3D` for a level,
3. smooth with :class:`vtkWindowedSincPolyDataFilter` (a low-pass filter that, unlike Laplacian
   smoothing, does not shrink the surface), on normalised coordinates,
4. place in the world with the index-frame matrix of :mod:`medview.render.vtk_adapters`, reversing the
   triangle winding when the grid is left-handed so that triangles always face outward,
5. compute point normals.

:func:`write_mesh` stores STL, OBJ or PLY in LPS or RAS and names the convention inside the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkCommand
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import (
    vtkFeatureEdges,
    vtkFlyingEdges3D,
    vtkMassProperties,
    vtkPolyDataNormals,
    vtkQuadricDecimation,
    vtkReverseSense,
    vtkTriangleFilter,
    vtkWindowedSincPolyDataFilter,
)
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D, vtkTransformFilter
from vtkmodules.vtkIOGeometry import vtkOBJWriter, vtkSTLWriter
from vtkmodules.vtkIOPLY import vtkPLYWriter
from vtkmodules.vtkRenderingCore import vtkActor, vtkPolyDataMapper

from medview.core.atomic import atomic_path
from medview.core.errors import MedviewError, WriteError
from medview.core.geometry import Geometry, mask_box
from medview.core.labels import Label, LabelMap
from medview.core.tasks import TaskContext, check_cancel, report
from medview.core.volume import Volume
from medview.render.vtk_adapters import index_frame_array, to_vtk_matrix, vtk_image

__all__ = [
    "DEFAULT_PASS_BAND",
    "DEFAULT_SMOOTHING_ITERATIONS",
    "MESH_SUFFIXES",
    "SurfaceArrays",
    "arrays_to_polydata",
    "label_actor",
    "label_surface",
    "label_surfaces",
    "label_surfaces_arrays",
    "mesh_properties",
    "polydata_to_arrays",
    "threshold_surface",
    "threshold_surface_arrays",
    "write_mesh",
]

#: Windowed-sinc smoothing defaults: 3D Slicer's closed-surface defaults (20 iterations, smoothing
#: factor 0.5, i.e. pass band 10**(-4 * 0.5) = 0.01), which remove the voxel staircase while keeping
#: the enclosed volume (see the sphere tests for the accuracy this reaches).
DEFAULT_SMOOTHING_ITERATIONS = 20
DEFAULT_PASS_BAND = 0.01
#: Background voxels kept around a structure when cropping: room for the contour to close and for the
#: smoothing filter's support.
CROP_MARGIN_VOXELS = 2
MESH_SUFFIXES = (".stl", ".obj", ".ply")
_CONVENTIONS = ("LPS", "RAS")


# -- building surfaces -------------------------------------------------------------------------------------
def _cropped(array: np.ndarray, geometry: Geometry, box: tuple[tuple[int, int], ...],
             fill: float) -> tuple[np.ndarray, Geometry]:
    """``array[box]`` padded with ``fill`` where the box leaves the grid, and the geometry of that sub-grid."""
    inner = tuple(slice(max(lo, 0), min(hi, n)) for (lo, hi), n in zip(box, array.shape, strict=True))
    pad = [(max(-lo, 0), max(hi - n, 0)) for (lo, hi), n in zip(box, array.shape, strict=True)]
    sub = array[inner]
    if any(p != (0, 0) for p in pad):
        if np.issubdtype(sub.dtype, np.integer) and not np.iinfo(sub.dtype).min <= fill <= np.iinfo(sub.dtype).max:
            sub = sub.astype(np.float32)  # e.g. unsigned data with the level at its minimum: -1 must fit
        sub = np.pad(sub, pad, mode="constant", constant_values=fill)
    return np.ascontiguousarray(sub), geometry.subgrid([lo for lo, _ in box], sub.shape)


def _finish(contour: Any, geometry: Geometry, smoothing_iterations: int, pass_band: float,
            decimate: float | None) -> vtkPolyData:
    """Smooth, decimate, place in LPS world mm, orient outward and add normals."""
    upstream = contour
    if smoothing_iterations > 0:
        if not 0.0 < pass_band <= 2.0:
            raise MedviewError(f"The smoothing pass band must lie in (0, 2], got {pass_band}")
        smoother = vtkWindowedSincPolyDataFilter()
        smoother.SetInputConnection(upstream.GetOutputPort())
        smoother.SetNumberOfIterations(int(smoothing_iterations))
        smoother.SetPassBand(float(pass_band))
        smoother.NormalizeCoordinatesOn()  # pass band independent of the structure's size
        smoother.BoundarySmoothingOff()
        smoother.FeatureEdgeSmoothingOff()
        smoother.NonManifoldSmoothingOn()
        upstream = smoother
    if decimate is not None:
        if not 0.0 <= decimate < 1.0:
            raise MedviewError(f"Decimation is the fraction of triangles to remove, in [0, 1); got {decimate}")
        decimator = vtkQuadricDecimation()
        decimator.SetInputConnection(upstream.GetOutputPort())
        decimator.SetTargetReduction(float(decimate))
        decimator.VolumePreservationOn()
        upstream = decimator
    transform = vtkTransform()
    transform.SetMatrix(to_vtk_matrix(index_frame_array(geometry)))
    placed = vtkTransformFilter()
    placed.SetInputConnection(upstream.GetOutputPort())
    placed.SetTransform(transform)
    upstream = placed
    # Contour filters wind triangles outward in the image's own (right-handed) frame; a left-handed
    # direction matrix (a flipped axis) mirrors the mesh, so the winding must be reversed with it.
    if np.linalg.det(geometry.direction_matrix) < 0:
        reverse = vtkReverseSense()
        reverse.SetInputConnection(upstream.GetOutputPort())
        reverse.ReverseCellsOn()
        reverse.ReverseNormalsOff()
        upstream = reverse
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(upstream.GetOutputPort())
    normals.ComputePointNormalsOn()
    normals.ComputeCellNormalsOff()
    normals.SplittingOff()  # keep one point per vertex: a closed mesh stays closed
    normals.ConsistencyOff()  # the winding is already consistent and outward
    normals.AutoOrientNormalsOff()
    normals.Update()
    out = vtkPolyData()
    out.ShallowCopy(normals.GetOutput())
    return out


def label_surface(label_map: LabelMap, value: int, smoothing_iterations: int = DEFAULT_SMOOTHING_ITERATIONS,
                  pass_band: float = DEFAULT_PASS_BAND, decimate: float | None = None) -> vtkPolyData:
    """Closed, smoothed surface of one label, with points in world LPS mm.

    Parameters
    ----------
    label_map
        The segmentation.
    value
        Label value to mesh.
    smoothing_iterations
        Windowed-sinc iterations; 0 leaves the raw contour (voxel staircase).
    pass_band
        Windowed-sinc pass band on normalised coordinates, (0, 2]; smaller smooths more.
    decimate
        Fraction of triangles to remove with quadric decimation (volume preserving), or None.

    Raises
    ------
    MedviewError
        When the label has no voxels or the parameters are out of range.
    """
    value = int(value)
    mask = label_map.array == value
    box = mask_box(mask, CROP_MARGIN_VOXELS)
    if box is None:
        name = next((entry.name for entry in label_map.labels if entry.value == value), f"Label {value}")
        raise MedviewError(f"'{name}' (value {value}) has no voxels in this label map, so it has no surface")
    sub, sub_geometry = _cropped(mask.view(np.uint8), label_map.geometry, box, 0)
    contour = vtkDiscreteFlyingEdges3D()
    contour.SetInputData(vtk_image(sub, sub_geometry))
    contour.SetValue(0, 1.0)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    return _finish(contour, sub_geometry, smoothing_iterations, pass_band, decimate)


def label_surfaces(label_map: LabelMap, values: list[int] | None = None, task: TaskContext | None = None,
                   **options: Any) -> dict[int, vtkPolyData]:
    """Surfaces of several labels (default: every value present), keyed by label value.

    ``options`` are passed on to :func:`label_surface`.
    """
    values = label_map.present_values() if values is None else [int(v) for v in values]
    surfaces: dict[int, vtkPolyData] = {}
    for i, value in enumerate(values):
        report(task, i / max(len(values), 1), f"Surface of label {value}")
        surfaces[value] = label_surface(label_map, value, **options)
    report(task, 1.0, "Surfaces done", force=True)
    return surfaces


def threshold_surface(volume: Volume, level_hu: float, smoothing_iterations: int = DEFAULT_SMOOTHING_ITERATIONS,
                      pass_band: float = DEFAULT_PASS_BAND, decimate: float | None = None,
                      subsample: int = 1, max_triangles: int | None = None,
                      task: TaskContext | None = None) -> vtkPolyData:
    """Iso-surface of a scalar volume at ``level_hu`` (e.g. bone at 300 HU), points in world LPS mm.

    Parameters
    ----------
    volume
        A scalar 3D volume (CT in HU).
    level_hu
        Iso-value in the volume's units (HU for CT).
    smoothing_iterations, pass_band, decimate
        As for :func:`label_surface`.
    subsample
        Take every ``subsample``-th voxel along each axis first (2 makes a 512x512x400 CT eight times
        lighter); the placement stays exact, only detail is lost.
    max_triangles
        Take every 2nd, 3rd, ... voxel (from ``subsample`` on) until the contour has at most this many
        triangles: a mesh for display (on software OpenGL each frame draws every triangle: 860k took 0.25 s
        a frame here).  Quadric decimation to the same count took 10 s on the sample CT; a coarser grid
        takes 0.1 s.
    """
    if volume.is_color:
        raise MedviewError("An iso-surface needs a scalar (greyscale) volume, not a colour image")
    if volume.is_2d:
        raise MedviewError("An iso-surface needs a 3D volume; this image has a single slice")
    step = int(subsample)
    if step < 1:
        raise MedviewError(f"subsample must be a positive whole number, got {subsample}")
    report(task, 0.0, f"Iso-surface at {level_hu:g}")
    g = volume.geometry
    array = volume.array[::step, ::step, ::step]
    geometry = Geometry(tuple(array.shape), tuple(s * step for s in g.spacing), g.origin, g.direction)
    inside = array > level_hu
    box = mask_box(inside, CROP_MARGIN_VOXELS)
    if box is None:
        raise MedviewError(f"No voxel is above {level_hu:g} in this volume (range {float(array.min()):g} to "
                           f"{float(array.max()):g}), so there is no surface there")
    if not np.any(~inside):
        raise MedviewError(f"Every voxel is above {level_hu:g}; choose a level inside the image's range")
    fill = min(float(array.min()), float(level_hu) - 1.0)  # below the level: closes the surface at the border
    sub, sub_geometry = _cropped(array, geometry, box, fill)
    check_cancel(task)
    contour = vtkFlyingEdges3D()
    contour.SetInputData(vtk_image(sub, sub_geometry))
    contour.SetValue(0, float(level_hu))
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    if task is not None:
        # Filters run in C; cancelling between their progress events is the closest we can get.
        def on_progress(caller: Any, _event: str) -> None:
            if task.token.cancelled:
                caller.SetAbortExecute(1)

        contour.AddObserver(vtkCommand.ProgressEvent, on_progress)
    if max_triangles is not None:
        if max_triangles < 1:
            raise MedviewError(f"max_triangles must be a positive whole number, got {max_triangles}")
        contour.Update()
        check_cancel(task)
        if contour.GetOutput().GetNumberOfCells() > max_triangles and min(volume.geometry.shape) > 2 * (step + 1):
            return threshold_surface(volume, level_hu, smoothing_iterations, pass_band, decimate, step + 1,
                                     max_triangles, task)
    surface = _finish(contour, sub_geometry, smoothing_iterations, pass_band, decimate)
    check_cancel(task)
    report(task, 1.0, "Iso-surface done", force=True)
    return surface


# -- surfaces computed in a worker process -------------------------------------------------------------------
@dataclass
class SurfaceArrays:
    """A triangle mesh as plain arrays, so that it can leave a worker process (a ``vtkPolyData`` cannot be
    pickled, and VTK's filters hold the GIL: run in a GUI thread they freeze the event loop, measured 0.4-3 s
    for a bone isosurface).  ``points`` and ``normals`` ``(n, 3)`` float32 (LPS mm), ``triangles`` ``(m, 3)``
    point indices; large arrays travel in shared memory (:mod:`medview.app.offload`)."""

    points: np.ndarray
    normals: np.ndarray | None
    triangles: np.ndarray

    @property
    def n_triangles(self) -> int:
        return int(self.triangles.shape[0])


def polydata_to_arrays(polydata: vtkPolyData) -> SurfaceArrays:
    """The points, point normals and triangles of a triangle mesh (as this module makes them)."""
    mesh = _triangles(polydata)  # in the worker: strips or polygons become triangles, normals kept
    if mesh.GetNumberOfPoints() == 0:
        return SurfaceArrays(np.zeros((0, 3), np.float32), None, np.zeros((0, 3), np.int64))
    points = np.array(numpy_support.vtk_to_numpy(mesh.GetPoints().GetData()), dtype=np.float32)
    normals_vtk = mesh.GetPointData().GetNormals()
    normals = None if normals_vtk is None else np.array(numpy_support.vtk_to_numpy(normals_vtk), dtype=np.float32)
    connectivity = numpy_support.vtk_to_numpy(mesh.GetPolys().GetConnectivityArray())
    return SurfaceArrays(points, normals, np.array(connectivity, dtype=np.int64).reshape(-1, 3))


def arrays_to_polydata(arrays: SurfaceArrays) -> vtkPolyData:
    """A ``vtkPolyData`` over :class:`SurfaceArrays` (shared, not copied: cheap on the GUI thread)."""
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray

    points_np = np.ascontiguousarray(arrays.points, dtype=np.float32)
    tris = np.ascontiguousarray(arrays.triangles, dtype=np.int64).reshape(-1)
    offsets = np.arange(0, tris.size + 1, 3, dtype=np.int64)
    points = vtkPoints()
    points.SetData(numpy_support.numpy_to_vtk(points_np, deep=False))
    cells = vtkCellArray()
    cells.SetData(numpy_support.numpy_to_vtkIdTypeArray(offsets, deep=False),
                  numpy_support.numpy_to_vtkIdTypeArray(tris, deep=False))
    polydata = vtkPolyData()
    polydata.SetPoints(points)
    polydata.SetPolys(cells)
    keep = [points_np, tris, offsets]
    if arrays.normals is not None and len(arrays.normals) == len(points_np):
        normals_np = np.ascontiguousarray(arrays.normals, dtype=np.float32)
        normals = numpy_support.numpy_to_vtk(normals_np, deep=False)
        normals.SetName("Normals")
        polydata.GetPointData().SetNormals(normals)
        keep.append(normals_np)
    polydata._medview_numpy_owner = keep  # the VTK arrays share these buffers
    return polydata


def threshold_surface_arrays(volume: Volume, level_hu: float, task: TaskContext | None = None,
                             **options: Any) -> SurfaceArrays:
    """:func:`threshold_surface` as arrays: the job the 3D panel runs in a worker process."""
    return polydata_to_arrays(threshold_surface(volume, level_hu, task=task, **options))


def label_surfaces_arrays(label_map: LabelMap, values: list[int] | None = None, task: TaskContext | None = None,
                          **options: Any) -> dict[int, SurfaceArrays]:
    """:func:`label_surfaces` as arrays: the job the 3D panel runs in a worker process."""
    return {value: polydata_to_arrays(surface)
            for value, surface in label_surfaces(label_map, values, task=task, **options).items()}


def label_actor(polydata: vtkPolyData, label: Label) -> vtkActor:
    """A 3D-panel actor for a label surface in its table colour, opacity and visibility."""
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(polydata)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*(c / 255.0 for c in label.color))
    prop.SetOpacity(float(label.opacity))
    actor.SetVisibility(bool(label.visible))
    return actor


# -- measuring surfaces -----------------------------------------------------------------------------------
def _triangles(polydata: vtkPolyData) -> vtkPolyData:
    triangles = vtkTriangleFilter()
    triangles.SetInputData(polydata)
    triangles.PassVertsOff()
    triangles.PassLinesOff()
    triangles.Update()
    return triangles.GetOutput()


def _is_closed(polydata: vtkPolyData) -> bool:
    edges = vtkFeatureEdges()
    edges.SetInputData(polydata)
    edges.BoundaryEdgesOn()
    edges.NonManifoldEdgesOff()
    edges.FeatureEdgesOff()
    edges.ManifoldEdgesOff()
    edges.Update()
    return edges.GetOutput().GetNumberOfCells() == 0


def mesh_properties(polydata: vtkPolyData) -> dict[str, Any]:
    """Area, enclosed volume and volume centroid of a triangle mesh (world mm).

    Returns
    -------
    dict
        ``area_mm2``, ``volume_mm3`` (vtkMassProperties), ``centroid_lps`` (centroid of the enclosed
        solid, from the divergence theorem: the signed tetrahedra each triangle spans with a reference
        point), ``n_points``, ``n_triangles`` and ``closed``.  For a mesh with holes the enclosed volume
        and its centroid are undefined and reported as NaN.
    """
    mesh = _triangles(polydata)
    n_triangles = mesh.GetNumberOfCells()
    if n_triangles == 0:
        raise MedviewError("The mesh has no triangles to measure")
    closed = _is_closed(mesh)
    mass = vtkMassProperties()
    mass.SetInputData(mesh)
    mass.Update()
    points = numpy_support.vtk_to_numpy(mesh.GetPoints().GetData()).astype(float)
    cells = numpy_support.vtk_to_numpy(mesh.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    ref = points.mean(axis=0)  # a nearby reference point keeps the tetrahedra small and the sums exact
    a, b, c = (points[cells[:, k]] - ref for k in range(3))
    tet_volume = np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0
    signed_volume = float(tet_volume.sum())
    if closed and abs(signed_volume) > 0:
        centroid = ref + (tet_volume[:, None] * (a + b + c)).sum(axis=0) / (4.0 * signed_volume)
        volume = float(mass.GetVolume())
    else:
        centroid = np.full(3, np.nan)
        volume = float("nan")
    return {
        "area_mm2": float(mass.GetSurfaceArea()),
        "volume_mm3": volume,
        "signed_volume_mm3": signed_volume if closed else float("nan"),
        "centroid_lps": tuple(float(v) for v in centroid),
        "n_points": int(mesh.GetNumberOfPoints()),
        "n_triangles": int(n_triangles),
        "closed": closed,
    }


# -- writing surfaces -------------------------------------------------------------------------------------
def _header_text(convention: str) -> str:
    frame = "LPS (x=left, y=posterior, z=superior)" if convention == "LPS" else \
        "RAS (x=right, y=anterior, z=superior)"
    return f"medview surface, coordinates: {frame}, units: mm"


def _in_convention(polydata: vtkPolyData, convention: str) -> vtkPolyData:
    if convention == "LPS":
        return polydata
    # LPS -> RAS negates x and y: a rotation by 180 degrees about z, so triangles keep their winding.
    transform = vtkTransform()
    transform.Scale(-1.0, -1.0, 1.0)
    flip = vtkTransformFilter()
    flip.SetInputData(polydata)
    flip.SetTransform(transform)
    flip.Update()
    return flip.GetOutput()


def _run_writer(writer: Any, path: str) -> None:
    writer.SetFileName(path)
    writer.Write()
    if writer.GetErrorCode() != 0 or not os.path.exists(path) or os.path.getsize(path) == 0:
        raise WriteError(f"Could not write the surface (VTK error code {writer.GetErrorCode()})", path=path)


def write_mesh(polydata: vtkPolyData, path: str | os.PathLike[str], convention: str = "LPS") -> Path:
    """Write a surface as STL (binary), OBJ or PLY (binary), chosen by the file suffix.

    Parameters
    ----------
    polydata
        Mesh with points in world LPS mm (as this module makes them).
    path
        Output file; the suffix picks the format.
    convention
        ``"LPS"`` (DICOM, medview) or ``"RAS"`` (3D Slicer files, NIfTI tools, most 3D printing
        workflows): RAS negates x and y.  The convention is written into the file: the STL header, a
        PLY ``comment`` and an OBJ ``#`` comment line.

    The file appears complete or not at all: it is written to a temporary file in the same folder and
    renamed over ``path``.
    """
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MedviewError(f"Cannot write a surface as '{out.suffix or out.name}': use one of "
                           f"{', '.join(MESH_SUFFIXES)}", path=str(out))
    convention = str(convention).upper()
    if convention not in _CONVENTIONS:
        raise MedviewError(f"Unknown coordinate convention '{convention}': use LPS or RAS")
    if polydata is None or polydata.GetNumberOfCells() == 0:
        raise MedviewError("The surface is empty; there is nothing to write", path=str(out))
    mesh = _triangles(_in_convention(polydata, convention))
    header = _header_text(convention)
    if not out.parent.is_dir():
        raise WriteError(f"Cannot write in the folder {out.parent}: it does not exist", path=str(out))
    # The one atomic writer: temporary file beside the output, fsync, rename; the file gets the user's
    # umask (or the replaced file's mode), not mkstemp's 0600.
    with atomic_path(out) as tmp:
        tmp_name = str(tmp)
        if suffix == ".stl":
            writer = vtkSTLWriter()
            writer.SetFileTypeToBinary()
            writer.SetHeader(header)
            writer.SetInputData(mesh)
            _run_writer(writer, tmp_name)
        elif suffix == ".ply":
            writer = vtkPLYWriter()
            writer.SetFileTypeToBinary()
            writer.AddComment(header)
            writer.SetInputData(mesh)
            _run_writer(writer, tmp_name)
        else:
            # vtkOBJWriter has no comment API: prepend our line to what it wrote (OBJ '#' lines are comments).
            writer = vtkOBJWriter()
            writer.SetInputData(mesh)
            _run_writer(writer, tmp_name)
            body = Path(tmp_name).read_bytes()
            Path(tmp_name).write_bytes(f"# {header}\n".encode() + body)
    return out


