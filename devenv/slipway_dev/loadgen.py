"""A bounded load generator for an InferenceService behind the local data plane (tests, benchmarks, the demo).

Sends v1 predict requests for one InferenceService at a fixed rate, records every status code with its time,
and stops by itself after `max_seconds`: it never outlives the test that started it.

Open loop, as real clients are: a scheduler thread releases one request every 1/rps seconds and a few worker
threads send them, so a slow answer delays no other request and the rate holds on a busy machine (a single
sender waiting for each answer reached 40 of 50 requests/s here). A request released while every worker is busy
waits for the next free one; `achieved_rate()` says what was really sent.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any


class Load:
    def __init__(
        self,
        url: str,
        isvc: str,
        namespace: str,
        rows: Sequence[Sequence[float]],
        rps: float,
        max_seconds: float = 900,
        host: str | None = None,
        workers: int = 8,
    ) -> None:
        """`host`: the Host header, the host of the InferenceService's status.url; by default what KServe's
        domain template makes of it here, `<name>-<namespace>.example.com`."""
        self.url, self.isvc, self.ns, self.rows, self.rps = url.rstrip("/"), isvc, namespace, list(rows), rps
        self.host = host or f"{isvc}-{namespace}.example.com"
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.results: list[tuple[float, int]] = []  # (monotonic time, status code; 0 = no answer)
        self.served: list[tuple[float, str]] = []  # (monotonic time, model_version of a 200 that names one)
        self.shift: float = 0.0  # added to every feature: moves the input distribution (drift)
        self._pending: queue.Queue[list[float] | None] = queue.Queue(maxsize=workers)
        self._threads = [threading.Thread(target=self._schedule, daemon=True)]
        self._threads += [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def _schedule(self) -> None:
        rng, started = random.Random(3), time.monotonic()
        period = 1.0 / self.rps
        next_at = started
        while not self.stop_event.is_set() and time.monotonic() - started < self.max_seconds:
            row = [v + self.shift for v in rng.choice(self.rows)]
            while not self.stop_event.is_set():  # every worker busy: wait for one, re-checking stop
                try:
                    self._pending.put(row, timeout=0.5)
                    break
                except queue.Full:
                    continue
            next_at += period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        for _ in self._threads[1:]:
            self._pending.put(None)  # one stop mark per worker

    def _work(self) -> None:
        while (row := self._pending.get()) is not None:
            code, version = self._send(row)
            now = time.monotonic()
            # list.append is atomic: the readers below copy the lists before iterating.
            self.results.append((now, code))
            if version:
                self.served.append((now, version))

    def _send(self, row: list[float]) -> tuple[int, str | None]:
        body = json.dumps({"instances": [row]}).encode()
        req = urllib.request.Request(
            f"{self.url}/v1/models/{self.isvc}:predict",
            data=body,
            method="POST",
            headers={"content-type": "application/json", "host": self.host},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status), _version(resp.read())
        except urllib.error.HTTPError as e:
            return int(e.code), None
        except OSError:
            return 0, None

    def versions(self, since: float = 0.0, until: float = float("inf")) -> dict[str, int]:
        """How many answers each model version gave in [since, until) (monotonic times): the split as counted
        at the predictors, which name themselves in every answer."""
        out: dict[str, int] = {}
        for t, version in list(self.served):
            if since <= t < until:
                out[version] = out.get(version, 0) + 1
        return out

    def codes(self, since: float = 0.0) -> dict[int, int]:
        out: dict[int, int] = {}
        for t, code in list(self.results):
            if t >= since:
                out[code] = out.get(code, 0) + 1
        return out

    def first(self, code: int, since: float = 0.0) -> float | None:
        return next((t for t, c in list(self.results) if c == code and t >= since), None)

    def last(self, code: int) -> float | None:
        return next((t for t, c in reversed(list(self.results)) if c == code), None)

    def achieved_rate(self) -> float | None:
        """Answers per second over the run (each request sent gets one record, an answer or 0)."""
        times = [t for t, _ in list(self.results)]
        return round(len(times) / (times[-1] - times[0]), 1) if len(times) > 1 and times[-1] > times[0] else None

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout=10)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


def _version(body: bytes) -> str | None:
    try:
        version = json.loads(body).get("model_version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None
