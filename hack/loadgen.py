"""A bounded load generator for an InferenceService behind the local data plane (tests, benchmarks, the demo).

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
        self,
        url: str,
        isvc: str,
        namespace: str,
        rows: Sequence[Sequence[float]],
        rps: float,
        max_seconds: float = 900,
        host: str | None = None,
    ) -> None:
        """`host`: the Host header, the host of the InferenceService's status.url (KServe's domain template
        `<name>-<namespace>.example.com` here); by default the local KServe gateway's `<name>.<namespace>...`."""
        self.url, self.isvc, self.ns, self.rows, self.rps = url.rstrip("/"), isvc, namespace, list(rows), rps
        self.host = host or f"{isvc}.{namespace}.example.com"
        self.max_seconds = max_seconds
        self.stop_event = threading.Event()
        self.results: list[tuple[float, int]] = []  # (monotonic time, status code; 0 = no answer)
        self.served: list[tuple[float, str]] = []  # (monotonic time, model_version of a 200 that names one)
        self.shift: float = 0.0  # added to every feature: moves the input distribution (drift)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng, started = random.Random(3), time.monotonic()
        period = 1.0 / self.rps
        next_at = started
        while not self.stop_event.is_set() and time.monotonic() - started < self.max_seconds:
            row = [v + self.shift for v in rng.choice(self.rows)]
            code, version = self._send(row)
            now = time.monotonic()
            self.results.append((now, code))
            if version:
                self.served.append((now, version))
            next_at += period
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))

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


def _version(body: bytes) -> str | None:
    try:
        version = json.loads(body).get("model_version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None
