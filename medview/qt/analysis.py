"""The window's analysis side: the Features and Classifier panels and the pipeline export.

Everything computed here is GUI-free underneath (``medview.app.features``, ``medview.app.classify``);
this module only places the panels and records what was computed in the study's replay log
(``ViewerState.steps``), so File > Export pipeline writes the steps a user tuned on one case as a
pipeline for ``medview batch``.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFileDialog, QMainWindow, QMenu, QMessageBox

from medview.app.viewer import ViewerState
from medview.core.errors import MedviewError

log = logging.getLogger(__name__)


class AnalysisController(QObject):
    """Owns the analysis docks and the Analysis menu of a main window."""

    def __init__(self, window: QMainWindow, state: ViewerState, menu: QMenu) -> None:
        super().__init__(window)
        from medview.qt.panels.classify import ClassifierPanel
        from medview.qt.panels.features import FeaturesPanel

        self.window, self.state = window, state
        self.features = FeaturesPanel(state)
        self.features.computed.connect(self._features_computed)
        self.classifier = ClassifierPanel()
        self.docks = {
            "Features": window._dock("Features", self.features, Qt.DockWidgetArea.RightDockWidgetArea),
            "Classifier": window._dock("Classifier", self.classifier, Qt.DockWidgetArea.RightDockWidgetArea),
        }
        first = window.findChild(type(self.docks["Features"]), "dock_Labels")
        for dock in self.docks.values():
            if first is not None:
                window.tabifyDockWidget(first, dock)
        for name in self.docks:  # the panel's workspace mode (medview.qt.modes) is made current
            window._action(f"{name} panel", lambda _=False, n=name: window.modes.show_panel(n), menu=menu)
        if first is not None:
            first.raise_()  # the label table stays the tab shown at start
        menu.addSeparator()
        self.export_action = window._action("Export &pipeline...", lambda: self.export_pipeline(), menu=menu)
        self.export_action.setToolTip("Write the steps applied to this study as a pipeline for `medview batch`")

    def _features_computed(self, result: dict) -> None:
        self.state.record_features(int(result.get("label", 1)), result.get("params"))

    def export_pipeline(self, path: str | None = None) -> str | None:
        """Ask where (unless ``path`` is given) and write the replay log as a pipeline YAML file."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.window, "Export pipeline", "pipeline.yaml",
                                                  "Pipeline (*.yaml *.yml)")
            if not path:
                return None
        try:
            warnings = self.state.export_pipeline(path)
        except (MedviewError, OSError) as exc:
            log.warning("pipeline export failed: %s", exc)
            QMessageBox.warning(self.window, "Export pipeline", str(exc))
            return None
        message = f"Pipeline written to {path}" + (f" ({'; '.join(warnings)})" if warnings else "")
        self.window.statusBar().showMessage(message, 15000)
        return path

    def shutdown(self) -> None:
        for panel in (self.features, self.classifier):
            stop = getattr(panel, "shutdown", None)
            if stop is not None:
                stop()
