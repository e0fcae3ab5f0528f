"""Artifacts the trainer wrote to S3, served with --storage_uri and the environment the Rollout controller derives
from their manifest: scikit-learn (joblib) and PyTorch (TorchScript)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from slipway_predictor import artifact
from slipway_predictor.config import StartupError

from .conftest import Serve

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


def client(s3_env: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session(
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
        region_name=s3_env["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"])


def train(s3_env: dict[str, str], output: str, **config: Any) -> dict[str, Any]:
    """`python -m slipway_trainer` as the trainer pod runs it; returns its manifest."""
    cfg = {"modelName": "m", "hyperparameters": {}, "seed": 3, "output": output, **config}
    env = {**os.environ, **s3_env, "OMP_NUM_THREADS": "1", "SLIPWAY_TERMINATION_LOG": os.devnull}
    proc = subprocess.run(
        [sys.executable, "-m", "slipway_trainer", "--config", json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bucket, key = artifact.split_s3_uri(f"{output}/manifest.json")
    manifest: dict[str, Any] = json.loads(client(s3_env).get_object(Bucket=bucket, Key=key)["Body"].read())
    return manifest


def serving_env(manifest: dict[str, Any], version: str, s3_env: dict[str, str]) -> dict[str, str]:
    """What the serving contract puts on the InferenceService's predictor, from the ModelVersion."""
    env = {
        **s3_env,
        "SLIPWAY_MODEL_VERSION": version,
        "SLIPWAY_FRAMEWORK": manifest["framework"],
        "SLIPWAY_ARTIFACT_SHA256": manifest["artifact"]["sha256"],
        "SLIPWAY_SIGNATURE": json.dumps(manifest["signature"]),
    }
    if "classes" in manifest:
        env["SLIPWAY_CLASSES"] = json.dumps(manifest["classes"])
    return env


def reference(manifest: dict[str, Any], s3_env: dict[str, str]) -> pd.DataFrame:
    bucket, key = artifact.split_s3_uri(manifest["referenceData"]["uri"])
    body = client(s3_env).get_object(Bucket=bucket, Key=key)["Body"]
    return pd.read_parquet(io.BytesIO(body.read()))


def test_sklearn_artifact_from_s3(serve: Serve, s3_server: Any, s3_bucket: str) -> None:
    s3_env = s3_server.env()
    m = train(
        s3_env,
        f"s3://{s3_bucket}/jobs/wine-1",
        framework="sklearn",
        algorithm="sklearn.ensemble.RandomForestClassifier",
        hyperparameters={"n_estimators": 10},
        dataset={"uri": "sklearn://wine"},
    )
    p = serve("wine", ["--storage_uri", m["artifact"]["uri"]], serving_env(m, "wine-v1", s3_env))
    rows = reference(m, s3_env).iloc[:6]
    r = p.v1({"instances": rows.to_dict(orient="records")})
    assert r.status == 200, r.body
    assert r.body["classes"] == m["classes"] == [0, 1, 2] and "scores" not in r.body  # multiclass: no single score
    assert len(r.body["probabilities"]) == 6 and all(abs(sum(pr) - 1) < 1e-9 for pr in r.body["probabilities"])
    assert p.metric("slipway_predictor_prediction_score_count", version="wine-v1") == 6


def test_torchscript_artifact_from_s3_prefix(serve: Serve, s3_server: Any, s3_bucket: str) -> None:
    import torch

    s3_env = s3_server.env()
    output = f"s3://{s3_bucket}/jobs/iris-mlp"
    m = train(
        s3_env,
        output,
        framework="pytorch",
        algorithm="mlp",
        hyperparameters={"epochs": 5, "hidden_layers": [8]},
        dataset={"uri": "sklearn://iris"},
    )
    assert m["artifact"]["format"] == "torchscript"
    # The storage URI may name the run's prefix: the predictor finds model.pt under it.
    p = serve("iris", ["--storage_uri", output], serving_env(m, "iris-v2", s3_env))
    ref = reference(m, s3_env).iloc[:5]
    rows = ref.to_numpy().tolist()
    r = p.v2({"inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP32", "data": rows}]})
    assert r.status == 200, r.body
    out = {o["name"]: o for o in r.body["outputs"]}
    model = torch.jit.load(str(_download(m["artifact"]["uri"], s3_env)))
    with torch.no_grad():
        expected = model(torch.as_tensor(np.asarray(rows, dtype=np.float32))).double().numpy()
    np.testing.assert_allclose(np.reshape(out["probabilities"]["data"], (5, 3)), expected, rtol=1e-6)
    assert out["predictions"]["data"] == [m["classes"][i] for i in expected.argmax(axis=1)]
    assert "scores" not in out and r.body["model_version"] == "iris-v2"
    assert p.v1({"instances": rows}).body["predictions"] == out["predictions"]["data"]
    assert p.v1({"instances": [[1.0, 2.0, "x", 4.0]]}).status == 400


def _download(uri: str, s3_env: dict[str, str]) -> Path:
    bucket, key = artifact.split_s3_uri(uri)
    dest = Path(os.environ.get("TMPDIR", "/tmp")) / f"pt-{os.getpid()}-{Path(key).name}"
    client(s3_env).download_file(bucket, key, str(dest))
    return dest


def test_missing_object_refuses_to_start(
    s3_server: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    with pytest.raises(
        StartupError, match=r"no such object \(tried jobs/none/model.joblib, jobs/none/model.joblib/model.joblib\)"
    ):
        artifact.download(f"s3://{s3_bucket}/jobs/none/model.joblib", tmp_path, "sklearn")
    with pytest.raises(StartupError, match=r"cannot download s3://no-such-bucket-here/m\.joblib"):
        artifact.download("s3://no-such-bucket-here/m.joblib", tmp_path, "sklearn")
