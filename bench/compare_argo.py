"""Benchmark: slipway's canary verdicts beside Argo Rollouts' real analysis controller and Flagger's rule (issue 15).

The same canaries, on the same local environment as bench/rollback_time.py (KServe v0.20.0's controller in Standard
mode, Traefik splitting requests on the Rollout's HTTPRoute, a real Prometheus scraping the predictor pods every
second, the load generator sending `--rps` requests/s through the Gateway), are judged by three tools at once:

- slipway: the Rollout drives the canary (its steps, its analysis with its defaults, latency on); read from the
  Rollout's status only (phase, decisions, lastEvidence, stableVersion/rolledBackVersion). A canary it holds (no
  evidence either way within maxHoldSeconds, `--max-hold`; onNoData=hold: Paused for a person) is a `hold`; the
  bench then aborts it, as that person would, and goes on.
- Argo Rollouts v1.10.1's own analysis controller (hack/build-argo-rollouts.sh; `python -m slipway_dev.localcluster up
  --argo-rollouts` runs it, `--controllers=analysis`): when the canary takes traffic (routed, and its requests
  visible to the query) the bench creates two AnalysisRuns from Argo's documented Prometheus success-rate
  template (docs "Analysis & Progressive Delivery", background analysis, and docs/analysis/prometheus.md:
  `successCondition: result[0] >= 0.95`, non-5xx over all requests with `irate(...[5m])`), on the predictor's
  request counter slipway reads (`slipway_predictor_requests_total`, by `version`; `outcome="server_error"` is
  the 5xx):
    * documented: `interval: 5m`, `failureLimit: 3`, no `count` (runs until the rollout ends it, as the docs'
      background analysis does);
    * aggressive: `interval: 10s`, `failureLimit: 0` (the first failed measurement fails the run).
  Argo's verdict is the run's phase: Failed (or Error) before the canary ended is a rollback; a run still
  Running when slipway promoted the canary would have let Argo's steps finish too (background analysis): a
  promotion. When slipway rolled the canary back first, the run is stopped (`spec.terminate`) with no verdict:
  `undecided`, with the seconds it had.
- Flagger's documented defaults, replayed as a pure function (flagger_replay) over Prometheus range queries of
  the same data: every `interval` (1m) a check of the request success rate over the last minute (>= 99 %) and
  of the p99 request duration over the last minute (<= 500 ms); a check with no data fails too; rollback when
  the failed checks reach `threshold` (5); promotion after maxWeight/stepWeight (50/10) successful checks.
  Checks start one interval after the canary is routed (Flagger's first tick only routes it).

Canaries: `--healthy` copies of the base model (same bytes, new key), `--fail30` versions failing on 30 % of
their inputs, `--fail3` failing on 3 %, `--slow` answering `--slow-ms` later (slipway_predictor.faults).
Times are from the first bad request the load generator saw (a 500 from the failing canary, the first answer of
the slow one) to the decision as the bench saw it (polled every 0.5 s); for healthy canaries from the canary's
first answer. Each tool only sees the canary while slipway keeps it: a tool that had not decided when slipway
ended it is `undecided` (its seconds then say how long it had). With `--observe-seconds N`, a regression slipway
rolled back while another tool was undecided is canaried again (slipway.dev/retry: same version, same weight,
behind a manual gate with slipway's checks off) for up to N seconds or until both Argo runs have decided, with
fresh AnalysisRuns and Flagger's replay over that stretch, then aborted: `observed` has what each tool decided
when nothing ended the canary first. Everything is on loopback; the whole run is bounded by `--max-minutes`.
Prints one JSON object.

    make argo-rollouts   # once
    .venv/bin/python bench/compare_argo.py [--healthy 20] [--fail30 1] [--fail3 5] [--slow 1] [--rps 50]
        [--healthy-steps 10:45,50:45] [--bad-hold 300] [--max-hold SECONDS] [--argo-aggressive-interval 10s]
        [--observe-seconds 0]
        [--max-minutes 240]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from slipway import contract  # noqa: E402
from slipway_dev.loadgen import Load  # noqa: E402
from slipway_dev.localcluster import Cluster  # noqa: E402
from slipway_dev.localcluster.servers import S3Server  # noqa: E402

from bench import rollback_time as rt  # noqa: E402

NS = rt.NS
ISVC = "cancer-rf"
REQUESTS, DURATION = contract.PREDICTOR_REQUESTS, contract.PREDICTOR_LATENCY
SERVER_ERROR = contract.PREDICTOR_SERVER_ERROR
ARGO_API = "argoproj.io/v1alpha1"
QUALIFIED = {"rollout": "rollouts.slipway.dev", "analysisrun": "analysisruns.argoproj.io"}


# ---- Argo Rollouts: the documented template at two settings --------------------------------------------------


def success_rate_query(selector: str) -> str:
    """Argo's documented success-rate query (docs/analysis/prometheus.md), on the predictor's counter: non-5xx
    over all requests, each an irate over 5m, for the canary's version (`{{args.version}}`)."""
    return (
        f'sum(irate({REQUESTS}{{{selector},outcome!="{SERVER_ERROR}"}}[5m])) /\n'
        f"sum(irate({REQUESTS}{{{selector}}}[5m]))\n"
    )


def argo_metric(prometheus: str, interval: str, failure_limit: int) -> dict[str, Any]:
    return {
        "name": "success-rate",
        "interval": interval,
        # NOTE (Argo's docs): prometheus queries return results in the form of a vector, hence result[0].
        "successCondition": "result[0] >= 0.95",
        "failureLimit": failure_limit,
        "provider": {"prometheus": {"address": prometheus, "query": success_rate_query(
            f'namespace="{NS}",version="{{{{args.version}}}}"')}},
    }  # fmt: skip


ARGO_SETTINGS = {
    # docs/features/analysis.md, "Background Analysis": interval 5m, failureLimit 3, no count.
    "documented": ("5m", 3),
    # The shortest sensible look at a 1 s scrape, and no failure tolerated.
    "aggressive": ("10s", 0),
}


def duration_seconds(text: str) -> float:
    """An Argo duration as the docs write them: 10s, 5m, 1h."""
    return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]


def analysis_run(name: str, version: str, metric: dict[str, Any]) -> dict[str, Any]:
    """An AnalysisRun as Argo's Rollout controller makes one from the template: its args and metrics."""
    return {"apiVersion": ARGO_API, "kind": "AnalysisRun", "metadata": {"name": name, "namespace": NS,
            "labels": {"bench.slipway.dev/version": version}},
            "spec": {"args": [{"name": "version", "value": version}], "metrics": [metric]}}  # fmt: skip


def argo_outcome(phase: str | None, failed_at: float | None, canary_promoted: bool) -> str:
    """What Argo's background analysis would have done with the canary: Failed/Error before the canary ended is
    a rollback (abort); a run not failed when the steps completed lets the rollout promote; otherwise none yet."""
    if failed_at is not None and phase in ("Failed", "Error"):
        return "rollback"
    return "promote" if canary_promoted else "undecided"


# ---- Flagger's rule, replayed -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlaggerRule:
    interval: float = 60.0  # analysis.interval (default 1m)
    threshold: int = 5  # analysis.threshold: failed checks before rollback
    min_success_percent: float = 99.0  # request-success-rate thresholdRange.min
    max_duration_ms: float = 500.0  # request-duration (p99) thresholdRange.max
    max_weight: int = 50
    step_weight: int = 10


@dataclass
class FlaggerVerdict:
    decision: str  # rollback | promote | undecided
    at: float | None  # when (the series' clock) the decision was taken
    checks: list[dict[str, Any]] = field(default_factory=list)


def _at(series: Mapping[float, float], t: float) -> float | None:
    """The sample at t (a range query's step), or the latest one at most 1 s before."""
    times = [s for s in series if t - 1.0 <= s <= t]
    if not times:
        return None
    value = series[max(times)]
    return None if math.isnan(value) else value


def flagger_replay(
    success_percent: Mapping[float, float],
    p99_ms: Mapping[float, float],
    routed: float,
    ended: float,
    rule: FlaggerRule = FlaggerRule(),
) -> FlaggerVerdict:
    """Flagger's scheduler on recorded data: a check every `interval` from `routed` (exclusive) to `ended`; the
    check fails when either builtin metric has no value or is out of range; the failed checks (never reset during a
    canary) reaching `threshold` roll back; `max_weight / step_weight` passed checks promote. Pure: the series are
    {time: value} from range queries, each value already over the metric's own 1m window."""
    failed = passed = 0
    out = FlaggerVerdict("undecided", None)
    t = routed + rule.interval
    while t <= ended:
        success, duration = _at(success_percent, t), _at(p99_ms, t)
        ok = (success is not None and success >= rule.min_success_percent
              and duration is not None and duration <= rule.max_duration_ms)  # fmt: skip
        out.checks.append({"t": round(t - routed, 1), "success_percent": success, "p99_ms": duration, "ok": ok})
        if ok:
            passed += 1
            if passed >= rule.max_weight // rule.step_weight:
                out.decision, out.at = "promote", t
                return out
        else:
            failed += 1
            if failed >= rule.threshold:
                out.decision, out.at = "rollback", t
                return out
        t += rule.interval
    return out


# ---- the environment --------------------------------------------------------------------------------------


class Env(rt.Env):
    """rollback_time's environment (Standard mode) with Argo Rollouts' analysis controller."""

    def __init__(self, root: Path, scrape: str) -> None:
        self.mode = "Standard"
        self.cluster = Cluster(root / "cluster", free_ports=True, serving=True, prometheus=True,
                               argo_rollouts=True, scrape_interval=scrape)  # fmt: skip
        self.s3 = S3Server(root / "s3.log")
        self.root = root
        self.operator: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Env:
        super().__enter__()
        return self

    def get(self, kind: str, name: str) -> dict[str, Any]:
        # With Argo's CRDs installed, kubectl takes `rollout` for Argo's (argoproj.io); slipway's is named in full.
        return super().get(QUALIFIED.get(kind, kind), name)

    def prom(self, path: str, **params: Any) -> Any:
        url = f"{self.cluster.prometheus_url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body}")
        return body["data"]

    def instant(self, query: str) -> float | None:
        result = self.prom("/api/v1/query", query=query)["result"]
        if not result:
            return None
        value = float(result[0]["value"][1])
        return None if math.isnan(value) else value

    def series(self, query: str, start: float, end: float) -> dict[float, float]:
        result = self.prom("/api/v1/query_range", query=query, start=start, end=end, step="1s")["result"]
        return {float(t): float(v) for t, v in result[0]["values"]} if result else {}


def register(env: Env, base: dict[str, Any], name: str, version: int, fault: list[str] | None) -> str:
    """A ModelVersion with the base model's bytes under a new key (healthy), or a faulty variant of it
    (`fault`: slipway_predictor.faults' arguments, e.g. ["flaky", "--fail-fraction", "0.3"])."""
    spec = json.loads(json.dumps(base["spec"]))
    spec["version"] = version
    src = spec["artifact"]["uri"]
    dst = src.rsplit("/", 1)[0] + f"/{name}.joblib"
    if fault is not None:
        argv = [sys.executable, "-m", "slipway_predictor.faults", *fault, src, dst]
        env_vars = {**os.environ, **env.s3.env()}
        art = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, env=env_vars).stdout)
        spec["artifact"] |= {"uri": art["uri"], "sha256": art["sha256"], "sizeBytes": art["sizeBytes"]}
    else:
        (bucket, key), (_, new_key) = rt.s3_parts(src), rt.s3_parts(dst)
        env.s3_client.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key})
        spec["artifact"]["uri"] = dst
    doc = {"apiVersion": "slipway.dev/v1alpha1", "kind": "ModelVersion", "metadata": {"name": name}, "spec": spec}
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    env.wait(f"{name} Ready", lambda: rt.ready(env, "modelversion", name))
    return name


def rollout(env: Env, target: str, steps: list[dict[str, int]], interval: int, max_hold: int | None = None) -> None:
    """The example Rollout with the analysis users keep (latency on, the defaults), on the local Prometheus;
    `max_hold` (maxHoldSeconds) only when --max-hold says so."""
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    doc["spec"]["modelVersionRef"]["name"] = target
    doc["spec"]["inferenceService"]["deploymentMode"] = "Standard"
    doc["spec"]["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    analysis = doc["spec"]["canary"]["analysis"]
    analysis["prometheus"]["address"] = env.cluster.prometheus_url
    analysis["intervalSeconds"] = interval
    if max_hold is not None:
        analysis["maxHoldSeconds"] = max_hold
    doc["spec"]["canary"]["steps"] = steps
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


# ---- one canary -------------------------------------------------------------------------------------------


@dataclass
class Kind:
    name: str  # healthy | fail30 | fail3 | slow
    fault: list[str] | None

    @property
    def bad(self) -> bool:
        return self.fault is not None


def first_bad(load: Load, kind: Kind, version: str, since: float) -> float | None:
    """The first request the canary got wrong (a 500 of the failing one, any answer of the slow one), or for a
    healthy canary its first answer."""
    if kind.name in ("fail30", "fail3"):
        return load.first(500, since=since)
    return next((t for t, v in list(load.served) if v == version and t >= since), None)


def routed_at(env: Env, version: str, timeout: float, before: Mapping[str, Any], *, or_ended: bool = True) -> float:
    """When the canary takes traffic: routed at its step weight (KServe reported it ready: a new stepStartedAt,
    not the one `before` the apply left), or, with `or_ended`, already decided."""

    def routed() -> bool:
        st = rt.status(env)
        if st.get("canaryVersion") == version and st.get("stepStartedAt") not in (None, before.get("stepStartedAt")):
            return True
        return or_ended and slipway_end(st, version) is not None

    env.wait(f"{version} routed", routed, timeout=timeout)
    return time.monotonic()


def slipway_end(st: Mapping[str, Any], version: str) -> str | None:
    """slipway's decision on the canary: promote, rollback, or hold (no evidence either way within
    maxHoldSeconds, onNoData=hold: Paused for a person, which the bench then aborts to go on)."""
    if st.get("stableVersion") == version:
        return "promote"
    if st.get("rolledBackVersion") == version and not st.get("canaryVersion"):
        return "rollback"
    return "hold" if st.get("phase") == "Paused" and st.get("canaryVersion") == version else None


@dataclass
class Watch:
    """One stretch of a canary taking traffic, as every tool saw it."""

    t_routed: float
    t_argo: float = 0.0
    t_end: float = 0.0
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    last: dict[str, Any] = field(default_factory=dict)
    flagger: FlaggerVerdict | None = None


def watch(env: Env, load: Load, version: str, suffix: str, args: argparse.Namespace, deadline: float,
          until: Callable[[Watch, float], bool]) -> Watch:  # fmt: skip
    """From the routing: start Argo's two AnalysisRuns once the canary's requests are visible to their query, poll
    the Rollout and the runs every 0.5 s until `until` says so, stop the runs still going (as Argo's Rollout
    controller does when a rollout ends), and replay Flagger's rule over the stretch."""
    w = Watch(t_routed=time.monotonic())
    selector = f'namespace="{NS}",version="{version}"'
    numbers: list[float] = []

    def visible() -> bool:
        """The canary has answered the load generator since the routing, and Argo's query has had a value (two
        scrapes of the canary's counter with requests between) at two looks at least a second apart: a run
        started earlier takes its first measurement on no data (an error) or on 0/0 (NaN, a failure)."""
        w.last, now = rt.status(env), time.monotonic()
        if until(w, now):
            return True
        if not any(v == version and t >= w.t_routed for t, v in list(load.served)):
            return False
        if env.instant(success_rate_query(selector)) is None:
            numbers.clear()
        elif not numbers or now - numbers[0] < 1.0:
            numbers.append(now)
        return bool(numbers) and now - numbers[0] >= 1.0

    env.wait(f"{version}'s traffic in Prometheus", visible, timeout=120)
    w.t_argo = time.monotonic()
    for setting, (interval, limit) in ARGO_SETTINGS.items():
        name = f"{version}-{setting}{suffix}"
        interval = args.argo_aggressive_interval if setting == "aggressive" else interval
        metric = argo_metric(env.cluster.prometheus_url, interval, limit)
        env.kubectl("apply", "-f", "-", input=yaml.safe_dump(analysis_run(name, version, metric)))
        w.runs[setting] = {"name": name, "phase": None, "decided_at": None, "measurements": []}
    while time.monotonic() < deadline:
        w.last, now = rt.status(env), time.monotonic()
        for run in w.runs.values():
            if run["decided_at"] is None:
                run["phase"] = (env.get("analysisrun", run["name"]).get("status") or {}).get("phase")
                if run["phase"] in ("Failed", "Error", "Inconclusive"):
                    run["decided_at"] = now
        if until(w, now):
            w.t_end = now
            break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"--max-minutes ran out during {version}")
    for run in w.runs.values():
        obj = env.get("analysisrun", run["name"])
        results = (obj.get("status") or {}).get("metricResults") or []
        run["measurements"] = [(m.get("phase"), m.get("value")) for r in results for m in r.get("measurements") or []]
        run["phase"] = (obj.get("status") or {}).get("phase")
        if run["decided_at"] is None:
            env.kubectl("patch", "analysisruns.argoproj.io", run["name"], "--type=merge", "-p",
                        '{"spec":{"terminate":true}}')  # fmt: skip
    wall = time.time() - time.monotonic()
    success = env.series(
        f'sum(rate({REQUESTS}{{{selector},outcome!="{SERVER_ERROR}"}}[1m])) / sum(rate({REQUESTS}{{{selector}}}[1m])) '
        "* 100", w.t_routed + wall, w.t_end + wall)  # fmt: skip
    p99 = env.series(f"histogram_quantile(0.99, sum(rate({DURATION}{{{selector}}}[1m])) by (le)) * 1000",
                     w.t_routed + wall, w.t_end + wall)  # fmt: skip
    w.flagger = flagger_replay(success, p99, w.t_routed + wall, w.t_end + wall)
    w.flagger.at = w.flagger.at - wall if w.flagger.at is not None else None
    return w


def verdicts(w: Watch, onset: float | None, promoted: bool) -> dict[str, Any]:
    """Argo's and Flagger's verdicts over the stretch, in seconds from the first bad request."""

    def since(t: float | None) -> float | None:
        return round(t - onset, 2) if t is not None and onset is not None else None

    tools: dict[str, Any] = {}
    for setting, run in w.runs.items():
        decision = argo_outcome(run["phase"], run["decided_at"], promoted)
        tools[f"argo_{setting}"] = {
            "decision": decision, "seconds": since(run["decided_at"] if decision == "rollback" else w.t_end),
            "phase": run["phase"], "measurements": len(run["measurements"]),
            "failed_measurements": sum(1 for p, _ in run["measurements"] if p == "Failed"),
            "values": [v for _, v in run["measurements"]][:12],
        }  # fmt: skip
    assert w.flagger is not None
    tools["flagger_replayed"] = {"decision": w.flagger.decision, "seconds": since(w.flagger.at or w.t_end),
                                 "checks": w.flagger.checks}  # fmt: skip
    return tools


def run_canary(env: Env, load: Load, base: dict[str, Any], kind: Kind, number: int, args: argparse.Namespace,
               deadline: float) -> dict[str, Any]:  # fmt: skip
    version = register(env, base, f"{ISVC}-v{number}", number, kind.fault)
    pairs = [step.split(":") for step in args.healthy_steps.split(",")]
    steps = ([{"weight": int(w), "holdSeconds": int(h)} for w, h in pairs] if not kind.bad
             else [{"weight": args.canary_weight, "holdSeconds": args.bad_hold}])  # fmt: skip
    before, applied = rt.status(env), time.monotonic()
    rollout(env, version, steps, args.interval, args.max_hold)
    routed_at(env, version, args.ready_timeout, before)
    w = watch(env, load, version, "", args, deadline, lambda w, _: slipway_end(w.last, version) is not None)
    end = slipway_end(w.last, version)
    if end == "hold":  # as the person it waits for would, to go on with the next canary from stable
        abort(env, version, f"hold-{number}")
    onset = first_bad(load, kind, version, applied)
    tools = {"slipway": {"decision": end, "seconds": round(w.t_end - onset, 2) if onset is not None else None},
             **verdicts(w, onset, end == "promote")}  # fmt: skip
    decisions = w.last.get("decisions") or []
    out = {
        "version": version, "kind": kind.name, "bad": kind.bad,
        "seconds_routed_after_apply": round(w.t_routed - applied, 1),
        "seconds_argo_runs_after_routed": round(w.t_argo - w.t_routed, 1),
        "seconds_canary_took_traffic": round(w.t_end - w.t_routed, 1),
        "first_bad_request_after_routed_seconds": round(onset - w.t_routed, 2) if onset is not None else None,
        "tools": tools,
        "slipway_last_decision": decisions[-1] if decisions else None,
        "slipway_last_evidence": w.last.get("lastEvidence"),
        "slipway_phase": w.last.get("phase"),
    }  # fmt: skip
    undecided = [t for t, v in tools.items() if v["decision"] == "undecided"]
    if kind.bad and end == "rollback" and undecided and args.observe_seconds > 0:
        out["observed"] = observe(env, load, kind, version, args, deadline)
    return out


def observe(env: Env, load: Load, kind: Kind, version: str, args: argparse.Namespace, deadline: float) -> Any:
    """The same regressed version again (slipway.dev/retry), held at the canary weight behind a manual gate with
    slipway's checks off, for up to --observe-seconds or until both Argo runs have decided: the time Argo and
    Flagger need when nothing else ends the canary first. Then aborted (slipway.dev/abort)."""
    token = str(time.time_ns())
    doc = yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())
    spec = doc["spec"]
    spec["modelVersionRef"]["name"] = version
    spec["inferenceService"]["deploymentMode"] = "Standard"
    spec["inferenceService"]["predictor"]["protocolVersion"] = "v1"
    spec["canary"]["steps"] = [{"weight": args.canary_weight, "manualGate": True}]
    analysis = spec["canary"]["analysis"]
    analysis["prometheus"]["address"] = env.cluster.prometheus_url
    analysis["errorRate"], analysis["latency"] = {"enabled": False}, {"enabled": False}
    doc["metadata"]["annotations"] = {contract.RETRY: token}
    before, applied = rt.status(env), time.monotonic()
    env.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    routed_at(env, version, args.ready_timeout, before, or_ended=False)
    limit = time.monotonic() + args.observe_seconds

    def done(w: Watch, now: float) -> bool:
        return now >= limit or (bool(w.runs) and all(r["decided_at"] is not None for r in w.runs.values()))

    w = watch(env, load, version, "-observed", args, deadline, done)
    abort(env, version, token)
    onset = first_bad(load, kind, version, applied)
    return {"held_seconds": round(w.t_end - w.t_routed, 1), "max_seconds": args.observe_seconds,
            "tools": verdicts(w, onset, promoted=False)}  # fmt: skip


def abort(env: Env, version: str, token: str) -> None:
    """End the canary by hand (slipway.dev/abort with a new value) and wait until the Rollout has let it go."""
    env.kubectl("annotate", "--overwrite", "rollouts.slipway.dev", ISVC, f"{contract.ABORT}={token}")
    env.wait(f"{version} aborted", lambda: rt.status(env).get("canaryVersion") != version, timeout=120)


def restore(env: Env, base: dict[str, Any], number: int, args: argparse.Namespace) -> str:
    """After slipway promoted a regression, a healthy copy of the base model becomes stable again (not counted), so
    the next canaries are compared with a healthy stable, as the first ones were."""
    version = register(env, base, f"{ISVC}-v{number}", number, None)
    rollout(env, version, [{"weight": args.canary_weight, "holdSeconds": 20}], args.interval, args.max_hold)
    env.wait(f"{version} stable", lambda: rt.status(env).get("stableVersion") == version, timeout=600)
    return version


# ---- summary ----------------------------------------------------------------------------------------------

TOOLS = ("slipway", "argo_documented", "argo_aggressive", "flagger_replayed")


def _regressions(canaries: Sequence[dict[str, Any]], verdict: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    per_kind: dict[str, Any] = {}
    for kind in sorted({c["kind"] for c in canaries if c["bad"]}):
        verdicts = [v for c in canaries if c["kind"] == kind and (v := verdict(c)) is not None]
        times = [v["seconds"] for v in verdicts if v["decision"] == "rollback" and v["seconds"] is not None]
        per_kind[kind] = {
            "runs": len(verdicts), "rolled_back": len(times),
            "promoted": sum(v["decision"] == "promote" for v in verdicts),
            "held": sum(v["decision"] == "hold" for v in verdicts),
            "undecided_when_canary_ended": sum(v["decision"] == "undecided" for v in verdicts),
            "seconds_first_bad_request_to_rollback": {"runs": times,
                "median": round(statistics.median(times), 2) if times else None},
        }  # fmt: skip
    return per_kind


def summarize(canaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per tool: healthy canaries' verdicts, and per kind of regression the verdicts while slipway drove the canary
    (`regressions`) and, for the tools other than slipway, in the held stretch (`observed_regressions`, only the
    regressions slipway rolled back while the tool was undecided, with --observe-seconds)."""
    out: dict[str, Any] = {}
    for tool in TOOLS:
        healthy = [c["tools"][tool] for c in canaries if not c["bad"]]
        per_kind = _regressions(canaries, lambda c, tool=tool: c["tools"][tool])  # type: ignore[misc]
        out[tool] = {
            "healthy": {"runs": len(healthy), "false_rollbacks": sum(v["decision"] == "rollback" for v in healthy),
                        "promoted": sum(v["decision"] == "promote" for v in healthy),
                        "held": sum(v["decision"] == "hold" for v in healthy),
                        "undecided_when_canary_ended": sum(v["decision"] == "undecided" for v in healthy)},
            "regressions": per_kind,
            "bad_promoted": sum(p["promoted"] for p in per_kind.values()),
        }  # fmt: skip
        if tool != "slipway":
            out[tool]["observed_regressions"] = _regressions(
                canaries,
                lambda c, tool=tool: (c.get("observed") or {}).get("tools", {}).get(tool),  # type: ignore[misc]
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--healthy", type=int, default=20)
    parser.add_argument("--fail30", type=int, default=1)
    parser.add_argument("--fail3", type=int, default=5)
    parser.add_argument("--slow", type=int, default=1)
    parser.add_argument("--slow-ms", type=float, default=60)
    parser.add_argument("--rps", type=float, default=50)
    parser.add_argument("--canary-weight", type=int, default=10)
    parser.add_argument("--interval", type=int, default=2, help="slipway's analysis intervalSeconds")
    parser.add_argument("--scrape", default="1s")
    parser.add_argument("--healthy-steps", default="10:45,50:45", help="a healthy canary's steps, weight:holdSeconds")
    parser.add_argument("--bad-hold", type=int, default=300, help="a regressed canary's one step's holdSeconds")
    parser.add_argument("--argo-aggressive-interval", default="10s")
    parser.add_argument(
        "--observe-seconds",
        type=float,
        default=0,
        help="after slipway rolled a regression back, "
        "hold it again (checks off) for up to this long for the tools that had not decided",
    )
    parser.add_argument(
        "--max-hold",
        type=int,
        default=None,
        help="slipway's maxHoldSeconds (default: the Rollout's, 600); a hold then ends the canary",
    )
    parser.add_argument("--ready-timeout", type=float, default=300)
    parser.add_argument("--max-minutes", type=float, default=240, help="bound on the whole run")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + 60 * args.max_minutes
    plan = ([Kind("fail30", ["flaky", "--fail-fraction", "0.3"])] * args.fail30
            + [Kind("fail3", ["flaky", "--fail-fraction", "0.03"])] * args.fail3
            + [Kind("slow", ["slow", "--delay-seconds", str(args.slow_ms / 1000)])] * args.slow
            + [Kind("healthy", None)] * args.healthy)  # fmt: skip
    canaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Env(Path(tmp), args.scrape) as env:
        up = round(time.monotonic() - started, 1)
        base = rt.train(env)
        rollout(env, base["metadata"]["name"], [{"weight": args.canary_weight, "holdSeconds": 20}], args.interval)
        env.wait("v1 served", lambda: rt.ready(env, "rollout", ISVC))
        rows = load_breast_cancer().data.tolist()
        with Load(env.cluster.ingress_url, ISVC, NS, rows, args.rps, max_seconds=60 * args.max_minutes,
                  host=rt.host(env)) as load:  # fmt: skip
            for i, kind in enumerate(plan):
                seed = 100 + i
                if kind.fault and kind.fault[0] == "flaky":
                    kind = Kind(kind.name, [*kind.fault, "--seed", str(seed)])
                canaries.append(run_canary(env, load, base, kind, seed, args, deadline))
                if kind.bad and canaries[-1]["tools"]["slipway"]["decision"] == "promote":
                    canaries[-1]["restored_stable"] = restore(env, base, 900 + i, args)
                print(f"compare_argo: {canaries[-1]['version']} ({kind.name}): "
                      + ", ".join(f"{t} {v['decision']} {v['seconds']}" for t, v in canaries[-1]["tools"].items()),
                      file=sys.stderr, flush=True)  # fmt: skip
            codes, rate = load.codes(), load.achieved_rate()
    print(json.dumps({
        "benchmark": "compare_argo",
        "stack": rt.STACKS["Standard"] + "; Argo Rollouts v1.10.1 analysis controller (--controllers=analysis)",
        "settings": {"requests_per_second": args.rps, "achieved_requests_per_second": rate,
                     "canary_weight_percent": args.canary_weight, "slipway_interval_seconds": args.interval,
                     "scrape_interval": args.scrape, "healthy_steps": args.healthy_steps,
                     "bad_hold_seconds": args.bad_hold, "slow_ms": args.slow_ms, "max_hold_seconds": args.max_hold,
                     "observe_seconds": args.observe_seconds,
                     "slipway_analysis": {**yaml.safe_load((REPO / "examples" / "rollout.yaml").read_text())["spec"][
                         "canary"]["analysis"], "intervalSeconds": args.interval, "prometheus": "(the local one)"},
                     "argo": {s: {"interval": (iv := args.argo_aggressive_interval if s == "aggressive" else i),
                                  "failureLimit": limit, "successCondition": "result[0] >= 0.95",
                                  # The first measurement is taken at the start, one every interval after it.
                                  "earliest_rollback_seconds_after_run_start": limit * duration_seconds(iv)}
                              for s, (i, limit) in ARGO_SETTINGS.items()},
                     "argo_query": success_rate_query('namespace="bench",version="{{args.version}}"'),
                     "flagger": {**FlaggerRule().__dict__, "earliest_rollback_seconds_after_routing":
                                 FlaggerRule().threshold * FlaggerRule().interval}},
        "environment_up_seconds": up,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "summary": summarize(canaries),
        "canaries": canaries,
        "requests": codes,
    }, indent=2, default=str))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
