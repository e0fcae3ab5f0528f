"""Benchmark: how fast a regressed canary is rolled back, and how often a healthy one is.

Runs the whole path on the local environment: real predictor processes behind the local KServe gateway, a real
Prometheus scraping every second, the operator analysing every 2 s, a load generator at 50 requests/s with 10 %
on the canary. A "regression" is a version failing on 30 % of its inputs (slipway_predictor.faults). Prints one
JSON object.

    .venv/bin/python bench/rollback_time.py [--regressions 5] [--healthy 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import yaml
from sklearn.datasets import load_breast_cancer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "hack"))
from loadgen import Load  # noqa: E402
from localcluster import Cluster  # noqa: E402
from localcluster.servers import S3Server  # noqa: E402

NS = "bench"
# Documented defaults of the tools slipway is compared with (reference figures, not measured here).
REFERENCE = {
    "flagger_default_seconds": "60-120 (interval 1m, rollback after threshold failed checks)",
    "argo_rollouts_analysis_template_seconds": "900-1200 (documented AnalysisTemplate example)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Env:
    """The local environment, the S3 server and the operator, all stopped on exit."""

    def __init__(self, root: Path, scrape: str) -> None:
        self.cluster = Cluster(root / "cluster", free_ports=True, kserve=True, prometheus=True, scrape_interval=scrape)
        self.s3 = S3Server(root / "s3.log")
        self.root = root
        self.operator: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Env:
        self.cluster.up()
        self.s3.start()
        env = self.s3.env()
        boto3.client("s3", endpoint_url=self.s3.endpoint, aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1"
                     ).create_bucket(Bucket="models")  # fmt: skip
        op_env = self.cluster.env({**os.environ, "SLIPWAY_S3_ENDPOINT": self.s3.endpoint, "SLIPWAY_HTTP_PORT":
                                   str(free_port()), "SLIPWAY_HTTP_HOST": "127.0.0.1"})  # fmt: skip
        log = (self.root / "operator.log").open("ab")
        self.operator = subprocess.Popen([sys.executable, "-m", "slipway"], env=op_env, stdout=log, stderr=log)
        self.kubectl("create", "namespace", NS)
        self.kubectl("apply", "-f", str(REPO / "examples" / "s3-credentials.yaml"))
        self.kubectl("apply", "-f", str(REPO / "runtimes" / "predictor" / "servingruntime.yaml"))
        return self

    def __exit__(self, *_: Any) -> None:
        if self.operator is not None:
            self.operator.terminate()
            self.operator.wait(timeout=30)
        self.s3.stop()
        self.cluster.down(purge=True)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return str(self.cluster.kubectl("-n", NS, *args, input=input).stdout)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else {}

    def wait(self, what: str, check: Any, timeout: float = 300) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := check():
                return value
            time.sleep(0.25)
        raise TimeoutError(f"timed out waiting for {what}")


def ready(env: Env, kind: str, name: str) -> bool:
    conds = (env.get(kind, name).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def train(env: Env) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "trainingjob-sklearn.yaml").read_text())
    doc["spec"]["hyperparameters"] = {"n_estimators": 20, "max_depth": 4}
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    name = env.wait("training", lambda: (env.get("trainingjob", "cancer-rf-1").get("status") or {})
                    .get("modelVersionRef", {}).get("name"))  # fmt: skip
    env.wait("ModelVersion Ready", lambda: ready(env, "modelversion", name))
    return env.get("modelversion", name)


def register(env: Env, base: dict[str, Any], name: str, version: int, fail_fraction: float | None) -> str:
    """A copy of `base` (healthy) or a flaky variant of it, as a hand-registered ModelVersion."""
    spec = json.loads(json.dumps(base["spec"]))
    spec["version"] = version
    if fail_fraction is not None:
        dst = spec["artifact"]["uri"].rsplit("/", 1)[0] + f"/{name}.joblib"
        argv = [sys.executable, "-m", "slipway_predictor.faults", "flaky", "--fail-fraction", str(fail_fraction),
                "--seed", str(version), spec["artifact"]["uri"], dst]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **env.s3.env()})
        art = json.loads(out.stdout)
        spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art["sizeBytes"]}
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    env.wait(f"{name} Ready", lambda: ready(env, "modelversion", name))
    return name


def rollout(env: Env, target: str, canary_weight: int, interval: int, hold: int) -> None:
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    doc["spec"]["canary"] = {
        "steps": [{"weight": canary_weight, "holdSeconds": hold}],
        "analysis": {"prometheus": {"address": env.cluster.prometheus_url}, "intervalSeconds": interval,
                     "minRequests": 20, "latency": {"enabled": False}},
    }  # fmt: skip
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def status(env: Env) -> dict[str, Any]:
    return env.get("rollout", "cancer-rf").get("status") or {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--regressions", type=int, default=5)
    parser.add_argument("--healthy", type=int, default=5)
    parser.add_argument("--rps", type=float, default=50)
    parser.add_argument("--canary-weight", type=int, default=10)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--scrape", default="1s")
    parser.add_argument("--fail-fraction", type=float, default=0.3)
    args = parser.parse_args()
    rollback_s: list[float] = []
    restored_s: list[float] = []
    outcomes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp), args.scrape) as env:
        base = train(env)
        v1 = base["metadata"]["name"]
        rollout(env, v1, args.canary_weight, args.interval, hold=20)
        env.wait("v1 served", lambda: ready(env, "rollout", "cancer-rf"))
        with Load(env.cluster.gateway_url, "cancer-rf", NS, load_breast_cancer().data.tolist(), args.rps) as load:
            for i in range(args.regressions):
                bad = register(env, base, f"cancer-rf-v{100 + i}", 100 + i, args.fail_fraction)
                applied = time.monotonic()
                rollout(env, bad, args.canary_weight, args.interval, hold=300)
                env.wait("rollback", lambda b=bad: status(env).get("rolledBackVersion") == b)  # type: ignore[misc]
                done = time.monotonic()
                onset = load.first(500, since=applied)
                time.sleep(3)  # let in-flight requests drain before reading the last error
                if onset is not None:
                    rollback_s.append(done - onset)
                    restored_s.append((load.last(500) or done) - onset)
            for j in range(args.healthy):
                good = register(env, base, f"cancer-rf-v{200 + j}", 200 + j, None)
                rollout(env, good, args.canary_weight, args.interval, hold=15)
                st = env.wait("a verdict", lambda g=good: (s := status(env)) and (  # type: ignore[misc]
                    s.get("stableVersion") == g or s.get("rolledBackVersion") == g) and s)  # fmt: skip
                outcomes.append("promoted" if st.get("stableVersion") == good else "rolled back")
            codes = load.codes()
    print(json.dumps({
        "benchmark": "rollback_time",
        "settings": {"requests_per_second": args.rps, "canary_weight_percent": args.canary_weight,
                     "analysis_interval_seconds": args.interval, "scrape_interval": args.scrape,
                     "fail_fraction": args.fail_fraction, "false_rollback_rate_alpha": 0.05},
        "rollback_seconds": {"runs": [round(x, 2) for x in rollback_s],
                             "median": round(statistics.median(rollback_s), 2) if rollback_s else None,
                             "max": round(max(rollback_s), 2) if rollback_s else None},
        "last_error_after_onset_seconds": {"median": round(statistics.median(restored_s), 2) if restored_s else None},
        "healthy_canaries": {"runs": len(outcomes), "false_rollbacks": outcomes.count("rolled back")},
        "requests": codes,
        "reference": REFERENCE,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
