"""The reading workstation's main window: series browser, MPR views, tools, panels, status bar.

The window composes widgets and wires them to the GUI-free :class:`ViewerState`; long jobs (scan,
load, label import) run in the one worker mechanism (:mod:`medview.qt.workers`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import psutil
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolBar,
    QWidget,
)

from medview.app.editing import BrushSettings
from medview.app.label_maps import label_map_warnings, open_label_map_with_history
from medview.app.samples import sample_path
from medview.app.viewer import COLORMAPS, SLAB_MODES, ViewerState, window_presets_file
from medview.core.errors import MedviewError
from medview.core.volume import Volume
from medview.io.readers import load_info, scan, scan_studies
from medview.qt.analysis import AnalysisController
from medview.qt.editing import EditingController
from medview.qt.modes import WorkspaceModes
from medview.qt.panels.histogram import HistogramPanel
from medview.qt.panels.labels import LabelsPanel
from medview.qt.panels.measurements import MeasurementsPanel
from medview.qt.panels.query_retrieve import QueryRetrievePanel
from medview.qt.panels.series_browser import SeriesBrowser
from medview.qt.panels.study_browser import StudyBrowser
from medview.qt.text import display_date
from medview.qt.views.slice_view import TOOLS
from medview.qt.views.view_grid import LAYOUTS, ViewGrid
from medview.qt.workers import Worker, start

log = logging.getLogger(__name__)
MAX_RECENT = 10
# how long a loader waits for the window to show its middle slice before it reads the others anyway
MIDDLE_SLICE_WAIT_S = 0.25

# Mouse gestures and keys the views handle themselves; every menu or toolbar action's shortcut is listed
# from the actions (MainWindow.shortcut_rows), so the list cannot miss one.
GESTURES = [
    ("Wheel, Up/Down, PageUp/PageDown", "scroll slices"), ("Ctrl+wheel", "zoom"), ("Middle drag", "pan"),
    ("Right drag", "window/level"), ("Double-click", "reset zoom"), ("Delete", "delete selected measurement"),
]


def save_pixmap(pixmap, path: str, fmt: str | None = "PNG") -> bool:
    """Save a QPixmap/QImage through the atomic writer (a failed or killed save leaves the old file)."""
    from medview.io.atomic import atomic_path

    try:
        with atomic_path(path) as tmp:
            if not pixmap.save(str(tmp), fmt):
                raise MedviewError(f"Could not write {path}")
    except MedviewError:
        return False
    return True


def _title(volume: Volume) -> str:
    """What the window's title names: the series' description, else the file or folder it came from; a series
    opened from the study database (its source is the database file) by its modality, number and date.  Never a
    patient's name or ID."""
    meta = volume.metadata
    if meta.series_description:
        return meta.series_description
    source = os.path.basename(meta.source.rstrip("/"))
    if source and not source.endswith(".sqlite"):
        return source
    when = display_date(meta.study_date)
    number = f"series {meta.series_number}" if meta.series_number is not None else "series"
    return " ".join(part for part in (meta.modality, number, f"of {when}" if when else "") if part)


class MainWindow(QMainWindow):
    """Top-level window.  ``load_finished`` fires after a volume is fully shown (tests, screenshots)."""

    load_finished = Signal(object)
    load_failed = Signal(str)
    load_cancelled = Signal()
    seg_exported = Signal(str)  # the DICOM SEG file written

    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("medview")
        self.resize(1400, 860)
        self.setAcceptDrops(True)
        self.settings = settings or QSettings("medview", "medview")
        self.state = ViewerState()
        self.volume: Volume | None = None
        self.worker: Worker | None = None
        self._middle_shown = threading.Event()  # set once the loading series' middle slice is on screen
        self.current_path = ""
        self.current_uid = ""
        self._loading_info = None
        self.loaded_info = None  # the scanned series on screen (SeriesInfo for DICOM)
        self.grid = ViewGrid(self.state)
        self.setCentralWidget(self.grid)
        self.cine = QTimer(self)
        self.cine.timeout.connect(self._cine_step)

        self.browser = SeriesBrowser()
        self.browser.series_activated.connect(self._series_activated)
        self.measurements = MeasurementsPanel(self.state)
        self.brush = BrushSettings()  # one brush for all views and the labels panel
        self.labels_panel = LabelsPanel(self.state, self.brush)
        self.histogram = HistogramPanel(self.state)
        series_dock = self._dock("Series", self.browser, Qt.DockWidgetArea.LeftDockWidgetArea)
        # the study list (the local database) beside the series of what is open
        self.studies = StudyBrowser()
        self.studies.hide_phi = lambda: self.state.hide_phi
        self.studies.open_requested.connect(self.open_studies)
        self.studies.series_requested.connect(lambda study, series: self.open_path(study, series))
        studies_dock = self._dock("Studies", self.studies, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(series_dock, studies_dock)
        self.pacs = QueryRetrievePanel()
        self.pacs.retrieved.connect(lambda _uid: self.studies.apply_filters())
        pacs_dock = self._dock("PACS", self.pacs, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.tabifyDockWidget(studies_dock, pacs_dock)
        QTimer.singleShot(0, self.pacs, self.pacs.start_listener)  # medview's Storage SCP, when nodes.toml asks for it
        series_dock.raise_()
        window_dock = self._dock("Window", self.histogram, Qt.DockWidgetArea.RightDockWidgetArea)
        labels_dock = self._dock("Labels", self.labels_panel, Qt.DockWidgetArea.RightDockWidgetArea)
        measure_dock = self._dock("Measurements", self.measurements, Qt.DockWidgetArea.RightDockWidgetArea)
        self.tabifyDockWidget(labels_dock, measure_dock)
        labels_dock.raise_()
        self.resizeDocks([series_dock, window_dock], [250, 300], Qt.Orientation.Horizontal)
        self.resizeDocks([window_dock, labels_dock], [160, 500], Qt.Orientation.Vertical)

        self.position_label = QLabel("")
        self.memory_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_load)
        bar = self.statusBar()
        bar.addWidget(self.position_label, 1)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)
        bar.addPermanentWidget(self.memory_label)
        for view in self.grid.views.values():
            view.hovered.connect(self.position_label.setText)  # each view reports at most every HOVER_MS
            view.brush = self.brush
            view.message.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.memory_timer = QTimer(self)
        self.memory_timer.timeout.connect(self._show_memory)
        self.memory_timer.start(2000)
        self._show_memory()
        self._build_actions()
        self.state.subscribe("volume", self._volume_shown)
        # the value under the mouse was of the image shown before (another study, or the volume a filter replaced)
        self.state.subscribe("volume", self.position_label.clear)
        self.state.subscribe("window", self._window_shown)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # -- actions, menus, toolbar ------------------------------------------------------------------
    def _action(self, text: str, slot, shortcut: str | QKeySequence | None = None, checkable: bool = False,
                menu=None, toolbar: QToolBar | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        self.addAction(action)
        if menu is not None:
            menu.addAction(action)
        if toolbar is not None:
            toolbar.addAction(action)
        return action

    def _build_actions(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        edit_menu = self.menuBar().addMenu("&Edit")
        view_menu = self.menuBar().addMenu("&View")
        tools_menu = self.menuBar().addMenu("&Tools")
        analysis_menu = self.menuBar().addMenu("&Analysis")
        help_menu = self.menuBar().addMenu("&Help")
        tb = QToolBar("Main")
        tb.setObjectName("main_toolbar")
        self.addToolBar(tb)

        self._action("&Open file...", self._choose_file, QKeySequence.StandardKey.Open, menu=file_menu)
        self._action("Open DICOM &folder...", self._choose_folder, "Ctrl+Shift+O", menu=file_menu)
        self._action("Open &label map or segmentation (SEG)...", self._choose_labels, "Ctrl+L", menu=file_menu)
        self.export_seg_action = self._action("Export labels as DICOM &SEG...", self.choose_seg_output,
                                              menu=file_menu)
        file_menu.addSeparator()
        self._action("DICOM &nodes...", lambda: self.pacs.edit_nodes(), menu=file_menu)
        self.recent_menu = file_menu.addMenu("Recent")
        self._fill_recent()
        self._tidy_partials()
        file_menu.addSeparator()
        self._action("Snapshot of the &view...", lambda: self.snapshot("view"), "Ctrl+S", menu=file_menu)
        self._action("Snapshot of the &layout...", lambda: self.snapshot("layout"), "Ctrl+Shift+S", menu=file_menu)
        self._action("&Export measurements (CSV)...", self.measurements._choose_csv, menu=file_menu)
        file_menu.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, menu=file_menu)

        layouts = QActionGroup(self)
        self.layout_actions = {}
        for name, key in zip(LAYOUTS, ("Ctrl+1", "Ctrl+3", "Ctrl+4", "Ctrl+5"), strict=True):
            a = self._action(name.upper() if name == "3d" else name,
                             lambda checked, n=name: checked and self.set_layout(n), key, True, view_menu, tb)
            layouts.addAction(a)
            self.layout_actions[name] = a
        self.layout_actions["1x3"].setChecked(True)
        self._action("Close the 3D panel", self.grid.close_3d, menu=view_menu)
        self.grid.panel_3d_changed.connect(self._panel_3d_changed)
        tb.addSeparator()

        tools = QActionGroup(self)
        self.tool_actions = {}
        for tool, key in zip(TOOLS, ("C", "D", "A", "R", "E", "F", "B", "X", "G"), strict=True):
            label = "freehand" if tool == "polygon" else tool
            a = self._action(label.capitalize(), lambda checked, t=tool: checked and self.set_tool(t), key, True,
                             tools_menu, tb)
            tools.addAction(a)
            self.tool_actions[tool] = a
        self.tool_actions["crosshair"].setChecked(True)
        tb.addSeparator()

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("Image layer shown: the study or a model's output on its grid")
        self.layer_combo.activated.connect(lambda i: self._show_layer(self.layer_combo.itemText(i)))
        self.layer_action = tb.addWidget(self.layer_combo)
        self.layer_action.setVisible(False)
        self.state.subscribe("layers", self._layers_changed)
        self.state.subscribe("volume", self._layers_changed)
        self.window_combo = QComboBox()
        self.window_combo.setMinimumWidth(150)
        self.window_combo.setToolTip("Window/level preset")
        self.window_combo.activated.connect(lambda i: self._apply_window(self.window_combo.itemText(i)))
        tb.addWidget(self.window_combo)
        for preset in window_presets_file()["CT"]:
            self._action(f"{preset['name']} window", lambda _=False, n=preset["name"]: self._apply_window(n),
                         preset["key"], menu=view_menu)
        self._action("Automatic window", lambda: self._apply_window("Auto 1-99%"), "0", menu=view_menu)
        self.invert_action = self._action("Invert", self.state.set_invert, "I", True, view_menu, tb)
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(COLORMAPS)
        self.colormap_combo.setToolTip("Colormap (for MR, PET, parametric maps)")
        self.colormap_combo.currentTextChanged.connect(self.state.set_colormap)
        tb.addWidget(self.colormap_combo)
        tb.addSeparator()

        self.slab_mode = QComboBox()
        self.slab_mode.addItems([m.upper() for m in SLAB_MODES])
        self.slab_mode.setCurrentText("MIP")
        self.slab_mm = QDoubleSpinBox()
        self.slab_mm.setRange(0.0, 200.0)
        self.slab_mm.setSuffix(" mm slab")
        self.slab_mm.setSingleStep(1.0)
        self.slab_mm.setToolTip("Thick slab thickness (0 = thin slice)")
        self.slab_mode.currentTextChanged.connect(self._slab_changed)
        self.slab_mm.valueChanged.connect(self._slab_changed)
        tb.addWidget(self.slab_mode)
        tb.addWidget(self.slab_mm)
        self._action("Rotate -5°", lambda: self.state.rotate(self.grid.active, -5.0), "[", menu=view_menu)
        self._action("Rotate +5°", lambda: self.state.rotate(self.grid.active, 5.0), "]", menu=view_menu)
        self._action("Orthogonal", self.state.reset_rotation, "O", menu=view_menu, toolbar=tb)
        tb.addSeparator()

        self.cine_action = self._action("Cine", self._toggle_cine, "Space", True, view_menu, tb)
        self.cine_fps = QSpinBox()
        self.cine_fps.setRange(1, 60)
        self.cine_fps.setValue(10)
        self.cine_fps.setSuffix(" fps")
        self.cine_fps.valueChanged.connect(lambda v: self.cine.setInterval(int(1000 / v)))
        tb.addWidget(self.cine_fps)
        self.phi_action = self._action("Hide PHI", self.state.set_hide_phi, "P", True, view_menu, tb)
        self.phi_action.setToolTip("Hide patient name, ID and date everywhere (demo stations, screenshots)")
        self._action("Reset zoom", self.reset_zoom, "Home", menu=view_menu)
        self._action("Delete measurement", self.measurements.delete_selected, QKeySequence.StandardKey.Delete,
                     menu=tools_menu)
        self._action("Keyboard shortcuts", self.show_shortcuts, "F1", menu=help_menu)
        self.editing = EditingController(self, self.state, edit_menu)
        self.analysis = AnalysisController(self, self.state, analysis_menu)
        self.modes = WorkspaceModes(self, self.settings)
        self.modes.start()

    # -- user actions ------------------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        try:
            self.grid.set_layout(name)
        except Exception as exc:  # no OpenGL at all: say so, keep reading slices
            log.error("3D panel failed: %s", exc, exc_info=True)
            QMessageBox.warning(self, "3D view", f"The 3D view cannot start on this machine: {exc}")
            self.grid.close_3d()
            name = "1x3"
            self.grid.set_layout(name)
        self.layout_actions[name].setChecked(True)

    def _panel_3d_changed(self, panel) -> None:
        if panel is None and self.grid.layout_name in self.layout_actions:
            self.layout_actions[self.grid.layout_name].setChecked(True)

    def set_tool(self, tool: str) -> None:
        for view in self.grid.views.values():
            view.tool = tool
            view._pending = []
            view.preview.clear()
        self.tool_actions[tool].setChecked(True)

    def _apply_window(self, name: str) -> None:
        if self.state.volume is None:
            return
        try:
            self.state.apply_window(name)
        except MedviewError as exc:
            self.statusBar().showMessage(str(exc), 5000)

    def _slab_changed(self, *_args) -> None:
        self.state.set_slab(self.slab_mm.value(), self.slab_mode.currentText().lower())

    def _toggle_cine(self, on: bool) -> None:
        if on:
            self.cine.start(int(1000 / self.cine_fps.value()))
        else:
            self.cine.stop()

    def _cine_step(self) -> None:
        if self.state.volume is None:
            return
        view = self.grid.active
        before = self.state.cursor.copy()
        self.state.scroll(view, 1)
        if np.allclose(before, self.state.cursor):  # at the last slice: loop to the first
            self.state.scroll(view, -100_000)

    def reset_zoom(self) -> None:
        for view in self.grid.views.values():
            view.reset_zoom()

    def snapshot(self, what: str, path: str | None = None) -> str | None:
        """Save the active view (``view``) or the whole layout (``layout``) as PNG."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save snapshot", f"medview-{what}.png", "PNG (*.png)")
            if not path:
                return None
        widget = self.grid.views[self.grid.active] if what == "view" else self.grid
        if not save_pixmap(self.grab_with_3d(widget), path):
            QMessageBox.warning(self, "Snapshot", f"Could not write {path}")
            return None
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return path

    def grab_with_3d(self, widget=None):
        """``widget.grab()`` with the 3D panel's picture painted in (a grab of a GL widget is black)."""
        widget = widget or self
        pixmap = widget.grab()
        view = self.grid.view_3d
        if view is not None and view.isVisible() and (widget is view or widget.isAncestorOf(view)):
            view.paint_capture(pixmap, widget)
        return pixmap

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(keys, what they do) for F1: the views' gestures, then every action with a shortcut."""
        rows = list(GESTURES)
        seen: set[str] = set()
        for action in self.findChildren(QAction):
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            name = action.text().replace("&", "").rstrip(".").strip()
            if keys and name and keys not in seen:
                seen.add(keys)
                rows.append((keys, name))
        return rows

    def show_shortcuts(self) -> None:
        from html import escape

        text = escape("\n".join(f"{k:34s} {v}" for k, v in self.shortcut_rows()))
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<pre>{text}</pre>")
        box.show()

    def _show_memory(self) -> None:
        rss = psutil.Process().memory_info().rss
        self.memory_label.setText(f"mem {rss / 2**20:.0f} MB")

    # -- opening ---------------------------------------------------------------------------------
    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if path:
            self.open_path(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", "", "Images (*.dcm *.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.zip *.png *.jpg "
            "*.tif *.tiff);;All files (*)")
        if path:
            self.open_path(path)

    def _choose_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open label map or segmentation", "",
                                              "Label maps and DICOM SEG (*.nii *.nii.gz *.nrrd *.mha *.mhd *.dcm);;"
                                              "All files (*)")
        if path:
            self.open_labels(path)

    def _seg_source(self):
        """The DICOM series on screen that a SEG can reference, or a reason why there is none."""
        info = self.loaded_info
        if self.state.volume is None or info is None:
            return None, "Open the DICOM series the labels were drawn on first."
        if not hasattr(info, "series_uid") or not getattr(info, "frames", None):
            return None, ("A DICOM SEG references the DICOM images it was drawn on; this image was not read "
                          "from DICOM. Save the labels as NIfTI or NRRD instead (Labels panel: Save).")
        if self.state.labels is None or not self.state.labels.present_values():
            return None, "There are no labels to export: draw or load a label map first."
        return info, ""

    def choose_seg_output(self) -> None:
        info, reason = self._seg_source()
        if info is None:
            QMessageBox.information(self, "Export DICOM SEG", reason)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export labels as DICOM SEG", "seg.dcm", "DICOM (*.dcm)")
        if path:
            self.export_seg(path)

    def export_seg(self, path: str, description: str = "Segmentation") -> Worker | None:
        """Write the label map as a DICOM SEG referencing the series on screen (in a worker)."""
        from medview.io.seg import write_seg

        info, reason = self._seg_source()
        if info is None:
            self._on_failed(reason)
            return None
        notes: list[str] = []  # highdicom's warnings, shown in the status bar rather than printed
        worker = Worker(write_seg, self.state.labels, info, path, description=description, warnings=notes)
        worker.signals.finished.connect(lambda written: self._seg_written(written, notes))
        self._run(worker, f"Writing DICOM SEG {os.path.basename(path)}...")
        return worker

    def _seg_written(self, path: str, notes: list[str] | None = None) -> None:
        self._end_load()
        for note in notes or []:
            log.warning("%s", note)
        self.statusBar().showMessage(f"DICOM SEG written: {path}" + "".join(f"; {n}" for n in notes or []), 15000)
        self.seg_exported.emit(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def _tidy_partials(self) -> threading.Thread:
        """At start, remove killed writes' leftovers (medview's own ``.partial-*`` names, writer dead or
        stale) beside the studies and label maps opened recently; in a thread, as folders may be slow."""
        from medview.io.atomic import remove_stale_partials

        folders = {os.path.dirname(os.path.abspath(p)) for p in self.recent_files()}
        folders |= {os.path.abspath(p) for p in self.recent_files() if os.path.isdir(p)}
        thread = threading.Thread(target=lambda: [remove_stale_partials(f) for f in sorted(folders)],
                                  name="tidy-partials", daemon=True)
        thread.start()
        return thread

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent", [])
        return [value] if isinstance(value, str) else list(value or [])

    def _remember(self, path: str) -> None:
        recent = [p for p in self.recent_files() if p != path]
        self.settings.setValue("recent", [path, *recent][:MAX_RECENT])
        self._fill_recent()

    def open_path(self, path: str, series: str | None = None) -> None:
        """Scan ``path`` in a worker, list its series, then load ``series`` (or the largest one)."""
        self._cancel_running()
        worker = Worker(scan, path)
        worker.signals.finished.connect(lambda found: self._scanned(path, found, series))
        self._run(worker, f"Scanning {path}...")

    def open_studies(self, uids: list[str]) -> None:
        """Studies of the study database: their series in one list, the first study's largest series shown."""
        if len(uids) == 1:
            self.open_path(uids[0])
            return
        self._cancel_running()
        worker = Worker(scan_studies, list(uids))
        worker.signals.finished.connect(lambda found: self._scanned_studies(list(uids), found))
        self._run(worker, f"Reading {len(uids)} studies...")

    def _scanned_studies(self, uids: list[str], found: list) -> None:
        label = f"{len(uids)} studies"
        self.browser.set_scan(label, found, defer_thumbnails=True)
        self._listing = label  # its series are loaded from the list, not by scanning the label
        if not found:
            self._on_failed("None of these studies has a file on the disk any more")
            return
        first = [s for s in found if s.study_uid == uids[0]] or list(found)
        chosen = max(first, key=lambda s: (getattr(s, "kind", "volume") == "volume", s.geometry.shape[0]))
        for uid in reversed(uids):
            self._remember(uid)
        self.load_series(chosen.study_uid, chosen)

    def _scanned(self, path: str, found: list, series: str | None) -> None:
        self._listing = None
        self.browser.set_scan(path, found, defer_thumbnails=True)
        if not found:
            self._on_failed(f"Nothing to open in {path}")
            return
        chosen = None
        if series:
            chosen = next((s for s in found if series in (s.uid, getattr(s, "series_uid", None))), None)
            if chosen is None:
                self._on_failed(f"Series {series} is not in {path}")
                return
        if chosen is None:
            chosen = max(found, key=lambda s: (getattr(s, "kind", "volume") == "volume", s.geometry.shape[0]))
        self._remember(path)
        self.load_series(path, chosen)

    def _series_activated(self, path: str, uid: str) -> None:
        if getattr(self, "_listing", None) == path:  # the series of several studies
            info = next((s for s in self.browser.series if s.uid == uid), None)
            if info is not None:
                self.load_series(info.study_uid, info)
                return
        self.open_path(path, uid)

    def load_series(self, path: str, info) -> None:
        """Load one scanned series; the middle slice shows as soon as it is decoded."""
        self._cancel_running()
        worker = Worker(load_info, info)
        shown = self._middle_shown = threading.Event()

        def middle_slice(volume: Volume, index: int) -> None:  # called in the loading thread
            worker.signals.partial.emit(volume, index)
            # the other slices are read once the window has shown this one: read beside it, the reading
            # threads' turns at the GIL stretched that event-loop turn to 50-60 ms (perf, py-spy)
            shown.wait(MIDDLE_SLICE_WAIT_S)

        worker.kwargs["on_middle_slice"] = middle_slice
        worker.signals.partial.connect(self._on_partial)
        worker.signals.finished.connect(self._on_loaded)
        self.current_path, self.current_uid = path, info.uid
        self._loading_info = info
        self.browser.select_uid(info.uid)
        self._run(worker, f"Loading {info.uid}...")

    def open_labels(self, path: str) -> None:
        if self.state.volume is None:
            self._on_failed("Open an image before its label map")
            return
        worker = Worker(open_label_map_with_history, path, self.state.volume)
        worker.signals.finished.connect(lambda result: self._labels_loaded(*result))
        self._run(worker, f"Reading labels {path}...")

    def _labels_loaded(self, labels, history=None, history_message: str | None = None) -> None:
        self._end_load()
        try:
            self.state.set_labels(labels, history)
        except MedviewError as exc:
            self._on_failed(str(exc))
            return
        warnings = label_map_warnings(labels) + ([history_message] if history_message else [])
        if warnings:  # e.g. resampled from another grid: the user must know
            self.statusBar().showMessage("Labels: " + " | ".join(warnings), 20000)

    def _run(self, worker: Worker, message: str) -> None:
        worker.signals.progress.connect(self._on_progress)
        worker.signals.failed.connect(self._on_failed)
        worker.signals.cancelled.connect(self._on_cancelled)
        self.worker = worker
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.statusBar().showMessage(message)
        start(worker)

    def _cancel_running(self) -> None:
        if self.worker is not None and not self.worker.done:
            self.worker.cancel()
        self._middle_shown.set()  # a loader waiting for its middle slice to be shown stops at once

    def cancel_load(self) -> None:
        if self.worker is not None:
            self.worker.cancel()

    def _on_progress(self, fraction: float, message: str) -> None:
        if self.worker is None or self.sender() is not self.worker.signals:
            return
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(message[:40] or "%p%")

    def _on_partial(self, volume: Volume, index: int) -> None:
        try:
            if self.worker is None or self.sender() is not self.worker.signals:
                return
            self.state.set_volume(volume, loading=True)
        finally:
            self._middle_shown.set()  # the loader reads the rest now

    def _end_load(self) -> None:
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.statusBar().clearMessage()

    def _on_loaded(self, volume: Volume) -> None:
        if self.worker is None or self.sender() is not self.worker.signals:
            return
        self._end_load()
        self.volume = volume
        self.loaded_info = self._loading_info  # the series on screen (a SEG export references it)
        same = self.state.volume is volume
        self.state.set_volume(volume, keep_view=same)
        if volume.geometry.shape[0] == 1 and self.grid.layout_name != "1x1":
            # a single 2D image (radiograph, photo): the coronal and sagittal views would be one line each
            self.grid.set_active("axial")
            self.set_layout("1x1")
        self._auto_labels()
        self.browser.start_thumbnails()
        self.grid.preload_3d()
        self.setWindowTitle(f"medview - {_title(volume)}")
        if volume.warnings:
            self.statusBar().showMessage("Warning: " + " | ".join(volume.warnings), 15000)
        self.load_finished.emit(volume)

    def _auto_labels(self) -> None:
        """The bundled chest CT comes with its tumour label: show it, as a demo station should."""
        try:
            sample = sample_path("chest_ct")
        except MedviewError:
            return
        if self.current_path and Path(self.current_path).resolve() == sample.resolve():
            self.open_labels(str(sample_path("chest_ct_label")))

    def _layers_changed(self) -> None:
        names = list(self.state.layers)
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        self.layer_combo.setCurrentText(self.state.current_layer)
        self.layer_combo.blockSignals(False)
        self.layer_action.setVisible(len(names) > 1)

    def _show_layer(self, name: str) -> None:
        try:
            self.state.show_layer(name)
        except MedviewError as exc:
            self.statusBar().showMessage(str(exc), 8000)

    def _volume_shown(self) -> None:
        self.window_combo.blockSignals(True)
        self.window_combo.clear()
        self.window_combo.addItems([p.name for p in self.state.window_choices()])
        self.window_combo.setCurrentText(self.state.window.name)
        self.window_combo.blockSignals(False)

    def _window_shown(self) -> None:
        """Keep the preset box truthful: the preset's name, or 'Custom' after a drag."""
        name = self.state.window.name
        self.window_combo.blockSignals(True)
        if self.window_combo.findText("Custom") < 0:
            self.window_combo.addItem("Custom")
        self.window_combo.setCurrentText(name if self.window_combo.findText(name) >= 0 else "Custom")
        self.window_combo.blockSignals(False)

    def _on_failed(self, message: str) -> None:
        self._end_load()
        self.browser.start_thumbnails()
        log.warning("%s", message)
        self.load_failed.emit(message)
        if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
            QMessageBox.warning(self, "medview", message)
        else:
            self.statusBar().showMessage(f"Error: {message}")

    def _on_cancelled(self) -> None:
        self._end_load()
        self.statusBar().showMessage("Cancelled", 5000)
        self.load_cancelled.emit()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Cancel every job this window started; the application waits for them before it exits."""
        self._cancel_running()
        self.browser.shutdown()
        self.studies.shutdown()
        self.pacs.shutdown()
        self.histogram.cancel()
        self.editing.shutdown()
        self.analysis.shutdown()
        self.grid.shutdown()
        self.cine.stop()
        self.memory_timer.stop()
        super().closeEvent(event)
