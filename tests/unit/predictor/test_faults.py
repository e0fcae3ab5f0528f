"""slipway_predictor.faults: wrappers that misbehave on purpose, as scikit-learn models and behind the server."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from slipway_predictor import faults
from slipway_predictor.faults import FaultInjected, FlakyModel, SlowModel

from .conftest import Serve, Trained, frame_rows, sha256_file


def many_rows(x: pd.DataFrame, n: int = 2000) -> pd.DataFrame:
    """n distinct rows: the dataset's rows, scaled a little differently each time round."""
    reps = -(-n // len(x))
    frames = [x * (1 + 0.001 * k) for k in range(reps)]
    return pd.concat(frames, ignore_index=True).iloc[:n]


def test_flaky_fails_a_deterministic_fraction_of_rows(cancer: Trained) -> None:
    rows = many_rows(cancer.x)
    flaky = FlakyModel(cancer.model, fail_fraction=0.3, seed=7)
    failing = flaky.failing_rows(rows)
    assert 0.26 < failing.mean() < 0.34
    # The same rows fail every time, whatever container they come in; another seed picks other rows.
    assert (flaky.failing_rows(rows.to_numpy()) == failing).all()
    assert (FlakyModel(cancer.model, 0.3, seed=7).failing_rows(rows) == failing).all()
    assert (FlakyModel(cancer.model, 0.3, seed=8).failing_rows(rows) != failing).any()
    assert not FlakyModel(cancer.model, 0.0).failing_rows(rows).any()
    assert FlakyModel(cancer.model, 1.0).failing_rows(rows).all()
    good, bad = rows[~failing].iloc[:50], rows[failing].iloc[:1]
    np.testing.assert_array_equal(flaky.predict_proba(good), cancer.model.predict_proba(good))
    np.testing.assert_array_equal(flaky.predict(good), cancer.model.predict(good))
    with pytest.raises(FaultInjected, match="injected fault on 1 of 51 rows"):
        flaky.predict_proba(pd.concat([good, bad]))


def test_wrappers_pass_for_the_model_they_wrap(cancer: Trained, diabetes: Trained) -> None:
    flaky = FlakyModel(cancer.model, 0.5, seed=1)
    assert is_classifier(flaky) and list(flaky.classes_) == [0, 1]
    assert list(flaky.feature_names_in_) == list(cancer.x.columns) and flaky.n_features_in_ == 30
    assert flaky.get_params(deep=False) == {"base": cancer.model, "fail_fraction": 0.5, "seed": 1}
    assert clone(flaky).fail_fraction == 0.5
    slow = SlowModel(diabetes.model, 0.01)
    assert is_regressor(slow) and not hasattr(slow, "predict_proba") and not hasattr(slow, "classes_")
    copy = pickle.loads(pickle.dumps(flaky))
    assert type(copy) is FlakyModel and (copy.failing_rows(cancer.x) == flaky.failing_rows(cancer.x)).all()


def test_slow_model_answers_late(diabetes: Trained) -> None:
    slow = SlowModel(diabetes.model, delay_seconds=0.2)
    start = time.monotonic()
    np.testing.assert_array_equal(slow.predict(diabetes.x.iloc[:3]), diabetes.model.predict(diabetes.x.iloc[:3]))
    assert time.monotonic() - start >= 0.2


def _faults_cli(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "slipway_predictor.faults", *args], capture_output=True, text=True, check=True
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_cli_writes_an_artifact_any_predictor_can_load(cancer: Trained, tmp_path: Path) -> None:
    dst = tmp_path / "flaky.joblib"
    out = _faults_cli("flaky", "--fail-fraction", "0.25", "--seed", "3", str(cancer.path), str(dst))
    assert out == {"uri": str(dst), "sha256": sha256_file(dst), "sizeBytes": dst.stat().st_size, "format": "joblib"}
    # Pickled under its importable name, not __main__, so this process (and the predictor) can load it.
    model = joblib.load(dst)
    assert type(model) is FlakyModel and (model.fail_fraction, model.seed) == (0.25, 3)
    # No timestamps in the file: the same command writes the same bytes.
    again = _faults_cli("flaky", "--fail-fraction", "0.25", "--seed", "3", str(cancer.path), str(tmp_path / "2.joblib"))
    assert again["sha256"] == out["sha256"]
    with pytest.raises(ValueError, match="only scikit-learn"):
        faults.write_faulty(str(tmp_path / "model.pt"), str(tmp_path / "x.joblib"), "slow", delay_seconds=1)


def test_flaky_version_answers_500_on_its_share_of_requests(
    serve: Serve, cancer: Trained, s3_server: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad version is an ordinary artifact in S3; its failures are server errors, counted as such."""
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    import boto3

    boto3.client("s3").upload_file(str(cancer.path), s3_bucket, "good/model.joblib")
    made = faults.write_faulty(
        f"s3://{s3_bucket}/good/model.joblib", f"s3://{s3_bucket}/bad/model.joblib", "flaky", fail_fraction=0.3, seed=11
    )
    env = {**cancer.env("cancer-bad"), **s3_server.env(), "SLIPWAY_ARTIFACT_SHA256": made["sha256"]}
    p = serve("cancer", ["--storage_uri", made["uri"]], env)
    n = 120
    rows = frame_rows(many_rows(cancer.x, n), n)
    expected = FlakyModel(cancer.model, 0.3, seed=11).failing_rows(pd.DataFrame(rows, columns=cancer.x.columns))
    statuses = [p.v1({"instances": [row]}).status for row in rows]
    assert statuses == [500 if f else 200 for f in expected]
    assert 0.15 < expected.mean() < 0.45
    labels = {"model": "cancer", "version": "cancer-bad"}
    assert p.metric("slipway_predictor_requests_total", outcome="server_error", **labels) == expected.sum()
    assert p.metric("slipway_predictor_requests_total", outcome="ok", **labels) == n - expected.sum()
    failed = p.v1({"instances": [rows[int(np.flatnonzero(expected)[0])]]})
    assert failed.status == 500 and failed.error.startswith("the model failed: FaultInjected: injected fault on 1 of 1")


def test_slow_version_does_not_block_the_server(serve: Serve, cancer: Trained, tmp_path: Path) -> None:
    path = tmp_path / "slow" / "model.joblib"
    path.parent.mkdir()
    made = faults.write_faulty(str(cancer.path), str(path), "slow", delay_seconds=1.5)
    p = serve(
        "slow", ["--model_dir", str(path.parent)], {**cancer.env("slow-v1"), "SLIPWAY_ARTIFACT_SHA256": made["sha256"]}
    )
    answers: list[int] = []
    worker = threading.Thread(target=lambda: answers.append(p.v1({"instances": frame_rows(cancer.x, 1)}).status))
    start = time.monotonic()
    worker.start()
    time.sleep(0.3)  # pacing: let the predict request reach the server first
    # While the model sleeps on the thread pool, the event loop still answers health checks and scrapes:
    # the health check comes back while the slow predict is still outstanding.
    assert p.get("/v2/health/ready").status == 200
    assert worker.is_alive() and answers == []
    worker.join(timeout=60)
    assert answers == [200] and time.monotonic() - start >= 1.5
    assert p.metric("slipway_predictor_request_duration_seconds_bucket", le="1.0", version="slow-v1") == 0
    assert p.metric("slipway_predictor_request_duration_seconds_bucket", le="+Inf", version="slow-v1") == 1
