"""Commands shared by the GUI, the CLI and batch jobs: validation first, then the core functions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume
from medview.io.readers import open_image, scan
from medview.io.writers import check_output_path, write_image


def describe_input(path: str, task: TaskContext | None = None) -> dict[str, Any]:
    """What ``medview info`` shows: every series found, and the files that were skipped and why."""
    found = scan(path, task=task)
    skipped = list(getattr(found, "skipped", []))
    return {
        "path": os.path.abspath(path),
        "series": [s.summary() for s in found],
        "skipped_files": len(skipped),
        "skipped_examples": [{"file": f, "reason": why} for f, why in skipped[:5]],
    }


@dataclass
class ConvertResult:
    output: str
    volume: Volume


def convert_image(input_path: str, output: str, series: str | None = None,
                  task: TaskContext | None = None) -> ConvertResult:
    """Read any supported input and write it as NIfTI, NRRD or MetaImage with exact geometry."""
    check_output_path(output)  # before spending time on reading the input
    volume = open_image(input_path, series=series, task=task)
    report(task, 1.0, f"Writing {os.path.basename(output)}", force=True)
    write_image(volume, output)
    return ConvertResult(output, volume)
