"""Classifier commands shared by the GUI and the CLI: train with honest evaluation, predict new cases.

:func:`train_classifier` reads a feature table, cross-validates the model (per-fold progress, cancellable
between folds), fits it on every case and writes, each file atomically (:mod:`medview.io.atomic`):

``DIR/metrics.json``, ``DIR/predictions_oof.csv``, ``DIR/roc.png``, ``DIR/confusion.png``,
``DIR/importance.png`` and ``DIR/model/{model.joblib, model.json}``.

The model is a joblib (pickle) file: load models only from sources you trust, since loading one can run
arbitrary code.  The statistics live in :mod:`medview.analysis.classify`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from medview import __version__
from medview.analysis import classify as clf
from medview.core.errors import WriteError
from medview.core.tasks import TaskContext, check_cancel, report
from medview.io.atomic import atomic_path, atomic_write_text

MODEL_SUBDIR = "model"


def prepare_output_folder(out_dir: str | os.PathLike[str]) -> Path:
    """Create ``out_dir`` (and ``out_dir/model``) if needed; a clear error if it is a file or read-only."""
    folder = Path(out_dir).expanduser()
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"The output {folder} is a file, not a folder")
    try:
        (folder / MODEL_SUBDIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"Cannot create the output folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK) or not os.access(folder / MODEL_SUBDIR, os.W_OK):
        raise WriteError(f"The output folder {folder} is not writable")
    return folder


def table_columns(table_path: str | os.PathLike[str]) -> list[str]:
    """The column names of a CSV/TSV/Parquet table (the header only, for the panel's target choice)."""
    path = Path(table_path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") and path.is_file():
        import pyarrow.parquet as pq

        try:
            return [str(n) for n in pq.read_schema(path).names if not str(n).startswith("__index_level_")]
        except (OSError, ValueError) as exc:
            from medview.core.errors import CorruptFileError

            raise CorruptFileError(f"Cannot read the table {path.name}: {exc}") from None
    if suffix in (".csv", ".tsv", ".txt") and path.is_file():
        import pandas as pd

        try:
            return [str(c) for c in pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0).columns]
        except (ValueError, OSError) as exc:
            from medview.core.errors import CorruptFileError

            raise CorruptFileError(f"Cannot read the table {path.name}: {str(exc).splitlines()[0]}") from None
    return list(clf.read_table(path).columns)  # the reader's own errors (missing file, unknown format)


def _write_png(plot, path: Path, *args: Any) -> str:
    with atomic_path(path) as tmp:
        plot(*args, tmp)
    return str(path)


def _write_csv(frame, path: Path) -> str:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return str(path)


def train_classifier(table_path: str | os.PathLike[str], target: str, model: str, out_dir: str | os.PathLike[str],
                     cv: int = 5, test_size: float | None = None, case_id: str | None = "case_id",
                     features: list[str] | None = None, select_k: int | None = None, seed: int = 0,
                     task: TaskContext | None = None) -> dict[str, Any]:
    """Cross-validate ``model`` on the table, fit it on all cases, write the reports and the model.

    Returns a dict: ``model``, ``n_samples``, ``n_features``, ``classes``, ``metrics`` (as in metrics.json),
    ``notes``, ``out_dir`` and ``files`` (name -> path).  ``test_size`` (a fraction) replaces cross-validation
    by one stratified hold-out.  Cancellation is honoured between folds; nothing is written before the
    evaluation is complete.
    """
    model = clf.check_model_name(model)
    folder = prepare_output_folder(out_dir)  # before the long part: a bad folder should not cost a training
    report(task, 0.0, "reading the table", force=True)
    table = clf.load_feature_table(table_path, target, case_id, features)
    trained = clf.train(table, model, cv=cv, test_size=test_size, select_k=select_k, seed=seed, task=task)
    check_cancel(task)
    report(task, 0.93, "writing results", force=True)
    metrics = trained.metrics()
    files: dict[str, str] = {}
    metrics_text = json.dumps(metrics, indent=2, allow_nan=False) + "\n"
    files["metrics"] = str(atomic_write_text(folder / "metrics.json", metrics_text))
    files["predictions"] = _write_csv(trained.predictions_frame(), folder / "predictions_oof.csv")
    files["roc"] = _write_png(clf.plot_roc, folder / "roc.png", trained.evaluation, table.y)
    files["confusion"] = _write_png(clf.plot_confusion, folder / "confusion.png", trained.evaluation)
    files["importance"] = _write_png(clf.plot_importance, folder / "importance.png", trained.importance)
    model_dir = folder / MODEL_SUBDIR
    joblib_path = model_dir / clf.MODEL_FILE
    with atomic_path(joblib_path) as tmp:
        clf.dump_pipeline(trained.pipeline, tmp)
        digest = clf.file_sha256(tmp)
    metadata = trained.metadata(__version__, {"model_sha256": digest})
    atomic_write_text(model_dir / clf.META_FILE, json.dumps(metadata, indent=2, allow_nan=False) + "\n")
    files["model"] = str(model_dir)
    report(task, 1.0, "done", force=True)
    return {"model": model, "n_samples": len(table.y), "n_features": len(table.features),
            "features": list(table.features), "classes": metrics["classes"], "metrics": metrics,
            "notes": trained.notes, "out_dir": str(folder), "files": files}


def predict_file(model_dir: str | os.PathLike[str], table_path: str | os.PathLike[str], out_csv: str | None = None,
                 case_id: str | None = None, task: TaskContext | None = None) -> dict[str, Any]:
    """Predict the cases of a table with a model saved by :func:`train_classifier`.

    Returns ``predictions`` (DataFrame: case id, predicted class, probability per class), ``warnings``,
    ``model`` (its metadata) and ``output`` (the CSV written, if ``out_csv``).  Load models only from
    trusted sources: the model file is a pickle.
    """
    if out_csv:
        parent = Path(out_csv).expanduser().absolute().parent
        if not parent.is_dir():
            raise WriteError(f"The output folder {parent} does not exist")
    report(task, 0.0, "loading the model", force=True)
    loaded = clf.load_model(model_dir)
    check_cancel(task)
    report(task, 0.3, "predicting", force=True)
    predictions = clf.predict(loaded, table_path, case_id=case_id)
    check_cancel(task)
    output = _write_csv(predictions, Path(out_csv).expanduser()) if out_csv else None
    report(task, 1.0, "done", force=True)
    return {"predictions": predictions, "warnings": list(predictions.attrs.get("warnings", [])),
            "model": loaded.metadata, "output": output}
