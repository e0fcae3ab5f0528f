"""Shared fixtures: a private local control plane per test session, and the operator as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kubectl import Kubectl

# The hooks that fail a skipped test under SLIPWAY_REQUIRE_CLUSTER=1, registered for the whole suite.
from tests.require_cluster import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
# `make test` sets this: there, a control plane that cannot start is a failure, never a skip.
REQUIRE_CLUSTER = os.environ.get("SLIPWAY_REQUIRE_CLUSTER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str | Callable[[], str], check: Callable[[], Any], timeout: float = 60.0, interval: float = 0.3
) -> Any:
    """Poll until `check()` is truthy; fail with the last value seen. A wait, not a timed assertion.
    `what` may be a function, to describe what was seen by the time of the failure."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what() if callable(what) else what}; last seen: {last!r}")


def _local_cluster(
    tmp_path_factory: pytest.TempPathFactory, name: str, what: str, timeout: float, **options: bool
) -> Iterator[Any]:
    from slipway_dev.localcluster import Cluster, ClusterError

    c = Cluster(tmp_path_factory.mktemp(name), free_ports=True, **options)
    try:
        c.up(timeout=timeout)
    except (ClusterError, OSError) as e:
        c.down(purge=True)
        if REQUIRE_CLUSTER:
            pytest.fail(f"{what} did not start: {e}")
        pytest.skip(f"{what} unavailable: {e}")
    yield c
    c.down(purge=True)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A plain local cluster: the control plane and the executor, no serving stack. For what needs no
    InferenceService served: the API, the operator's reconciling, training, the chart."""
    yield from _local_cluster(tmp_path_factory, "cluster", "local control plane", 300.0)


@pytest.fixture(scope="session")
def serving_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second local cluster with the real serving stack: KServe's controller and webhooks,
    Traefik on the Gateway API for Standard mode, Knative Serving with Traefik's Knative
    provider and kube-proxy for Serverless mode, and Prometheus discovering the predictors."""
    yield from _local_cluster(
        tmp_path_factory, "serving", "local serving stack", 600.0, serving=True, knative=True, prometheus=True
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real S3-compatible server (moto's server mode) on loopback, for the whole session."""
    from slipway_dev.localcluster.servers import S3Server

    server = S3Server(tmp_path_factory.mktemp("s3") / "s3.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def drift_server(tmp_path_factory: pytest.TempPathFactory, s3_server: Any) -> Iterator[Any]:
    """slipway's drift runtime, shared like the real one (monitors are keyed by namespace and name)."""
    from slipway_dev.localcluster.servers import DriftServer

    root = tmp_path_factory.mktemp("drift")
    server = DriftServer(root / "drift.log", root / "state", s3_server).start()
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: Any) -> str:
    """A fresh, empty bucket on the session's S3 server."""
    import boto3

    name = f"b-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server.endpoint, **_creds(s3_server)).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_server: Any) -> Any:
    """A boto3 client on the session's S3 server, with the `models` bucket the examples write to."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server.endpoint, **_creds(s3_server))
    if "models" not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket="models")
    return client


def _creds(server: Any) -> dict[str, str]:
    env = server.env()
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def _namespace(cluster: Any) -> Iterator[Kubectl]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", ns)
    yield Kubectl.of(cluster, ns)
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def kubectl(cluster: Any) -> Iterator[Kubectl]:
    yield from _namespace(cluster)


@pytest.fixture
def serving_kubectl(serving_cluster: Any) -> Iterator[Kubectl]:
    yield from _namespace(serving_cluster)


class Operator:
    """`python -m slipway` as a child process against the test cluster."""

    def __init__(self, cluster: Any, log_dir: Path, **env: str) -> None:
        self.cluster, self.port, self.log_path = cluster, free_port(), log_dir / f"operator-{uuid.uuid4().hex[:6]}.log"
        self.env = {"SLIPWAY_HTTP_PORT": str(self.port), "SLIPWAY_HTTP_HOST": "127.0.0.1", **env}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "slipway"], env=self.cluster.env({**os.environ, **self.env}), stdout=log, stderr=log
        )
        wait_for("operator readiness", lambda: self.alive() and self.http("/readyz") == "ok", timeout=60)
        return self

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"operator exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        return True

    def http(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample over series matching `labels`. An operator whose /metrics does not answer
        fails the test: reading it as 0 would let a "nothing happened" assertion pass by accident."""
        text = wait_for("the operator's /metrics", lambda: self.alive() and self.http("/metrics"), timeout=30)
        total = 0.0
        for line in text.splitlines():
            series = line.startswith(name + "{") or line.startswith(name + " ")
            if series and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _operators(cluster: Any, s3_server: Any, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def make(**env: str) -> Operator:
        defaults = {"SLIPWAY_S3_ENDPOINT": s3_server.endpoint}
        op = Operator(cluster, tmp_path, **{**defaults, **env})
        started.append(op.start())
        return op

    yield make
    for op in started:
        op.stop()


@pytest.fixture
def operator_factory(cluster: Any, s3_server: Any, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    yield from _operators(cluster, s3_server, tmp_path)


@pytest.fixture
def serving_operator_factory(serving_cluster: Any, s3_server: Any, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    """Operators against the cluster with the real serving stack (Standard mode)."""
    yield from _operators(serving_cluster, s3_server, tmp_path)


@pytest.fixture
def operator(operator_factory: Callable[..., Operator]) -> Operator:
    return operator_factory()
