"""Helpers for the trainer runtime's tests: run `python -m slipway_trainer` (or torchrun) against the session's
S3 server and collect what it left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

try:  # the runtime has its own dependencies: `pip install -e 'runtimes/trainer[test]'`
    import boto3
    import slipway_trainer  # noqa: F401
    import torch  # noqa: F401
except ImportError as e:
    # `make test` sets this: there a missing runtime is a failure, never a skip (as in tests/conftest.py).
    if os.environ.get("SLIPWAY_REQUIRE_CLUSTER") == "1":
        raise
    collect_ignore_glob = ["test_*.py"]
    _MISSING = f"trainer tests not collected: {e}; pip install -e 'runtimes/trainer[test]'"

    def pytest_report_header() -> str:
        return _MISSING


BIN = Path(sys.executable).parent


@dataclass
class Result:
    rc: int
    events: list[dict[str, Any]]
    stderr: str
    termination: dict[str, Any] | None

    def event(self, name: str) -> dict[str, Any]:
        return next(e for e in self.events if e["event"] == name)


@dataclass
class Trainer:
    """Runs the trainer as the pod would, with the S3 server's environment and a private termination log."""

    env: dict[str, str]
    bucket: str
    tmp: Path

    def config(self, **overrides: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "modelName": "demo",
            "framework": "sklearn",
            "algorithm": "sklearn.ensemble.RandomForestClassifier",
            "hyperparameters": {"n_estimators": 10},
            "dataset": {"uri": "sklearn://breast_cancer", "format": None, "target": None, "features": None},
            "seed": 42,
            "output": f"s3://{self.bucket}/jobs/demo-0a1b2c3d",
        }
        return {**cfg, **overrides}

    def run(
        self, config: dict[str, Any] | str, nproc: int = 1, timeout: float = 120, **env: str
    ) -> Result:  # fmt: skip
        arg = config if isinstance(config, str) else json.dumps(config)
        term = self.tmp / f"termination-{os.urandom(4).hex()}"
        term.touch()  # as the kubelet does: the file exists, empty
        if nproc == 1:
            argv = [sys.executable, "-m", "slipway_trainer", "--config", arg]
        else:
            argv = [str(BIN / "torchrun"), "--nnodes=1", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
                    f"--master-port={free_port()}", "-m", "slipway_trainer", "--config", arg]  # fmt: skip
        proc = subprocess.run(
            argv,
            env={**self.env, "SLIPWAY_TERMINATION_LOG": str(term), **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        events = [json.loads(line) for line in proc.stdout.splitlines()]  # every stdout line must be JSON
        assert all("event" in e for e in events), proc.stdout
        text = term.read_text()
        return Result(proc.returncode, events, proc.stderr, json.loads(text) if text else None)

    def s3(self) -> Any:
        return boto3.client("s3")  # the environment in self.env is also this process's (see the fixture)

    def get(self, uri: str) -> bytes:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return bytes(self.s3().get_object(Bucket=bucket, Key=key)["Body"].read())

    def put(self, key: str, data: bytes) -> str:
        self.s3().put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"

    def manifest(self, result: Result) -> dict[str, Any]:
        assert result.rc == 0, result.stderr[-3000:]
        assert result.termination is not None
        loaded: dict[str, Any] = json.loads(self.get(result.termination["manifest"]))
        return loaded

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3().list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def trainer(s3_server: Any, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Trainer]:
    s3_env = s3_server.env()
    for k, v in s3_env.items():  # in-process runs and the test's own boto3 client see the same S3
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SLIPWAY_TERMINATION_LOG", str(tmp_path / "termination-log"))
    # Two cores: one BLAS thread per process keeps the torchrun pair from oversubscribing them.
    env = {**os.environ, **s3_env, "OMP_NUM_THREADS": "1"}
    yield Trainer(env=env, bucket=s3_bucket, tmp=tmp_path)
