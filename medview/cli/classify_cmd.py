"""``medview classify``: train a classifier on a feature table with honest evaluation, predict new cases.

``medview classify train TABLE --target COL --model svm|dt|rf|knn|logreg|mlp --cv 5 --out DIR`` evaluates
the model with stratified k-fold cross-validation (or a stratified hold-out with ``--test-size``), scaling and
feature selection fitted inside each fold, then fits it on all rows and saves ``DIR/model``.
``medview classify predict DIR/model TABLE`` predicts the cases of another table.

Nothing heavy is imported at module level (scikit-learn is loaded only when a sub-verb runs).
"""

from __future__ import annotations

import argparse
import sys

from medview.core.errors import MedviewError
from medview.core.tasks import TaskContext

MODELS = ("svm", "dt", "rf", "knn", "logreg", "mlp")
_TRUST = ("the saved model is a joblib (pickle) file: load models only from sources you trust, "
          "since loading one can run arbitrary code")


def add_parser(sub: argparse._SubParsersAction) -> None:
    classify = sub.add_parser("classify", help="train / apply a classifier on a feature table (scikit-learn)",
                              description=f"Classifiers with honest evaluation. Note: {_TRUST}.")
    classify.set_defaults(classify_parser=classify)  # for a usage error (exit 2) when no action is given
    verbs = classify.add_subparsers(dest="classify_verb", metavar="ACTION")

    train = verbs.add_parser("train", help="cross-validate a model on a table, then fit it on all rows and save it",
                             description="Evaluate with stratified k-fold CV (or a stratified hold-out); scaling "
                             "and feature selection are fitted inside each fold. Writes metrics.json, "
                             "predictions_oof.csv, roc.png, confusion.png, importance.png and model/ in --out.")
    train.add_argument("table", help="feature table: CSV or Parquet, one row per case")
    train.add_argument("--target", required=True, help="column with the class of each case")
    train.add_argument("--model", default="rf", choices=MODELS,
                       help="svm, dt (decision tree), rf (random forest), knn, logreg, mlp (default rf)")
    train.add_argument("--cv", type=int, default=5, help="number of stratified folds (default 5)")
    train.add_argument("--test-size", type=float, default=None, metavar="FRACTION",
                       help="stratified hold-out of this fraction instead of cross-validation, e.g. 0.25")
    train.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    train.add_argument("--case-id", default="case_id", help="case identifier column (default case_id)")
    train.add_argument("--features", default=None, metavar="REGEX",
                       help="use only the numeric columns whose name matches this regular expression")
    train.add_argument("--select-k", type=int, default=None, metavar="K",
                       help="keep the K best features (ANOVA F), chosen inside each fold")
    train.add_argument("--seed", type=int, default=0, help="random seed for folds and models (default 0)")

    predict = verbs.add_parser("predict", help="predict the cases of a table with a saved model",
                               description=f"Apply a model saved by `classify train`. Note: {_TRUST}.")
    predict.add_argument("model_dir", help="the model folder written by train (DIR/model)")
    predict.add_argument("table", help="feature table: CSV or Parquet with the model's feature columns")
    predict.add_argument("--case-id", default=None, help="case identifier column (default: the model's)")
    predict.add_argument("--out", default=None, metavar="CSV", help="also write the predictions as CSV")


def _print_metrics(result: dict) -> None:
    summary = result["metrics"]["summary"]
    ev = result["metrics"]["evaluation"]
    how = f"{ev['folds']}-fold stratified CV" if ev["scheme"] == "cv" else \
        f"stratified hold-out ({ev['test_size']:g} of rows)"
    print(f"{result['model']} on {result['n_samples']} cases, {result['n_features']} features, "
          f"classes {', '.join(map(str, result['classes']))}: {how}")
    for name, stats in summary.items():
        if stats["mean"] is None:
            print(f"  {name:10s}  n/a")
        else:
            print(f"  {name:10s}  {stats['mean']:.3f} ± {stats['std']:.3f}")
    for note in result.get("notes", []):
        print(f"note: {note}", file=sys.stderr)


def run(args: argparse.Namespace, progress: TaskContext | None) -> int:
    verb = getattr(args, "classify_verb", None)
    if verb == "train":
        from medview.app.classify import train_classifier

        features = [args.features] if args.features else None
        result = train_classifier(args.table, args.target, args.model, args.out, cv=args.cv,
                                  test_size=args.test_size, case_id=args.case_id, features=features,
                                  select_k=args.select_k, seed=args.seed, task=progress)
        _print_metrics(result)
        for name, path in result["files"].items():
            print(f"wrote {name}: {path}")
        return 0
    if verb == "predict":
        from medview.app.classify import predict_file

        result = predict_file(args.model_dir, args.table, out_csv=args.out, case_id=args.case_id, task=progress)
        table = result["predictions"]
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        for w in result["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        if args.out:
            print(f"wrote {args.out}")
        return 0
    message = "classify needs an action: train TABLE --target COL ... or predict MODEL_DIR TABLE"
    parser = getattr(args, "classify_parser", None)
    if parser is not None:
        parser.error(message)  # exits 2, like every usage error
    raise MedviewError(message)
