"""`python -m slipway_drift` as the pod runs it, killed with SIGKILL and started again: nothing acknowledged is lost,
and a crash at any step of closing a window neither loses nor repeats its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import free_port
from tests.unit.drift.conftest import MON, NS, binary_headers, columns, monitor_body, normal, v2_matrix, version

NAMES = columns(3)


class Process:
    def __init__(self, state_dir: Path, log: Path, env: dict[str, str]) -> None:
        self.state_dir, self.log, self.env = state_dir, log, env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **env: str) -> Process:
        argv = [sys.executable, "-m", "slipway_drift", "--host", "127.0.0.1", "--port", str(self.port),
                "--state-dir", str(self.state_dir)]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, env={**os.environ, **self.env, **env}, stdout=log, stderr=log)
        self.wait("readiness", lambda: self.call("GET", "/readyz")[0] == 200, 30)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown code runs
        self.proc.wait()

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers=headers or {"content-type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw and path != "/readyz" else raw
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
        except OSError:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"drift runtime exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            return 0, None

    def monitor(self) -> Any:
        return self.call("GET", f"/v1/monitors/{NS}/{MON}")[1]

    def post(self, rows: int, seed: int) -> None:
        body = v2_matrix(normal(rows, 3, seed=seed).to_numpy())
        assert self.call("POST", f"/v1/events/{NS}/{MON}/v1", body, binary_headers()) == (202, {"accepted": rows})

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := check():
                return value
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; log: {self.log.read_text()[-3000:]}")


@pytest.fixture
def process(tmp_path: Path, s3_server: Any) -> Iterator[Process]:
    p = Process(tmp_path / "state", tmp_path / "drift.log", s3_server.env())
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.kill()


def test_sigkill_mid_window_and_mid_close(process: Process, upload: Callable[[pd.DataFrame], str]) -> None:
    p = process.start()
    body = monitor_body({"v1": version(upload(normal(200, 3)), NAMES)}, windowSize=100)
    assert p.call("PUT", f"/v1/monitors/{NS}/{MON}", body)[0] == 200
    p.wait("reference", lambda: p.monitor()["versions"]["v1"]["referenceLoaded"])
    p.post(60, seed=1)
    p.kill()

    # Restarted with S3 unreachable: the reference comes from the state directory's copy.
    p.start(AWS_ENDPOINT_URL="http://127.0.0.1:9")
    doc = p.wait("reference", lambda: (d := p.monitor())["versions"]["v1"]["referenceLoaded"] and d)
    assert (
        doc["versions"]["v1"]["samples"] == 60
        and doc["config"] == (p.call("PUT", f"/v1/monitors/{NS}/{MON}", body)[1]["config"])
    )
    p.post(50, seed=2)  # 40 close the window, 10 open the next
    doc = p.wait("a result", lambda: (d := p.monitor())["results"] and d)
    assert [(r["seq"], r["samples"], r["window"]) for r in doc["results"]] == [(1, 100, 0)]
    assert doc["versions"]["v1"]["samples"] == 10
    p.kill()

    # Killed after the rows of a full window were written, before it was closed: evaluated on start.
    state = p.state_dir / "monitors" / NS / MON
    with (state / "window-v1.ndjson").open("a") as f:
        f.write(json.dumps(normal(90, 3, seed=3).to_numpy().tolist()) + "\n")
        f.write("[[0.1, 0.2")  # a line torn by the kill
    p.start()
    doc = p.wait("the second result", lambda: len((d := p.monitor())["results"]) == 2 and d)
    assert [(r["seq"], r["window"]) for r in doc["results"]] == [(1, 0), (2, 1)]
    assert doc["versions"]["v1"]["samples"] == 0 and doc["versions"]["v1"]["windowsEvaluated"] == 2
    p.kill()

    # Killed after a window's result was written, before the closed window was removed: not evaluated twice.
    (state / "pending-v1.1.ndjson").write_text(json.dumps(normal(100, 3, seed=3).to_numpy().tolist()) + "\n")
    p.start()
    p.post(1, seed=4)
    doc = p.monitor()
    assert len(doc["results"]) == 2 and doc["versions"]["v1"]["windowsEvaluated"] == 2
    assert not (state / "pending-v1.1.ndjson").exists() and doc["versions"]["v1"]["samples"] == 1
    assert (state / "seq").read_text().strip() == "2"
