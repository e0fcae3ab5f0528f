"""Benchmark: slipway's promises under faults, as one bounded campaign on the local environment.

Runs the real serving stack (KServe v0.20.0's controller in Standard mode, Traefik, Prometheus scraping every
second), an S3 server, the drift runtime and two operator replicas in one Kopf peering (a Deployment of two),
then, at once:

- canaries: `--lanes` Rollouts, each under its own load (`--rps` requests/s), each taking canaries one after
  another until `--rollouts` were started in all: healthy copies of the base model or versions failing on 30 % of
  their inputs, in a seeded random order, two steps each; one canary in ten has a manual gate that this script
  opens once the Rollout pauses there;
- TrainingJobs: `--jobs` of them, at most two unfinished at a time; every third a 2-worker torchrun gang, every
  fourth loses its (first) pod once while it runs (deleted at once, as a node loss does);
- a DriftMonitor on the first lane (KS on windows of 100 rows, retraining after 2 drifted windows in a row, a
  cooldown of `--drift-cooldown` seconds); every `--drift-every` seconds (± 30 %) that lane's load sends shifted
  inputs (every feature + `--drift-shift`) for `--drift-seconds`, so the monitor detects drift and retrains (a
  small scikit-learn job), and the bursts inside a cooldown must retrain nothing;
- a fault injector, every `--fault-every` seconds (± 30 %), cycling through the fault kinds in a seeded random
  order: SIGKILL the active operator and start it again at once; SIGKILL the active replica and let the standby
  take over (then start the killed one again); SIGKILL kube-apiserver and start it again; SIGSTOP Prometheus for
  30 s; SIGKILL Prometheus and start it again 20 s later; SIGSTOP the S3 server for 30 s (moto keeps its data in
  memory: a freeze is an outage that loses nothing, as a real S3 outage does); SIGKILL the drift runtime and
  start it again.

It prints one JSON object. Per fault kind: how many were injected and how long each took to recover. The defect
counts, all of which should be zero:

- `stuck`: a canary with no verdict within `--stuck-seconds` of being applied, a TrainingJob not finished within
  it, a ModelVersion not Ready within it;
- `wrong_final_traffic`: a failing canary promoted, a healthy one rolled back, or a rolled-back canary still
  answering (its 500s) more than 15 s after the verdict;
- `promotions_while_prometheus_unreachable`: an Advance, FullWeight or Promote decided on analysis while
  Prometheus was frozen or down (manual-gate promotions excluded);
- `model_versions_lost` / `model_versions_duplicated`: a Succeeded TrainingJob without exactly one ModelVersion;
- `duplicated_retraining_jobs`: a retraining TrainingJob created within the monitor's cooldown of the one before;
- `retraining_missed`: drift bursts were sent after the cooldown of the last retraining, and none retrained (the
  duplicate count would then show nothing);
- `drift_results_lost`: the monitor's result sequence going backwards (windows it had seen forgotten);
- `operator_crashes`: an operator replica that exited without being killed by the injector.

    .venv/bin/python bench/chaos.py [--rollouts 100] [--jobs 30] [--lanes 3] [--fault-every 45] [--seed 1]
        [--max-minutes 120] [--drift-every 300] [--drift-seconds 60] [--drift-shift 10] [--drift-cooldown 900]
        [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sklearn.datasets import load_breast_cancer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from rollback_time import free_port, ready, register  # noqa: E402
from slipway import contract  # noqa: E402
from slipway.conditions import parse_time  # noqa: E402
from slipway_dev.loadgen import Load  # noqa: E402
from slipway_dev.localcluster import Cluster  # noqa: E402
from slipway_dev.localcluster.cluster import ClusterError  # noqa: E402
from slipway_dev.localcluster.components import APISERVER, PROMETHEUS  # noqa: E402
from slipway_dev.localcluster.layout import port_in_use  # noqa: E402
from slipway_dev.localcluster.servers import DriftServer, S3Server  # noqa: E402

NS = "bench"
FAULTS = ("operator_kill", "ha_active_kill", "apiserver_restart", "prometheus_freeze", "prometheus_kill",
          "s3_outage", "drift_kill")  # fmt: skip
ANALYSED = ("Advance", "FullWeight")  # a step ended: on its analysis, unless a person opened its gate
MONITOR_LABEL = contract.DRIFT_MONITOR


# kubectl's words for an apiserver that is not there (restarting), as opposed to one that answered.
UNREACHABLE = ("connection refused", "Unable to connect to the server", "connection reset by peer", "EOF",
               "the server is currently unable to handle the request", "Client.Timeout exceeded")  # fmt: skip


class Replica:
    """One operator process of the HA pair; `priority` decides which one is active (the higher)."""

    def __init__(self, name: str, priority: int, env: dict[str, str], log: Path) -> None:
        self.name, self.priority, self.env, self.log = name, priority, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False  # by the injector: its exit is not a crash
        self.port = 0

    def start(self) -> None:
        out = self.log.open("ab")
        self.port = free_port()
        env = {**self.env, "SLIPWAY_PRIORITY": str(self.priority), "SLIPWAY_HTTP_PORT": str(self.port)}
        self.proc = subprocess.Popen([sys.executable, "-m", "slipway"], env=env, stdout=out, stderr=out)
        self.killed = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def reconciles(self) -> float | None:
        """Its successful reconcile passes so far (a standby makes none), or None when /metrics does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        lines = [ln for ln in text.splitlines() if ln.startswith("slipway_reconcile_total{") and 'outcome="ok"' in ln]
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)

    def kill(self) -> None:
        if self.proc is not None:
            self.killed = True
            self.proc.kill()
            self.proc.wait()


class Env:
    """The environment, the two replicas, and what the faults need to reach."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = Cluster(root / "cluster", free_ports=True, serving=True, prometheus=True, scrape_interval="1s")
        self.s3 = S3Server(root / "s3.log")
        self.drift = DriftServer(root / "drift.log", root / "drift-state", self.s3)
        self.replicas: list[Replica] = []
        self.lock = threading.Lock()  # the injector and the crash watcher both restart replicas

    def __enter__(self) -> Env:
        self.cluster.up(timeout=900)
        self.s3.start()
        self.drift.start()
        import boto3

        self.s3_client = boto3.client("s3", endpoint_url=self.s3.endpoint, region_name="us-east-1",
                                      aws_access_key_id=self.s3.env()["AWS_ACCESS_KEY_ID"],
                                      aws_secret_access_key=self.s3.env()["AWS_SECRET_ACCESS_KEY"])  # fmt: skip
        self.s3_client.create_bucket(Bucket="models")
        env = self.cluster.env({**os.environ, "SLIPWAY_S3_ENDPOINT": self.s3.endpoint, "SLIPWAY_HTTP_HOST": "127.0.0.1",
                                "SLIPWAY_DRIFT_URL": self.drift.url, "SLIPWAY_PEERING": "slipway"})  # fmt: skip
        self.replicas = [Replica(n, p, env, self.root / f"operator-{n}.log") for n, p in (("a", 20), ("b", 10))]
        for r in self.replicas:
            r.start()
        self.kubectl("create", "namespace", NS)
        self.kubectl("apply", "-f", str(REPO / "examples" / "s3-credentials.yaml"))
        self.kubectl("apply", "-f", str(REPO / "runtimes" / "predictor" / "servingruntime.yaml"))
        return self

    def __exit__(self, *_: Any) -> None:
        for r in self.replicas:
            if r.alive() and r.proc is not None:
                r.proc.terminate()
                with suppress(subprocess.TimeoutExpired):
                    r.proc.wait(timeout=30)
        for server in (self.s3, self.drift):
            if server.proc is not None:
                with suppress(ProcessLookupError):
                    os.kill(server.proc.pid, signal.SIGCONT)
            server.stop()
        for name in (PROMETHEUS,):
            if (pid := self.cluster.procs.pid(name)) is not None:
                os.kill(pid, signal.SIGCONT)
        self.cluster.down(purge=True)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """kubectl in the bench's namespace, again for up to 120 s while the apiserver cannot be reached (its restart
        is one of the faults: a lane's apply must not end the lane, as it did once)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                return str(self.cluster.kubectl("-n", NS, *args, input=input).stdout)
            except ClusterError as err:
                if time.monotonic() > deadline or not any(s in str(err) for s in UNREACHABLE):
                    raise
                time.sleep(2)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        try:
            out = self.kubectl("get", kind, name, "-o", "json", "--ignore-not-found")
        except Exception:  # noqa: BLE001 (the apiserver may be the fault of the moment: ask again next poll)
            return {}
        return json.loads(out) if out.strip() else {}

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, *selector, "-o", "json"))["items"])

    def poll(self, check: Any, timeout: float) -> Any:
        """`check()`'s first true value, or None after `timeout`; an error (an outage of the moment) is a no."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with suppress(Exception):
                if value := check():
                    return value
            time.sleep(0.5)
        return None

    def wait(self, what: str, check: Any, timeout: float = 300) -> Any:
        """As rollback_time's Env.wait (register() calls it): raises on timeout."""
        if (value := self.poll(check, timeout)) is None:
            raise TimeoutError(f"timed out waiting for {what}")
        return value

    def active(self) -> Replica | None:
        live = [r for r in self.replicas if r.alive()]
        return max(live, key=lambda r: r.priority) if live else None


class Faults:
    """The injector: what it did and when Prometheus could not be reached."""

    def __init__(self, env: Env, rng: random.Random) -> None:
        self.env, self.rng = env, rng
        self.done: dict[str, list[dict[str, Any]]] = defaultdict(list)
        # Wall-clock stretches when Prometheus certainly answered nothing: frozen (SIGSTOP to SIGCONT) or dead (the
        # SIGKILL until its restart begins; while it starts again it may answer already, so that is not counted).
        self.prometheus_out: list[tuple[float, float]] = []
        self.crashes: list[str] = []

    def inject(self, kind: str) -> None:
        t0 = time.monotonic()
        try:
            detail: dict[str, Any] = getattr(self, kind)()
        except Exception as err:  # noqa: BLE001 (a fault that could not be injected or undone: report it, go on)
            detail = {"error": f"{type(err).__name__}: {err}"[:500]}
        detail["at"] = datetime.now(UTC).strftime("%H:%M:%S")
        detail["seconds"] = round(time.monotonic() - t0, 1)
        self.done[kind].append(detail)
        progress(f"fault {kind}: {detail}")

    def operator_kill(self) -> dict[str, Any]:
        with self.env.lock:
            victim = self.env.active()
            if victim is None:
                return {"skipped": "no live replica"}
            victim.kill()
            victim.start()
        return {"replica": victim.name}

    def ha_active_kill(self) -> dict[str, Any]:
        with self.env.lock:
            victim = self.env.active()
            if victim is None:
                return {"skipped": "no live replica"}
            victim.kill()
        standby = self.env.active()
        # The standby resumes once the killed replica's peering entry runs out (Kopf's lifetime, 60 s): wait
        # for its first reconcile passes rather than guess.
        took = None
        if standby is not None and (before := standby.reconciles()) is not None:
            t0 = time.monotonic()
            if self.env.poll(lambda: (standby.reconciles() or 0) > before + 2, 240):
                took = round(time.monotonic() - t0, 1)
        with self.env.lock:
            victim.start()
        return {"replica": victim.name, "standby": standby.name if standby else None,
                "standby_reconciling_after_seconds": took}  # fmt: skip

    def apiserver_restart(self) -> dict[str, Any]:
        pid = self.env.cluster.procs.pid(APISERVER)
        if pid is None:
            return {"skipped": "kube-apiserver not running"}
        os.kill(pid, signal.SIGKILL)
        # Gone, and its port free: on a loaded machine the kill can take longer than a start would wait (a run
        # on 2026-12-03 restarted into "port already in use" and left the control plane down).
        port = self.env.cluster.ports.apiserver
        if not self.env.poll(lambda: self.env.cluster.procs.pid(APISERVER) is None and not port_in_use(port), 120):
            return {"error": f"kube-apiserver (pid {pid}) or its port {port} still there 120 s after SIGKILL"}
        self.env.cluster.up(timeout=300)
        return {}

    def prometheus_freeze(self) -> dict[str, Any]:
        pid = self.env.cluster.procs.pid(PROMETHEUS)
        if pid is None:
            return {"skipped": "Prometheus not running"}
        self.prometheus_out.append(freeze(pid, 30))
        return {}

    def prometheus_kill(self) -> dict[str, Any]:
        pid = self.env.cluster.procs.pid(PROMETHEUS)
        if pid is None:
            return {"skipped": "Prometheus not running"}
        start = time.time()
        os.kill(pid, signal.SIGKILL)
        time.sleep(20)
        self.prometheus_out.append((start, time.time()))
        # Brought back by the cluster's own start, which under the campaign's load can fail a step (a CRD apply
        # timed out once); a failed start leaves the running cluster alone, so try again.
        for attempt in range(3):
            try:
                self.env.cluster.up(timeout=300)
                return {"start_attempts": attempt + 1}
            except Exception:
                if attempt == 2:
                    raise
                time.sleep(10)
        return {}

    def s3_outage(self) -> dict[str, Any]:
        assert self.env.s3.proc is not None
        freeze(self.env.s3.proc.pid, 30)
        return {}

    def drift_kill(self) -> dict[str, Any]:
        assert self.env.drift.proc is not None
        self.env.drift.proc.kill()
        self.env.drift.proc.wait()
        self.env.drift.start()
        return {}

    def watch_crashes(self) -> None:
        """A replica that exited on its own is a crash: count it and start it again."""
        with self.env.lock:
            for r in self.env.replicas:
                if r.proc is not None and not r.alive() and not r.killed:
                    self.crashes.append(f"{r.name} exited with {r.proc.returncode}")
                    r.start()


def freeze(pid: int, seconds: float) -> tuple[float, float]:
    """SIGSTOP `pid` for `seconds` (an outage that loses nothing); the wall-clock stretch it answered nothing."""
    start = time.time()
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(pid, signal.SIGCONT)
    return start, time.time()


def rollout_doc(env: Env, lane: str, target: str, gate: bool) -> str:
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    doc["metadata"]["name"] = lane
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["deploymentMode"] = "Standard"
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    first = {"weight": 20, "manualGate": True} if gate else {"weight": 20, "holdSeconds": 10}
    doc["spec"]["canary"] = {
        "steps": [first, {"weight": 50, "holdSeconds": 10}],
        "analysis": {"prometheus": {"address": env.cluster.prometheus_url}, "intervalSeconds": 2, "minRequests": 20,
                     "errorRate": {"margin": 0.2}, "latency": {"enabled": False}},
    }  # fmt: skip
    return yaml.safe_dump(doc)


def progress(line: str) -> None:
    """One line of progress on stderr (the JSON report goes to stdout)."""
    print(f"chaos {datetime.now(UTC).strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)


def wall(stamp: str) -> float:
    parsed = parse_time(stamp)
    if parsed is None:
        raise ValueError(f"not a time: {stamp!r}")
    return parsed.timestamp()


class Lane:
    """One Rollout under its own load, taking canaries one after another."""

    rps = 15.0

    def __init__(self, env: Env, name: str, base: dict[str, Any], stuck: float) -> None:
        self.env, self.name, self.base, self.stuck = env, name, base, stuck
        self.canaries: list[dict[str, Any]] = []
        self.load: Load | None = None

    def serve_first(self) -> None:
        first = register(self.env, self.base, f"{self.name}-v1", 1, None)
        self.env.kubectl("apply", "-f", "-", input=rollout_doc(self.env, self.name, first, False))
        self.env.wait(f"{self.name} served", lambda: ready(self.env, "rollout", self.name), 600)
        rows = load_breast_cancer().data.tolist()
        self.load = Load(self.env.cluster.ingress_url, self.name, NS, rows, self.rps, max_seconds=4 * 3600,
                         host=host_of(self.env, self.name)).start()  # fmt: skip

    def canary(self, index: int, failing: bool, gate: bool) -> None:
        env, version = self.env, 100 + index
        name = f"{self.name}-v{version}"
        record: dict[str, Any] = {"version": name, "kind": "failing" if failing else "healthy", "manual_gate": gate}
        self.canaries.append(record)
        try:
            register(env, self.base, name, version, 0.3 if failing else None)
        except Exception as err:  # noqa: BLE001 (an S3 or apiserver outage during registration: report, go on)
            record |= {"outcome": "stuck", "stuck": f"ModelVersion not Ready: {err}"}
            return
        applied, applied_wall = time.monotonic(), int(time.time())
        env.kubectl("apply", "-f", "-", input=rollout_doc(env, self.name, name, gate))

        def verdict() -> dict[str, Any] | None:
            st = env.get("rollout", self.name).get("status") or {}
            if gate and st.get("phase") == "Paused" and st.get("canaryVersion") == name:
                env.kubectl("annotate", "--overwrite", "rollout", self.name, f"slipway.dev/promote={index}")
            done = st.get("stableVersion") == name or st.get("rolledBackVersion") == name
            return st if done else None

        st = env.poll(verdict, self.stuck)
        if st is None:
            record |= {"outcome": "stuck", "stuck": f"no verdict within {self.stuck:.0f}s"}
            progress(f"{name} ({record['kind']}): STUCK, no verdict within {self.stuck:.0f}s")
            return
        decided = time.monotonic()
        record["outcome"] = "promoted" if st.get("stableVersion") == name else "rolled back"
        record["seconds"] = round(decided - applied, 1)
        record["decisions"] = [d for d in st.get("decisions") or [] if wall(d["time"]) >= applied_wall]
        progress(f"{name} ({record['kind']}): {record['outcome']} after {record['seconds']}s")
        if record["outcome"] == "rolled back" and self.load is not None:
            time.sleep(25)
            late = [t for t, c in list(self.load.results) if c == 500 and decided + 15 <= t]
            record["requests_500_after_15s"] = len(late)

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()


def host_of(env: Env, name: str) -> str:
    url = (env.get("inferenceservice", name).get("status") or {}).get("url") or ""
    return urllib.parse.urlsplit(url).hostname or ""


def job_doc(index: int) -> dict[str, Any]:
    gang = index % 3 == 2
    example = "trainingjob-pytorch-ddp-gpu.yaml" if gang else "trainingjob-sklearn.yaml"
    doc = yaml.safe_load((REPO / "examples" / example).read_text())
    doc["metadata"] = {"name": f"tj-{index:02d}"}
    doc["spec"]["seed"] = index
    doc["spec"]["output"]["uri"] = f"s3://models/tj-{index:02d}"
    if gang:
        doc["spec"]["hyperparameters"] |= {"epochs": 2}
        doc["spec"].pop("gates", None)  # two epochs: lineage and recovery are under test here, not accuracy
    else:
        doc["spec"]["hyperparameters"] = {"n_estimators": 10, "max_depth": 4}
    doc["spec"]["runPolicy"] = {"backoffLimit": 3}
    return doc


def run_jobs(env: Env, count: int, stuck: float, out: list[dict[str, Any]], stop: threading.Event) -> None:
    """At most two unfinished at a time; every fourth loses a running pod once."""
    pending = list(range(count))
    running: dict[str, dict[str, Any]] = {}
    while (pending or running) and not stop.is_set():
        while pending and len(running) < 2:
            i = pending.pop(0)
            doc = job_doc(i)
            rec = {"name": doc["metadata"]["name"], "started": time.monotonic(), "lose_pod": i % 4 == 3,
                   "gang": i % 3 == 2}  # fmt: skip
            try:
                env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
            except Exception as err:  # noqa: BLE001 (an apiserver restart of the moment: try it again later)
                pending.insert(0, i)
                rec["apply_errors"] = str(err)[:200]
                time.sleep(2)
                continue
            running[rec["name"]] = rec
        for name, rec in list(running.items()):
            st = env.get("trainingjob", name).get("status") or {}
            if rec["lose_pod"] and not rec.get("pod_lost") and st.get("phase") == "Running":
                with suppress(Exception):
                    pods = env.items("pods", "-l", f"slipway.dev/training-job={name}")
                    if pods:
                        env.kubectl("delete", "pod", pods[0]["metadata"]["name"], "--grace-period=0", "--force")
                        rec["pod_lost"] = pods[0]["metadata"]["name"]
            if st.get("phase") in ("Succeeded", "Failed"):
                rec |= {"phase": st["phase"], "attempts": st.get("attempts"),
                        "seconds": round(time.monotonic() - rec["started"], 1),
                        "modelVersionRef": (st.get("modelVersionRef") or {}).get("name")}  # fmt: skip
                rec.pop("started")
                out.append(running.pop(name))
                progress(f"TrainingJob {name}: {st['phase']} (attempts {st.get('attempts')})")
            elif time.monotonic() - rec["started"] > stuck:
                # What it was waiting for, as its status and pods said: the run's cluster is gone afterwards.
                conds = [f"{c.get('type')}={c.get('status')} {c.get('reason')}: {c.get('message')}"
                         for c in st.get("conditions") or []]  # fmt: skip
                with suppress(Exception):
                    rec["pods"] = {p["metadata"]["name"]: (p.get("status") or {}).get("phase")
                                   for p in env.items("pods", "-l", f"slipway.dev/training-job={name}")}  # fmt: skip
                rec |= {"phase": st.get("phase"), "attempts": st.get("attempts"), "conditions": conds,
                        "stuck": f"not finished within {stuck:.0f}s"}  # fmt: skip
                rec.pop("started")
                out.append(running.pop(name))
        time.sleep(2)


def keep_logs(root: Path, dest: Path) -> None:
    """Every *.log under the run's directory (operator replicas, drift and S3 servers, the control plane's
    components), into `dest` with its relative path."""
    for log in root.rglob("*.log"):
        target = dest / log.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        with suppress(OSError):
            target.write_bytes(log.read_bytes())


def model_version_counts(env: Env, jobs: list[dict[str, Any]]) -> tuple[int, int]:
    """(lost, duplicated): Succeeded TrainingJobs with no ModelVersion, or more than one naming them."""
    per_job: dict[str, int] = defaultdict(int)
    for mv in env.items("modelversions"):
        ref = ((mv.get("spec") or {}).get("lineage") or {}).get("trainingJobRef") or {}
        job = ref.get("name") or (mv["metadata"].get("labels") or {}).get(contract.TRAINING_JOB)
        if job:
            per_job[job] += 1
    succeeded = [j["name"] for j in jobs if j.get("phase") == "Succeeded"]
    return sum(per_job[j] == 0 for j in succeeded), sum(per_job[j] > 1 for j in succeeded)


class Drift:
    """The drifting lane: bursts of shifted inputs on the monitored lane, and what the monitor made of them."""

    def __init__(self, env: Env, lane: Lane, args: argparse.Namespace) -> None:
        self.env, self.lane = env, lane
        self.every, self.seconds, self.shift = args.drift_every, args.drift_seconds, args.drift_shift
        self.cooldown = args.drift_cooldown
        self.bursts: list[tuple[float, float]] = []  # wall-clock (start, end) of each burst of shifted inputs
        self.seqs: list[int] = []  # the monitor's lastResultSeq, each change as seen
        self.detected = 0  # times DriftDetected was seen turning True
        self._drifting = False

    def apply_monitor(self) -> None:
        doc = yaml.safe_load((REPO / "examples" / "driftmonitor.yaml").read_text())
        doc["metadata"]["name"] = "dm"
        doc["spec"]["rolloutRef"]["name"] = self.lane.name
        doc["spec"]["detector"] = {"method": "ks", "pValue": 0.05, "windowSize": 100}
        doc["spec"]["retrain"] |= {"createRollout": False, "consecutiveWindows": 2, "maxConcurrent": 1,
                                   "cooldownSeconds": int(self.cooldown)}  # fmt: skip
        doc["spec"]["retrain"]["template"]["hyperparameters"] = {"n_estimators": 10, "max_depth": 4}
        self.env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

    def send_bursts(self, stop: threading.Event, rng: random.Random) -> None:
        while not stop.wait(self.every * rng.uniform(0.7, 1.3)):
            if self.lane.load is None:
                continue
            start = time.time()
            self.lane.load.shift = self.shift
            stop.wait(self.seconds)
            self.lane.load.shift = 0.0
            self.bursts.append((start, time.time()))
            progress(f"drift burst {len(self.bursts)}: {self.seconds:.0f}s of inputs shifted by {self.shift}")

    def observe(self) -> None:
        st = self.env.get("driftmonitor", "dm").get("status") or {}
        seq = st.get("lastResultSeq")
        if seq is not None and (not self.seqs or self.seqs[-1] != seq):
            self.seqs.append(int(seq))
        conds = st.get("conditions") or []
        drifting = any(c.get("type") == "DriftDetected" and c.get("status") == "True" for c in conds)
        self.detected += drifting and not self._drifting
        self._drifting = drifting

    def report(
        self, retraining: list[dict[str, Any]], monitor_ready: bool, until: float
    ) -> tuple[dict[str, int], dict[str, Any]]:
        """(defects, figures). A burst is due to retrain when it starts after the cooldown of the retraining
        before it; one due that retrained nothing within its end + 180 s (before `until`, the campaign's end) is
        missed."""
        created = sorted((wall(j["metadata"]["creationTimestamp"]), j["metadata"]["name"]) for j in retraining)
        duplicated = sum(b - a < self.cooldown for (a, _), (b, _) in itertools.pairwise(created))
        bursts, last = [], float("-inf")
        for start, end in self.bursts:
            due = start >= last + self.cooldown
            job = next((n for t, n in created if start <= t <= end + 180), None)
            bursts.append({"at": datetime.fromtimestamp(start, UTC).strftime("%H:%M:%S"), "due": due, "retrained": job})
            last = next((t for t, n in created if n == job), last)
        jobs = [{"name": j["metadata"]["name"], "created": j["metadata"]["creationTimestamp"],
                 "phase": (j.get("status") or {}).get("phase")} for j in retraining]  # fmt: skip
        figures = {"monitor_ready_at_end": monitor_ready, "results_seen": len(self.seqs), "bursts": bursts,
                   "drift_detected_seen": self.detected, "retraining_jobs": jobs}  # fmt: skip
        defects = {
            "duplicated_retraining_jobs": duplicated,
            "retraining_missed": sum(
                b["due"] and not b["retrained"] and end + 180 <= until
                for b, (_, end) in zip(bursts, self.bursts, strict=True)
            ),
            "drift_results_lost": sum(b < a for a, b in itertools.pairwise(self.seqs)),
        }
        return defects, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--lanes", type=int, default=3)
    parser.add_argument("--fault-every", type=float, default=45.0)
    parser.add_argument("--stuck-seconds", type=float, default=420.0)
    parser.add_argument("--max-minutes", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drift-every", type=float, default=300.0)
    parser.add_argument("--drift-seconds", type=float, default=60.0)
    parser.add_argument("--drift-shift", type=float, default=10.0)
    parser.add_argument("--drift-cooldown", type=float, default=900.0)
    parser.add_argument("--keep-logs", type=Path, default=None,
                        help="copy every log of the run (operators, control plane, servers) here before the "
                             "environment is removed")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    plan = [(i, rng.random() < 0.4, i % 10 == 5) for i in range(args.rollouts)]  # (index, failing, manual gate)
    jobs: list[dict[str, Any]] = []
    stop = threading.Event()
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp)) as env:
        faults = Faults(env, rng)
        train = yaml.safe_load((REPO / "examples" / "trainingjob-sklearn.yaml").read_text())
        train["spec"]["hyperparameters"] = {"n_estimators": 20, "max_depth": 4}
        env.kubectl("apply", "-f", "-", input=yaml.safe_dump(train))
        mv = env.wait("the base model", lambda: (env.get("trainingjob", "cancer-rf-1").get("status") or {})
                      .get("modelVersionRef", {}).get("name"), 600)  # fmt: skip
        env.wait("the base ModelVersion Ready", lambda: ready(env, "modelversion", mv), 300)
        base = env.get("modelversion", mv)
        lanes = [Lane(env, f"lane-{k}", base, args.stuck_seconds) for k in range(args.lanes)]
        for lane in lanes:
            lane.serve_first()
        drift = Drift(env, lanes[0], args)
        drift.apply_monitor()
        deadline = t_start + args.max_minutes * 60

        bench_errors: list[str] = []

        def lane_worker(k: int) -> None:
            for index, failing, gate in plan[k :: args.lanes]:
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    lanes[k].canary(index, failing, gate)
                except Exception as err:  # noqa: BLE001 (the bench's own error: reported, the lane goes on)
                    progress(f"{lanes[k].name}: canary {index} not run: {str(err)[:300]}")
                    bench_errors.append(f"{lanes[k].name} canary {index}: {str(err)[:300]}")

        def monitor_worker() -> None:
            while not stop.is_set():
                with suppress(Exception):
                    drift.observe()
                faults.watch_crashes()
                time.sleep(3)

        workers = [threading.Thread(target=lane_worker, args=(k,), daemon=True) for k in range(args.lanes)]
        workers.append(threading.Thread(target=run_jobs, args=(env, args.jobs, args.stuck_seconds, jobs, stop),
                                        daemon=True))  # fmt: skip
        watcher = threading.Thread(target=monitor_worker, daemon=True)
        burster = threading.Thread(target=drift.send_bursts, args=(stop, random.Random(args.seed + 1)), daemon=True)
        for w in [*workers, watcher, burster]:
            w.start()
        kinds: list[str] = []
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            if not kinds:
                kinds = rng.sample(FAULTS, len(FAULTS))
            time.sleep(args.fault_every * rng.uniform(0.7, 1.3))
            if any(w.is_alive() for w in workers):
                faults.inject(kinds.pop())
        stop.set()
        for w in workers:
            w.join(timeout=args.stuck_seconds + 60)
        for lane in lanes:
            lane.stop()
        burster.join(timeout=args.drift_seconds + 10)
        retraining = env.items("trainingjobs", "-l", f"{MONITOR_LABEL}=dm")
        # A retraining job that finished must have registered exactly one ModelVersion, as the bench's own jobs.
        finished = [{"name": j["metadata"]["name"], "phase": (j.get("status") or {}).get("phase")} for j in retraining]
        lost, duplicated = model_version_counts(env, jobs + finished)
        drift_defects, drift_figures = drift.report(retraining, ready(env, "driftmonitor", "dm"), time.time())
        if args.keep_logs is not None:
            keep_logs(Path(tmp), args.keep_logs)
    canaries = [c for lane in lanes for c in lane.canaries]
    elapsed = time.monotonic() - t_start
    out = report(args, canaries, jobs, faults, lost, duplicated, drift_defects, drift_figures, elapsed)
    out["bench_errors"] = bench_errors  # canaries the bench itself failed to run (not counted as rollouts)
    print(json.dumps(out, indent=2))
    return 0


def report(args: argparse.Namespace, canaries: list[dict[str, Any]], jobs: list[dict[str, Any]], faults: Faults,
           lost: int, duplicated: int, drift_defects: dict[str, int], drift_figures: dict[str, Any],
           seconds: float) -> dict[str, Any]:  # fmt: skip
    wrong = [c["version"] for c in canaries if (c["kind"] == "failing" and c.get("outcome") == "promoted")
             or (c["kind"] == "healthy" and c.get("outcome") == "rolled back")
             or c.get("requests_500_after_15s", 0) > 0]  # fmt: skip
    unreachable = []
    for c in canaries:
        for d in c.get("decisions") or []:
            manual = "annotation" in d.get("message", "")
            # A decision's time is truncated to the second: [t, t + 1) must lie inside the outage (after the
            # analysis interval, 2 s, in which a look begun before it may still answer).
            t = wall(d["time"])
            inside = any(a + 2 < t and t + 1 <= b for a, b in faults.prometheus_out)
            if d["action"] in ANALYSED and not manual and inside:
                unreachable.append({"rollout_version": c["version"], **d})
    by_kind = {k: {"injected": len(v), "seconds": [d["seconds"] for d in v],
                   "details": [d for d in v if len(d) > 2]} for k, v in faults.done.items()}  # fmt: skip
    verdict_s = [c["seconds"] for c in canaries if "seconds" in c]
    return {
        "benchmark": "chaos",
        "settings": {
            "rollouts": args.rollouts,
            "jobs": args.jobs,
            "lanes": args.lanes,
            "seed": args.seed,
            "fault_every_seconds": args.fault_every,
            "stuck_seconds": args.stuck_seconds,
        },
        "seconds": round(seconds),
        "faults": by_kind,
        "defects": {
            "stuck": [c["version"] for c in canaries if c.get("outcome") == "stuck"]
            + [j["name"] for j in jobs if "stuck" in j],
            "wrong_final_traffic": wrong,
            "promotions_while_prometheus_unreachable": unreachable,
            "model_versions_lost": lost,
            "model_versions_duplicated": duplicated,
            **drift_defects,
            "operator_crashes": faults.crashes,
        },
        "rollouts": {
            "started": len(canaries),
            "healthy": sum(c["kind"] == "healthy" for c in canaries),
            "failing": sum(c["kind"] == "failing" for c in canaries),
            "manual_gates": sum(c["manual_gate"] for c in canaries),
            "promoted": sum(c.get("outcome") == "promoted" for c in canaries),
            "rolled_back": sum(c.get("outcome") == "rolled back" for c in canaries),
            "verdict_seconds_median": statistics.median(verdict_s) if verdict_s else None,
            "verdict_seconds_max": max(verdict_s, default=None),
        },
        "training_jobs": {
            "finished": len(jobs),
            "succeeded": sum(j.get("phase") == "Succeeded" for j in jobs),
            "gangs": sum(j["gang"] for j in jobs),
            "pods_lost": sum("pod_lost" in j for j in jobs),
            "runs": jobs,
        },
        "drift": drift_figures,
        "canaries": [{k: v for k, v in c.items() if k != "decisions"} for c in canaries],
    }


if __name__ == "__main__":
    sys.exit(main())
