"""``medview classify train`` then ``predict`` through the real entry point; bad input gives exit 3 and one
line on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medview.cli.main import main


def _table(path: Path, n: int = 40, seed: int = 0, with_target: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    frame = pd.DataFrame({"case_id": [f"p{i:02d}" for i in range(n)], "volume_ml": rng.normal(size=n) + 4 * y,
                          "sphericity": rng.normal(size=n), "energy": rng.normal(size=n)})
    if with_target:
        frame["label"] = y
    frame.to_csv(path, index=False)
    return path


def test_train_then_predict(tmp_path: Path, capsys) -> None:
    table = _table(tmp_path / "train.csv")
    code = main(["classify", "train", str(table), "--target", "label", "--model", "logreg", "--cv", "4",
                 "--out", str(tmp_path / "run"), "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    mean, std = metrics["summary"]["accuracy"]["mean"], metrics["summary"]["accuracy"]["std"]
    assert f"accuracy    {mean:.3f} ± {std:.3f}" in out
    assert "4-fold stratified CV" in out and str(tmp_path / "run" / "model") in out
    assert len(metrics["folds"]) == 4 and mean >= 0.9  # volume_ml separates the classes by 4 SD

    new = _table(tmp_path / "new.csv", n=10, seed=5, with_target=False)
    code = main(["classify", "predict", str(tmp_path / "run" / "model"), str(new), "--out",
                 str(tmp_path / "pred.csv")])
    out = capsys.readouterr().out
    assert code == 0
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert predictions.columns.tolist() == ["case_id", "predicted", "probability_0", "probability_1"]
    assert predictions["case_id"].tolist() == [f"p{i:02d}" for i in range(10)]
    np.testing.assert_allclose(predictions[["probability_0", "probability_1"]].sum(axis=1), 1.0, atol=1e-12)
    assert "p09" in out


def test_holdout_and_selection_options(tmp_path: Path, capsys) -> None:
    table = _table(tmp_path / "t.csv")
    code = main(["classify", "train", str(table), "--target", "label", "--model", "dt", "--test-size", "0.25",
                 "--select-k", "1", "--out", str(tmp_path / "run")])
    assert code == 0
    assert "stratified hold-out (0.25 of rows)" in capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    assert meta["select_k"] == 1 and meta["evaluation"]["scheme"] == "holdout"
    assert meta["pipeline"] == ["impute", "scale", "select", "classifier"]


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "outcome"], "no target column 'outcome'"),
    (["--target", "label", "--cv", "30"], "fewer than the 30 folds"),
    (["--target", "label", "--case-id", "patient"], "no case-id column 'patient'"),
])
def test_bad_training_input_exits_3_with_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    table = _table(tmp_path / "t.csv")
    code = main(["classify", "train", str(table), "--model", "knn", "--out", str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 3
    assert err.startswith("medview: error:") and message in err and err.count("\n") == 1


def test_predict_with_missing_features_or_no_model_exits_3(tmp_path: Path, capsys) -> None:
    table = _table(tmp_path / "t.csv")
    assert main(["classify", "train", str(table), "--target", "label", "--model", "dt", "--cv", "2",
                 "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    pd.read_csv(table).drop(columns=["energy"]).to_csv(tmp_path / "partial.csv", index=False)
    assert main(["classify", "predict", str(tmp_path / "run" / "model"), str(tmp_path / "partial.csv")]) == 3
    err = capsys.readouterr().err
    assert "lacks 1 of the model's 3 feature column(s): energy" in err and err.count("\n") == 1
    assert main(["classify", "predict", str(tmp_path), str(table)]) == 3
    assert "not a medview classifier folder" in capsys.readouterr().err


def test_no_action_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["classify"])
    assert exit_info.value.code == 2 and "classify needs an action" in capsys.readouterr().err
