"""Workspace modes: a left tool bar of Read / Segment / Analyse / AI, each showing only its own panels.

Eleven tool panels tabbed into one dock area gave tabs too narrow to read ("L...", "Me...").  A mode shows
at most :data:`MAX_TABS` tabbed panels beside the always-present Series and Window panels, so every tab
title is readable; the panels keep their state when hidden.  The chosen mode is remembered in the
window's settings.  A panel opened from the View / Analysis menus while another mode is active stays open
until the next mode change.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar, QToolBar

# panels every mode shows, outside the tabs (Labels above them)
ALWAYS = ("Series", "Studies", "PACS", "Window", "Labels")
# mode -> its tabbed panels (dock names), the first one raised
MODES: dict[str, tuple[str, ...]] = {
    "Read": ("Measurements",),
    "Segment": ("Filters", "Segmentation", "Refine labels", "Label statistics"),
    "Analyse": ("Features", "Classifier", "Label statistics", "Measurements"),
    "AI": ("AI", "Detections"),
}
SHORT_TITLES = {"Refine labels": "Refine", "Label statistics": "Label stats"}  # whole tab titles in ~330 px
MAX_TABS = 5
SETTINGS_KEY = "workspace/mode"
MODE_TIPS = {
    "Read": "Read: slices, window/level, measurements",
    "Segment": "Segment: filters, thresholds and region growing, label refinement, label statistics",
    "Analyse": "Analyse: radiomics features, classifiers, label statistics, measurements",
    "AI": "AI: model inference and detections",
}


class WorkspaceModes(QToolBar):
    """The mode bar; :meth:`set_mode` shows a mode's panels and hides the others."""

    mode_changed = Signal(str)

    def __init__(self, window: QMainWindow, settings: QSettings) -> None:
        super().__init__("Modes", window)
        self.setObjectName("toolbar_modes")
        self.setMovable(False)
        self.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.window_, self.settings = window, settings
        self.mode = ""
        self._arranged = False  # the label table moved below the histogram (once)
        self._held: dict[str, QDockWidget] = {}
        group = QActionGroup(self)
        self.actions_by_mode: dict[str, QAction] = {}
        for name in MODES:
            action = QAction(name, self)
            action.setCheckable(True)
            action.setToolTip(MODE_TIPS[name])
            action.toggled.connect(lambda checked, n=name: checked and n != self.mode and self.set_mode(n))
            group.addAction(action)
            self.addAction(action)
            self.actions_by_mode[name] = action
        window.addToolBar(Qt.ToolBarArea.LeftToolBarArea, self)

    def docks(self) -> dict[str, QDockWidget]:
        """The window's tool panels by name (the title they were made with: object name ``dock_<name>``)."""
        return {d.objectName().removeprefix("dock_"): d for d in self.window_.findChildren(QDockWidget)}

    def start(self) -> None:
        """Show the remembered mode (Read the first time); call once every panel exists."""
        name = str(self.settings.value(SETTINGS_KEY, "Read"))
        self.set_mode(name if name in MODES else "Read")

    def set_mode(self, name: str) -> None:
        if name not in MODES:
            raise ValueError(f"Unknown mode {name!r}; modes: {', '.join(MODES)}")
        docks = self.docks()
        # removeDockWidget hands a dock to Python in PySide6: without a reference it would be deleted
        # with its panel while hidden (seen: "Internal C++ object (QTableWidget) already deleted").
        self._held = docks
        for title, short in SHORT_TITLES.items():
            if title in docks:
                docks[title].setWindowTitle(short)
        wanted = [docks[t] for t in MODES[name] if t in docks]
        area = Qt.DockWidgetArea.RightDockWidgetArea
        # Taken out of the layout and put back in the mode's arrangement: moving docks between tab groups
        # with tabify/split leaves stale tab bars drawn over the views (seen in screenshots).
        for title, dock in docks.items():
            if title not in ALWAYS:
                self.window_.removeDockWidget(dock)
        labels, window_dock = docks.get("Labels"), docks.get("Window")
        if labels is not None and window_dock is not None and not self._arranged:
            self.window_.removeDockWidget(labels)
            self.window_.addDockWidget(area, labels)
            self.window_.splitDockWidget(window_dock, labels, Qt.Orientation.Vertical)
            labels.show()
            self._arranged = True
        first = wanted[0] if wanted else None
        for dock in wanted:
            self.window_.addDockWidget(area, dock)
            if dock is first:
                if labels is not None:
                    self.window_.splitDockWidget(labels, dock, Qt.Orientation.Vertical)
            else:
                self.window_.tabifyDockWidget(first, dock)
            dock.show()
        if first is not None:
            first.raise_()
        self._readable_tabs()
        self.mode = name
        self.actions_by_mode[name].setChecked(True)  # the group unchecks the others; toggled sees mode == name
        self.settings.setValue(SETTINGS_KEY, name)
        self.mode_changed.emit(name)

    def show_panel(self, name: str) -> None:
        """Bring a panel to the front, switching to the first mode that has it when the current one doesn't."""
        if name not in MODES.get(self.mode, ()) and name not in ALWAYS:
            mode = next((m for m, panels in MODES.items() if name in panels), None)
            if mode is None:
                raise ValueError(f"No mode shows the {name!r} panel")
            self.set_mode(mode)
        dock = self.docks().get(name)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _readable_tabs(self) -> None:
        # Qt elides dock tab titles to fit; with at most MAX_TABS short titles whole ones fit, and a scroll
        # arrow beats an unreadable title if the dock is made narrow.
        for bar in self.window_.findChildren(QTabBar):
            bar.setElideMode(Qt.TextElideMode.ElideNone)
            bar.setUsesScrollButtons(True)

    def visible_tabs(self) -> list[str]:
        """Titles of the tabbed panels open now (shown or behind another tab), for tests and screenshots."""
        return [t for t, d in self.docks().items() if t not in ALWAYS and not d.isHidden()]
