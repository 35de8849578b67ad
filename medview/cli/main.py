"""The ``medview`` command.

``medview`` alone opens the workstation on the bundled chest CT; ``medview PATH`` or ``medview view
PATH`` opens a study; ``medview info`` and ``medview convert`` work without a display.
Exit codes: 0 ok, 2 usage error, 3 bad input (one line on stderr, no traceback), 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from medview import __version__
from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext

VERBS = ("info", "convert", "view")


def _progress_printer() -> TaskContext | None:
    """A one-line progress bar on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def show(fraction: float, message: str) -> None:
        filled = int(fraction * 30)
        elapsed = time.monotonic() - start
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction * 100:5.1f}% {elapsed:5.1f}s "
                         f"{message[:40]:40s}")
        if fraction >= 1.0:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return TaskContext(on_progress=show, min_interval_s=0.1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medview", description="Medical imaging workstation. Without a command, opens the GUI.")
    parser.add_argument("--version", action="version", version=f"medview {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")

    info = sub.add_parser("info", help="list the series in a file, folder or zip (no pixels read)")
    info.add_argument("path", help="DICOM folder/file/zip, NIfTI, NRRD, MHA or picture")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    convert = sub.add_parser("convert", help="convert to .nii.gz/.nii/.nrrd/.mha with exact geometry")
    convert.add_argument("input")
    convert.add_argument("output", help="output file; the extension picks the format")
    convert.add_argument("--series", help="series UID (as `medview info` lists it) when the input has several")

    view = sub.add_parser("view", help="open files or folders in the workstation")
    view.add_argument("paths", nargs="*")
    view.add_argument("--series", help="series UID to open first")
    view.add_argument("--screenshot", metavar="PNG", help="render offscreen, save a PNG and exit")
    return parser


def _print_info(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['path']}: {len(result['series'])} series")
    for s in result["series"]:
        size = "x".join(str(n) for n in s["size"])
        spacing = " x ".join(f"{v:g}" for v in s["spacing_mm"])
        print(f"\n  {s['uid']}")
        print(f"    {s.get('modality') or '-':4s} {s.get('description') or '(no description)'}")
        print(f"    {s['kind']}, {size} voxels, {spacing} mm, orientation {s['orientation']}, "
              f"{s.get('files', 1)} file(s)")
        if s.get("transfer_syntaxes"):
            from medview.io.dicom.decode import transfer_syntax_name

            print(f"    transfer syntax: {', '.join(transfer_syntax_name(t) for t in s['transfer_syntaxes'])}")
        for w in s.get("warnings", []):
            print(f"    warning: {w}")
    if result["skipped_files"]:
        print(f"\n  skipped {result['skipped_files']} file(s), e.g.:")
        for item in result["skipped_examples"]:
            print(f"    {item['file']}: {item['reason']}")


def _run_gui(paths: Sequence[str], series: str | None, screenshot: str | None) -> int:
    try:
        from medview.qt.app import run_gui
    except ImportError as exc:  # Qt libraries missing on a server
        raise MedviewError(f"The workstation cannot start: {exc}. `medview info` and `convert` work "
                           "without a display") from None
    return run_gui(list(paths), series=series, screenshot=screenshot)


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # `medview PATH` and `medview --screenshot X` mean `medview view ...`
    if not args_in or (args_in[0] not in VERBS and args_in[0] not in ("-h", "--help", "--version")):
        args_in = ["view", *args_in]
    parser = build_parser()
    args = parser.parse_args(args_in)
    try:
        if args.verb == "info":
            from medview.app.commands import describe_input

            _print_info(describe_input(args.path, task=_progress_printer()), args.json)
        elif args.verb == "convert":
            from medview.app.commands import convert_image

            result = convert_image(args.input, args.output, series=args.series, task=_progress_printer())
            v = result.volume
            print(f"wrote {result.output}: {'x'.join(map(str, v.geometry.size_xyz))} voxels, "
                  f"{v.array.dtype}, spacing {tuple(round(s, 4) for s in v.geometry.spacing)} mm")
            for w in v.warnings:
                print(f"warning: {w}", file=sys.stderr)
        else:
            return _run_gui(args.paths, args.series, args.screenshot)
    except MedviewError as exc:
        print(f"medview: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("medview: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
