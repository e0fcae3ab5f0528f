"""Helpers for the predictor runtime's tests: models trained here, and `python -m slipway_predictor` run as the
pod would run it, on a free port, asked over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# kserve parses sys.argv when it is imported (kserve.model_server), abbreviations included: pytest's `--co`
# would be taken for its `--configure_logging` and end the run. Import it first, with an empty command line.
_argv, sys.argv = sys.argv, sys.argv[:1]
try:  # the runtime has its own dependencies: `pip install -e 'runtimes/predictor[test]'`
    import joblib
    import kserve  # noqa: F401
    import pandas as pd
    import slipway_predictor  # noqa: F401
except ImportError as e:
    # `make test` sets this: there a missing runtime is a failure, never a skip (as in tests/conftest.py).
    if os.environ.get("SLIPWAY_REQUIRE_CLUSTER") == "1":
        raise
    collect_ignore_glob = ["test_*.py"]
    _MISSING = f"predictor tests not collected: {e}; pip install -e 'runtimes/predictor[test]'"

    def pytest_report_header() -> str:
        return _MISSING
finally:
    sys.argv = _argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def signature_of(frame: Any) -> dict[str, Any]:
    return {"inputs": [{"name": str(c), "dtype": str(frame[c].dtype)} for c in frame.columns]}


@dataclass
class Trained:
    """A model fitted here on a scikit-learn dataset (as a DataFrame, like the trainer), saved as joblib."""

    path: Path
    x: Any  # the feature frame
    model: Any
    signature: dict[str, Any] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return sha256_file(self.path)

    def env(self, version: str = "v1") -> dict[str, str]:
        return {
            "SLIPWAY_MODEL_VERSION": version,
            "SLIPWAY_FRAMEWORK": "sklearn",
            "SLIPWAY_ARTIFACT_SHA256": self.sha256,
            "SLIPWAY_SIGNATURE": json.dumps(self.signature),
        }


def train(loader: str, estimator: Any, directory: Path) -> Trained:
    from sklearn import datasets

    x, y = getattr(datasets, loader)(return_X_y=True, as_frame=True)
    model = estimator.fit(x, y)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.joblib"
    joblib.dump(model, path, compress=("zlib", 3), protocol=5)
    return Trained(path, x, model, signature_of(x))


@pytest.fixture(scope="session")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Binary classification: 30 float64 columns."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return train(
        "load_breast_cancer", make_pipeline(StandardScaler(), LogisticRegression()), tmp_path_factory.mktemp("cancer")
    )


@pytest.fixture(scope="session")
def diabetes(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Regression: 10 float64 columns."""
    from sklearn.linear_model import Ridge

    return train("load_diabetes", Ridge(), tmp_path_factory.mktemp("diabetes"))


@dataclass
class Response:
    status: int
    body: Any

    @property
    def error(self) -> str:
        return str(self.body.get("error", "")) if isinstance(self.body, dict) else ""


class Predictor:
    """One `python -m slipway_predictor` process; its log is in `log_path`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.port, self.log_path = name, free_port(), log_path
        self.termination = log_path.with_suffix(".termination")
        argv = [sys.executable, "-m", "slipway_predictor", "--model_name", name, "--http_port", str(self.port), *args]
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "SLIPWAY_TERMINATION_LOG": str(self.termination), **env}
        self.log = log_path.open("ab")
        self.proc = subprocess.Popen(argv, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90) -> Predictor:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"predictor exited with {self.proc.returncode}:\n{self.output()[-4000:]}")
            if self.get(f"/v2/models/{self.name}/ready").status == 200:
                return self
            time.sleep(0.2)
        pytest.fail(f"predictor not ready after {timeout}s:\n{self.output()[-4000:]}")

    def wait_exit(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = {"content-type": content_type, **(headers or {})}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except OSError:
            return Response(0, None)
        try:
            return Response(status, json.loads(raw))
        except ValueError:
            return Response(status, raw.decode(errors="replace"))

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post(
        self, path: str, body: Any, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.request("POST", path, data, content_type, headers)

    def v1(self, body: Any) -> Response:
        return self.post(f"/v1/models/{self.name}:predict", body)

    def v2(self, body: Any) -> Response:
        return self.post(f"/v2/models/{self.name}/infer", body)

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            return str(r.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a sample over the series whose labels include `labels`."""
        total = 0.0
        for line in self.metrics().splitlines():
            if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


Serve = Callable[..., Predictor]


def _factory(log_dir: Path) -> tuple[Serve, list[Predictor]]:
    started: list[Predictor] = []

    def serve(name: str, args: list[str], env: dict[str, str], ready: bool = True) -> Predictor:
        p = Predictor(name, args, env, log_dir / f"{name}-{len(started)}.log")
        started.append(p)
        return p.wait_ready() if ready else p

    return serve, started


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start predictors for one test; all are stopped after it."""
    factory, started = _factory(tmp_path)
    yield factory
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """Start predictors shared by a module's tests."""
    factory, started = _factory(tmp_path_factory.mktemp("predictors"))
    yield factory
    for p in started:
        p.stop()


def frame_rows(frame: pd.DataFrame, n: int, start: int = 0) -> list[list[float]]:
    return [[float(v) for v in row] for row in frame.iloc[start : start + n].to_numpy().tolist()]
