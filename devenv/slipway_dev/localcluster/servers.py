"""Loopback servers the tests and the demo run next to the control plane, as child processes: moto's S3
server and slipway's drift runtime. Each answers an HTTP health URL once it is up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ACCESS_KEY = "slipway"
SECRET_KEY = "slipway-secret"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChildServer:
    """A server process bound to 127.0.0.1:`port`, logging to `log_path`."""

    name = "server"

    def __init__(self, log_path: Path, port: int | None = None, python: str = sys.executable) -> None:
        self.port = port or free_port()
        self.log_path, self.python = log_path, python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def health_url(self) -> str:
        return self.url

    def child_env(self) -> dict[str, str]:
        return os.environ.copy()

    def start(self, timeout: float = 60.0) -> ChildServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, start_new_session=True, env=self.child_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {tail}")
            try:
                with urllib.request.urlopen(self.health_url(), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.health_url()} within {timeout}s")

    def stop(self, kill: bool = False) -> None:
        """Terminate (or SIGKILL, to test what survives a crash) and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class S3Server(ChildServer):
    """moto in server mode: it speaks the S3 REST API like any S3 endpoint, so the code under test (boto3 in the
    operator, the trainer, the drift runtime) runs unchanged; only the endpoint URL points here. Credentials
    are any; these are the ones we hand out."""

    name = "S3 server"

    @property
    def endpoint(self) -> str:
        return self.url

    def argv(self) -> list[str]:
        return [self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def env(self) -> dict[str, str]:
        """What a boto3 client needs to talk to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }


class DriftServer(ChildServer):
    """slipway's drift runtime (`python -m slipway_drift`), reading reference data from `s3`."""

    name = "drift runtime"

    def __init__(self, log_path: Path, state_dir: Path, s3: S3Server, port: int | None = None) -> None:
        super().__init__(log_path, port)
        self.state_dir, self.s3 = state_dir, s3

    def argv(self) -> list[str]:
        port, state = str(self.port), str(self.state_dir)
        return [self.python, "-m", "slipway_drift", "--host", "127.0.0.1", "--port", port, "--state-dir", state]

    def health_url(self) -> str:
        return f"{self.url}/readyz"

    def child_env(self) -> dict[str, str]:
        return {**os.environ, **self.s3.env()}
