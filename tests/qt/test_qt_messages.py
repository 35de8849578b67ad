"""Qt's own chatter never reaches the user's terminal: the offscreen platform's 'This plugin does not support
propagateSizeHints()' lines were printed by every screenshot run; Qt's messages go through medview's log."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from medview.app.samples import sample_path

REPO = Path(__file__).resolve().parents[2]


def test_a_screenshot_run_prints_only_medviews_lines(tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run(
        [sys.executable, "-c", "from medview.cli.main import main; raise SystemExit(main())", "view",
         str(sample_path("chest_ct")), "--screenshot", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 10_000
    foreign = [ln for ln in run.stderr.splitlines() if ln.strip() and not ln.startswith("medview")]
    assert foreign == [], run.stderr


def test_qt_warnings_reach_medviews_log(caplog) -> None:
    from PySide6.QtCore import qWarning

    from medview.qt.app import configure

    configure()
    with caplog.at_level(logging.WARNING, logger="medview.qt"):
        qWarning("a made-up Qt warning")
        qWarning("This plugin does not support propagateSizeHints()")
    messages = [r.getMessage() for r in caplog.records if r.name == "medview.qt"]
    assert messages == ["Qt: a made-up Qt warning"]
