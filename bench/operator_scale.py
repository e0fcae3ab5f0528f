"""Benchmark: one operator with N live objects of all four kinds, for several N side by side in one run.

For each N (default 1,000 and 10,000) a namespace of its own gets N objects, a quarter of each kind, created
through the API before the operator starts:

- ModelVersions whose artifact (64 KiB, one shared object) and reference data (a parquet sample) are in the S3
  server (moto in server mode, as everywhere else in the tests and benches), with a signature, no gates;
- TrainingJobs with `runPolicy.suspend: true` (valid jobs that launch no pods);
- Rollouts (Standard mode, `SLIPWAY_GATEWAY` empty: no HTTPRoute) each serving its own ModelVersion as the
  stable version: the operator creates the InferenceService. KServe's controller does NOT run: this bench plays
  its part only in writing each InferenceService's `status` (Ready=True and a url), the one thing the Rollout
  reads back; no predictor runs;
- DriftMonitors, each on one Rollout, configured by the operator in slipway's real drift runtime
  (`python -m slipway_drift`, which loads every monitor's reference data from S3); no request is logged to it.

The control plane is the local one (real etcd, kube-apiserver, controller manager, scheduler, kwok; no serving
stack, no local executor). The operator runs standalone (no peering), watching only that namespace, with its
default settings otherwise. Measured per N:

- `startup_seconds`: from the operator's start until every object has `status.observedGeneration` (reconciled
  once), from a watch the bench keeps on the four kinds; `settled_seconds`: until every object is Ready (a
  suspended TrainingJob: reconciled) and neither a status patch nor a reconcile pass came for 10 s;
- over the idle window (default 60 s, after settling): the operator's CPU (utime+stime from /proc/<pid>/stat, as
  a share of one core), its RSS (/proc/<pid>/status), the apiserver's requests per second from its own
  `apiserver_request_total` (all clients, and the resources only the operator touches here), the S3 server's
  requests per second from its request log, the drift runtime's requests per second (its log), the operator's
  reconciles per second (`slipway_reconcile_total`);
- event → status under churn: `--churn-rate` (20) spec changes per second, for `--churn-seconds` (30), each a
  merge patch of one ModelVersion's `spec.metrics` (it bumps `metadata.generation`), round robin; the time from
  the patch's response to the bench's watch seeing `status.observedGeneration` reach that generation; the passes
  it cost, by kind and by outcome;
- `restart`: the operator stopped and a new one started over the settled objects (an upgrade, a rescheduled
  pod): seconds and CPU until it has listed every object and passed over each once (`slipway_objects` = N,
  `slipway_objects_unreconciled` = 0), its RSS then and a settled minute later. The issue's first figures were
  taken this way, over objects already Ready; `startup_seconds` is the first reconcile of objects never seen.

    .venv/bin/python bench/operator_scale.py [--objects 1000,10000] [--window 60] [--churn-rate 20]
        [--churn-seconds 30] [--startup-only]

`--startup-only` measures each N's start-up and settling and stops there (to compare changes to them side by side
quickly).
Prints one JSON object; notes say what else ran on the machine (load average at the start of each N).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from slipway_dev.kube import ApiError  # noqa: E402
from slipway_dev.localcluster.servers import DriftServer  # noqa: E402

from bench.idle import Env, Operator, artifact, cpu_seconds, metric_sum, rss_mb, s3_client, s3_requests, settle  # noqa: E402

API = "/apis/slipway.dev/v1alpha1"
ISVC_API = "/apis/serving.kserve.io/v1beta1"
KINDS = ("modelversions", "trainingjobs", "rollouts", "driftmonitors")
FEATURES = [f"f{i}" for i in range(4)]
# apiserver_request_total resources that, on this cluster (no executor, no serving stack), only the operator uses.
OPERATOR_RESOURCES = {*KINDS, "inferenceservices", "events", "pods", "secrets", "serviceaccounts", "services"}


def watch(env: Env, path: str, on: Callable[[str, dict[str, Any]], None], stop: threading.Event) -> None:
    """List then watch `path` in a daemon thread, calling on(type, object) for every object (ADDED for the list),
    re-watching from the last resourceVersion when the server ends a watch."""

    def run() -> None:
        api = env.cluster._api()
        listing = api.call("GET", path, timeout=60)
        for obj in listing["items"]:
            on("ADDED", obj)
        rv = listing["metadata"]["resourceVersion"]
        while not stop.is_set():
            try:
                params = {"allowWatchBookmarks": "true", "timeoutSeconds": "300", "resourceVersion": rv}
                for ev in api.watch(path, params, timeout=600):
                    rv = ev["object"]["metadata"].get("resourceVersion", rv)
                    if ev["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        on(ev["type"], ev["object"])
                    if stop.is_set():
                        return
            except ApiError as e:
                print(f"watch {path}: {e}; again", file=sys.stderr)
                time.sleep(1)

    threading.Thread(target=run, daemon=True).start()


class Tracker:
    """What the bench's watch saw of the four kinds: generation, observedGeneration and Ready per object, and
    when each (object, observedGeneration) was first seen."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.objects: dict[tuple[str, str], tuple[int, int | None, bool]] = {}
        self.observed_at: dict[tuple[str, str, int], float] = {}

    def on(self, plural: str) -> Callable[[str, dict[str, Any]], None]:
        def handle(type_: str, obj: dict[str, Any]) -> None:
            now, key = time.monotonic(), (plural, obj["metadata"]["name"])
            status = obj.get("status") or {}
            observed = status.get("observedGeneration")
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            with self.lock:
                if type_ == "DELETED":
                    self.objects.pop(key, None)
                else:
                    self.objects[key] = (obj["metadata"].get("generation") or 0, observed, ready)
                    if observed is not None:
                        self.observed_at.setdefault((*key, observed), now)
                self.lock.notify_all()

        return handle

    def counts(self) -> tuple[int, int, int]:
        """(objects, reconciled at least once, Ready or a suspended TrainingJob, which is never Ready)."""
        with self.lock:
            items = list(self.objects.items())
        ready = sum(1 for (p, _), v in items if v[2] or (p == "trainingjobs" and v[1] is not None))
        return len(items), sum(1 for _, v in items if v[1] is not None), ready

    def not_ready(self) -> list[str]:
        with self.lock:
            return sorted(f"{p}/{n}" for (p, n), v in self.objects.items() if not v[2] and p != "trainingjobs")

    def wait_observed(self, plural: str, name: str, generation: int, timeout: float) -> float | None:
        """When observedGeneration >= generation was first seen for the object (monotonic clock), or None."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                seen = [t for (p, n, g), t in self.observed_at.items() if p == plural and n == name and g >= generation]
                if seen:
                    return min(seen)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)


def kserve_standin(env: Env, ns: str, stop: threading.Event) -> None:
    """Plays KServe's controller for what the Rollouts read back: every InferenceService the operator creates
    gets status Ready=True and a url (through the status subresource). Nothing else of KServe runs."""
    api, done = env.cluster._api(), set()

    def on(type_: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if type_ == "DELETED" or name in done:
            return
        conds = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds):
            done.add(name)
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = [{"type": t, "status": "True", "lastTransitionTime": now} for t in ("PredictorReady", "Ready")]
        patch = {"status": {"url": f"http://{name}.{ns}.example.com", "conditions": ready}}
        try:
            api.call("PATCH", f"{ISVC_API}/namespaces/{ns}/inferenceservices/{name}/status", patch,
                     "application/merge-patch+json", timeout=60)  # fmt: skip
        except ApiError as e:
            print(f"KServe stand-in: {name}: {str(e)[:200]}", file=sys.stderr)
        else:
            done.add(name)

    watch(env, f"{ISVC_API}/namespaces/{ns}/inferenceservices", on, stop)


def s3_objects(env: Env) -> dict[str, str]:
    """The shared artifact and reference sample in the S3 server; returns URIs and the artifact's sha256."""
    uri, sha = artifact(env, "scale/model.joblib")
    ref = io.BytesIO()
    pd.DataFrame({f: [float(i % 7) + 0.1 * j for i in range(200)] for j, f in enumerate(FEATURES)}).to_parquet(ref)
    s3_client(env).put_object(Bucket="models", Key="scale/reference.parquet", Body=ref.getvalue())
    return {"uri": uri, "sha256": sha, "reference": "s3://models/scale/reference.parquet"}


def manifests(n: int, art: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(plural, object) for n objects: a quarter of each kind (the remainder to ModelVersions)."""
    q = n // 4
    mvs = n - 3 * q
    out: list[tuple[str, dict[str, Any]]] = []
    for i in range(1, mvs + 1):
        spec = {"modelName": "m", "version": i, "framework": "sklearn", "metrics": {"accuracy": 0.9},
                "artifact": {"uri": art["uri"], "sha256": art["sha256"], "format": "joblib"},
                "signature": {"inputs": [{"name": f, "dtype": "float64"} for f in FEATURES]},
                "referenceData": {"uri": art["reference"]}}  # fmt: skip
        out.append(("modelversions", {"kind": "ModelVersion", "metadata": {"name": f"m-v{i}"}, "spec": spec}))
    for i in range(1, q + 1):
        spec = {"modelName": f"t{i}", "framework": "sklearn", "algorithm": "sklearn.linear_model.LogisticRegression",
                "dataset": {"uri": "sklearn://breast_cancer"}, "seed": i, "output": {"uri": f"s3://models/t{i}"},
                "runPolicy": {"suspend": True}}  # fmt: skip
        out.append(("trainingjobs", {"kind": "TrainingJob", "metadata": {"name": f"t-{i}"}, "spec": spec}))
    for i in range(1, q + 1):
        steps = [{"weight": 10, "holdSeconds": 60}, {"weight": 50, "holdSeconds": 60}]
        spec = {"modelVersionRef": {"name": f"m-v{i}"}, "inferenceService": {"deploymentMode": "Standard"},
                "canary": {"steps": steps}}  # fmt: skip
        out.append(("rollouts", {"kind": "Rollout", "metadata": {"name": f"r-{i}"}, "spec": spec}))
    for i in range(1, q + 1):
        spec = {"rolloutRef": {"name": f"r-{i}"}, "detector": {"method": "ks", "pValue": 0.05, "windowSize": 500}}
        out.append(("driftmonitors", {"kind": "DriftMonitor", "metadata": {"name": f"d-{i}"}, "spec": spec}))
    return out


def create_all(env: Env, ns: str, objects: list[tuple[str, dict[str, Any]]], workers: int = 8) -> None:
    api = env.cluster._api()  # a keep-alive connection per worker thread

    def create(item: tuple[str, dict[str, Any]]) -> None:
        plural, obj = item
        body = {"apiVersion": "slipway.dev/v1alpha1", **obj}
        try:
            api.call("POST", f"{API}/namespaces/{ns}/{plural}", body, timeout=60)
        except ApiError as e:
            if e.status != 409:
                raise RuntimeError(f"create {plural}/{obj['metadata']['name']}: {str(e)[:300]}") from None

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(create, objects))


def apiserver_requests(env: Env, by: tuple[str, ...] = ("resource",)) -> dict[str, float]:
    """apiserver_request_total summed by resource (or by the labels `by` names, joined by spaces), from the
    apiserver's own /metrics."""
    code, body = env.cluster._api().request("GET", "/metrics", timeout=30)
    assert code == 200, body[:200]
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels, value = line.rsplit(" ", 1)
            pairs = dict(kv.split("=", 1) for kv in labels[24:-1].split(",") if "=" in kv)
            key = " ".join(pairs.get(label, "").strip('"') for label in by)
            out[key] = out.get(key, 0.0) + float(value)
    return out


def passes_by_kind(port: int, label: str = "kind") -> dict[str, int]:
    """slipway_reconcile_total summed per kind (every outcome), or per another of its labels (`outcome`)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("slipway_reconcile_total{"):
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            out[value] = out.get(value, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out


def process_cpu(env: Env, drift: DriftServer) -> dict[str, float]:
    """CPU seconds so far of what else runs on the machine: the control plane, the S3 and drift servers, this bench
    (its watches and the KServe status writer)."""
    pids = {name: env.cluster.procs.pid(name) for name in ("etcd", "kube-apiserver", "kube-controller-manager")}
    pids |= {"s3": env.s3.proc.pid if env.s3.proc else None, "drift_runtime": drift.proc.pid if drift.proc else None,
             "bench": os.getpid()}  # fmt: skip
    return {name: cpu_seconds(pid) for name, pid in pids.items() if pid is not None}


def gc_pauses(port: int) -> dict[str, float]:
    """The operator's slipway_gc_pause_seconds so far, per generation: collections, their seconds, and those over
    50 ms ("<generation>_over_50ms")."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("slipway_gc_pause_seconds"):
            continue
        gen = line.split('generation="', 1)[1].split('"', 1)[0]
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith("slipway_gc_pause_seconds_count"):
            out[f"{gen}_collections"] = out.get(f"{gen}_collections", 0.0) + value
            out[f"{gen}_over_50ms"] = out.get(f"{gen}_over_50ms", 0.0) + value
        elif line.startswith("slipway_gc_pause_seconds_sum"):
            out[f"{gen}_seconds"] = value
        elif 'le="0.05"' in line:
            out[f"{gen}_over_50ms"] = out.get(f"{gen}_over_50ms", 0.0) - value
    return out


def gc_difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 3) for k, v in sorted(after.items())}


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


def log_lines(path: Path, marker: str = "") -> int:
    text = path.read_text(errors="replace") if path.exists() else ""
    return sum(1 for line in text.splitlines() if marker in line)


def wait_until(what: str, check: Callable[[], bool], timeout: float, op: Operator,
               progress: Callable[[], Any] = lambda: "") -> float:  # fmt: skip
    start = last = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout or op.proc.poll() is not None:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s (see {op.log})")
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            print(f"{what}: {last - start:.0f}s, {progress()}, load {os.getloadavg()[0]:.1f}", file=sys.stderr)
        time.sleep(0.2)
    return time.monotonic()


def restart(op: Operator, n: int) -> dict[str, Any]:
    """A new operator over the settled objects (an upgrade, a rescheduled pod): seconds and operator CPU until
    it has listed every object and looked at each once (its slipway_objects_unreconciled at 0), and its RSS then
    and a settled minute later."""
    started = time.monotonic()

    def looked_at_all() -> bool:
        with suppress(OSError):
            return (
                metric_sum(op.port, "slipway_objects") >= n and metric_sum(op.port, "slipway_objects_unreconciled") == 0
            )
        return False

    seconds = wait_until("restart: every object looked at", looked_at_all, 1800, op) - started
    cpu, rss = cpu_seconds(op.proc.pid), rss_mb(op.proc.pid)
    settle(op, limit=1800, counters=("slipway_status_patches_total", "slipway_reconcile_total"))
    time.sleep(60)
    return {"seconds": round(seconds, 1), "operator_cpu_seconds": round(cpu, 1), "operator_rss_mb": rss,
            "operator_rss_mb_settled": rss_mb(op.proc.pid), "passes_by_kind": passes_by_kind(op.port),
            "status_patches": int(metric_sum(op.port, "slipway_status_patches_total"))}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))], 1)


def churn(env: Env, ns: str, tracker: Tracker, names: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """`rate` ModelVersion spec changes per second for `seconds`; event → status latencies."""
    api, sent = env.cluster._api(), []
    start, started_unix, total = time.monotonic(), time.time(), int(rate * seconds)
    for i in range(total):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        name = names[i % len(names)]
        patch = {"spec": {"metrics": {"accuracy": round(0.9 + (i + 1) / 1e6, 6)}}}
        out = api.call("PATCH", f"{API}/namespaces/{ns}/modelversions/{name}", patch, "application/merge-patch+json",
                       timeout=60)  # fmt: skip
        sent.append((name, out["metadata"]["generation"], time.monotonic()))
    achieved = total / (time.monotonic() - start)
    times, lost, slow = [], 0, []
    for name, gen, t0 in sent:
        seen = tracker.wait_observed("modelversions", name, gen, timeout=max(1.0, t0 + 60 - time.monotonic()))
        if seen is None:
            lost += 1
        else:
            times.append((seen - t0) * 1000)
            # When (seconds into the churn), to line the tail up with the operator's log and metrics.
            slow.append({"ms": round(times[-1], 1), "at_s": round(t0 - start, 2), "name": name, "generation": gen})
    return {"changes": total, "started_unix": round(started_unix, 2), "rate_per_second": round(achieved, 1),
            "not_followed_within_60s": lost, "p50_ms": percentile(times, 0.5), "p90_ms": percentile(times, 0.9),
            "p99_ms": percentile(times, 0.99),
            "max_ms": round(max(times), 1) if times else None,
            "slowest": sorted(slow, key=lambda s: -s["ms"])[:10]}  # fmt: skip


def measure(env: Env, drift: DriftServer, art: dict[str, str], n: int, args: argparse.Namespace) -> dict[str, Any]:
    ns = f"scale-{n}"
    load = os.getloadavg()
    env.cluster.kubectl("create", "namespace", ns)
    stop, tracker = threading.Event(), Tracker()
    objects = manifests(n, art)
    t = time.monotonic()
    create_all(env, ns, objects)
    created = time.monotonic() - t
    for plural in KINDS:
        watch(env, f"{API}/namespaces/{ns}/{plural}", tracker.on(plural), stop)
    kserve_standin(env, ns, stop)
    while tracker.counts()[0] < n:
        time.sleep(0.2)
    extra = {"SLIPWAY_NAMESPACES": ns, "SLIPWAY_DRIFT_URL": drift.url, "SLIPWAY_GATEWAY": ""}
    op = Operator(env, extra, env.root / f"operator-{n}.log")
    others, requests_before = process_cpu(env, drift), apiserver_requests(env, ("resource", "subresource", "verb"))
    started = time.monotonic()
    try:
        progress = tracker.counts  # (objects, reconciled once, Ready)
        startup = wait_until("every object reconciled once", lambda: progress()[1] >= n, 3600, op, progress)
        startup -= started
        startup_cpu, startup_passes, startup_gc = cpu_seconds(op.proc.pid), passes_by_kind(op.port), gc_pauses(op.port)
        # Where the machine's two cores went meanwhile: the start-up is the operator's and everyone else's work.
        startup_others = {k: round(v - others.get(k, 0.0), 1) for k, v in process_cpu(env, drift).items()}
        # And what the apiserver was asked meanwhile (by everyone: the operator, the bench's watches and stand-in).
        requests = apiserver_requests(env, ("resource", "subresource", "verb"))
        startup_requests = {k: int(v - requests_before.get(k, 0.0)) for k, v in requests.items()}
        startup_requests = {k: v for k, v in sorted(startup_requests.items(), key=lambda kv: -kv[1]) if v >= n / 100}
        startup = {
            "startup_seconds": round(startup, 1),
            "startup_operator_cpu_seconds": round(startup_cpu, 1),
            # Reconcile passes per object of each kind until every object was reconciled once, and their
            # outcomes (a conflict is a pass decided on a stale body, retried after reading the object again).
            "passes_per_object_at_startup": {k: round(v * 4 / n, 2) for k, v in sorted(startup_passes.items())},
            "passes_at_startup_by_outcome": passes_by_kind(op.port, "outcome"),
            "startup_cpu_seconds_of_the_rest": startup_others,
            "startup_gc_pauses": {k: round(v, 3) for k, v in sorted(startup_gc.items())},
            # Requests the apiserver served during start-up, by "resource subresource verb" (those >= 1 % of N).
            "startup_apiserver_requests": startup_requests,
        }
        head = {"objects": n, "per_kind": {p: sum(1 for q, _ in objects if q == p) for p in KINDS},
                "load_average_at_start": [round(x, 2) for x in load], "create_seconds": round(created, 1)}  # fmt: skip
        try:
            wait_until("every object Ready", lambda: progress()[2] >= n, 1800, op, progress)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: not Ready: {tracker.not_ready()[:20]}") from None
        # Nor a pass: passes that write nothing (a watch's backlog of events) are start-up work, not idle.
        settle(op, limit=1800, counters=("slipway_status_patches_total", "slipway_reconcile_total"))
        settled, settled_passes = time.monotonic() - started, passes_by_kind(op.port)
        rest = {k: round(v - others.get(k, 0.0), 1) for k, v in process_cpu(env, drift).items()}
        settling = {
            "settled_seconds": round(settled, 1),
            "settled_operator_cpu_seconds": round(cpu_seconds(op.proc.pid), 1),
            "settled_cpu_seconds_of_the_rest": rest,
            "passes_per_object_until_settled": {k: round(v * 4 / n, 2) for k, v in sorted(settled_passes.items())},
        }
        if args.startup_only:
            return {**head, **startup, **settling}
        api = env.cluster.procs.pid("kube-apiserver")
        assert api is not None and drift.proc is not None

        def sample() -> tuple[Any, ...]:
            return (cpu_seconds(op.proc.pid), cpu_seconds(api), cpu_seconds(drift.proc.pid),  # type: ignore[union-attr]
                    s3_requests(env.s3.log_path), metric_sum(op.port, "slipway_reconcile_total"),
                    metric_sum(op.port, "slipway_status_patches_total"), log_lines(drift.log_path, '"GET /'),
                    op.lines(), apiserver_requests(env))  # fmt: skip

        before, t0 = sample(), time.monotonic()
        time.sleep(args.window)
        after, dt = sample(), time.monotonic() - t0
        rss = rss_mb(op.proc.pid)
        d = [a - b for a, b in zip(after[:8], before[:8], strict=True)]
        by_resource = {r: round((after[8][r] - before[8].get(r, 0.0)) / dt, 2) for r in after[8]}
        by_resource = {r: v for r, v in sorted(by_resource.items(), key=lambda kv: -kv[1]) if v > 0}
        cpu_before = cpu_seconds(op.proc.pid)
        kinds_before, outcomes_before = passes_by_kind(op.port), passes_by_kind(op.port, "outcome")
        gc_before = gc_pauses(op.port)
        churned = churn(env, ns, tracker, [o["metadata"]["name"] for p, o in objects if p == "modelversions"],
                        args.churn_rate, args.churn_seconds)  # fmt: skip
        # What the changes cost: passes of each kind (a version's Rollout looks again) and their outcomes (a
        # conflict retries after handlers.CONFLICT_RETRY_SECONDS).
        churned["passes_by_kind"] = difference(passes_by_kind(op.port), kinds_before)
        churned["passes_by_outcome"] = difference(passes_by_kind(op.port, "outcome"), outcomes_before)
        # Collections by generation while the changes ran (slipway_gc_pause_seconds): a long one delays every
        # event in flight.
        churned["gc_pauses"] = gc_difference(gc_pauses(op.port), gc_before)
        churned["load_average_after"] = round(os.getloadavg()[0], 2)
        churned["operator_cpu_percent_of_a_core"] = round(
            100 * (cpu_seconds(op.proc.pid) - cpu_before) / args.churn_seconds, 1
        )
        op.stop()
        op = Operator(env, extra, env.root / f"operator-{n}-restart.log")
        restarted = restart(op, n)
        return {
            **head,
            **startup,
            **settling,
            "idle": {
                "window_seconds": round(dt, 1),
                "operator_cpu_percent_of_a_core": round(100 * d[0] / dt, 2),
                "operator_rss_mb": rss,
                "apiserver_cpu_percent_of_a_core": round(100 * d[1] / dt, 2),
                "drift_runtime_cpu_percent_of_a_core": round(100 * d[2] / dt, 2),
                "apiserver_requests_per_second": round(sum(by_resource.values()), 2),
                "apiserver_requests_per_second_operator_resources": round(
                    sum(v for r, v in by_resource.items() if r in OPERATOR_RESOURCES), 2
                ),
                "apiserver_requests_per_second_by_resource": by_resource,
                "s3_requests_per_second": round(d[3] / dt, 2),
                "drift_runtime_requests_per_second": round(d[6] / dt, 2),
                "reconciles_per_second": round(d[4] / dt, 2),
                "status_patches": int(d[5]),
                "operator_log_lines_per_minute": round(60 * d[7] / dt, 1),
            },
            "event_to_status_under_churn": churned,
            "restart": restarted,
        }
    except Exception:
        print(f"N={n}: operator log tail:\n{op.log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop.set()
        op.stop()


ACCEPTANCE = {
    10000: {"idle.operator_cpu_percent_of_a_core": 2, "idle.operator_rss_mb": 400, "startup_seconds": 90,
            "event_to_status_under_churn.p99_ms": 250, "idle.s3_requests_per_second": 1},
    1000: {"idle.operator_cpu_percent_of_a_core": 0.5},
}  # fmt: skip


def verdicts(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, limits in ACCEPTANCE.items():
        if str(n) not in results:
            continue
        for path, limit in limits.items():
            value: Any = results[str(n)]
            for part in path.split("."):
                value = value.get(part, {})
            if value == {}:  # not measured (--startup-only)
                continue
            out[f"N={n} {path} < {limit}"] = {"value": value, "pass": value is not None and value < limit}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--objects", default="1000,10000", help="comma list of N (default 1000,10000)")
    parser.add_argument("--window", type=float, default=60, help="idle window in seconds (default 60)")
    parser.add_argument("--churn-rate", type=float, default=20, help="spec changes per second (default 20)")
    parser.add_argument("--churn-seconds", type=float, default=30, help="how long the churn lasts (default 30)")
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="measure each N's start-up and settling only (no idle window, churn or restart)",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.objects.split(",") if x.strip()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp), executor=False) as env:
        drift = DriftServer(env.root / "drift.log", env.root / "drift-state", env.s3)
        drift.start()
        try:
            art = s3_objects(env)
            for n in sizes:
                results[str(n)] = measure(env, drift, art, n, args)
                print(json.dumps({str(n): results[str(n)]}), file=sys.stderr, flush=True)
        finally:
            drift.stop()
    ratio = {}
    if len(sizes) >= 2 and not args.startup_only:
        lo, hi = str(min(sizes)), str(max(sizes))
        for key in ("operator_cpu_percent_of_a_core", "operator_rss_mb", "apiserver_requests_per_second",
                    "reconciles_per_second"):  # fmt: skip
            a, b = results[lo]["idle"][key], results[hi]["idle"][key]
            ratio[f"idle.{key}"] = round(b / a, 2) if a else None
        ratio["startup_seconds"] = round(results[hi]["startup_seconds"] / results[lo]["startup_seconds"], 2)
    print(json.dumps({"benchmark": "operator_scale", "cores": os.cpu_count(), "results": results,
                      f"ratio_{max(sizes)}_to_{min(sizes)}": ratio, "acceptance": verdicts(results),
                      "notes": NOTES}, indent=2))  # fmt: skip
    return 0


NOTES = [
    "Local control plane: real etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok; no local "
    "executor, no serving stack. KServe's controller does not run: the bench writes each InferenceService's "
    "status (Ready, url) as KServe would; no predictor runs. The drift runtime is the real one, with no traffic.",
    "The operator is standalone (SLIPWAY_PEERING empty), scoped to the N's namespace, SLIPWAY_GATEWAY empty (no "
    "HTTPRoutes), other settings default. Each N's namespace stays while the next N runs (not watched by it).",
    "The bench itself (object creation, four watches, the KServe stand-in, churn) runs on the same 2 cores; "
    "apiserver requests count every client, including the bench's watches (one request each per 300 s).",
]


if __name__ == "__main__":
    sys.exit(main())
