"""``medview view --layout 3d --screenshot`` waits until the 3D panel shows full quality: with frames drawn from
the event loop the save could run inside a frame and write the 3D view black (nothing shown yet) or coarse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medview.app.samples import sample_path

REPO = Path(__file__).resolve().parents[2]


def test_a_3d_screenshot_shows_the_rendered_volume(tmp_path: Path) -> None:
    out = tmp_path / "shot3d.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MEDVIEW_DATA_DIR": str(tmp_path / "data")}
    for _ in range(2):  # the failure depended on timing
        run = subprocess.run([sys.executable, "-m", "medview.cli.main", "view", str(sample_path("chest_ct")),
                              "--layout", "3d", "--screenshot", str(out)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        picture = np.asarray(Image.open(out).convert("L"), dtype=float)
        h, w = picture.shape
        centre = picture[h // 4: 3 * h // 4, w // 3: 2 * w // 3]  # inside the 3D view, which fills the middle
        assert (centre > 60).mean() > 0.15, "the 3D view is black"
