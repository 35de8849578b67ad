"""``medview features IMAGE MASK``: radiomics features (PyRadiomics) of one labelled region to a CSV.

The CSV has one row per case (``case_id,label,<feature>...``) so that the files of a cohort concatenate into
one table.  Heavy imports (SimpleITK, PyRadiomics) happen only when the verb runs.
"""

from __future__ import annotations

import argparse

from medview.core.tasks import TaskContext

# Shape values echoed in the summary when they were computed.
_SUMMARY_KEYS = ("original_shape_MeshVolume", "original_shape_SurfaceArea", "original_shape_Sphericity",
                 "original_shape_Maximum3DDiameter")


def add_parser(sub) -> argparse.ArgumentParser:
    """Register the ``features`` verb on ``sub`` (the main parser's subparsers)."""
    parser = sub.add_parser("features", help="radiomics features (PyRadiomics) of a labelled region to CSV")
    parser.add_argument("image", help="image: DICOM folder/zip, NIfTI, NRRD, MHA")
    parser.add_argument("mask", help="label map (resampled onto the image's grid with a warning if it differs)")
    parser.add_argument("--params", metavar="P", help="PyRadiomics parameter file, YAML or JSON "
                        "(default: medview's bundled radiomics_default.yaml)")
    parser.add_argument("--label", type=int, metavar="N",
                        help="label value (default: the --params file's label setting, else the mask's only label)")
    parser.add_argument("--out", required=True, metavar="CSV", help="CSV to write: case_id,label,<features>")
    parser.add_argument("--series", metavar="UID", help="series UID when the image input holds several")
    return parser


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    """Compute, write the CSV, print a short summary.  Bad input raises MedviewError (main turns it into exit 3)."""
    from medview.app.features import features_file

    result = features_file(args.image, args.mask, args.out, params=args.params, label=args.label,
                           series=args.series, task=progress)
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"wrote {result.output}: {len(result.features)} features of label {result.label} ({result.case_id})")
    for key in _SUMMARY_KEYS:
        if key in result.features:
            print(f"  {key.removeprefix('original_shape_')}: {result.features[key]:.6g}")
    return 0
