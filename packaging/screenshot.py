"""Render the README screenshot: the bundled chest CT in the 2x2 layout (three MPR views and the 3D panel),
crosshair on the tumour, the 3D view cut at the coronal plane through it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/screenshot.py packaging/screenshot.png
"""

from __future__ import annotations

import sys

import numpy as np
from PySide6.QtCore import QThreadPool, QTimer

from medview.app.samples import sample_path
from medview.qt.app import configure
from medview.qt.main_window import MainWindow


def main(out: str) -> int:
    app = configure()
    window = MainWindow()
    window.resize(1600, 900)
    window.show()
    window.set_layout("2x2")

    def labels_ready() -> None:
        labels = window.state.labels
        if labels is None or QThreadPool.globalInstance().activeThreadCount():
            QTimer.singleShot(50, labels_ready)
            return
        z, y, x = (int(np.median(a)) for a in np.nonzero(labels.array))
        window.state.set_cursor(labels.geometry.index_to_world([x, y, z]))
        window.state.apply_window("Lung")
        for view in window.grid.views.values():
            centre = view.world_to_view(window.state.cursor)
            view.view_box.setRange(xRange=(centre.x() - 110, centre.x() + 110),
                                   yRange=(centre.y() - 110, centre.y() + 110), padding=0)
        panel = window.grid.view_3d
        panel.clip.setCurrentIndex(2)  # cut at the coronal plane through the crosshair: the tumour shows
        panel._update_clipping()

        def save() -> None:
            if "label-1" not in panel.scene.actors or QThreadPool.globalInstance().activeThreadCount():
                QTimer.singleShot(100, save)
                return
            panel.scene.end_interaction()
            window.grab_with_3d().save(out)
            app.quit()

        QTimer.singleShot(300, save)

    window.load_finished.connect(lambda _v: QTimer.singleShot(100, labels_ready))
    window.open_path(str(sample_path("chest_ct")))
    app.exec()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "packaging/screenshot.png"))
