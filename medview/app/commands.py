"""Commands shared by the GUI, the CLI and batch jobs: validation first, then the core functions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from medview.core.errors import UnsupportedFormatError, WriteError
from medview.core.tasks import TaskContext, report
from medview.core.volume import Volume
from medview.io.readers import open_image, scan
from medview.io.writers import WRITE_EXTENSIONS, write_image


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


def check_output_path(output: str, overwrite: bool = True) -> None:
    """Refuse an output we cannot write *before* spending time on reading the input."""
    if not output.lower().endswith(WRITE_EXTENSIONS):
        raise UnsupportedFormatError(
            f"Cannot write {os.path.basename(output)}: the output must end in one of {', '.join(WRITE_EXTENSIONS)}")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise WriteError(f"The output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise WriteError(f"The output folder {parent} is not writable")
    if os.path.exists(output) and not overwrite:
        raise WriteError(f"{output} exists already")


def convert_image(input_path: str, output: str, series: str | None = None,
                  task: TaskContext | None = None) -> ConvertResult:
    """Read any supported input and write it as NIfTI, NRRD or MetaImage with exact geometry."""
    check_output_path(output)
    volume = open_image(input_path, series=series, task=task)
    report(task, 1.0, f"Writing {os.path.basename(output)}", force=True)
    write_image(volume, output)
    return ConvertResult(output, volume)
