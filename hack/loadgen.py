"""A bounded load generator for the local KServe gateway (tests, benchmarks and the demo).

Sends v1 predict requests for one InferenceService at a fixed rate from a thread, records every status code
with its time, and stops by itself after `max_seconds`: it never outlives the test that started it.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any


class Load:
    def __init__(
        self, url: str, isvc: str, namespace: str, rows: Sequence[Sequence[float]], rps: float, max_seconds: float = 900
    ) -> None:
        self.url, self.isvc, self.ns, self.rows, self.rps = url.rstrip("/"), isvc, namespace, list(rows), rps
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.results: list[tuple[float, int]] = []  # (monotonic time, status code; 0 = no answer)
        self.shift: float = 0.0  # added to every feature: moves the input distribution (drift)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng, started = random.Random(3), time.monotonic()
        period = 1.0 / self.rps
        next_at = started
        while not self.stop_event.is_set() and time.monotonic() - started < self.max_seconds:
            row = [v + self.shift for v in rng.choice(self.rows)]
            self.results.append((time.monotonic(), self._send(row)))
            next_at += period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def _send(self, row: list[float]) -> int:
        body = json.dumps({"instances": [row]}).encode()
        req = urllib.request.Request(
            f"{self.url}/v1/models/{self.isvc}:predict",
            data=body,
            method="POST",
            headers={"content-type": "application/json", "host": f"{self.isvc}.{self.ns}.example.com"},
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

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

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()
