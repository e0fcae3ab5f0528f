"""framework pytorch (mlp) end to end on CPU: one process, and a torchrun gang of two on gloo."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pandas as pd
import pytest
import torch

from .conftest import Trainer

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def mlp(trainer: Trainer, dataset: str, job: str, epochs: int = 20, **hp: Any) -> dict[str, Any]:
    return trainer.config(
        framework="pytorch",
        algorithm="mlp",
        hyperparameters={"epochs": epochs, "hidden_layers": [32, 16], "batch_size": 32, **hp},
        dataset={"uri": f"sklearn://{dataset}"},
        seed=5,
        output=f"s3://{trainer.bucket}/jobs/{job}",
    )


def test_regression_on_diabetes(trainer: Trainer) -> None:
    result = trainer.run(mlp(trainer, "diabetes", "diabetes", epochs=40, learning_rate=0.01))
    m = trainer.manifest(result)
    assert (m["framework"], m["task"], m["device"], m["worldSize"]) == ("pytorch", "regression", "cpu", 1)
    assert set(m["metrics"]) == {"rmse", "mae", "r2"}
    # diabetes' target spreads over ~25..346 (std ~77): a fitted model beats the mean by a margin
    assert m["metrics"]["r2"] > 0.3 and 0 < m["metrics"]["mae"] < m["metrics"]["rmse"] < 70
    assert m["libraries"]["torch"] == "2.15.0"
    art = m["artifact"]
    assert art["format"] == "torchscript" and art["uri"].endswith("/model.pt")
    body = trainer.get(art["uri"])
    assert hashlib.sha256(body).hexdigest() == art["sha256"] and len(body) == art["sizeBytes"]
    assert m["stateDict"]["format"] == "state_dict" and m["stateDict"]["uri"].endswith("/state_dict.pt")
    epochs = [e for e in result.events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == list(range(1, 41)) and all("rmse" in e and "loss" in e for e in epochs)
    assert epochs[-1]["loss"] < epochs[0]["loss"]
    # The TorchScript module takes raw features (its scaler is inside) and predicts in the target's units.
    model = torch.jit.load(io.BytesIO(body))
    ref = pd.read_parquet(io.BytesIO(trainer.get(m["referenceData"]["uri"])))
    with torch.no_grad():
        pred = model(torch.as_tensor(ref.to_numpy()))  # float64 in: the model casts
    assert pred.shape == (len(ref),) and 25 < float(pred.mean()) < 350


def test_classification_outputs_probabilities(trainer: Trainer) -> None:
    m = trainer.manifest(trainer.run(mlp(trainer, "iris", "iris", epochs=30, learning_rate=0.01)))
    assert m["task"] == "classification" and m["classes"] == [0, 1, 2]
    assert m["metrics"]["accuracy"] >= 0.8 and m["metrics"]["roc_auc"] > 0.9
    model = torch.jit.load(io.BytesIO(trainer.get(m["artifact"]["uri"])))
    ref = pd.read_parquet(io.BytesIO(trainer.get(m["referenceData"]["uri"])))
    with torch.no_grad():
        probs = model(torch.as_tensor(ref.to_numpy(), dtype=torch.float32))
    assert probs.shape == (len(ref), 3) and torch.allclose(probs.sum(dim=1), torch.ones(len(ref)))
    state = torch.load(io.BytesIO(trainer.get(m["stateDict"]["uri"])))
    assert {"core.x_mean", "core.x_std", "core.net.0.weight"} <= set(state)


def test_same_seed_same_metrics_on_cpu(trainer: Trainer) -> None:
    a, b = (trainer.manifest(trainer.run(mlp(trainer, "wine", f"rep-{i}", epochs=5, dropout=0.1))) for i in (1, 2))
    assert a["metrics"] == b["metrics"]
    # the weights repeat byte for byte; model.pt does not (TorchScript stores a random serialization id)
    assert a["stateDict"]["sha256"] == b["stateDict"]["sha256"]


def test_bad_mlp_hyperparameter_is_invalid_input(trainer: Trainer) -> None:
    result = trainer.run(mlp(trainer, "iris", "bad", hidden_layers=[0]))
    assert result.rc == 65 and result.termination is not None
    assert result.termination["reason"] == "InvalidInput" and "hidden_layers" in result.termination["message"]


def test_ddp_two_processes_on_gloo(trainer: Trainer) -> None:
    result = trainer.run(mlp(trainer, "breast_cancer", "ddp", epochs=5), nproc=2, timeout=180)
    assert result.rc == 0, result.stderr[-3000:]
    m = trainer.manifest(result)
    assert m["worldSize"] == 2 and m["task"] == "classification" and m["metrics"]["accuracy"] > 0.8
    keys = trainer.keys("jobs/ddp/")
    assert [k for k in keys if k.endswith("manifest.json")] == ["jobs/ddp/manifest.json"]
    assert len(keys) == 4  # model.pt, state_dict.pt, reference.parquet, manifest.json
    assert sorted(e["rank"] for e in result.events if e["event"] == "done") == [0, 1]
    # only rank 0 evaluates and writes
    assert {e["rank"] for e in result.events if e["event"] in ("epoch", "evaluate", "upload")} == {0}
    # each rank trained on its half of the 455 training rows (padded to 228), the gang on all of them
    assert [(e["trainRows"], e["rowsPerRank"]) for e in result.events if e["event"] == "fit"] == [(455, 228)] * 2


def test_ddp_failure_reason_travels_in_the_termination_message(trainer: Trainer) -> None:
    """torchrun exits 1 whatever its workers exited with; the worker's reason and code are in the message."""
    cfg = mlp(trainer, "iris", "ddp-bad")
    cfg["dataset"]["target"] = "species"
    result = trainer.run(cfg, nproc=2, timeout=180)
    assert result.rc == 1
    assert result.termination is not None and result.termination["reason"] == "InvalidInput"
    assert result.termination["exitCode"] == 65 and "'species'" in result.termination["message"]
    assert trainer.keys("jobs/") == []
