"""The ``medview`` command.

``medview`` alone opens the workstation on the bundled chest CT; ``medview PATH`` or ``medview view
PATH`` opens a study; ``medview info`` and ``medview convert`` work without a display.
Exit codes: 0 ok, 2 usage error, 3 bad input (one line on stderr, no traceback), 130 cancelled.
An unknown command (2), a missing path (3) and a GUI verb with no display to draw on (3) are reported before
Qt is imported: Qt itself aborts the process (exit 134) when it finds no display.  ``--screenshot`` picks Qt's
offscreen platform when there is no display.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from collections.abc import Sequence

from medview import __version__
from medview.core.errors import InputNotFoundError, MedviewError
from medview.core.tasks import TaskContext

# Verbs that live in their own module under medview.cli: each module has ``add_parser(subparsers)`` and
# ``run(args, progress) -> int`` and imports nothing heavy at module level.
VERB_MODULES = {
    "features": "medview.cli.features_cmd",
    "classify": "medview.cli.classify_cmd",
    "augment": "medview.cli.augment_cmd",
    "batch": "medview.cli.batch_cmd",
    "db": "medview.cli.db_cmd",
    "pacs": "medview.cli.pacs_cmd",
    "web": "medview.cli.web_cmd",
    "anonymize": "medview.cli.anonymize_cmd",
}
VERBS = ("info", "convert", "view", "render", "mesh", "drr", "filter", "segment", "labels", "export-seg", "models",
         "infer", "detect", *VERB_MODULES)


def _verb_module(verb: str):
    import importlib

    return importlib.import_module(VERB_MODULES[verb])


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

    render = sub.add_parser("render", help="volume-render a study offscreen to a PNG")
    render.add_argument("input", help="CT/MR volume: DICOM folder, NIfTI, NRRD, MHA")
    render.add_argument("output", help="PNG to write")
    render.add_argument("--preset", help="transfer function: ct-bone, ct-soft-tissue, ct-lung, ct-angio, "
                        "mr-default, mip, minip (default: the modality's)")
    render.add_argument("--labels", help="label map on the same grid: its surfaces are drawn in their colours")
    render.add_argument("--size", default="800x800", help="WIDTHxHEIGHT in pixels (default 800x800)")
    render.add_argument("--view", default="anterior",
                        help="camera: anterior, posterior, left, right, superior, inferior")
    shading = render.add_mutually_exclusive_group()
    shading.add_argument("--shading", dest="shading", action="store_true", default=None, help="lighting on")
    shading.add_argument("--no-shading", dest="shading", action="store_false", help="lighting off")

    mesh = sub.add_parser("mesh", help="surface mesh of a label map to STL/OBJ/PLY")
    mesh.add_argument("labels", help="label map: NIfTI, NRRD, MHA, DICOM")
    mesh.add_argument("output", help=".stl, .obj or .ply; several labels give OUT-<value>-<name>.<ext>")
    mesh.add_argument("--label", type=int, action="append", help="label value (repeatable; default: all)")
    mesh.add_argument("--convention", default="LPS", choices=["LPS", "RAS"],
                      help="coordinates written (DICOM LPS by default; RAS for tools that expect it)")
    mesh.add_argument("--smoothing", type=int, default=None, help="windowed-sinc iterations (default 20)")

    drr_verb = sub.add_parser("drr", help="virtual radiograph (ray sum) of a CT")
    drr_verb.add_argument("input", help="CT volume")
    drr_verb.add_argument("output", help="PNG, or .nii.gz/.nrrd/.mha to keep the values and detector geometry")
    drr_verb.add_argument("--view", default="ap", choices=["ap", "lateral"])
    drr_verb.add_argument("--allow-modality-mismatch", action="store_true",
                          help="project an image that is not (or not known to be) a CT anyway")

    filt = sub.add_parser("filter", help="run a filter (denoise, enhance, edges, resample, ...) on an image")
    filt.add_argument("name", nargs="?", help="filter name; omit with --list")
    filt.add_argument("input", nargs="?")
    filt.add_argument("output", nargs="?", help=".nii.gz/.nii/.nrrd/.mha (the input's exact geometry)")
    filt.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter (repeatable)")
    filt.add_argument("--series", help="series UID when the input has several")
    filt.add_argument("--list", action="store_true", help="list the filters and their parameters")

    seg = sub.add_parser("segment", help="segment an image (threshold, Otsu, region growing, clustering, ...)")
    seg.add_argument("method", nargs="?", help="method name; omit with --list")
    seg.add_argument("input", nargs="?")
    seg.add_argument("output", nargs="?", help="label map: .nii.gz/.nii/.nrrd/.mha")
    seg.add_argument("--seed", action="append", metavar="X,Y,Z", help="seed point in LPS mm (repeatable)")
    seg.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter (repeatable)")
    seg.add_argument("--series", help="series UID when the input has several")
    seg.add_argument("--list", action="store_true", help="list the methods and their parameters")

    labels = sub.add_parser("labels", help="label map tools")
    labels_sub = labels.add_subparsers(dest="labels_verb", metavar="TOOL")
    stats = labels_sub.add_parser("stats", help="per-label statistics: voxels, mL, intensity, extent, surface")
    stats.add_argument("image")
    stats.add_argument("labels")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.add_argument("--csv", metavar="OUT", help="also write the table as CSV")

    refine = labels_sub.add_parser("refine", help="morphology, components, hole filling, smoothing in mm")
    refine.add_argument("operation", help="dilate, erode, opening, closing, fill-holes, keep-largest-component, "
                        "remove-islands, smooth")
    refine.add_argument("labels")
    refine.add_argument("output")
    refine.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter (repeatable)")

    export = sub.add_parser("export-seg", help="write a label map as DICOM SEG referencing its series")
    export.add_argument("dicom_dir", help="the DICOM series the labels were drawn on")
    export.add_argument("labels", help="label map (NIfTI, NRRD, MHA)")
    export.add_argument("output", help="SEG file to write, e.g. seg.dcm")
    export.add_argument("--series", help="series UID when the folder holds several")
    export.add_argument("--description", default="Segmentation", help="SEG series description")

    models = sub.add_parser("models", help="the models medview can run (bundled, user folder, --model PATH)")
    models_sub = models.add_subparsers(dest="models_verb", metavar="ACTION")
    models_list = models_sub.add_parser("list", help="one line per model")
    models_list.add_argument("--json", action="store_true")
    models_show = models_sub.add_parser("show", help="a model's card (weights checked)")
    models_show.add_argument("name", help="model name or folder")

    infer = sub.add_parser("infer", help="run a model on an image (sliding window, CPU or GPU)")
    infer.add_argument("model", help="model name (medview models list) or folder")
    infer.add_argument("input")
    infer.add_argument("output", help="label map (.nii.gz/.nrrd/.mha), with <stem>_labels.json beside it")
    infer.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    infer.add_argument("--series", help="series UID when the input has several")
    infer.add_argument("--estimate", action="store_true", help="only time one window and print the estimate")
    infer.add_argument("--allow-modality-mismatch", action="store_true",
                       help="run on an image of another (or an unknown) modality than the model's card states")

    detect = sub.add_parser("detect", help="find nodule-like blobs (LoG/DoG) and write them as JSON (LPS mm)")
    detect.add_argument("input")
    detect.add_argument("output", help="JSON file: centres in LPS mm, diameters, scores")
    detect.add_argument("--method", default="blob", help="detector (blob)")
    detect.add_argument("--diameter", default="4-30", metavar="MIN-MAX", help="diameter range in mm (default 4-30)")
    detect.add_argument("--mask", help="label map: search only inside its non-zero voxels")
    detect.add_argument("--param", action="append", metavar="NAME=VALUE", help="detector parameter (repeatable)")
    detect.add_argument("--series", help="series UID when the input has several")

    for verb in VERB_MODULES:
        _verb_module(verb).add_parser(sub)

    view = sub.add_parser("view", help="open files or folders in the workstation")
    view.add_argument("paths", nargs="*")
    view.add_argument("--series", help="series UID to open first")
    view.add_argument("--screenshot", metavar="PNG", help="render offscreen, save a PNG and exit")
    view.add_argument("--layout", choices=["1x1", "1x3", "2x2", "3d"], help="start in this layout")
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


# Qt platforms that draw on a display server; the others (offscreen, minimal, eglfs, linuxfb, vnc, ...) need none
_DISPLAY_PLATFORMS = {"xcb": "DISPLAY", "wayland": "WAYLAND_DISPLAY", "wayland-egl": "WAYLAND_DISPLAY",
                      "wayland-brcm": "WAYLAND_DISPLAY"}


def _no_display() -> str | None:
    """Why Qt would find no display to open a window on (Linux; it then aborts the process), or None."""
    if not sys.platform.startswith("linux"):
        return None
    requested = [p.split(":", 1)[0].strip().lower() for p in os.environ.get("QT_QPA_PLATFORM", "").split(";")]
    requested = [p for p in requested if p]
    if any(p not in _DISPLAY_PLATFORMS for p in requested):
        return None  # an offscreen (or other) platform that needs no display server
    needed = [_DISPLAY_PLATFORMS[p] for p in requested] or ["DISPLAY", "WAYLAND_DISPLAY"]
    if any(os.environ.get(var) for var in needed if var != "DISPLAY"):
        return None  # a Wayland compositor is named: Qt reports its own failure there without aborting
    if "DISPLAY" in needed and os.environ.get("DISPLAY"):
        display = os.environ["DISPLAY"]
        return None if _x11_reachable(display) else f"DISPLAY={display} cannot be reached (no X server answers)"
    return " and ".join(dict.fromkeys(needed)) + (" is" if len(set(needed)) == 1 else " are") + " not set"


def _x11_reachable(display: str, timeout_s: float = 1.0) -> bool:
    """Whether an X server answers at ``display`` ('[host]:N[.S]'): its Unix socket (file or abstract) for a
    local display, TCP port 6000 + N for a remote one (SSH forwarding). Qt aborts the process when it cannot
    connect, so this is asked first. A display name this does not understand counts as reachable."""
    import socket

    host, _, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return True
    if host in ("", "unix") or host.startswith("/"):
        addresses = [f"/tmp/.X11-unix/X{number}", f"\0/tmp/.X11-unix/X{number}"]
        if host.startswith("/"):  # launchd-style socket paths (macOS XQuartz) are not for this check
            return True
        for address in addresses:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                try:
                    sock.connect(address)
                    return True
                except OSError:
                    continue
        return False
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _check_view_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if not os.path.exists(path):
            from medview.io.studydb import knows_uid

            if knows_uid(path):
                continue  # a study or series of the study database: opened from its index
            raise InputNotFoundError(f"No such file or folder: {path}")


def _unknown_command(word: str) -> str | None:
    """The one-line usage error for ``medview WORD`` when WORD is no command and no existing path, or None."""
    if word.startswith("-") or os.path.exists(word) or os.sep in word or "/" in word or "." in word:
        return None  # an option, or something that looks like a path (checked as a missing path later)
    close = difflib.get_close_matches(word, VERBS, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (f"unknown command '{word}' ({hint}commands: {', '.join(VERBS)}; or give a file or folder to open; "
            "see medview --help)")


def _run_gui(paths: Sequence[str], series: str | None, screenshot: str | None, layout: str | None = None) -> int:
    _check_view_paths(paths)
    missing = _no_display()
    if missing and screenshot:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # --screenshot renders offscreen: no display needed
    elif missing:
        raise MedviewError(f"No display to open the workstation on ({missing}). Without one: "
                           "`medview view PATH --screenshot OUT.png` saves a picture of the views, `medview render "
                           "INPUT OUT.png` volume-renders, `medview info`/`convert`/`filter`/... need no display, "
                           "and QT_QPA_PLATFORM=offscreen runs the workstation without a window")
    from medview.io.dicom import parallel

    parallel.start_in_background()  # the decode workers start beside the GUI's imports, not after them
    try:
        from medview.qt.app import run_gui
    except ImportError as exc:  # Qt libraries missing on a server
        raise MedviewError(f"The workstation cannot start: {exc}. `medview info` and `convert` work "
                           "without a display") from None
    return run_gui(list(paths), series=series, screenshot=screenshot, layout=layout)


def _print_operations(kind: str) -> None:
    from medview.algorithms.operations import operations

    for op in operations(kind):  # type: ignore[arg-type]
        print(f"{op.name}: {op.help}" + (f" [{op.library}]" if op.library else ""))
        for p in op.params:
            default = "" if p.default is None else f" (default {p.default})"
            need = " (required)" if p.required else ""
            choices = f" one of {', '.join(p.choices)}" if p.choices else ""
            print(f"    {p.name}: {p.kind}{f' {p.unit}' if p.unit else ''}{choices}{default}{need} - {p.help}")


def _run_operation(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from medview.algorithms.operations import parse_assignments

    kind = "filter" if args.verb == "filter" else "segment"
    name = args.name if kind == "filter" else args.method
    if args.list:
        _print_operations(kind)
        return 0
    if not (name and args.input and args.output):
        parser.error(f"{args.verb} needs NAME INPUT OUTPUT (or --list)")
    params = parse_assignments(args.param)
    if kind == "segment" and args.seed:
        params["seeds"] = ";".join(args.seed)
    if kind == "filter":
        from medview.app.processing import filter_file

        result = filter_file(name, args.input, args.output, params, series=args.series, task=_progress_printer())
    else:
        from medview.app.processing import segment_file

        result = segment_file(name, args.input, args.output, params, series=args.series, task=_progress_printer())
    print(f"wrote {result.output}: {result.description}")
    return 0


def _run_labels(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.labels_verb == "refine":
        from medview.algorithms.operations import parse_assignments
        from medview.app.processing import refine_labels_file

        result = refine_labels_file(args.operation, args.labels, args.output, parse_assignments(args.param),
                                    task=_progress_printer())
        print(f"wrote {result.output}: {result.description}")
        return 0
    if args.labels_verb != "stats":
        parser.error("labels needs a tool: stats or refine")
    from medview.app.processing import label_statistics_file

    table = label_statistics_file(args.image, args.labels, csv_path=args.csv, task=_progress_printer())
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for row in table["labels"]:
        print(f"{row['value']:>5}  {row['name'][:24]:24s} {row['voxels']:>10} vox {row['volume_ml']:10.3f} mL  "
              f"mean {row['mean']:9.1f}  std {row['std']:8.1f}  min {row['min']:8.1f}  max {row['max']:8.1f}  "
              f"surface {row['surface_mm2']:10.1f} mm^2")
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _run_models(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from medview.app.inference import list_models, show_model

    if args.models_verb == "show":
        print(json.dumps(show_model(args.name), indent=2, default=str))
        return 0
    if args.models_verb not in (None, "list"):
        parser.error("models needs an action: list or show NAME")
    rows = list_models()
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no models found (bundled: resources/models; yours: the user models folder or --model PATH)")
    for r in rows:
        print(f"{r.get('name', '?'):32s} {r.get('version', '') or '':8s} {r.get('task', '') or '':14s} "
              f"{r.get('modality', '') or '':4s} {r.get('status', '')}  {r.get('folder', '')}")
    return 0


def _run_infer(args: argparse.Namespace) -> int:
    from medview.app.inference import estimate_time, infer_file

    if args.estimate:
        e = estimate_time(args.model, args.input, device=args.device, series=args.series, task=_progress_printer())
        print(f"{e['model']} {e['version']}: about {e['seconds']:.1f} s here ({e['windows']} windows x "
              f"{e['seconds_per_window']:.3g} s, {e['basis']}"
              + (f", + {e['startup_seconds']:.1f} s to load MONAI" if e["startup_seconds"] else "") + ")")
        return 0
    result = infer_file(args.model, args.input, args.output, device=args.device, series=args.series,
                        task=_progress_printer(), allow_modality_mismatch=args.allow_modality_mismatch)
    if isinstance(result.result, dict):  # a classification: probabilities per class
        probs = ", ".join(f"{k} {v:.3f}" for k, v in result.result["probabilities"].items())
        print(f"{result.result['label']} ({probs})")
    elif hasattr(result.result, "detections"):  # a detection model
        for d in result.result.detections[:10]:
            print(f"    {d.label}: LPS ({d.center_lps[0]:.1f}, {d.center_lps[1]:.1f}, {d.center_lps[2]:.1f}) mm  "
                  f"score {d.score:.3f}")
        print(f"{len(result.result.detections)} detection(s)")
    extra = f", label table {result.label_table}" if result.label_table else ""
    print(f"wrote {result.output}: {result.model.get('model')} {result.model.get('version')} in "
          f"{result.seconds:.1f} s{extra}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _parse_range(text: str) -> tuple[float, float]:
    parts = text.replace(",", "-").split("-") if text.count("-") == 1 or "," in text else None
    try:
        if not parts or len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise MedviewError(f"--diameter must look like 4-30 (mm), got {text!r}") from None


def _run_detect(args: argparse.Namespace) -> int:
    from medview.algorithms.operations import parse_assignments
    from medview.app.detection import detect_file

    found = detect_file(args.input, args.output, method=args.method, diameter=_parse_range(args.diameter),
                        params=parse_assignments(args.param), mask_path=args.mask, series=args.series,
                        task=_progress_printer())
    print(f"wrote {args.output}: {len(found.detections)} candidate(s) ({found.method})")
    for d in found.detections[:10]:
        size = f"{d.diameter_mm:.1f} mm" if d.diameter_mm else "-"
        print(f"    LPS ({d.center_lps[0]:.1f}, {d.center_lps[1]:.1f}, {d.center_lps[2]:.1f}) mm  {size}  "
              f"score {d.score:.3g}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # `medview PATH` and `medview --screenshot X` mean `medview view ...`
    if not args_in or (args_in[0] not in VERBS and args_in[0] not in ("-h", "--help", "--version")):
        unknown = _unknown_command(args_in[0]) if args_in else None
        if unknown:  # `medview typo`: a usage error here, not a GUI that opens (or aborts) on a path "typo"
            print(f"medview: error: {unknown}", file=sys.stderr)
            return 2
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
        elif args.verb == "render":
            from medview.app.rendering import parse_size, render_snapshot

            result = render_snapshot(args.input, args.output, preset=args.preset, labels_path=args.labels,
                                     size=parse_size(args.size), view=args.view, shading=args.shading,
                                     task=_progress_printer())
            extra = f", surfaces of label(s) {', '.join(map(str, result.surfaces))}" if result.surfaces else ""
            print(f"wrote {result.output}: {result.size[0]}x{result.size[1]}, preset {result.preset}{extra}")
        elif args.verb == "mesh":
            from medview.app.rendering import export_meshes_from_file

            meshes = export_meshes_from_file(args.labels, args.output, values=args.label,
                                             convention=args.convention, smoothing_iterations=args.smoothing,
                                             task=_progress_printer())
            for out, (value, p) in zip(meshes.outputs, meshes.properties.items(), strict=True):
                print(f"wrote {out}: label {value}, {p['n_triangles']} triangles, area {p['area_mm2']:.1f} mm^2, "
                      f"volume {p['volume_mm3'] / 1000:.2f} mL, {args.convention} mm")
        elif args.verb == "drr":
            from medview.app.rendering import virtual_radiograph

            result = virtual_radiograph(args.input, args.output, view=args.view, task=_progress_printer(),
                                        allow_modality_mismatch=args.allow_modality_mismatch)
            for w in result.warnings:
                print(f"warning: {w}", file=sys.stderr)
            g = result.image.geometry
            print(f"wrote {result.output}: {args.view} radiograph, {g.size_xyz[0]}x{g.size_xyz[1]} pixels of "
                  f"{g.spacing[0]:g} x {g.spacing[1]:g} mm")
        elif args.verb in ("filter", "segment"):
            return _run_operation(parser, args)
        elif args.verb == "labels":
            return _run_labels(parser, args)
        elif args.verb == "models":
            return _run_models(parser, args)
        elif args.verb == "infer":
            return _run_infer(args)
        elif args.verb == "detect":
            return _run_detect(args)
        elif args.verb in VERB_MODULES:
            return _verb_module(args.verb).run(args, _progress_printer())
        elif args.verb == "export-seg":
            from medview.app.processing import export_seg_file

            result = export_seg_file(args.dicom_dir, args.labels, args.output, series=args.series,
                                     description=args.description, task=_progress_printer())
            print(f"wrote {result.output}: {result.description}")
        else:
            return _run_gui(args.paths, args.series, args.screenshot, args.layout)
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
