"""Issue 17 item 3 on the command line: a required parameter left out is a usage error (exit 2), not a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medview.app.samples import sample_path


def test_filter_without_a_required_parameter_is_a_usage_error(tmp_path: Path) -> None:
    """``medview filter canny`` without ``upper`` exits 2 with one line naming it, and writes nothing."""
    out = tmp_path / "edges.nii.gz"
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "filter", "canny", str(sample_path("chest_ct")),
                        str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "canny needs the parameter upper" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_threshold_without_either_bound_is_a_usage_error(tmp_path: Path) -> None:
    """``medview segment threshold`` with neither lower nor upper: exit 2 before the image is read."""
    out = tmp_path / "mask.nii.gz"
    r = subprocess.run([sys.executable, "-m", "medview.cli.main", "segment", "threshold",
                        str(sample_path("chest_ct")), str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "threshold needs a value for lower or upper" in lines[0], r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
