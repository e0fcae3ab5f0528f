"""The processes `make demo` runs next to the local cluster, on fixed ports, each with a pid file in .demo/ so
`make demo-down` stops exactly these: the S3 server, the drift runtime and the operator. A second `make demo`
reuses those still running."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from slipway_dev.localcluster.servers import ChildServer, DriftServer, S3Server

S3_PORT, DRIFT_PORT, OPERATOR_PORT = 19000, 18090, 18080


class OperatorServer(ChildServer):
    name = "operator"

    def __init__(self, log_path: Path, port: int, kubeconfig: str, env: dict[str, str]) -> None:
        super().__init__(log_path, port)
        self.kubeconfig, self.extra = kubeconfig, env

    def argv(self) -> list[str]:
        return [self.python, "-m", "slipway"]

    def health_url(self) -> str:
        return f"{self.url}/readyz"

    def child_env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig, "SLIPWAY_HTTP_HOST": "127.0.0.1",
                "SLIPWAY_HTTP_PORT": str(self.port), **self.extra}  # fmt: skip


def running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def ensure(server: ChildServer, state: Path, key: str) -> None:
    pid_file = state / f"{key}.pid"
    if running(pid_file):
        print(f"{server.name} already running (pid {pid_file.read_text().strip()})", file=sys.stderr)
        return
    server.start(timeout=120)
    assert server.proc is not None
    pid_file.write_text(str(server.proc.pid))
    print(f"{server.name} started on {server.url} (pid {server.proc.pid}, log {server.log_path})", file=sys.stderr)


def start_all(state: Path, kubeconfig: str) -> tuple[S3Server, DriftServer, OperatorServer]:
    state.mkdir(parents=True, exist_ok=True)
    s3 = S3Server(state / "s3.log", S3_PORT)
    drift = DriftServer(state / "drift.log", state / "drift-state", s3, DRIFT_PORT)
    operator = OperatorServer(state / "operator.log", OPERATOR_PORT, kubeconfig, {
        "SLIPWAY_S3_ENDPOINT": s3.url, "SLIPWAY_DRIFT_URL": drift.url,
        "SLIPWAY_DRIFT_POLL_SECONDS": "2",
    })  # fmt: skip
    for server, key in ((s3, "s3"), (drift, "drift"), (operator, "operator")):
        ensure(server, state, key)
    return s3, drift, operator
