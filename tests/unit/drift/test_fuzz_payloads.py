"""Fuzzed CloudEvents against `python -m slipway_drift` as the pod runs it, on loopback: every wrong event is a
4xx whose message names the problem, a 100 MB body is refused without being held in memory, slow senders are
cut off without holding up anyone else, and every event acknowledged before, during and after the campaign is
still in its window afterwards, and after a SIGKILL and a restart.

Size: SLIPWAY_FUZZ_PAYLOADS (default 300; the full campaign by hand: SLIPWAY_FUZZ_PAYLOADS=10000).
Figures: printed as one JSON line per test (`pytest -s` shows them)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import free_port
from tests.unit.drift.conftest import MON, NS, columns, monitor_body, normal, version
from tests.unit.fuzz_payloads import campaign_seed, campaign_size, ce_headers, drift_payloads, valid_body
from tests.unit.payload_client import Answer, memory_kib, send, send_large, trickle

NAMES = columns(3)
EVENTS = f"/v1/events/{NS}/{MON}/v1"
BODY_LIMIT = 1 << 20  # the runtime's default --max-body-bytes
BODY_TIMEOUT = 5.0  # --body-timeout-seconds for these tests (the default is 30)
HUNDRED_MB = 100 * 1024 * 1024
# What refusing a 100 MB body may cost the process at its peak: a few limit-sized buffers, nowhere near the body.
PEAK_BOUND_KIB = 32 * 1024


class Runtime:
    """One `python -m slipway_drift` process on a free loopback port, restartable on the same state."""

    def __init__(self, state_dir: Path, log: Path, env: dict[str, str]) -> None:
        self.state_dir, self.log, self.env = state_dir, log, env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Runtime:
        argv = [sys.executable, "-m", "slipway_drift", "--host", "127.0.0.1", "--port", str(self.port),
                "--state-dir", str(self.state_dir), "--no-warm-up",
                "--body-timeout-seconds", str(BODY_TIMEOUT)]  # fmt: skip
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, env={**os.environ, **self.env}, stdout=log, stderr=log)
        self.wait("readiness", lambda: self.call("GET", "/readyz").status == 200)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no shutdown code runs
        self.proc.wait()

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        try:
            return send(self.port, method, path, data, headers or {"content-type": "application/json"})
        except ConnectionRefusedError:
            if not self.alive():
                pytest.fail(f"drift runtime exited: {self.log.read_text()[-3000:]}")
            return Answer(0, None, True)

    def monitor(self) -> Any:
        return self.call("GET", f"/v1/monitors/{NS}/{MON}").body

    def window_rows(self) -> list[list[float]]:
        rows: list[list[float]] = []
        path = self.state_dir / "monitors" / NS / MON / "window-v1.ndjson"
        for line in path.read_text().splitlines():
            rows.extend(json.loads(line))
        return rows

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"drift runtime exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            if value := check():
                return value
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; log: {self.log.read_text()[-3000:]}")


class Acked:
    """Valid events sent and acknowledged (202): the rows the window must hold, in order."""

    def __init__(self, runtime: Runtime, seed: int) -> None:
        self.runtime, self.rng, self.rows = runtime, random.Random(seed), []  # type: list[list[float]]

    def send(self) -> None:
        doc = valid_body(self.rng, NAMES)
        answer = self.runtime.call("POST", EVENTS, doc, ce_headers(self.rng))
        assert answer.status == 202, (doc, answer)
        self.rows.extend(rows_of(doc))
        assert answer.body == {"accepted": len(rows_of(doc))}

    def check(self, when: str) -> None:
        assert self.runtime.monitor()["versions"]["v1"]["samples"] == len(self.rows), when
        assert self.runtime.window_rows() == self.rows, when


def rows_of(doc: dict[str, Any]) -> list[list[float]]:
    if "instances" in doc:
        return [r if isinstance(r, list) else [r[c] for c in NAMES] for r in doc["instances"]]
    tensors = doc["inputs"]
    if len(tensors) == 1:
        t = tensors[0]
        flat = [v for item in t["data"] for v in (item if isinstance(item, list) else [item])]
        width = t["shape"][1]
        return [flat[i : i + width] for i in range(0, len(flat), width)]
    return [list(r) for r in zip(*(t["data"] for t in tensors), strict=True)]


@pytest.fixture
def runtime(tmp_path: Path, s3_server: Any, upload: Callable[[pd.DataFrame], str]) -> Iterator[Runtime]:
    r = Runtime(tmp_path / "state", tmp_path / "drift.log", s3_server.env()).start()
    # The largest window there is: nothing is sealed and evaluated, every acknowledged row stays in the window.
    body = monitor_body({"v1": version(upload(normal(50, 3)), NAMES)}, windowSize=1_000_000)
    assert r.call("PUT", f"/v1/monitors/{NS}/{MON}", body).status == 200
    r.wait("the reference", lambda: r.monitor()["versions"]["v1"]["referenceLoaded"])
    yield r
    if r.alive():
        r.kill()


def report(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"campaign": name, **figures}, sort_keys=True))


def test_fuzzed_events_are_refused_naming_the_problem(runtime: Runtime) -> None:
    acked = Acked(runtime, seed=1)
    for _ in range(10):
        acked.send()
    acked.check("before the campaign")
    n = campaign_size()
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    bad: list[str] = []
    for i, p in enumerate(drift_payloads(random.Random(campaign_seed()), n, NAMES)):
        answer = runtime.call("POST", EVENTS, p.body, p.headers)
        statuses[answer.status] += 1
        kinds[p.kind] += 1
        message = answer.message.lower()
        if not 400 <= answer.status < 500 or not any(word in message for word in p.names):
            bad.append(f"{p.kind} ({p.what}): {answer.status} {answer.message[:200]!r}")
        if i % 25 == 0:
            acked.send()  # acknowledged events interleaved with the wrong ones
    report("drift", {"payloads": n, "byKind": dict(kinds), "byStatus": {str(k): v for k, v in statuses.items()}})
    assert not bad, f"{len(bad)} of {n} payloads not answered with a 4xx naming the problem:\n" + "\n".join(bad[:30])
    assert runtime.alive()
    acked.send()  # a valid event is still taken, and counted
    acked.check("after the campaign")
    rejected = runtime.monitor()["rejected"]
    assert sum(rejected.values()) == n, rejected

    runtime.kill()
    runtime.start()
    acked.check("after a SIGKILL and a restart")
    acked.send()
    acked.check("after the restart, one more")


def test_hundred_megabyte_bodies_are_refused_without_being_read(runtime: Runtime) -> None:
    acked = Acked(runtime, seed=2)
    acked.send()
    before = memory_kib(runtime.pid)
    headers = ce_headers(random.Random(0))
    sized = send_large(runtime.port, EVENTS, headers, HUNDRED_MB)
    chunked = send_large(runtime.port, EVENTS, headers, HUNDRED_MB, chunked=True)
    # A client that sends all 100 MB whatever it is told: the server reads and drops the rest, or hangs up.
    deaf = send_large(runtime.port, EVENTS, headers, HUNDRED_MB, deaf=True)
    after = memory_kib(runtime.pid)
    report(
        "drift-100MB",
        {"bodyLimitBytes": BODY_LIMIT, "rssKiB": {"before": before, "after": after},
         "answers": {k: [a.status, a.sent, a.closed] for k, a in
                     {"contentLength": sized, "chunked": chunked, "deaf": deaf}.items()}},
    )  # fmt: skip
    for answer in (sized, chunked):
        assert (answer.status, answer.body.get("reason")) == (413, "too_large"), answer
        assert str(BODY_LIMIT) in answer.message
        assert answer.closed, answer
    assert deaf.status == 413 or (deaf.status == 0 and deaf.closed), deaf
    # The peak (VmHWM) stays far below the body: it was never read whole.
    assert after["VmHWM"] - before["VmHWM"] < PEAK_BOUND_KIB, (before, after)
    assert runtime.alive()
    acked.send()
    acked.check("after the large bodies")


def test_slow_senders_are_cut_off_and_hold_up_nobody(runtime: Runtime) -> None:
    acked = Acked(runtime, seed=3)
    acked.send()
    headers = ce_headers(random.Random(0))
    results: dict[str, Answer] = {}
    done: list[str] = []

    def slow(name: str, stop_after: int | None) -> None:
        # 1 byte every 50 ms: 2,400 bytes take two minutes, far past the server's body timeout.
        results[name] = trickle(runtime.port, EVENTS, headers, 2_400, 0.05, stop_after)
        done.append(name)

    threads = [
        threading.Thread(target=slow, args=("trickle", None)),
        threading.Thread(target=slow, args=("stalled", 3)),
    ]
    for t in threads:
        t.start()
    # Meanwhile, other requests are answered as usual.
    answered_meanwhile = 0
    while not done and answered_meanwhile < 5:
        acked.send()
        answered_meanwhile += 1 if not done else 0
    for t in threads:
        t.join()
    report("drift-slow", {k: {"status": a.status, "sentBytes": a.sent, "closed": a.closed} for k, a in results.items()})
    assert answered_meanwhile, "no request was answered while the slow senders were connected"
    for name, answer in results.items():
        assert (answer.status, answer.body.get("reason")) == (408, "too_slow"), (name, answer)
        assert answer.closed, name
        assert answer.sent < 2_400, name
    assert runtime.alive()
    acked.check("after the slow senders")
