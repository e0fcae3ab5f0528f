"""Benchmark: how fast a regressed canary is rolled back, and how often a healthy one is.

Runs the whole path on the local environment with the real serving stack: KServe v0.20.0's controller runs each
version's predictor (real predictor processes). In Standard mode Traefik splits requests on the Rollout's HTTPRoute;
in Serverless mode (`--mode Serverless`) Knative Serving v0.48.1 splits them between two revisions of one Knative
Service (canaryTrafficPercent), behind Traefik's Knative provider and kube-proxy. In both
a real Prometheus discovers the predictor pods through the apiserver and scrapes them every second, the operator
analyses every 2 s, and a load generator sends 50 requests/s through the Gateway with 10 % on the canary. A
"regression" is a version failing on 30 % of its inputs (slipway_predictor.faults); a healthy canary is the base
model's artifact copied to a new key (KServe refuses a predictor rename without a storageUri change).

Per canary it also counts requests as the load generator saw them: failures during a healthy canary's steps and
promotion (there should be none), failures during a rollback other than the failing canary's own (its model's
500s), and the canary's share of the answers at each step weight (the predictors name their version in every
answer). A healthy canary goes through two steps (10 % and 50 %, 45 s each: over 2,000 requests a step at 50
requests/s); `split` sums up how far the share strayed from the weight. After each rollback decision it counts
the requests the rolled-back version still answered (its answers and its 500s), and when the last one came.
Prints one JSON object.

    .venv/bin/python bench/rollback_time.py [--mode Standard|Serverless] [--regressions 5] [--healthy 5]
        [--healthy-steps 10:45,50:45] [--fail-fraction 0.3] [--latency] [--margin 0.02]

A healthy canary's steps end once the analysis proves it within errorRate.margin (and, with --latency, within
latency.maxRatio), so they can last longer than their holds.
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
import urllib.parse
from pathlib import Path
from typing import Any

import boto3
import yaml
from sklearn.datasets import load_breast_cancer

REPO = Path(__file__).resolve().parents[1]
from slipway.conditions import parse_time  # noqa: E402
from slipway.controllers.rollout_isvc import predictor_service  # noqa: E402
from slipway_dev.loadgen import Load  # noqa: E402
from slipway_dev.localcluster import Cluster  # noqa: E402
from slipway_dev.localcluster.servers import S3Server  # noqa: E402

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
    """The local environment (control plane, KServe, Traefik, Prometheus), the S3 server and the operator, all
    stopped on exit."""

    def __init__(self, root: Path, scrape: str, mode: str) -> None:
        self.mode = mode
        self.cluster = Cluster(root / "cluster", free_ports=True, serving=True, knative=mode == "Serverless",
                               prometheus=True, scrape_interval=scrape)  # fmt: skip
        self.s3 = S3Server(root / "s3.log")
        self.root = root
        self.operator: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Env:
        self.cluster.up(timeout=600)
        self.s3.start()
        env = self.s3.env()
        self.s3_client = boto3.client("s3", endpoint_url=self.s3.endpoint, region_name="us-east-1",
                                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        self.s3_client.create_bucket(Bucket="models")
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
    """A copy of `base` (healthy) or a flaky variant of it, as a hand-registered ModelVersion. Either way the
    artifact is a new S3 object: KServe's webhook refuses a new predictor name on an unchanged storageUri."""
    spec = json.loads(json.dumps(base["spec"]))
    spec["version"] = version
    src = spec["artifact"]["uri"]
    dst = src.rsplit("/", 1)[0] + f"/{name}.joblib"
    if fail_fraction is not None:
        argv = [sys.executable, "-m", "slipway_predictor.faults", "flaky", "--fail-fraction", str(fail_fraction),
                "--seed", str(version), src, dst]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ, **env.s3.env()})
        art = json.loads(out.stdout)
        spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art["sizeBytes"]}
    else:  # the same bytes (same sha256) under a new key
        (bucket, key), (_, new_key) = s3_parts(src), s3_parts(dst)
        env.s3_client.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key})
        spec["artifact"]["uri"] = dst
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    env.wait(f"{name} Ready", lambda: ready(env, "modelversion", name))
    return name


def s3_parts(uri: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def rollout(env: Env, target: str, steps: list[dict[str, int]], interval: int, analysis: dict[str, Any] | None = None
            ) -> None:  # fmt: skip
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["deploymentMode"] = env.mode
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    doc["spec"]["canary"] = {
        "steps": steps,
        "analysis": {"prometheus": {"address": env.cluster.prometheus_url}, "intervalSeconds": interval,
                     "minRequests": 20, "latency": {"enabled": False}} | (analysis or {}),
    }  # fmt: skip
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def status(env: Env) -> dict[str, Any]:
    return env.get("rollout", "cancer-rf").get("status") or {}


def host(env: Env) -> str:
    """The host of the InferenceService's status.url: the Rollout's HTTPRoute claims it on the Gateway (Standard),
    Knative's route on Traefik's Knative entry point (Serverless)."""
    url = (env.get("inferenceservice", "cancer-rf").get("status") or {}).get("url") or ""
    return urllib.parse.urlsplit(url).hostname or ""


def follow(env: Env, version: str, timeout: float = 600) -> tuple[dict[str, Any], list[tuple[float, int]]]:
    """Poll the Rollout until `version` is promoted or rolled back. Returns the last status and, per poll, the
    weight the canary is routed (0 until KServe reports it ready and its step clock starts)."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, now = status(env), time.monotonic()
        routed = st.get("canaryVersion") == version and st.get("stepStartedAt") is not None
        samples.append((now, int(st.get("canaryWeight") or 0) if routed else 0))
        if st.get("stableVersion") == version or st.get("rolledBackVersion") == version:
            return st, samples
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for a verdict on {version}")


def stages(samples: list[tuple[float, int]]) -> list[tuple[int, float, float]]:
    """(weight, from, to) for each stretch the canary was routed a constant weight."""
    out: list[tuple[int, float, float]] = []
    for (t, w), (t_next, _) in zip(samples, [*samples[1:], (samples[-1][0], 0)], strict=True):
        if w and out and out[-1][0] == w and out[-1][2] == t:
            out[-1] = (w, out[-1][1], t_next)
        elif w:
            out.append((w, t, t_next))
    return out


def shares(load: Load, version: str, samples: list[tuple[float, int]]) -> list[dict[str, Any]]:
    """The canary's share of the requests at each routed weight, against the weight the route asked for, as
    counted at the predictors: each answer names the version that gave it; a 500 names none, and is counted as
    the canary's (only a flaky canary answers 500: stable is healthy, and the data plane's own failures are
    other codes)."""
    out = []
    for weight, since, until in stages(samples):
        answers, errors = load.versions(since, until), codes_between(load, since, until).get(500, 0)
        total, canary = sum(answers.values()) + errors, answers.get(version, 0) + errors
        out.append({"weight_percent": weight, "seconds": round(until - since, 1), "requests": total,
                    "canary_answers": answers.get(version, 0), "canary_errors_500": errors,
                    "canary_share_percent": round(100 * canary / total, 1) if total else None})  # fmt: skip
    return out


def split_summary(canaries: list[dict[str, Any]], min_requests: int = 2000) -> dict[str, Any]:
    """How far the canary's share at the predictors strayed from each step's weight, over the steps that saw at
    least `min_requests` requests (the acceptance bound is 3 points)."""
    steps = [s for c in canaries for s in c["steps"] if s["requests"] >= min_requests]
    errors = [abs(s["canary_share_percent"] - s["weight_percent"]) for s in steps]
    return {"steps_with_enough_requests": len(steps), "min_requests": min_requests,
            "max_abs_error_points": round(max(errors), 1) if errors else None,
            "by_step": [(s["weight_percent"], s["requests"], s["canary_share_percent"]) for s in steps]}  # fmt: skip


STACKS = {
    "Standard": "KServe v0.20.0 controller (Standard mode), Traefik Gateway API route owned by the Rollout, "
                "Prometheus kubernetes_sd",
    "Serverless": "KServe v0.20.0 controller (Serverless mode) on Knative Serving v0.48.1, Traefik Knative "
                  "provider, kube-proxy (nftables), queue-proxy metrics by revision through Prometheus kubernetes_sd",
}  # fmt: skip


def service(mode: str, version: str) -> str:
    """What serves the version: its own predictor Service (Standard), a revision of the one Knative Service."""
    return predictor_service("cancer-rf", version) if mode == "Standard" else f"cancer-rf-predictor ({version})"


def after_verdict(load: Load, version: str, verdict: float, until: float) -> dict[str, Any]:
    """Requests the rolled-back version still served after the Rollback decision was seen: its answers (they
    name it) and its 500s (only the flaky canary answers 500), and how long after the decision the last came."""
    times = [t for t, v in list(load.served) if v == version and verdict <= t < until]
    times += [t for t, c in list(load.results) if c == 500 and verdict <= t < until]
    return {"canary_requests_after_verdict": len(times),
            "last_canary_request_after_verdict_seconds": round(max(times) - verdict, 2) if times else None}  # fmt: skip


def pinned_at(env: Env, timeout: float = 120) -> float:
    """When (monotonic) the operator saw all of Knative's traffic on the rolled-out revision after the last
    rollback (its Pinned decision), rounded up to the whole second the decision's time is written in."""

    def pinned() -> dict[str, Any] | None:
        decisions = status(env).get("decisions") or []
        last = max((i for i, d in enumerate(decisions) if d["action"] == "Rollback"), default=-1)
        return next((d for d in decisions[last + 1 :] if d["action"] == "Pinned"), None)

    decision = env.wait("the Pinned decision", pinned, timeout)
    written = parse_time(decision["time"])
    if written is None:
        raise ValueError(f"the Pinned decision has no time: {decision}")
    wall = written.timestamp() + 1
    return time.monotonic() - (time.time() - wall)


def codes_between(load: Load, since: float, until: float) -> dict[int, int]:
    out: dict[int, int] = {}
    for t, code in list(load.results):
        if since <= t < until:
            out[code] = out.get(code, 0) + 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mode", choices=("Standard", "Serverless"), default="Standard")
    parser.add_argument("--regressions", type=int, default=5)
    parser.add_argument("--healthy", type=int, default=5)
    parser.add_argument("--rps", type=float, default=50)
    parser.add_argument("--canary-weight", type=int, default=10)
    parser.add_argument("--interval", type=int, default=2)
    parser.add_argument("--scrape", default="1s")
    parser.add_argument("--fail-fraction", type=float, default=0.3)
    parser.add_argument("--latency", action="store_true", help="latency analysis on at its defaults (users keep it)")
    parser.add_argument("--margin", type=float, default=0.02, help="errorRate.margin (the default: 2 points)")
    parser.add_argument("--healthy-steps", default="10:45,50:45", help="a healthy canary's steps, weight:holdSeconds, "
                        "long enough for 2,000 requests a step at 50 requests/s")  # fmt: skip
    args = parser.parse_args()
    analysis = {"errorRate": {"margin": args.margin}} | ({"latency": {"enabled": True}} if args.latency else {})
    healthy_steps = [{"weight": int(w), "holdSeconds": int(h)}
                     for w, h in (step.split(":") for step in args.healthy_steps.split(","))]  # fmt: skip
    rollback_s: list[float] = []
    restored_s: list[float] = []
    outcomes: list[str] = []
    canaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp), args.scrape, args.mode) as env:
        base = train(env)
        v1 = base["metadata"]["name"]
        rollout(env, v1, [{"weight": args.canary_weight, "holdSeconds": 20}], args.interval)
        env.wait("v1 served", lambda: ready(env, "rollout", "cancer-rf"))
        rows = load_breast_cancer().data.tolist()
        entry = env.cluster.knative_url if args.mode == "Serverless" else env.cluster.ingress_url
        with Load(entry, "cancer-rf", NS, rows, args.rps, max_seconds=3600, host=host(env)) as load:
            for i in range(args.regressions):
                bad = register(env, base, f"cancer-rf-v{100 + i}", 100 + i, args.fail_fraction)
                applied = time.monotonic()
                rollout(env, bad, [{"weight": args.canary_weight, "holdSeconds": 300}], args.interval, analysis)
                st, samples = follow(env, bad)
                done = time.monotonic()
                onset = load.first(500, since=applied)
                time.sleep(3)  # let in-flight requests drain before reading the last error
                if onset is not None:
                    rollback_s.append(done - onset)
                    restored_s.append((load.last(500) or done) - onset)
                codes = codes_between(load, applied, done + 3)
                after = after_verdict(load, bad, done, time.monotonic())
                if args.mode == "Serverless":  # the route no longer names the canary's revision from here on
                    pinned = pinned_at(env)
                    time.sleep(3)
                    after |= {"canary_requests_after_pinned": after_verdict(load, bad, pinned, time.monotonic())[
                        "canary_requests_after_verdict"]}  # fmt: skip
                # The flaky model answers 500 for its failing rows; any other failure (Traefik's 502/503/504, a
                # refused or timed-out connection, 0) is the data plane's, not the canary's own.
                canaries.append({
                    "version": bad, "kind": "regression", "service": service(args.mode, bad), **after,
                    "outcome": "rolled back" if st.get("rolledBackVersion") == bad else "promoted",
                    "seconds_to_rollback": round(done - onset, 2) if onset is not None else None,
                    "requests": sum(codes.values()), "canary_errors_500": codes.get(500, 0),
                    "other_failures": {str(c): n for c, n in sorted(codes.items()) if c not in (200, 500)},
                    "steps": shares(load, bad, samples),
                })  # fmt: skip
            for j in range(args.healthy):
                good = register(env, base, f"cancer-rf-v{200 + j}", 200 + j, None)
                applied = time.monotonic()
                rollout(env, good, healthy_steps, args.interval, analysis)
                st, samples = follow(env, good)
                done = time.monotonic()
                outcomes.append("promoted" if st.get("stableVersion") == good else "rolled back")
                time.sleep(3)  # requests in flight at the promotion, and stable's Service going away
                codes = codes_between(load, applied, done + 3)
                canaries.append({
                    "version": good, "kind": "healthy", "service": service(args.mode, good),
                    "outcome": outcomes[-1], "requests": sum(codes.values()),
                    "failed_requests": {str(c): n for c, n in sorted(codes.items()) if c != 200},
                    "steps": shares(load, good, samples),
                })  # fmt: skip
            codes, rate = load.codes(), load.achieved_rate()
    healthy = [c for c in canaries if c["kind"] == "healthy"]
    regressions = [c for c in canaries if c["kind"] == "regression"]
    print(json.dumps({
        "benchmark": "rollback_time",
        "stack": STACKS[args.mode],
        "settings": {"requests_per_second": args.rps, "achieved_requests_per_second": rate,
                     "canary_weight_percent": args.canary_weight,
                     "analysis_interval_seconds": args.interval, "scrape_interval": args.scrape,
                     "fail_fraction": args.fail_fraction, "false_rollback_rate_alpha": 0.05,
                     "error_rate_margin": args.margin, "latency_analysis": args.latency},
        "rollback_seconds": {"runs": [round(x, 2) for x in rollback_s],
                             "median": round(statistics.median(rollback_s), 2) if rollback_s else None,
                             "max": round(max(rollback_s), 2) if rollback_s else None},
        "last_error_after_onset_seconds": {"median": round(statistics.median(restored_s), 2) if restored_s else None},
        "healthy_canaries": {"runs": len(outcomes), "false_rollbacks": outcomes.count("rolled back"),
                             "failed_requests": sum(sum(c["failed_requests"].values()) for c in healthy)},
        "split": split_summary(canaries),
        "rollbacks": {"runs": len(regressions),
                      "regressions_promoted": sum(c["outcome"] == "promoted" for c in regressions),
                      "failures_other_than_the_canary": sum(sum(c["other_failures"].values()) for c in regressions),
                      "canary_requests_after_verdict": sum(c["canary_requests_after_verdict"] for c in regressions),
                      "canary_requests_after_pinned": sum(c.get("canary_requests_after_pinned", 0)
                                                          for c in regressions),
                      "last_canary_request_after_verdict_seconds": max(
                          (c["last_canary_request_after_verdict_seconds"] or 0 for c in regressions), default=None)},
        "canaries": canaries,
        "requests": codes,
        "reference": REFERENCE,
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
