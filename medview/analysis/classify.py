"""Classifiers on a feature table (one row per case) with honest evaluation, built on scikit-learn.

Why it is honest: every step that learns from data (median imputation, standardisation, the optional
``SelectKBest`` ANOVA-F selection) sits in one :class:`sklearn.pipeline.Pipeline` with the classifier, so in
cross-validation it is fitted on the training folds only and the test fold never influences it.  Selecting
features on the whole table before cross-validating is the classic leak: with many features and few cases it
reports high accuracy on pure noise (the tests demonstrate both numbers).

Table conventions: a case-id column (default ``case_id``; excluded from the features), a target column, and
as features the remaining numeric columns (or those chosen by name / regular expression).  Other non-numeric
columns are ignored with a note, rows without a target are dropped with a note, columns that are empty
throughout are dropped with a note, and missing feature values are replaced by the median of the *training*
rows inside the pipeline (so imputation cannot leak either).  Infinite values are an error.

Metrics: accuracy, precision, recall, F1 and ROC AUC per fold (mean ± population std, ``ddof=0``) and on the
pooled out-of-fold predictions, plus the pooled confusion matrix.  For two classes precision/recall/F1 are
those of the positive class, the later of the two sorted class labels; for more classes they are macro
averages and the AUC is the macro one-vs-rest AUC.  AUCs use ``predict_proba``; the SVM's probabilities come
from ``CalibratedClassifierCV(SVC(), ensemble=False)`` (scikit-learn 1.9 deprecates ``SVC(probability=True)``).

Saved models are joblib (pickle) files: **load them only from sources you trust**, since unpickling can run
arbitrary code.  ``model.json`` beside it records the features in order, classes, hyper-parameters, metrics,
evaluation settings, library versions and SHA-256 digests of the training table and of ``model.joblib``
(checked on load, so a swapped or damaged file is reported rather than used).

scikit-learn, pandas and matplotlib are imported inside the functions so ``import medview`` stays fast.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import math
import os
import platform
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medview.core.errors import CorruptFileError, InputNotFoundError, MedviewError, UnsupportedFormatError
from medview.core.tasks import TaskContext, check_cancel, report

MODELS = {"svm": "support vector machine (RBF kernel, sigmoid-calibrated probabilities)",
          "dt": "decision tree", "rf": "random forest (100 trees)", "knn": "k nearest neighbours (k=5)",
          "logreg": "logistic regression (L2)", "mlp": "multi-layer perceptron (one hidden layer of 32)"}
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
MODEL_FILE, META_FILE = "model.joblib", "model.json"
FORMAT = "medview-classifier"
PERMUTATION_REPEATS = 5
KNN_NEIGHBOURS = 5
SVM_CALIBRATION_FOLDS = 3


# -- the table ---------------------------------------------------------------------------------------
@dataclass
class FeatureTable:
    """A table ready for scikit-learn: ``x`` (cases × features, float64), ``y`` and the case ids."""

    x: np.ndarray
    y: np.ndarray
    case_ids: list[str]
    features: list[str]
    target: str
    case_id: str | None
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    sha256: str | None = None

    @property
    def classes(self) -> np.ndarray:
        return np.unique(self.y)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_table(path: str | os.PathLike[str], case_id: str | None = "case_id"):
    """Read a CSV/TSV or Parquet table into a pandas DataFrame (the case-id column is kept as text)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"The table {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise UnsupportedFormatError(f"Cannot read {path.name}: a feature table must be "
                                     f"{', '.join(TABLE_SUFFIXES)}")
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:  # case ids like 007 stay text; pandas ignores a dtype for a column that is not there
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",",
                                dtype={case_id: str} if case_id else None)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise CorruptFileError(f"Cannot read the table {path.name}: {str(exc).splitlines()[0]}") from None
    if frame.shape[0] == 0:
        raise MedviewError(f"The table {path.name} has no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _pick_features(numeric: list[str], features: Sequence[str] | None) -> list[str]:
    if not features:
        return numeric
    chosen: set[str] = set()
    for item in features:
        if item in numeric:
            chosen.add(item)
            continue
        try:
            pattern = re.compile(item)
        except re.error as exc:
            raise MedviewError(f"The feature pattern {item!r} is not a valid regular expression: {exc}") from None
        matched = [c for c in numeric if pattern.search(c)]
        if not matched:
            raise MedviewError(f"No numeric column matches the feature name or pattern {item!r}")
        chosen.update(matched)
    return [c for c in numeric if c in chosen]  # the table's order


def _columns_text(columns: Sequence[str], limit: int = 30) -> str:
    shown = ", ".join(columns[:limit])
    return shown + (f", … ({len(columns)} in all)" if len(columns) > limit else "")


def prepare_table(frame, target: str, case_id: str | None = "case_id", features: Sequence[str] | None = None,
                  *, source: str | None = None, sha256: str | None = None) -> FeatureTable:
    """Split a DataFrame into features, target and case ids (see the module docstring for the rules)."""
    import pandas as pd

    notes: list[str] = []
    columns = [str(c) for c in frame.columns]
    if target not in columns:
        raise MedviewError(f"The table has no target column {target!r}; its columns are {_columns_text(columns)}")
    if case_id and case_id not in columns:
        if case_id != "case_id":  # asked for explicitly
            raise MedviewError(f"The table has no case-id column {case_id!r}; its columns are "
                               f"{_columns_text(columns)}")
        notes.append("no case_id column: cases are named by their row number")
        case_id = None
    missing_target = frame[target].isna().to_numpy()
    if missing_target.any():
        notes.append(f"{int(missing_target.sum())} row(s) without a {target} value were dropped")
        frame = frame.loc[~missing_target]
    if len(frame) == 0:
        raise MedviewError(f"No row has a value in the target column {target!r}")
    candidates = [c for c in columns if c not in (target, case_id)]
    numeric = [c for c in candidates if pd.api.types.is_numeric_dtype(frame[c])]
    ignored = [c for c in candidates if c not in numeric]
    if ignored:
        notes.append(f"non-numeric column(s) ignored: {_columns_text(ignored, 10)}")
    chosen = _pick_features(numeric, features)
    empty = [c for c in chosen if frame[c].isna().all()]
    if empty:
        notes.append(f"column(s) without any value dropped: {_columns_text(empty, 10)}")
        chosen = [c for c in chosen if c not in empty]
    if not chosen:
        raise MedviewError(f"The table has no numeric feature columns besides {target!r}"
                           + (f" and {case_id!r}" if case_id else "") + f"; its columns are {_columns_text(columns)}")
    x = frame[chosen].to_numpy(dtype=np.float64)
    infinite = [c for c, bad in zip(chosen, np.isinf(x).any(axis=0), strict=True) if bad]
    if infinite:
        raise MedviewError(f"Feature column(s) with infinite values: {_columns_text(infinite, 10)}")
    n_missing = int(np.isnan(x).sum())
    if n_missing:
        notes.append(f"{n_missing} missing feature value(s) are replaced by the training median inside the "
                     "pipeline")
    y = frame[target].to_numpy()
    if y.dtype.kind == "f":
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise MedviewError(f"The target {target!r} holds continuous values ({len(np.unique(y))} distinct among "
                               f"{len(y)} cases): a classifier needs classes")
        y = y.astype(np.int64)  # 0.0/1.0 because the column had gaps: classes 0 and 1
    elif y.dtype.kind == "O":
        kinds = {type(v) for v in y}
        if len(kinds) > 1:
            notes.append("the target mixes text and numbers: all values are compared as text")
        y = y.astype(str)
    ids = frame[case_id].astype(str).tolist() if case_id else [str(i) for i in range(len(frame))]
    repeated = len(ids) - len(set(ids))
    if repeated:  # the same case on both sides of a split inflates every metric
        notes.append(f"{repeated} repeated case id(s): if rows of one case (or patient) fall in both training and "
                     "test folds, the metrics are optimistic")
    return FeatureTable(x=x, y=y, case_ids=ids, features=chosen, target=target, case_id=case_id, notes=notes,
                        source=source, sha256=sha256)


def load_feature_table(path: str | os.PathLike[str], target: str, case_id: str | None = "case_id",
                       features: Sequence[str] | None = None) -> FeatureTable:
    """Read ``path`` and :func:`prepare_table` it; the table's SHA-256 goes into the model's metadata."""
    frame = read_table(path, case_id)
    return prepare_table(frame, target, case_id, features, source=os.fspath(path), sha256=file_sha256(path))


# -- models ------------------------------------------------------------------------------------------
def check_model_name(name: str) -> str:
    key = str(name).lower()
    if key not in MODELS:
        raise MedviewError(f"Unknown model {name!r}: choose one of {', '.join(MODELS)}")
    return key


def make_classifier(name: str, seed: int = 0):
    """The classifier ``name`` with medview's defaults and a fixed ``random_state``."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    name = check_model_name(name)
    if name == "svm":
        return CalibratedClassifierCV(SVC(kernel="rbf", C=1.0, gamma="scale", random_state=seed),
                                      method="sigmoid", cv=SVM_CALIBRATION_FOLDS, ensemble=False)
    if name == "dt":
        return DecisionTreeClassifier(random_state=seed)
    if name == "rf":
        return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    if name == "knn":
        return KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS)
    if name == "logreg":
        return LogisticRegression(C=1.0, max_iter=5000, random_state=seed)
    # lbfgs suits small tables (scikit-learn's advice) and converges where adam would need many epochs
    return MLPClassifier(hidden_layer_sizes=(32,), solver="lbfgs", alpha=1e-2, max_iter=2000, random_state=seed)


def build_pipeline(model: str, n_features: int, select_k: int | None = None, seed: int = 0):
    """Median imputation → standardisation → optional ``SelectKBest(f_classif)`` → classifier."""
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
    if select_k:
        if select_k < 1:
            raise MedviewError(f"select_k must be at least 1, got {select_k}")
        steps.append(("select", SelectKBest(f_classif, k=min(int(select_k), n_features))))
    steps.append(("classifier", make_classifier(model, seed)))
    return Pipeline(steps)


# -- metrics -----------------------------------------------------------------------------------------
def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray,
                           classes: np.ndarray) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC AUC (binary: positive = ``classes[1]``; else macro / OvR)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

    binary = len(classes) == 2
    p, r, f, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=classes if not binary else None, pos_label=classes[1] if binary else 1,
        average="binary" if binary else "macro", zero_division=0)
    if len(np.unique(y_true)) < 2:
        auc = float("nan")  # undefined on one class (a hold-out far too small)
    elif binary:
        auc = roc_auc_score(y_true == classes[1], proba[:, 1])
    else:
        auc = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "precision": float(p), "recall": float(r),
            "f1": float(f), "roc_auc": float(auc)}


@contextlib.contextmanager
def _warnings_as_notes(notes: list[str]) -> Iterator[None]:
    """scikit-learn's warnings (convergence, constant features) become notes of the result, not console noise.

    Other warnings raised meanwhile are passed on unchanged.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if "sklearn" in (w.filename or "") or type(w.message).__name__ == "ConvergenceWarning":
            text = str(w.message).strip().splitlines()[0][:200]
            if text and text not in notes:
                notes.append(text)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextlib.contextmanager
def _small_blas() -> Iterator[None]:
    """One BLAS thread while fitting: feature tables are small, and threads on tiny matrices cost more than
    they give (an MLP fit on 64 × 10 took 0.51 s with OpenBLAS threads, 0.014 s with one, on 2 busy CPUs)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# -- evaluation --------------------------------------------------------------------------------------
@dataclass
class Evaluation:
    """Per-fold and pooled results; rows never in a test set (hold-out training rows) have fold -1."""

    scheme: str  # "cv" or "holdout"
    n_splits: int
    test_size: float | None
    seed: int
    classes: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    fold_models: list[Any]
    folds: list[dict[str, float]]
    fold_of_row: np.ndarray
    predicted: np.ndarray
    proba: np.ndarray
    pooled: dict[str, float]
    confusion: np.ndarray
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, dict[str, float | None]]:
        out: dict[str, dict[str, float | None]] = {}
        for m in METRICS:
            values = np.array([f[m] for f in self.folds], dtype=float)
            ok = values[np.isfinite(values)]
            out[m] = ({"mean": float(ok.mean()), "std": float(ok.std())} if ok.size
                      else {"mean": None, "std": None})
        return out

    @property
    def settings(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "folds": self.n_splits, "test_size": self.test_size, "seed": self.seed,
                "stratified": True, "shuffle": True}


def _check_counts(table: FeatureTable, model: str, cv: int, test_size: float | None) -> None:
    classes, counts = np.unique(table.y, return_counts=True)
    if len(classes) < 2:
        raise MedviewError(f"The target {table.target!r} has a single class ({_plain(classes[0])!r}): a classifier "
                           "needs at least two")
    smallest = int(counts.min())
    weakest = _plain(classes[int(counts.argmin())])
    n = len(table.y)
    if test_size is None:
        if cv < 2:
            raise MedviewError(f"Cross-validation needs at least 2 folds, got {cv}")
        if smallest < cv:
            raise MedviewError(f"Class {weakest!r} has {smallest} case(s), fewer than the {cv} folds: use at most "
                               f"{smallest} folds or add cases")
        n_train_min = n - math.ceil(n / cv)
        train_per_class = smallest - math.ceil(smallest / cv)
    else:
        if not 0 < test_size < 1:
            raise MedviewError(f"The test size must be a fraction between 0 and 1, got {test_size}")
        n_test = math.ceil(test_size * n)
        if smallest < 2 or n_test < len(classes) or n - n_test < len(classes):
            raise MedviewError(f"A stratified hold-out of {test_size:g} needs every class in both parts: class "
                               f"{weakest!r} has {smallest} case(s) and the test part would hold {n_test} of {n}")
        n_train_min = n - n_test
        train_per_class = smallest - math.ceil(smallest * test_size)
    if model == "knn" and n_train_min < KNN_NEIGHBOURS:
        raise MedviewError(f"kNN needs at least {KNN_NEIGHBOURS} training cases per fold; there are {n_train_min}")
    if model == "svm" and train_per_class < SVM_CALIBRATION_FOLDS:
        raise MedviewError(f"The SVM calibrates its probabilities with {SVM_CALIBRATION_FOLDS} inner folds, so "
                           f"class {weakest!r} needs at least {SVM_CALIBRATION_FOLDS} training cases per fold")


def _splits(table: FeatureTable, cv: int, test_size: float | None, seed: int):
    from sklearn.model_selection import StratifiedKFold, train_test_split

    if test_size is not None:
        train, test = train_test_split(np.arange(len(table.y)), test_size=test_size, stratify=table.y,
                                       random_state=seed, shuffle=True)
        return [(np.sort(train), np.sort(test))]
    return list(StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed).split(table.x, table.y))


def evaluate(table: FeatureTable, model: str, cv: int = 5, test_size: float | None = None,
             select_k: int | None = None, seed: int = 0, task: TaskContext | None = None,
             progress_span: tuple[float, float] = (0.0, 1.0)) -> Evaluation:
    """Stratified k-fold cross-validation (or a stratified hold-out when ``test_size`` is given).

    A fresh pipeline is fitted on each training part, so scaling and feature selection never see the test
    part.  Cancellation is checked between folds.
    """
    from sklearn.metrics import confusion_matrix

    model = check_model_name(model)
    _check_counts(table, model, cv, test_size)
    classes = table.classes
    n = len(table.y)
    splits = _splits(table, cv, test_size, seed)
    predicted = np.empty(n, dtype=table.y.dtype)
    proba = np.full((n, len(classes)), np.nan)
    fold_of_row = np.full(n, -1, dtype=np.int64)
    folds, models, notes = [], [], []
    lo, hi = progress_span
    with _small_blas():
        for i, (train, test) in enumerate(splits):
            report(task, lo + (hi - lo) * i / len(splits), f"{model}: fold {i + 1} of {len(splits)}", force=True)
            pipe = build_pipeline(model, table.x.shape[1], select_k, seed)
            with _warnings_as_notes(notes):
                pipe.fit(table.x[train], table.y[train])
                predicted[test] = pipe.predict(table.x[test])
                proba[test] = pipe.predict_proba(table.x[test])
            fold_of_row[test] = i
            scores = classification_metrics(table.y[test], predicted[test], proba[test], classes)
            folds.append({"fold": i + 1, "n_train": len(train), "n_test": len(test), **scores})
            models.append(pipe)
    check_cancel(task)
    tested = fold_of_row >= 0
    pooled = classification_metrics(table.y[tested], predicted[tested], proba[tested], classes)
    confusion = confusion_matrix(table.y[tested], predicted[tested], labels=classes)
    return Evaluation(scheme="holdout" if test_size is not None else "cv", n_splits=len(splits),
                      test_size=test_size, seed=seed, classes=classes, splits=splits, fold_models=models,
                      folds=folds, fold_of_row=fold_of_row, predicted=predicted, proba=proba, pooled=pooled,
                      confusion=confusion, notes=notes)


def leaky_cv_accuracy(table: FeatureTable, model: str, select_k: int, cv: int = 5, seed: int = 0) -> float:
    """The WRONG way, kept to demonstrate the leak: features selected on all rows, then cross-validated.

    Only for tests and teaching; medview's :func:`evaluate` never does this.
    """
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.preprocessing import StandardScaler

    x = SelectKBest(f_classif, k=min(select_k, table.x.shape[1])).fit_transform(
        StandardScaler().fit_transform(table.x), table.y)
    leaky = FeatureTable(x=x, y=table.y, case_ids=table.case_ids, features=[f"f{i}" for i in range(x.shape[1])],
                         target=table.target, case_id=table.case_id)
    return float(np.mean([f["accuracy"] for f in evaluate(leaky, model, cv=cv, seed=seed).folds]))


# -- feature importance ------------------------------------------------------------------------------
def _selected(pipe, n_features: int) -> np.ndarray:
    select = pipe.named_steps.get("select")
    return select.get_support() if select is not None else np.ones(n_features, dtype=bool)


def feature_importance(final, evaluation: Evaluation, table: FeatureTable, task: TaskContext | None = None,
                       notes: list[str] | None = None) -> dict[str, Any]:
    """Importance per feature: the final model's ``feature_importances_`` or mean ``|coef_|`` (standardised
    features) where it has them, else permutation importance (accuracy drop) on the held-out folds.

    Permutation runs on the fold's fitted classifier over the transformed test features: permuting a column
    commutes with the per-column imputation and scaling, so this equals permuting the raw column, and features
    the fold did not select get exactly 0 without being evaluated.
    """
    from sklearn.inspection import permutation_importance

    n = len(table.features)
    values = np.zeros(n)
    clf = final.named_steps["classifier"]
    if hasattr(clf, "feature_importances_"):
        method = "impurity importance of the final model"
        values[_selected(final, n)] = clf.feature_importances_
    elif hasattr(clf, "coef_"):
        method = "mean |coefficient| of the final model (standardised features)"
        values[_selected(final, n)] = np.abs(np.atleast_2d(clf.coef_)).mean(axis=0)
    else:
        method = f"permutation importance (accuracy drop, {PERMUTATION_REPEATS} repeats) on held-out folds"
        for i, (pipe, (_, test)) in enumerate(zip(evaluation.fold_models, evaluation.splits, strict=True)):
            check_cancel(task)
            xt = pipe[:-1].transform(table.x[test])
            with _warnings_as_notes(notes if notes is not None else []):
                result = permutation_importance(pipe[-1], xt, table.y[test], scoring="accuracy",
                                                n_repeats=PERMUTATION_REPEATS, random_state=evaluation.seed + i)
            fold_values = np.zeros(n)
            fold_values[_selected(pipe, n)] = result.importances_mean
            values += fold_values / len(evaluation.fold_models)
    return {"method": method, "values": {f: float(v) for f, v in zip(table.features, values, strict=True)}}


# -- training ----------------------------------------------------------------------------------------
@dataclass
class TrainedClassifier:
    model: str
    pipeline: Any
    table: FeatureTable
    evaluation: Evaluation
    importance: dict[str, Any]
    select_k: int | None
    notes: list[str]

    def metrics(self) -> dict[str, Any]:
        """What goes into metrics.json."""
        ev = self.evaluation
        return json_safe({"model": self.model, "classes": [_plain(c) for c in ev.classes],
                "positive_class": _plain(ev.classes[1]) if len(ev.classes) == 2 else None,
                "average": "binary" if len(ev.classes) == 2 else "macro (AUC: one-vs-rest)",
                "evaluation": ev.settings, "select_k": self.select_k, "folds": ev.folds, "summary": ev.summary,
                "pooled": {**ev.pooled, "confusion_matrix": ev.confusion.tolist()},
                "importance": self.importance, "notes": self.notes})

    def predictions_frame(self):
        """Out-of-fold predictions: case id, fold, true class, predicted class, probability per class."""
        import pandas as pd

        ev, t = self.evaluation, self.table
        rows = ev.fold_of_row >= 0
        frame = pd.DataFrame({t.case_id or "case": np.asarray(t.case_ids)[rows], "fold": ev.fold_of_row[rows] + 1,
                              "true": t.y[rows], "predicted": ev.predicted[rows]})
        for j, c in enumerate(ev.classes):
            frame[f"probability_{c}"] = ev.proba[rows, j]
        return frame

    def metadata(self, medview_version: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """What goes into model.json (the app adds medview's version and the digest of model.joblib).

        ``medview_version`` comes from the caller because this layer may not import the package root.
        """
        import sklearn

        clf = self.pipeline.named_steps["classifier"]
        summary = self.evaluation.summary
        return json_safe({
            "format": FORMAT, "format_version": 1, "model": self.model, "description": MODELS[self.model],
            "estimator": type(clf).__name__, "hyperparameters": _plain_params(clf.get_params(deep=False)),
            "pipeline": [name for name, _ in self.pipeline.steps], "select_k": self.select_k,
            "features": list(self.table.features), "target": self.table.target, "case_id": self.table.case_id,
            "classes": [_plain(c) for c in self.pipeline.classes_],
            "metrics": {"summary": summary, "pooled": self.evaluation.pooled},
            "evaluation": self.evaluation.settings, "seed": self.evaluation.seed,
            "versions": {"medview": medview_version, "scikit-learn": sklearn.__version__,
                         "numpy": np.__version__, "python": platform.python_version()},
            "training_table": {"path": self.table.source, "sha256": self.table.sha256,
                               "cases": len(self.table.y)},
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "notes": self.notes,
            **(extra or {}),
        })


def train(table: FeatureTable, model: str, cv: int = 5, test_size: float | None = None,
          select_k: int | None = None, seed: int = 0, task: TaskContext | None = None) -> TrainedClassifier:
    """Evaluate (:func:`evaluate`), compute feature importance, then fit the pipeline on every row."""
    model = check_model_name(model)
    evaluation = evaluate(table, model, cv, test_size, select_k, seed, task, progress_span=(0.0, 0.7))
    notes = [*table.notes, *evaluation.notes]
    report(task, 0.75, "fitting on all cases", force=True)
    final = build_pipeline(model, table.x.shape[1], select_k, seed)
    with _small_blas():
        with _warnings_as_notes(notes):
            final.fit(table.x, table.y)
        report(task, 0.85, "feature importance", force=True)
        importance = feature_importance(final, evaluation, table, task, notes)
    return TrainedClassifier(model, final, table, evaluation, importance, select_k, notes)


# -- saving, loading, predicting ---------------------------------------------------------------------
def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def json_safe(value: Any) -> Any:
    """Numpy scalars to Python, NaN/inf to None (strict JSON has no NaN), recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if hasattr(value, "get_params"):
            out[key] = {"estimator": type(value).__name__, **_plain_params(value.get_params(deep=False))}
        elif isinstance(value, (str, int, float, bool, type(None), np.generic)):
            out[key] = _plain(value)
        elif isinstance(value, (tuple, list)):
            out[key] = [_plain(v) if isinstance(v, (str, int, float, bool, np.generic)) else repr(v) for v in value]
        else:
            out[key] = repr(value)
    return out


def dump_pipeline(pipeline: Any, path: str | os.PathLike[str]) -> None:
    import joblib

    joblib.dump(pipeline, os.fspath(path))


@dataclass
class LoadedModel:
    pipeline: Any
    metadata: dict[str, Any]
    warnings: list[str]
    folder: str


def load_model(model_dir: str | os.PathLike[str]) -> LoadedModel:
    """Load ``model.joblib`` + ``model.json``. Only for trusted folders: unpickling can run arbitrary code."""
    import json

    import sklearn

    folder = Path(model_dir)
    meta_path, model_path = folder / META_FILE, folder / MODEL_FILE
    if not meta_path.is_file() or not model_path.is_file():
        raise InputNotFoundError(f"{folder} is not a medview classifier folder (it needs {MODEL_FILE} and "
                                 f"{META_FILE})")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:
        raise CorruptFileError(f"Cannot read {meta_path}: {exc}") from None
    if metadata.get("format") != FORMAT:
        raise UnsupportedFormatError(f"{meta_path} is not a medview classifier description")
    expected = metadata.get("model_sha256")
    if expected and file_sha256(model_path) != expected:
        raise CorruptFileError(f"{model_path} does not match {META_FILE} (SHA-256 differs): the folder was "
                               "modified or damaged")
    notes: list[str] = []
    trained_with = metadata.get("versions", {}).get("scikit-learn")
    if trained_with and trained_with != sklearn.__version__:
        notes.append(f"the model was trained with scikit-learn {trained_with}, this is {sklearn.__version__}: "
                     "predictions may differ")
    import joblib

    try:
        with _warnings_as_notes(notes):
            pipeline = joblib.load(model_path)
    except Exception as exc:  # unpickling raises anything from EOFError to AttributeError
        raise CorruptFileError(f"Cannot load {model_path}: {type(exc).__name__}: {exc}") from None
    return LoadedModel(pipeline, metadata, notes, os.fspath(folder))


def predict(model: str | os.PathLike[str] | LoadedModel, table: Any, case_id: str | None = None):
    """Predict every row of ``table`` (a path or a DataFrame) with a saved model.

    Returns a DataFrame: case id, ``predicted`` class and ``probability_<class>`` per class; its
    ``attrs["warnings"]`` lists version mismatches and imputed values.  Load models only from trusted sources.
    """
    import pandas as pd

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    meta = loaded.metadata
    case_id = case_id if case_id is not None else meta.get("case_id")
    frame = table.rename(columns=str) if isinstance(table, pd.DataFrame) else read_table(table, case_id)
    features = list(meta["features"])
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise MedviewError(f"The table lacks {len(missing)} of the model's {len(features)} feature column(s): "
                           f"{_columns_text(missing, 20)}")
    not_numeric = [f for f in features if not pd.api.types.is_numeric_dtype(frame[f])]
    if not_numeric:
        raise MedviewError(f"Feature column(s) that are not numeric: {_columns_text(not_numeric, 10)}")
    x = frame[features].to_numpy(dtype=np.float64)
    if np.isinf(x).any():
        raise MedviewError("The table has infinite feature values")
    notes = list(loaded.warnings)
    if np.isnan(x).any():
        notes.append(f"{int(np.isnan(x).sum())} missing feature value(s) replaced by the training median")
    with _small_blas(), _warnings_as_notes(notes):
        predicted = loaded.pipeline.predict(x)
        proba = loaded.pipeline.predict_proba(x)
    id_name = case_id if case_id and case_id in frame.columns else "case"
    ids = frame[case_id].astype(str).to_numpy() if id_name == case_id else np.arange(len(frame)).astype(str)
    out = pd.DataFrame({id_name: ids, "predicted": predicted})
    for j, c in enumerate(loaded.pipeline.classes_):
        out[f"probability_{c}"] = proba[:, j]
    out.attrs["warnings"] = notes
    return out


# -- plots (matplotlib without pyplot: Figure + Agg canvas, safe in worker threads) -----------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike[str]) -> None:
    fig.savefig(os.fspath(path), format="png")


def plot_roc(evaluation: Evaluation, y: np.ndarray, path: str | os.PathLike[str]) -> None:
    """ROC per fold (thin) and pooled out-of-fold (thick), AUC in the legend; one panel per class (OvR) when
    there are more than two classes."""
    from sklearn.metrics import auc, roc_curve

    classes = evaluation.classes
    targets = [classes[1]] if len(classes) == 2 else list(classes)[:12]
    ncols = min(len(targets), 3)
    nrows = math.ceil(len(targets) / ncols)
    fig = _figure(5.0 * ncols, 4.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, positive in zip(axes, targets, strict=False):
        j = int(np.flatnonzero(classes == positive)[0])
        for i, (_, test) in enumerate(evaluation.splits):
            truth = y[test] == positive
            if truth.all() or not truth.any() or len(evaluation.splits) == 1:
                continue
            fpr, tpr, _ = roc_curve(truth, evaluation.proba[test, j])
            ax.plot(fpr, tpr, lw=1, alpha=0.5, label=f"fold {i + 1} (AUC {auc(fpr, tpr):.2f})")
        tested = evaluation.fold_of_row >= 0
        truth = y[tested] == positive
        if truth.any() and not truth.all():
            fpr, tpr, _ = roc_curve(truth, evaluation.proba[tested, j])
            name = "pooled out-of-fold" if evaluation.scheme == "cv" else "hold-out"
            ax.plot(fpr, tpr, lw=2.5, color="black", label=f"{name} (AUC {auc(fpr, tpr):.2f})")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate",
               title=f"ROC: {positive}" + (" vs rest" if len(classes) > 2 else " positive"))
        ax.legend(loc="lower right", fontsize=7)
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    _save(fig, path)


def plot_confusion(evaluation: Evaluation, path: str | os.PathLike[str]) -> None:
    """Pooled confusion matrix (counts), each cell annotated."""
    cm = evaluation.confusion
    labels = [str(c) for c in evaluation.classes]
    size = max(4.0, 1.0 + 0.6 * len(labels))
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    for (r, c), value in np.ndenumerate(cm):
        ax.text(c, r, str(value), ha="center", va="center",
                color="white" if value > cm.max() / 2 else "black", fontsize=11)
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="true", title="Confusion matrix (out-of-fold)")
    _save(fig, path)


def plot_importance(importance: dict[str, Any], path: str | os.PathLike[str], top: int = 20) -> None:
    """The ``top`` most important features as horizontal bars."""
    items = sorted(importance["values"].items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig = _figure(7.5, max(2.5, 0.3 * len(items) + 1.2))
    ax = fig.subplots()
    names = [name if len(name) <= 40 else name[:37] + "…" for name, _ in items][::-1]
    ax.barh(range(len(items)), [v for _, v in items][::-1], color="tab:blue")
    ax.set(yticks=range(len(items)), yticklabels=names, xlabel="importance")
    ax.set_title(f"Top {len(items)} features: {importance['method']}", fontsize=9)
    _save(fig, path)
