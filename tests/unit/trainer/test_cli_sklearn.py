"""`python -m slipway_trainer` end to end against a real S3 server: outputs, exit codes, termination message."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from slipway_trainer.cli import main

from .conftest import Trainer, free_port


def test_sklearn_on_a_bundled_dataset(trainer: Trainer) -> None:
    result = trainer.run(trainer.config())
    m = trainer.manifest(result)
    out = f"s3://{trainer.bucket}/jobs/demo-0a1b2c3d"
    assert result.termination == {"manifest": f"{out}/manifest.json"}
    assert m["framework"] == "sklearn" and m["task"] == "classification" and m["modelName"] == "demo"
    assert m["algorithm"] == "sklearn.ensemble.RandomForestClassifier"
    assert m["hyperparameters"] == {"n_estimators": 10} and m["seed"] == 42
    assert (m["device"], m["worldSize"], m["classes"]) == ("cpu", 1, [0, 1])
    assert m["dataset"]["uri"] == "sklearn://breast_cancer" and m["dataset"]["rows"] == 569
    assert len(m["dataset"]["sha256"]) == 64
    assert m["signature"]["target"] == "target" and len(m["signature"]["inputs"]) == 30
    assert m["signature"]["inputs"][0] == {"name": "mean radius", "dtype": "float64"}
    assert m["libraries"]["scikit-learn"] == "1.9.1" and m["libraries"]["python"].startswith("3.11")
    # the artifact in S3 is the one the manifest describes
    art = m["artifact"]
    assert art["uri"] == f"{out}/model.joblib" and art["format"] == "joblib"
    body = trainer.get(art["uri"])
    assert hashlib.sha256(body).hexdigest() == art["sha256"] and len(body) == art["sizeBytes"]
    # reference data: training inputs only, the manifest's row count
    ref = pd.read_parquet(io.BytesIO(trainer.get(m["referenceData"]["uri"])))
    assert m["referenceData"]["uri"] == f"{out}/reference.parquet"
    assert len(ref) == m["referenceData"]["rows"] == 455 and "target" not in ref.columns
    assert list(ref.columns) == [c["name"] for c in m["signature"]["inputs"]]
    assert set(m["metrics"]) == {"accuracy", "f1", "roc_auc"}
    assert m["metrics"]["accuracy"] > 0.9 and m["metrics"]["roc_auc"] > 0.95
    assert trainer.keys("jobs/") == [
        f"jobs/demo-0a1b2c3d/{n}" for n in ("manifest.json", "model.joblib", "reference.parquet")
    ]
    # progress: start ... done, each line JSON (checked by trainer.run)
    names = [e["event"] for e in result.events]
    assert names[0] == "start" and names[-1] == "done" and "evaluate" in names
    assert result.event("evaluate")["metrics"] == m["metrics"]


def test_joblib_artifact_predicts(trainer: Trainer) -> None:
    import joblib

    cfg = trainer.config(
        algorithm="sklearn.linear_model.Ridge",
        hyperparameters={"alpha": 0.5},
        dataset={"uri": "sklearn://diabetes"},
    )
    m = trainer.manifest(trainer.run(cfg))
    assert m["task"] == "regression" and set(m["metrics"]) == {"rmse", "mae", "r2"} and "classes" not in m
    assert 0.3 < m["metrics"]["r2"] < 0.7 and m["metrics"]["mae"] < m["metrics"]["rmse"]
    model = joblib.load(io.BytesIO(trainer.get(m["artifact"]["uri"])))
    ref = pd.read_parquet(io.BytesIO(trainer.get(m["referenceData"]["uri"])))
    assert model.predict(ref.head(3)).shape == (3,)


def test_same_seed_same_metrics_and_artifact(trainer: Trainer) -> None:
    """Also across hash seeds: pickles of sets and dicts could otherwise change with PYTHONHASHSEED."""
    runs = []
    for i, hashseed in enumerate(("1", "2")):
        cfg = trainer.config(output=f"s3://{trainer.bucket}/jobs/repeat-{i}", dataset={"uri": "sklearn://wine"})
        runs.append(trainer.manifest(trainer.run(cfg, PYTHONHASHSEED=hashseed)))
    a, b = runs
    assert a["metrics"] == b["metrics"] and a["dataset"]["sha256"] == b["dataset"]["sha256"]
    assert a["artifact"]["sha256"] == b["artifact"]["sha256"] and a["artifact"]["uri"] != b["artifact"]["uri"]
    other = trainer.manifest(trainer.run(trainer.config(seed=43, dataset={"uri": "sklearn://wine"})))
    assert other["artifact"]["sha256"] != a["artifact"]["sha256"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_s3_dataset_with_features_and_string_labels(
    trainer: Trainer, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process (main(argv)) to save an interpreter start; the subprocess tests cover the real entry point."""
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x1": rng.normal(size=200), "x2": rng.normal(size=200), "noise": rng.normal(size=200)})
    df["kind"] = np.where(df.x1 + df.x2 > 0, "up", "down")
    buf = io.BytesIO()
    if fmt == "csv":
        df.to_csv(buf, index=False)
    else:
        df.to_parquet(buf, index=False)
    uri = trainer.put(f"data/table.{fmt}", buf.getvalue())
    dataset = {"uri": uri, "target": "kind", "features": ["x2", "x1"]}
    cfg = trainer.config(algorithm="sklearn.linear_model.LogisticRegression", hyperparameters={}, dataset=dataset)
    assert main(["--config", json.dumps(cfg)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    manifest_uri = events[-1]["manifest"]
    m = json.loads(trainer.get(manifest_uri))
    assert [c["name"] for c in m["signature"]["inputs"]] == ["x2", "x1"] and m["signature"]["target"] == "kind"
    assert m["classes"] == ["down", "up"] and m["metrics"]["accuracy"] > 0.9
    assert m["dataset"] == {"uri": uri, "sha256": m["dataset"]["sha256"], "rows": 200}


def test_csv_and_parquet_of_the_same_table_hash_alike(trainer: Trainer, capsys: pytest.CaptureFixture[str]) -> None:
    df = pd.DataFrame({"a": np.linspace(0, 1, 50), "target": [0, 1] * 25})
    csv, pq = io.BytesIO(), io.BytesIO()
    df.to_csv(csv, index=False)
    df.to_parquet(pq, index=False)
    hashes = []
    for name, body in (("t.csv", csv.getvalue()), ("t.parquet", pq.getvalue())):
        cfg = trainer.config(
            algorithm="sklearn.tree.DecisionTreeClassifier",
            hyperparameters={},
            dataset={"uri": trainer.put(name, body)},
            output=f"s3://{trainer.bucket}/out/{name}",
        )
        assert main(["--config", json.dumps(cfg)]) == 0
        data = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if '"data"' in line)
        hashes.append(data["sha256"])
    assert hashes[0] == hashes[1]


def invalid(trainer: Trainer, cfg: dict[str, Any] | str, *words: str) -> None:
    result = trainer.run(cfg)
    assert result.rc == 65, result.stderr[-2000:]
    assert result.termination is not None and result.termination["reason"] == "InvalidInput"
    assert result.termination["exitCode"] == 65
    for w in words:
        assert w in result.termination["message"]
    assert result.events[-1]["event"] == "error" and result.events[-1]["message"] == result.termination["message"]
    assert trainer.keys("jobs/") == []  # nothing written, certainly no manifest


def test_unknown_bundled_dataset_is_invalid_input(trainer: Trainer) -> None:
    invalid(trainer, trainer.config(dataset={"uri": "sklearn://mnist"}), "sklearn://mnist")


def test_missing_target_column_is_invalid_input(trainer: Trainer) -> None:
    invalid(trainer, trainer.config(dataset={"uri": "sklearn://iris", "target": "species"}), "'species'")


def test_missing_s3_object_and_bad_algorithm_are_invalid_input(trainer: Trainer) -> None:
    invalid(trainer, trainer.config(dataset={"uri": f"s3://{trainer.bucket}/nope.csv"}), "nope.csv", "does not exist")
    invalid(trainer, trainer.config(algorithm="sklearn.ensemble.Forest"), "sklearn.ensemble has no Forest")


def test_malformed_config_is_invalid_input(trainer: Trainer) -> None:
    invalid(trainer, "{", "not valid JSON")


def test_unreachable_s3_is_transient(trainer: Trainer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = trainer.config(dataset={"uri": f"s3://{trainer.bucket}/data.csv"})
    # Bounded retries, not a hang: a run that outlasts the timeout raises subprocess.TimeoutExpired.
    result = trainer.run(cfg, timeout=30, AWS_ENDPOINT_URL=dead)
    assert result.rc == 75, result.stderr[-2000:]
    assert result.termination is not None and result.termination["reason"] == "Transient"
    assert dead in result.termination["message"]
    assert trainer.env["AWS_SECRET_ACCESS_KEY"] not in result.stderr + json.dumps(result.events)


def test_output_is_checked_before_training(
    trainer: Trainer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing output bucket or a dead endpoint fails before the dataset is read, not after training."""
    cfg = trainer.config(output="s3://no-such-bucket-here/jobs/x")
    assert main(["--config", json.dumps(cfg)]) == 65
    assert "the output bucket no-such-bucket-here does not exist" in capsys.readouterr().out
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert main(["--config", json.dumps(trainer.config())]) == 75
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "error"] and events[-1]["reason"] == "Transient"
