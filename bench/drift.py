"""Benchmark: the drift runtime's detection time per window, the events per second it ingests over HTTP, and its
overhead over calling alibi-detect directly on the same arrays. Prints one JSON object.

Detection: KS on 1,000 x 20 against a 1,000-row reference, MMD (PyTorch backend, CPU, 100 permutations) 1,000 vs
1,000 on 20 features. The runtime's path is what a full window costs it: extracting the rows from a v2 request
body, encoding them, predicting and summarising; bare is `predict` on the ready numpy array. Ingestion:
`python -m slipway_drift` as a child process, a client on the same machine posting binary-mode CloudEvents with
v2 bodies (1 and 10 rows of 20 features), 16 in flight, into a window too large to close (ingestion alone).

    .venv/bin/python bench/drift.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"ks_detection_ms": 20, "mmd_detection_s": 2.0, "overhead_percent": 10}
FEATURES = 20
IN_FLIGHT = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def v2_body(x: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": "FP64", "data": x.ravel().tolist()}]}


def detection(method: str, n_ref: int, n: int, repeats: int) -> dict[str, Any]:
    """Median per-window time of the runtime's detect path and of bare `predict`, interleaved (a shared machine)."""
    from slipway_drift.config import Column, parse_monitor
    from slipway_drift.detect import Detector, Reference
    from slipway_drift.events import extract_rows

    names = [f"f{i}" for i in range(FEATURES)]
    sig = {"inputs": [{"name": c, "dtype": "float64"} for c in names]}
    body = {"detector": {"method": method, "windowSize": n}, "versions": {"v": {"role": "stable",
            "referenceUri": "s3://b/k", "signature": sig}}}  # fmt: skip
    config = parse_monitor(body).detector
    rng = np.random.default_rng(0)
    cols = tuple(Column(c, "float64") for c in names)
    ref = Reference.from_columns(cols, {c: rng.normal(size=n_ref) for c in names})
    detector = Detector(config, ref)
    x = rng.normal(size=(n, FEATURES))
    request = json.loads(json.dumps(v2_body(x)))  # what the server has after parsing the event
    bare_x = detector.matrix(x.tolist())
    detector.run(extract_rows(request, cols, cols))  # warm-up: torch's first call allocates and dispatches
    runtime, bare, extraction = [], [], []

    def runtime_path() -> None:
        t0 = time.perf_counter()
        rows = extract_rows(request, cols, cols)
        t1 = time.perf_counter()
        detector.run(rows)
        extraction.append(t1 - t0)
        runtime.append(time.perf_counter() - t0)

    def bare_predict() -> None:
        t0 = time.perf_counter()
        detector.predict(bare_x) if method in ("mmd", "lsdd") else detector.cd.predict(bare_x)
        bare.append(time.perf_counter() - t0)

    for i in range(repeats):  # alternating which goes first, so neither always runs on a warmer cache
        for step in (runtime_path, bare_predict) if i % 2 == 0 else (bare_predict, runtime_path):
            step()
    rt, b = statistics.median(runtime), statistics.median(bare)
    return {
        "reference_rows": n_ref,
        "window_rows": n,
        "features": FEATURES,
        "repeats": repeats,
        "runtime_ms": round(rt * 1000, 2),
        "bare_predict_ms": round(b * 1000, 2),
        "extraction_ms": round(statistics.median(extraction) * 1000, 2),
        "overhead_percent": round((rt - b) / b * 100, 1),
    }


class Server:
    def __init__(self, root: Path) -> None:
        self.port, self.root = free_port(), root
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        argv = [sys.executable, "-m", "slipway_drift", "--host", "127.0.0.1", "--port", str(self.port), "--state-dir",
                str(self.root / "state"), "--no-warm-up", "--log-level", "ERROR"]  # fmt: skip
        # No S3 here: the reference fails to load at once, which ingestion does not need.
        env = {**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
               "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
        log = (self.root / "drift.log").open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"drift runtime did not start: {(self.root / 'drift.log').read_text()[-2000:]}")

    def __exit__(self, *_: Any) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def ingest(port: int, rows_per_event: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    base = f"http://127.0.0.1:{port}"
    names = [f"f{i}" for i in range(FEATURES)]
    config = {"detector": {"method": "ks", "windowSize": 100_000}, "versions": {"v1": {"role": "stable",
              "referenceUri": "s3://none/ref.parquet", "signature": {"inputs": [{"name": c, "dtype": "float64"}
                                                                                   for c in names]}}}}  # fmt: skip
    rng = np.random.default_rng(1)
    bodies = [json.dumps(v2_body(rng.normal(size=(rows_per_event, FEATURES)))).encode() for _ in range(64)]
    headers = {"ce-id": "1", "ce-type": "org.kubeflow.serving.inference.request", "ce-source": "bench",
               "ce-specversion": "1.0", "content-type": "application/json"}  # fmt: skip
    done = errors = 0
    async with aiohttp.ClientSession() as http:
        name = f"bench-{rows_per_event}"
        async with http.put(f"{base}/v1/monitors/bench/{name}", json=config) as r:
            assert r.status == 200, await r.text()
        deadline = time.monotonic() + seconds

        async def worker(k: int) -> None:
            nonlocal done, errors
            i = k
            while time.monotonic() < deadline:
                async with http.post(f"{base}/v1/events/bench/{name}/v1", data=bodies[i % 64], headers=headers) as r:
                    await r.read()
                    done, errors = (done + 1, errors) if r.status == 202 else (done, errors + 1)
                i += IN_FLIGHT

        start = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(IN_FLIGHT)))
        elapsed = time.monotonic() - start
    return {
        "rows_per_event": rows_per_event,
        "seconds": round(elapsed, 2),
        "events": done,
        "errors": errors,
        "events_per_second": round(done / elapsed),
        "rows_per_second": round(done * rows_per_event / elapsed),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke test: fewer repeats, smaller MMD, 1 s of load")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "runtimes" / "drift"))
    started = time.monotonic()
    ks = detection("ks", 1000, 1000, repeats=3 if args.quick else 20)
    mmd = detection("mmd", 100, 100, repeats=2) if args.quick else detection("mmd", 1000, 1000, repeats=2)
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp, Server(Path(tmp)) as server:
        seconds = 1.0 if args.quick else 5.0
        single = asyncio.run(ingest(server.port, 1, seconds))
        batch = asyncio.run(ingest(server.port, 10, seconds))
    out = {
        "quick": args.quick,
        "ks_detection_ms": ks["runtime_ms"],
        "ks_target_ms": TARGETS["ks_detection_ms"],
        "mmd_detection_s": round(mmd["runtime_ms"] / 1000, 3),
        "mmd_target_s": TARGETS["mmd_detection_s"],
        "ks_overhead_percent": ks["overhead_percent"],
        "mmd_overhead_percent": mmd["overhead_percent"],
        "overhead_target_percent": TARGETS["overhead_percent"],
        "ingest_events_per_second_1_row": single["events_per_second"],
        "ingest_events_per_second_10_rows": batch["events_per_second"],
        "ks": ks,
        "mmd": mmd,
        "ingest": {"in_flight": IN_FLIGHT, "single_row": single, "ten_rows": batch},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine()},
        "bench_seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
