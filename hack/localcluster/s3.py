"""A real S3-compatible server on loopback for tests and the demo: moto in server mode.

moto's server speaks the S3 REST API over HTTP like any S3 endpoint, so the code under test (boto3 in the
operator and the trainer) is exercised unchanged; only the endpoint URL points here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ACCESS_KEY = "slipway"
SECRET_KEY = "slipway-secret"
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class S3Server:
    """`python -m moto.server` bound to 127.0.0.1; credentials are any, these are the ones we hand out."""

    def __init__(self, log_path: Path, port: int | None = None, python: str = sys.executable) -> None:
        self.port = port or _free_port()
        self.log_path, self.python = log_path, python
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a boto3 client needs to talk to this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def start(self, timeout: float = 30.0) -> S3Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        argv = [self.python, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=os.environ.copy())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"S3 server exited ({self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.endpoint, timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"S3 server did not answer on {self.endpoint} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
