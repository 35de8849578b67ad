"""``medview augment IMAGE [LABEL] OUT_DIR``: write N randomly augmented copies of an image (and its label map).

The geometric transforms (flip, rotation, resize, elastic) move image and label together; intensity jitter and
noise touch only the image.  The work lives in :mod:`medview.app.augment`; this module only parses arguments and
imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import sys

from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext

_FLIP_NAMES = ("lr", "ap", "si")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register the ``augment`` verb on the ``medview`` subparsers."""
    p = sub.add_parser(
        "augment", help="write N augmented copies of an image (and label map): flip, rotate, resize, elastic, "
        "intensity", usage="medview augment [-h] IMAGE [LABEL] OUT_DIR [--n N] [--seed SEED] [--series SERIES] "
        "[--flip AXES] [--rotate DEG] [--resize FRAC] [--no-elastic] [--no-intensity] [--noise FRAC]",
        description="Write N randomly augmented copies of IMAGE (and LABEL, moved through the same "
        "random draws) to OUT_DIR as <stem>_augNNN.nii.gz / <stem>_augNNN_label.nii.gz plus augment.json.")
    p.add_argument("paths", nargs="+", metavar="IMAGE [LABEL] OUT_DIR",
                   help="image, optional label map on its grid, output folder")
    p.add_argument("--n", type=int, default=10, help="number of augmented copies (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same copies")
    p.add_argument("--series", help="series UID when the image input has several")
    p.add_argument("--flip", metavar="AXES",
                   help="patient axes that may be flipped, comma separated from lr,ap,si; 'none' for no flips "
                   "(default lr)")
    p.add_argument("--rotate", type=float, metavar="DEG", help="maximum rotation about each axis in degrees")
    p.add_argument("--resize", type=float, metavar="FRAC",
                   help="largest change of the grid size, e.g. 0.1 for 0.9-1.1 times as many voxels per axis "
                   "(same field of view); 0 for none")
    p.add_argument("--no-elastic", action="store_true", help="no elastic deformation")
    p.add_argument("--no-intensity", action="store_true", help="no intensity scale/shift jitter")
    p.add_argument("--noise", type=float, metavar="FRAC",
                   help="Gaussian noise standard deviation as a fraction of the image's intensity range")
    return p


def _split_paths(paths: list[str]) -> tuple[str, str | None, str] | None:
    if len(paths) == 2:
        return paths[0], None, paths[1]
    if len(paths) == 3:
        return paths[0], paths[1], paths[2]
    return None


def _spec_from_args(args):
    from medview.analysis.augment import AugmentSpec

    changes: dict = {}
    if args.flip is not None:
        text = args.flip.strip().lower()
        axes = () if text in ("", "none") else tuple(a.strip() for a in text.split(","))
        bad = [a for a in axes if a not in _FLIP_NAMES]
        if bad:
            raise MedviewError(f"--flip takes a comma-separated list of lr, ap, si (or none), got {args.flip!r}")
        changes["flip_axes"] = axes
    if args.rotate is not None:
        if not 0 <= args.rotate <= 180:
            raise MedviewError(f"--rotate must be between 0 and 180 degrees, got {args.rotate}")
        changes["rotate_deg"] = (args.rotate, args.rotate, args.rotate)
        if args.rotate == 0:
            changes["rotate_prob"] = 0.0
    if args.resize is not None:
        if not 0 <= args.resize < 1:
            raise MedviewError(f"--resize must be at least 0 and less than 1, got {args.resize}")
        changes["resize_range"] = (1.0 - args.resize, 1.0 + args.resize)
        if args.resize == 0:
            changes["resize_prob"] = 0.0
    if args.no_elastic:
        changes["elastic_prob"] = 0.0
    if args.no_intensity:
        changes["intensity_prob"] = 0.0
    if args.noise is not None:
        if not 0 <= args.noise < 1:
            raise MedviewError(f"--noise must be at least 0 and less than 1, got {args.noise}")
        changes["noise_std"] = args.noise
        changes["noise_prob"] = 1.0 if args.noise > 0 else 0.0
    return AugmentSpec(**changes)


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    """Run ``medview augment``; bad input raises MedviewError (exit 3 in main)."""
    from medview.app.augment import augment_files

    split = _split_paths(args.paths)
    if split is None:  # a usage error, as argparse reports them (exit 2)
        print(f"medview augment: error: expected IMAGE [LABEL] OUT_DIR, got {len(args.paths)} path(s)",
              file=sys.stderr)
        return 2
    image, label, out_dir = split
    spec = _spec_from_args(args)
    result = augment_files(image, label, out_dir, n=args.n, seed=args.seed, series=args.series, spec=spec,
                           task=progress)
    count = len(result["samples"])
    with_labels = " with label maps" if label is not None else ""
    print(f"Wrote {count} augmented cop{'y' if count == 1 else 'ies'}{with_labels} and augment.json to "
          f"{result['out_dir']}")
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
