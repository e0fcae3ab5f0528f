"""Benchmark: what the operator costs at idle with many live objects, side by side in one run.

On the local control plane (no serving stack), N Ready ModelVersions (default 1,000) share one artifact in a moto
S3 server. The operator is started once per configuration, waits until every ModelVersion is Ready, and is then
measured for a window of idle time: its CPU (share of one core, from /proc), the apiserver's, RSS, reconciles and
status patches (the operator's own metrics), S3 requests (moto's request log) and the log lines it wrote. Then,
with the default configuration, the time from a spec change to status.observedGeneration following it (event to
status), over 50 changes. Configurations:

- `verify-every-pass`: SLIPWAY_VERIFY_SECONDS=0 (a HEAD per object at every reconcile, as before issue 13) with
  the demo's former SLIPWAY_RESYNC_SECONDS=5;
- `verify-every-pass-resync-60`: the same at the default resync before issue 13's scale work (60 s; now 3,600 s);
- `defaults`: what a user gets.

Every configuration already reconciles resyncs from the watch's bodies (no GET per object), which the code before
issue 13 did not; the first two isolate the artifact checks and the resync period.

    .venv/bin/python bench/idle.py [--objects 1000] [--window 60]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import yaml

REPO = Path(__file__).resolve().parents[1]
from slipway_dev.localcluster import Cluster  # noqa: E402
from slipway_dev.localcluster.servers import S3Server, free_port  # noqa: E402

NS = "idle"
# Defaults first: it verifies every artifact once (status.verifiedAt); the others ask S3 at every pass anyway.
CONFIGS: dict[str, dict[str, str]] = {
    "defaults": {},
    "verify-every-pass-resync-60": {"SLIPWAY_VERIFY_SECONDS": "0", "SLIPWAY_RESYNC_SECONDS": "60"},
    "verify-every-pass": {"SLIPWAY_VERIFY_SECONDS": "0", "SLIPWAY_RESYNC_SECONDS": "5"},
}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def metric_sum(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def s3_requests(log: Path) -> int:
    """Requests in the S3 server's (moto's) request log, every method."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(
        1 for line in text.splitlines() if any(f'"{m} /' in line for m in ("HEAD", "GET", "PUT", "POST", "DELETE"))
    )


class Env:
    def __init__(self, root: Path, executor: bool = True) -> None:
        self.root = root
        self.cluster = Cluster(root / "cluster", free_ports=True, executor=executor)
        self.s3 = S3Server(root / "s3.log")

    def __enter__(self) -> Env:
        self.cluster.up(timeout=600)
        self.s3.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.s3.stop()
        self.cluster.down(purge=True)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(self.cluster.kubectl("-n", NS, *args, input=input, timeout=600).stdout)

    def ready_count(self) -> int:
        out = json.loads(self.kubectl("get", "modelversions", "-o", "json"))
        conds = [(mv.get("status") or {}).get("conditions") or [] for mv in out["items"]]
        return sum(1 for cs in conds if any(c["type"] == "Ready" and c["status"] == "True" for c in cs))


def s3_client(env: Env) -> Any:
    keys = env.s3.env()
    return boto3.client("s3", endpoint_url=env.s3.endpoint, region_name="us-east-1",
                        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])  # fmt: skip


def artifact(env: Env, key: str = "idle/model.joblib") -> tuple[str, str]:
    """A 64 KiB artifact in bucket `models` (created here): its URI and sha256."""
    s3 = s3_client(env)
    s3.create_bucket(Bucket="models")
    body = os.urandom(64 * 1024)
    s3.put_object(Bucket="models", Key=key, Body=body)
    return f"s3://models/{key}", hashlib.sha256(body).hexdigest()


def model_versions(n: int, uri: str, sha: str) -> str:
    docs = [{"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": f"m-v{i}"},
             "spec": {"modelName": "m", "version": i, "framework": "sklearn", "metrics": {"accuracy": 0.9},
                      "artifact": {"uri": uri, "sha256": sha, "format": "joblib"}}}
            for i in range(1, n + 1)]  # fmt: skip
    return yaml.safe_dump_all(docs)


class Operator:
    def __init__(self, env: Env, extra: dict[str, str], log: Path) -> None:
        self.port = free_port()
        base = {**os.environ, **env.s3.env(), "SLIPWAY_S3_ENDPOINT": env.s3.endpoint, "SLIPWAY_PEERING": "",
                "SLIPWAY_HTTP_PORT": str(self.port), "SLIPWAY_HTTP_HOST": "127.0.0.1",
                "SLIPWAY_NAMESPACES": NS}  # fmt: skip
        self.log = log
        out = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "slipway"], env=env.cluster.env({**base, **extra}),
                                     stdout=out, stderr=out)  # fmt: skip

    def serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def lines(self) -> int:
        return len(self.log.read_text(errors="replace").splitlines())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # Kopf cancelling thousands of handlers on a busy machine
            self.proc.kill()
            self.proc.wait()


def sample(env: Env, op: Operator, api: int) -> tuple[float, ...]:
    """Cumulative counters: operator CPU, apiserver CPU, S3 requests, log lines, reconciles, status patches."""
    reconciles = metric_sum(op.port, "slipway_reconcile_total")
    patches = metric_sum(op.port, "slipway_status_patches_total")
    return cpu_seconds(op.proc.pid), cpu_seconds(api), s3_requests(env.s3.log_path), op.lines(), reconciles, patches


def settle(op: Operator, quiet: float = 10, limit: float = 300,
           counters: tuple[str, ...] = ("slipway_status_patches_total",)) -> None:  # fmt: skip
    """Until none of `counters` (default: status patches) moved for `quiet` seconds: the window measures idle,
    not the last writes."""
    deadline, last, since = time.monotonic() + limit, (-1.0,), time.monotonic()
    while time.monotonic() < deadline:
        now = tuple(metric_sum(op.port, c) for c in counters)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(1)


def measure(env: Env, name: str, extra: dict[str, str], n: int, window: float) -> dict[str, Any]:
    op = Operator(env, extra, env.root / f"operator-{name}.log")
    started = time.monotonic()
    try:
        deadline = started + 900
        while not op.serving():  # its metrics endpoint is up (and so its watches are starting)
            if time.monotonic() > deadline or op.proc.poll() is not None:
                raise RuntimeError(f"{name}: the operator did not start (see {op.log})")
            time.sleep(0.5)
        while env.ready_count() < n:
            if time.monotonic() > deadline or op.proc.poll() is not None:
                raise RuntimeError(f"{name}: ModelVersions not Ready (see {op.log})")
            time.sleep(2)
        settle(op)
        api = env.cluster.procs.pid("kube-apiserver")
        assert api is not None
        before = sample(env, op, api)
        t0 = time.monotonic()
        time.sleep(window)
        dt = time.monotonic() - t0
        d = [a - b for a, b in zip(sample(env, op, api), before, strict=True)]
        out = {
            "settings": extra or "defaults",
            "seconds_until_settled": round(t0 - started, 1),
            "idle_window_seconds": round(dt, 1),
            "operator_cpu_percent_of_a_core": round(100 * d[0] / dt, 2),
            "apiserver_cpu_percent_of_a_core": round(100 * d[1] / dt, 2),
            "operator_rss_mb": rss_mb(op.proc.pid),
            "s3_requests_per_second": round(d[2] / dt, 2),
            "log_lines_per_minute": round(60 * d[3] / dt, 1),
            "reconciles_per_second": round(d[4] / dt, 2),
            "status_patches_in_window": int(d[5]),
        }
        if name == "defaults":
            out["event_to_status_ms"] = event_to_status(env, min(50, n))
        return out
    except Exception:
        print(f"{name}: operator log tail:\n{op.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        op.stop()


def event_to_status(env: Env, changes: int) -> dict[str, Any]:
    """From a spec change's acceptance by the apiserver (the patch returned) until status.observedGeneration
    follows it, one object at a time, polled in-process every 2 ms."""
    api = env.cluster._api()
    times = []
    for i in range(1, changes + 1):
        name = f"m-v{i}"
        patch = json.dumps({"spec": {"metrics": {"accuracy": 0.9 + i / 10_000}}})
        gen = json.loads(env.kubectl("patch", "modelversion", name, "--type=merge", "-p", patch, "-o", "json"))
        t0, want = time.monotonic(), gen["metadata"]["generation"]
        path = f"/apis/slipway.dev/v1alpha1/namespaces/{NS}/modelversions/{name}"
        while ((api.get_json(path) or {}).get("status") or {}).get("observedGeneration") != want:
            time.sleep(0.002)
        times.append((time.monotonic() - t0) * 1000)
    times.sort()
    return {"changes": changes, "p50": round(statistics.median(times), 1),
            "p90": round(times[int(0.9 * len(times)) - 1], 1), "max": round(times[-1], 1)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp)) as env:
        env.cluster.kubectl("create", "namespace", NS)
        uri, sha = artifact(env)
        env.kubectl("apply", "--server-side", "-f", "-", input=model_versions(args.objects, uri, sha))
        for name, extra in CONFIGS.items():
            results[name] = measure(env, name, extra, args.objects, args.window)
    print(json.dumps({"benchmark": "idle", "objects": args.objects, "kind": "ModelVersion (Ready)",
                      "configurations": results}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
