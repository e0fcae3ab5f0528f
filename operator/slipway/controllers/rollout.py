"""Rollout controller: stable and canary ModelVersions behind one InferenceService, walked step by step.

Everything the walk needs lives in status (stable, canary, step, when it started, the last verdict, tokens of
promote/retry annotations already acted on), so a restarted operator resumes at the same step. Analysis
evidence is gathered in observe() when due at the pass's `now`; decide() is pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from slipway import conditions, contract
from slipway.analysis import Outcome, analyze
from slipway.api.modelversion import ModelVersion
from slipway.api.rollout import Decision as RecordedDecision
from slipway.api.rollout import Rollout
from slipway.cache import serving_names
from slipway.clients import Clients, Metrics
from slipway.conditions import Cond, parse_time, rfc3339
from slipway.config import Settings
from slipway.controllers import rollout_history as history
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers import rollout_knative as knative
from slipway.controllers import rollout_route as route
from slipway.controllers import rollout_serving as serving
from slipway.controllers import rollout_storage as storage
from slipway.controllers.base import Action, Apply, Decision, Event, Hooks, Result, Wake, invalid
from slipway.controllers.references import missing, not_ready
from slipway.observability import CANARY_WEIGHT, ROLLBACKS, VERDICTS

PROMOTE, ABORT, RETRY = contract.PROMOTE, contract.ABORT, contract.RETRY
# A version proposed by a DriftMonitor's retraining. Metadata, not spec: the operator never writes a user's spec,
# and GitOps tools do not flag annotations they do not manage. It holds while spec.modelVersionRef still names
# CANDIDATE_BASE, so a person (or Git) changing the spec always wins.
CANDIDATE, CANDIDATE_BASE, CANDIDATE_SOURCE = contract.CANDIDATE, contract.CANDIDATE_BASE, contract.CANDIDATE_SOURCE
MAX_DECISIONS = 20
WATCH_SECONDS = 10.0
READY_DEADLINE = 600  # seconds a canary may take to become ready when spec.canary (progressDeadlineSeconds) is unset


@dataclass(frozen=True)
class Observed:
    model_version: dict[str, Any] | None  # the target
    stable: dict[str, Any] | None = None  # status.stableVersion's ModelVersion
    isvc: dict[str, Any] | None = None
    analysis: Outcome | None = None  # present when an analysis was due and ran
    drift_monitor: str | None = None  # the DriftMonitor watching this Rollout, if any
    route: dict[str, Any] | None = None  # the HTTPRoute the Rollout owns (Standard mode)
    credentials: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)  # storage Secrets it copies
    accounts: frozenset[str] = frozenset()  # its storage ServiceAccounts that exist
    draining: dict[str, Any] | None = None  # status.drainingVersion's ModelVersion, when neither stable nor target
    record: dict[str, Any] | None = None  # the running canary's CanaryAnalysis, when it has one


def target_of(rollout: Rollout) -> tuple[str, str | None]:
    """(the version to roll out, who proposed it when not the spec)."""
    annotations = rollout.metadata.get("annotations") or {}
    spec_target = rollout.spec.model_version_ref.name
    candidate = annotations.get(CANDIDATE)
    if candidate and annotations.get(CANDIDATE_BASE) == spec_target:
        return candidate, annotations.get(CANDIDATE_SOURCE) or CANDIDATE
    return spec_target, None


def running_canary(status: dict[str, Any]) -> history.Canary | None:
    """The canary a status names (its record's key), or None when none runs."""
    version, stable, started = (status.get(f) for f in ("canaryVersion", "stableVersion", "canaryDeployedAt"))
    return history.Canary(version, stable, started) if version and stable and started else None


def monitor_of(rollout: Rollout, monitors: list[dict[str, Any]]) -> str | None:
    """The DriftMonitor the service logs its inputs to: the first by name if several watch it."""
    name = rollout.metadata.get("name")
    watching = [
        m["metadata"]["name"] for m in monitors if ((m.get("spec") or {}).get("rolloutRef") or {}).get("name") == name
    ]
    return min(watching) if watching else None


def problems(rollout: Rollout) -> list[str]:
    found = []
    canary = rollout.spec.canary
    if canary and canary.analysis is None and any(s.hold_seconds is None and not s.manual_gate for s in canary.steps):
        found.append("a canary step without analysis needs holdSeconds or manualGate, or nothing would end it")
    if isvc.standard(rollout) and rollout.spec.inference_service.predictor.min_replicas < 1:
        # KServe sizes a Standard canary as ceil(stable minReplicas x percent / 100) and refuses a canary
        # minReplicas above stable's: with 0 the canary would never get a pod.
        found.append("Standard mode needs spec.inferenceService.predictor.minReplicas >= 1 to run a canary")
    return found


def version_of(body: dict[str, Any]) -> ModelVersion:
    """Spec and metadata only: a ModelVersion's status says nothing about how to serve it."""
    return ModelVersion.model_validate({"metadata": body["metadata"], "spec": body["spec"]})


class RolloutController(Hooks):
    kind = Rollout

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def related(self, body: dict[str, Any]) -> list[Wake]:
        """The versions it names become served: their servedBy and finalizer follow."""
        return [("ModelVersion", n) for n in sorted({n for n in serving_names(body) if n})]

    def read_by_others(self, body: dict[str, Any]) -> Any:
        return serving_names(body)

    def dependents(self, namespace: str, name: str, cache: Any) -> list[Wake]:
        """The ModelVersions whose servedBy lists it (one it no longer serves must drop it, and its finalizer) and
        the DriftMonitors on it (the version they compare with)."""
        versions = [("ModelVersion", mv["metadata"]["name"]) for mv in cache.find("modelversions", namespace,
                                                                                  "servedBy", name)]  # fmt: skip
        monitors = [("DriftMonitor", dm["metadata"]["name"]) for dm in cache.find("driftmonitors", namespace,
                                                                                  "rollout", name)]  # fmt: skip
        return versions + monitors

    def observed_after(self, observed: Observed, actions: list[Action], made: dict[tuple[str, str], Any]) -> Any:
        """After applying its InferenceService (and HTTPRoute), the Rollout would read them as applied: deciding
        over that tells whether the pass is settled (the first deployment's pass is: it waits for KServe). Any
        other action (Secrets, ServiceAccounts, Services, deletes, a patch): cannot tell."""
        after = {"InferenceService": "isvc", "HTTPRoute": "route"}
        found: dict[str, Any] = {}
        for action in actions:
            if not isinstance(action, Apply) or (kind := action.manifest["kind"]) not in after:
                return None
            if (answer := made.get((kind, action.manifest["metadata"]["name"]))) is None:
                return None
            found[after[kind]] = answer
        return replace(observed, **found)

    def metrics(self, body: dict[str, Any], fields: dict[str, Any]) -> None:
        """Weight and verdicts as Prometheus metrics, from what this pass decided (fields) over what was there."""
        ns, name = body["metadata"].get("namespace", ""), body["metadata"]["name"]
        before = body.get("status") or {}
        status = {**before, **fields}
        CANARY_WEIGHT.labels(ns, name).set(status.get("canaryWeight") or 0)
        if "lastAnalysisTime" in fields and fields.get("lastVerdict"):
            VERDICTS.labels(ns, name, fields["lastVerdict"]).inc()
        if fields.get("rolledBackVersion") and fields.get("rolledBackVersion") != before.get("rolledBackVersion"):
            ROLLBACKS.labels(ns, name).inc()

    async def observe(self, obj: Rollout, clients: Clients, now: datetime) -> Observed:
        ns, kube = obj.metadata.get("namespace", ""), clients.kube
        status = obj.status.wire() if obj.status else {}
        target = await kube.get("modelversions", ns, target_of(obj)[0])
        stable_name = status.get("stableVersion")
        stable = await kube.get("modelversions", ns, stable_name) if stable_name else None
        current = await kube.get_managed(
            isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, isvc.ISVC_PLURAL, ns, isvc.isvc_name(obj)
        )
        draining_name = status.get("drainingVersion")
        draining = None
        if draining_name and draining_name not in (stable_name, target_of(obj)[0]):
            draining = await kube.get("modelversions", ns, draining_name)
        monitor = None
        if self.settings.drift_url:
            by_ref = ("rollout", obj.metadata.get("name", ""))  # cache.INDEXES: the monitors on this Rollout
            monitor = monitor_of(obj, await kube.list_custom("driftmonitors", ns, index=by_ref))
        name = isvc.isvc_name(obj)
        current_route = None
        if serving.routed(obj, self.settings) and current is not None:
            current_route = await kube.get_custom(route.GATEWAY_GROUP, route.GATEWAY_VERSION, route.ROUTE_PLURAL,
                                                  ns, name)  # fmt: skip
        versions = [version_of(b) for b in (stable, target) if b is not None]
        credentials: dict[str, tuple[dict[str, str], str]] = {}
        accounts = set()
        for src in serving.storage_sources(obj, versions, self.settings).values():
            if src[0] not in credentials and (found := await kube.secret_version(ns, src[0])) is not None:
                credentials[src[0]] = found
            if await kube.service_account_exists(ns, storage.account_name(name, src)):
                accounts.add(storage.account_name(name, src))
        logged = serving.logs(self.settings, monitor)
        analysis = await self.analysis_if_due(obj, status, logged, current, clients.prometheus, now)
        record = None
        if (canary := running_canary(status)) is not None:
            record = await kube.get_custom(*history.GROUP_VERSION, history.PLURAL, ns,
                                           history.record_name(obj.metadata.get("name", ""), canary))  # fmt: skip
        return Observed(target, stable, current, analysis, monitor, current_route, credentials, frozenset(accounts),
                        draining, record)  # fmt: skip

    async def analysis_if_due(
        self,
        obj: Rollout,
        status: dict[str, Any],
        logged: bool,
        current: dict[str, Any] | None,
        prom: Metrics,
        now: datetime,
    ) -> Outcome | None:
        analysis = obj.spec.canary.analysis if obj.spec.canary else None
        canary, stable, since = (
            status.get("canaryVersion"),
            status.get("stableVersion"),
            parse_time(status.get("canaryStartedAt")),
        )
        if analysis is None or not canary or not stable or since is None:
            return None
        last = parse_time(status.get("lastAnalysisTime"))
        if last is not None and (now - last).total_seconds() < analysis.interval_seconds:
            return None
        ns, name = obj.metadata.get("namespace", ""), isvc.isvc_name(obj)
        if not isvc.standard(obj):
            # Serverless: the revisions KServe's status says serve stable (rolled out last) and the canary.
            stable_rev, canary_rev = knative.revisions(current)
            revisions = {stable: stable_rev, canary: canary_rev}
            return await analyze(prom, analysis, ns, name, stable, canary, since, now, revisions=revisions,
                                 serverless=True)  # fmt: skip
        # The Services the route names: what the gateway's metrics tell the versions apart by.
        services = {stable: isvc.predictor_service(name, stable), canary: isvc.backend_service(name, canary, logged)}
        return await analyze(prom, analysis, ns, name, stable, canary, since, now, services)

    def decide(self, obj: Rollout, observed: Observed, now: datetime) -> Result:
        if found := problems(obj):
            return invalid(found)
        if problem := isvc.name_problem(obj):
            reason = "InvalidInferenceServiceName"
            return Result(conditions.stalled(reason, problem), events=[Event("Warning", reason, problem)])
        walk = Walk(obj, observed, now, self.settings)
        return walk.run()


class Walk(Decision[Rollout, Observed]):
    """One decision over a Rollout: which versions serve, at what weight, and what happened."""

    def __init__(self, rollout: Rollout, observed: Observed, now: datetime, settings: Settings) -> None:
        super().__init__(rollout, observed, now)
        self.r, self.settings = rollout, settings
        self.decisions: list[dict[str, Any]] = list(self.status.get("decisions") or [])
        self.recorded: dict[str, tuple[history.Canary, list[dict[str, Any]]]] = {}  # canary records' new decisions
        self.annotations = rollout.metadata.get("annotations") or {}
        self.standard = isvc.standard(rollout)

    def run(self) -> Result:
        target, proposer = target_of(self.r)
        self.fields |= {"candidate": proposer, "driftMonitor": self.o.drift_monitor}
        if self.o.model_version is None:
            field = f"the {CANDIDATE} annotation" if proposer else "spec.modelVersionRef"
            return missing(
                "ModelVersion", target, field, {**self.fields, "phase": self.status.get("phase") or "Pending"}
            )
        stable = self.get("stableVersion")
        if target != stable and (waiting := not_ready("ModelVersion", self.o.model_version, {})):
            return self.finish(waiting.conditions, waiting.requeue_after)
        if not stable:
            return self.deploy_first(target)
        if self.token(RETRY, "retryToken") and self.get("rolledBackVersion"):
            self.fields["rolledBackVersion"] = None
            self.record("Retry", f"retrying {target}")
        back = self.get("rolledBackVersion")
        if not self.standard and self.get("drainingVersion") and target != back and self.reverting():
            # Serverless: the rolled-back canary's revision is still Knative's latest; nothing else is served
            # (stable included: dropping canaryTrafficPercent now would send everything to it) until it is not.
            return self.waiting("RollingBack", f"finishing the rollback of {self.get('drainingVersion')} before "
                                f"serving {target}", WATCH_SECONDS)  # fmt: skip
        if target == stable:
            return self.steady()
        if target == back:
            return self.rolled_back_state()
        canary = self.get("canaryVersion")
        if canary != target and (same := self.same_artifact(target, stable)):
            self.events.append(Event("Warning", "SameArtifact", same))
            return self.finish(conditions.stalled("SameArtifact", same))
        if canary != target:
            drain = self.drain(canary) if canary else None
            if canary:
                kept = f"; {canary} drains for {self.scale_down_delay():.0f}s" if drain else ""
                self.record("Retarget", f"target changed from {canary} to {target}: starting over from {stable}{kept}")
            self.start_canary(target, drain)
        elif self.get("drainingVersion") and self.draining() is None:
            self.fields |= {"drainingVersion": None, "drainUntil": None}  # drained: KServe may remove it now
        return self.progress()

    def same_artifact(self, target: str, stable: str) -> str | None:
        """Standard mode: why `target` cannot replace `stable`, when both name one artifact. KServe's webhook
        refuses a predictor rename on an unchanged storageUri (validatePredictorNameChange), so such a canary
        could never be promoted: say so before starting it."""
        uri = (self.o.model_version or {}).get("spec", {}).get("artifact", {}).get("uri")
        if not self.standard or self.o.stable is None or uri != self.o.stable["spec"]["artifact"]["uri"]:
            return None
        return (
            f"{target} names the same artifact as the stable {stable} ({uri}); KServe cannot promote a "
            "predictor whose storageUri does not change: register the artifact under a new key, or point "
            "spec.modelVersionRef back at the stable version"
        )

    # -- states ---------------------------------------------------------------------------------------------

    def deploy_first(self, target: str) -> Result:
        self.fields |= {"stableVersion": target, "canaryVersion": None, "canaryWeight": 0, "phase": "Promoted"}
        self.record("Deploy", f"serving {target} (first version, no canary)")
        self.events.append(Event("Normal", "Deployed", f"serving {target}"))
        return self.steady()

    def steady(self) -> Result:
        stable = self.get("stableVersion")
        self.absorb_tokens()
        self.fields |= {"canaryVersion": None, "canaryWeight": 0, "currentStep": None, "phase": "Promoted",
                        "canaryStartedAt": None, "stepStartedAt": None, "canaryDeployedAt": None}  # fmt: skip
        waiting = self.not_served(stable)
        if waiting is None:
            conds = [*conditions.ready("Serving", f"{stable} takes all traffic"), *self.flags(promoted=True)]
        else:
            conds = [*conditions.progressing("Deploying", waiting), *self.flags(promoted=True)]
        return self.finish(conds, None if waiting is None else WATCH_SECONDS)

    def not_served(self, stable: str) -> str | None:
        """What `stable` taking all traffic still waits for, or None: KServe's Ready (PredictorReady and
        IngressReady) and, where the Rollout owns the route, the gateway having accepted it pointing at stable."""
        if not isvc.ready(self.o.isvc):
            return f"waiting for InferenceService to serve {stable}"
        if not serving.routed(self.r, self.settings):
            return None
        service = isvc.predictor_service(isvc.isvc_name(self.r), stable)
        if route.weights(self.o.route) != {service: 100} or not route.accepted(self.o.route, self.settings.gateway):
            return f"waiting for Gateway {self.settings.gateway} to accept the HTTPRoute to {service}"
        return None

    def rolled_back_state(self) -> Result:
        version = self.get("rolledBackVersion")
        backs = [d for d in self.decisions if d["action"] in ("Rollback", "Abort")]
        last: dict[str, Any] = backs[-1] if backs else {}
        message = (
            f"{version} was rolled back ({last.get('message', '')}); stable {self.get('stableVersion')} serves. "
            f"Point spec.modelVersionRef elsewhere or annotate {RETRY} to try again"
        )
        reason = "Aborted" if last.get("action") == "Abort" else "RolledBack"
        self.absorb_tokens()
        self.fields |= {"canaryVersion": None, "canaryWeight": 0, "currentStep": None, "phase": reason,
                        "canaryDeployedAt": None}  # fmt: skip
        if not self.standard:
            left = WATCH_SECONDS if self.reverting() else None
            return self.finish([*conditions.stalled(reason, message), *self.flags(rolled_back=True)], left)
        drain = self.draining()
        if drain is None:
            self.fields |= {"drainingVersion": None, "drainUntil": None}
        left = (drain[1] - self.now).total_seconds() if drain else None
        return self.finish([*conditions.stalled(reason, message), *self.flags(rolled_back=True)], left)

    def reverting(self) -> bool:
        """Serverless: whether the rollback of status.drainingVersion is still under way, one step at a time.

        Restoring stable's spec makes Knative create a new revision, and `latestRevision` is Knative's latest
        *ready* one (serving pkg/reconciler/route/traffic/traffic.go:354-373), i.e. the bad canary until that
        revision is ready. So: (1) the canary's spec stays with canaryTrafficPercent 0, KServe sending every
        request to the revision it rolled out last (ksvc_reconciler.go:144-153), until the status shows it
        (rollout_knative.pinned); the canary's revision is recorded (rolledBackRevision); (2) stable's spec is
        restored, still at 0 %; (3) once a newer revision is ready, canaryTrafficPercent goes. Each step is
        decided from the status and the InferenceService as observed, so a restart resumes where it was."""
        version, revision = self.get("drainingVersion"), self.get("rolledBackRevision")
        if self.standard or not version:
            return False
        stable = self.get("stableVersion")
        if revision is None:
            overdue = self.revert_overdue()
            if not knative.pinned(self.o.isvc) and not overdue:
                return True
            revision = knative.predictor_status(self.o.isvc).get("latestCreatedRevision") or ""
            self.fields["rolledBackRevision"] = revision
            seen = "not seen within the progress deadline" if overdue else "seen"
            self.record("Pinned", f"all requests on stable's revision ({seen}); restoring {stable}'s spec at "
                        f"canaryTrafficPercent 0 while {revision or 'the canary'} is the latest revision")  # fmt: skip
        if not knative.newer_revision_ready(self.o.isvc, revision):
            return True
        self.fields |= {"drainingVersion": None, "drainUntil": None, "rolledBackRevision": None}
        latest = knative.predictor_status(self.o.isvc).get("latestReadyRevision")
        self.record("Restored", f"{stable}'s spec is ready in revision {latest}: canaryTrafficPercent dropped")
        return False

    def revert_overdue(self) -> bool:
        """Whether the first rollback step has waited longer than the progress deadline since the rollback (a
        canary KServe never made a revision of is never reported pinned)."""
        backs = [d for d in self.decisions if d["action"] in ("Rollback", "Abort")]
        since = parse_time(backs[-1]["time"]) if backs else None
        deadline = self.r.spec.canary.progress_deadline_seconds if self.r.spec.canary else READY_DEADLINE
        return since is None or (self.now - since).total_seconds() >= deadline

    def draining(self) -> tuple[str, datetime] | None:
        """A rolled-back canary still keeping its pods (no requests routed to it), and until when."""
        version, until = self.get("drainingVersion"), parse_time(self.get("drainUntil"))
        if version and until is not None and self.now < until:
            return version, until
        return None

    def drain(self, version: str) -> dict[str, Any] | None:
        """Status fields that keep `version`'s pods (off the route) for scaleDownDelaySeconds, when the route has
        been sending it requests (Standard mode, the Rollout's route, its step clock started): KServe would
        otherwise delete them while the gateway still sends them requests."""
        delay = self.scale_down_delay()
        if not (self.standard and serving.routed(self.r, self.settings) and delay > 0 and self.get("stepStartedAt")):
            return None
        return {"drainingVersion": version, "drainUntil": rfc3339(self.now + timedelta(seconds=delay))}

    def start_canary(self, target: str, drain: dict[str, Any] | None = None) -> None:
        steps = self.r.spec.canary.steps if self.r.spec.canary else []
        weight = steps[0].weight if steps else 100
        now = rfc3339(self.now)
        clock = None  # step clocks start once the canary serves: canary_waiting, revision_waiting
        self.fields |= {"canaryVersion": target, "currentStep": 0, "canaryWeight": weight, "phase": "Progressing",
                        "canaryDeployedAt": now, "canaryStartedAt": clock, "stepStartedAt": clock,
                        "lastAnalysisTime": None, "lastVerdict": None, "lastEvidence": None, "drainingVersion": None,
                        "drainUntil": None, "rolledBackRevision": None, **(drain or {})}  # fmt: skip
        proposed = f", proposed by {self.get('candidate')}" if self.get("candidate") else ""
        self.record("CanaryStarted", f"{target} at {weight}% (step 1/{max(len(steps), 1)}){proposed}")
        self.events.append(Event("Normal", "CanaryStarted", f"{target} at {weight}%"))

    def progress(self) -> Result:
        if self.token(ABORT, "abortToken"):
            return self.rollback("Abort", f"aborted by the {ABORT} annotation")
        outcome = self.o.analysis
        if outcome is not None:
            previous = self.get("lastVerdict")
            # The latest look's numbers, at every look: a verdict unchanged since the last decision still has
            # fresher counts than that decision's evidence.
            self.fields |= {"lastVerdict": outcome.verdict, "lastAnalysisTime": rfc3339(self.now),
                            "lastEvidence": outcome.evidence}  # fmt: skip
            if outcome.verdict == "Regressed":
                return self.rollback("Rollback", outcome.message, outcome)
            if outcome.verdict != previous:
                self.record("Analysis", outcome.message, outcome)
                self.events.append(Event("Normal", "AnalysisVerdict", f"{outcome.verdict}: {outcome.message}"))
        steps = self.r.spec.canary.steps if self.r.spec.canary else []
        index = self.get("currentStep") or 0
        if self.standard and (waiting := self.canary_waiting(index >= len(steps))) is not None:
            return waiting
        if not self.standard and index < len(steps) and (waiting := self.revision_waiting()) is not None:
            return waiting
        if index >= len(steps):  # no steps, or Standard's last stage: all requests on the canary
            return self.promote("no canary steps" if not steps else f"{self.get('canaryVersion')} served all requests")
        step, started = steps[index], parse_time(self.get("stepStartedAt")) or self.now
        forced = self.token(PROMOTE, "promoteToken")
        if forced:
            return self.advance(index, steps, f"promoted by the {PROMOTE} annotation")
        if step.manual_gate:
            return self.waiting("Paused", f"step {index + 1}/{len(steps)} at {step.weight}%: waiting for {PROMOTE}")
        hold_end = started + timedelta(seconds=step.hold_seconds or 0)
        analysis = self.r.spec.canary.analysis if self.r.spec.canary else None
        if self.now < hold_end:
            left = (hold_end - self.now).total_seconds()
            verdict = self.get("lastVerdict") or "pending"
            where = f"step {index + 1}/{len(steps)} at {step.weight}%"
            return self.waiting("CanaryProgressing", f"{where}: {left:.0f}s of hold left; verdict {verdict}", left)
        if analysis is None or self.get("lastVerdict") == "Healthy":
            return self.advance(index, steps, f"step {index + 1} held {step.hold_seconds or 0}s")
        overdue = (self.now - hold_end).total_seconds()
        if overdue >= analysis.max_hold_seconds:
            if analysis.on_no_data == "rollback":
                return self.rollback("Rollback", f"no conclusive evidence after {analysis.max_hold_seconds}s more")
            return self.waiting("Paused", f"not enough evidence to promote after {overdue:.0f}s; onNoData=hold: "
                                f"annotate {PROMOTE} or {ABORT}")  # fmt: skip
        verdict = self.get("lastVerdict") or "no verdict yet"
        return self.waiting("CanaryProgressing", f"step {index + 1}/{len(steps)} at {step.weight}%: holding until "
                            f"the canary is proven within its margins ({verdict})")  # fmt: skip

    def revision_waiting(self) -> Result | None:
        """Serverless mode: a Result waiting for the canary's revision to serve its percent, or None once it does
        (rollout_knative.canary_serving); the first time, the step and evidence clocks start. Not serving within
        the progress deadline of being asked for: rolled back, never promoted."""
        if self.get("stepStartedAt") is not None:
            return None
        canary, weight = self.get("canaryVersion"), int(self.get("canaryWeight") or 0)
        if knative.canary_serving(self.o.isvc, weight):
            self.canary_serves(f"{canary}'s revision is ready: it takes {weight}% of requests")
            return None
        if (late := self.overdue("'s revision did not serve")) is not None:
            return late
        service = knative.service_name(isvc.isvc_name(self.r))
        return self.waiting("CanaryNotReady", f"waiting for Knative to make {canary}'s revision of {service} ready "
                            f"and route {weight}% to it")  # fmt: skip

    def canary_serves(self, message: str) -> None:
        """The canary serves its share for the first time: the step and evidence clocks start."""
        now = rfc3339(self.now)
        self.fields |= {"canaryStartedAt": now, "stepStartedAt": now}
        self.record("CanaryReady", message)

    def overdue(self, what: str) -> Result | None:
        """The rollback of a canary that `what` within the progress deadline of being asked for
        (canaryDeployedAt, recorded now if missing), or None."""
        deployed = parse_time(self.get("canaryDeployedAt"))
        if deployed is None:
            self.fields["canaryDeployedAt"] = rfc3339(self.now)
            return None
        deadline = self.r.spec.canary.progress_deadline_seconds if self.r.spec.canary else READY_DEADLINE
        if (self.now - deployed).total_seconds() < deadline:
            return None
        return self.rollback("Rollback", f"{self.get('canaryVersion')}{what} within {deadline}s")

    def canary_waiting(self, final: bool) -> Result | None:
        """Standard mode: a Result waiting for the canary's predictor, or None once KServe reports it ready
        (status.canaryStatuses[].ready, CanaryPredictorReady), at 100 % and behind the route before promotion.
        The first time it is ready, the step and evidence clocks start. Not ready within the progress deadline
        of being asked for: rolled back, never promoted."""
        canary = self.get("canaryVersion")
        name = isvc.isvc_name(self.r)
        ready, percent = isvc.canary_state(self.o.isvc, isvc.predictor_name(name, canary))
        if ready and self.get("stepStartedAt") is None:
            self.canary_serves(f"{canary} is ready: it takes {self.get('canaryWeight')}% of requests")
        service = isvc.backend_service(name, canary, serving.logs(self.settings, self.o.drift_monitor))
        settle = 0.0
        if ready and final and serving.routed(self.r, self.settings):
            on_route = route.weights(self.o.route).get(service) == 100
            ready = on_route and route.accepted(self.o.route, self.settings.gateway)
            # Stable keeps its pods until the gateway has surely stopped sending it requests.
            full_since = parse_time(self.get("stepStartedAt")) or self.now
            settle = self.scale_down_delay() - (self.now - full_since).total_seconds()
        if ready and (not final or percent == 100):
            if settle > 0:
                return self.waiting("Promoting", f"{service} takes all requests; stable keeps its pods "
                                    f"{settle:.0f}s more while the gateway drains it", settle)  # fmt: skip
            return None
        if self.get("stepStartedAt") is None:
            if (late := self.overdue(" did not become ready")) is not None:
                return late
            return self.waiting("CanaryNotReady", f"waiting for KServe to report canary {service} ready")
        what = "all requests on it" if final else "it ready again"
        return self.waiting("CanaryNotReady", f"waiting for canary {service}: {what}")

    def advance(self, index: int, steps: list[Any], why: str) -> Result:
        if index + 1 >= len(steps):
            return self.promote(why)
        weight = steps[index + 1].weight
        self.fields |= {"currentStep": index + 1, "canaryWeight": weight, "stepStartedAt": rfc3339(self.now)}
        self.record("Advance", f"{why}; step {index + 2}/{len(steps)} at {weight}%")
        self.events.append(Event("Normal", "StepAdvanced", f"{self.get('canaryVersion')} at {weight}%"))
        return self.waiting("CanaryProgressing", f"step {index + 2}/{len(steps)} at {weight}%", 0.5)

    def promote(self, why: str) -> Result:
        canary = self.get("canaryVersion")
        steps = self.r.spec.canary.steps if self.r.spec.canary else []
        if self.standard and (self.get("currentStep") or 0) < len(steps):
            # KServe deletes the old stable predictor as soon as the canary becomes spec.predictor: first all
            # requests (and KServe's replicas) go to the canary, and it replaces stable once that is served.
            self.fields |= {"currentStep": len(steps), "canaryWeight": 100, "stepStartedAt": rfc3339(self.now)}
            self.record("FullWeight", f"{why}; all requests to {canary} before it replaces stable")
            return self.waiting("Promoting", f"{canary} takes all requests; it becomes stable once that is served", 1)
        self.fields |= {"stableVersion": canary, "rolledBackVersion": None}
        self.record("Promote", f"{canary} promoted: {why}")
        self.events.append(Event("Normal", "Promoted", f"{canary} promoted: {why}"))
        return self.steady()

    def scale_down_delay(self) -> float:
        return float(self.r.spec.canary.scale_down_delay_seconds) if self.r.spec.canary else 0.0

    def rollback(self, action: str, why: str, outcome: Outcome | None = None) -> Result:
        canary, stable = self.get("canaryVersion"), self.get("stableVersion")
        self.fields |= {"rolledBackVersion": canary}
        if self.standard and serving.routed(self.r, self.settings) and self.scale_down_delay() > 0:
            # The route sends the canary nothing from now on; its pods go once the gateway has drained them.
            until = self.now + timedelta(seconds=self.scale_down_delay())
            self.fields |= {"drainingVersion": canary, "drainUntil": rfc3339(until)}
        elif not self.standard:
            # Serverless: canaryTrafficPercent 0 first, stable's spec only once that is seen (reverting).
            self.fields |= {"drainingVersion": canary, "drainUntil": None, "rolledBackRevision": None}
        self.record(action, why, outcome)
        self.events.append(Event("Warning", "RolledBack" if action == "Rollback" else "Aborted",
                                 f"{canary} rolled back, all traffic to {stable}: {why}"))  # fmt: skip
        return self.rolled_back_state()

    def waiting(self, reason: str, message: str, requeue: float | None = None) -> Result:
        self.fields["phase"] = "Paused" if reason == "Paused" else "Progressing"
        conds = [*conditions.progressing(reason, message), *self.flags(progressing=(reason, message))]
        interval = (
            self.r.spec.canary.analysis.interval_seconds if self.r.spec.canary and self.r.spec.canary.analysis else None
        )
        candidates = [t for t in (requeue, interval, WATCH_SECONDS) if t is not None]
        return self.finish(conds, max(0.2, min(candidates)))

    # -- helpers --------------------------------------------------------------------------------------------

    def token(self, annotation: str, field: str) -> bool:
        """An annotation's value not acted on yet: act once, remember it in status (no write to metadata)."""
        value = self.annotations.get(annotation)
        if value is None or value == self.get(field):
            return False
        self.fields[field] = value
        return True

    def absorb_tokens(self) -> None:
        """A promote or abort asked for while no canary runs applies to nothing: take it as seen, so it cannot
        skip a step or abort the next canary."""
        self.token(PROMOTE, "promoteToken")
        self.token(ABORT, "abortToken")

    def flags(
        self, promoted: bool = False, rolled_back: bool = False, progressing: tuple[str, str] | None = None
    ) -> list[Cond]:
        """Progressing / Promoted / RolledBack, as Argo Rollouts and Flagger users expect to find them."""
        stable, gone = self.get("stableVersion"), self.get("rolledBackVersion")
        moving = Cond("Progressing", "True", *progressing) if progressing else Cond("Progressing", "False", "Idle")
        if promoted:
            done = Cond("Promoted", "True", "Promoted", f"{stable} is stable")
        else:
            done = Cond("Promoted", "False", "CanaryActive" if self.get("canaryVersion") else "NotPromoted")
        if rolled_back:
            back = Cond("RolledBack", "True", "RolledBack", f"{gone} rolled back")
        else:
            back = Cond("RolledBack", "False", "NotRolledBack")
        return [moving, done, back]

    def record(self, action: str, message: str, outcome: Outcome | None = None) -> None:
        decision = {"time": rfc3339(self.now), "action": action, "step": self.get("currentStep"),
                    "weight": self.get("canaryWeight"), "message": message[:2048]}  # fmt: skip
        if outcome is not None:
            decision |= {"verdict": outcome.verdict, "evidence": outcome.evidence}
        # As the model writes it (defaults included), the form every earlier decision has when status is read back
        # through it: the same decision is then equal in the status and in its canary's record.
        decision = RecordedDecision.model_validate({k: v for k, v in decision.items() if v is not None}).wire()
        self.decisions = [*self.decisions, decision][-MAX_DECISIONS:]
        self.fields["decisions"] = self.decisions
        # The canary it is about: the one running, or starting, as this decision leaves the status. Its stable
        # is the one the canary was compared with (a promotion has already named the canary stable).
        running = running_canary({**self.status, **self.fields, "stableVersion": self.status.get("stableVersion")})
        if running is not None:
            name = history.record_name(self.r.metadata.get("name", ""), running)
            self.recorded.setdefault(name, (running, []))[1].append(decision)

    def records(self) -> list[Apply]:
        """The canary records this pass's decisions go into, applied whole (rollout_history)."""
        last = (self.status.get("decisions") or [{}])[-1].get("time")
        applies = []
        for name, (canary, new) in self.recorded.items():
            read = self.o.record if self.o.record and self.o.record["metadata"]["name"] == name else None
            kept, dropped = history.committed(read, last)
            applies.append(Apply(history.manifest(self.r.metadata, canary, [*kept, *new], dropped)))
        return applies

    def finish(self, conds: list[Cond], requeue: float | None = None) -> Result:
        result = self.result(conds, requeue)
        result.actions += self.records()
        wanted = self.serving()
        if wanted is not None:
            live = serving.Live(self.o.isvc, self.o.route, self.o.credentials, self.o.accounts)
            applied = dict(self.status.get("applied") or {})
            actions, now = serving.plan(self.r, wanted, live, self.settings, self.o.drift_monitor, applied)
            result.actions += actions
            if now != applied:
                self.fields["applied"] = now
        return result

    def serving(self) -> serving.Serving | None:
        """What should be served now, or None when the stable version's ModelVersion is gone (leave the service
        as it is)."""
        stable_name = self.get("stableVersion")
        by_name = {d["metadata"]["name"]: d for d in (self.o.stable, self.o.model_version, self.o.draining) if d}
        if not stable_name or stable_name not in by_name:
            return None
        canary_name = self.get("canaryVersion")
        if not self.standard and (back := self.get("drainingVersion")) and canary_name is None:
            # Serverless rollback (reverting): the canary's spec at 0 %, then stable's spec still at 0 %.
            if self.get("rolledBackRevision") is None and back in by_name:
                return serving.Serving(version_of(by_name[stable_name]), version_of(by_name[back]), 0)
            return serving.Serving(version_of(by_name[stable_name]), pinned=True)
        if canary_name is None and (drain := self.draining()) is not None and drain[0] in by_name:
            # Kept in the InferenceService, off the route: the gateway drains it before KServe removes it.
            gone = version_of(by_name[drain[0]])
            name = isvc.predictor_name(isvc.isvc_name(self.r), drain[0])
            percent = isvc.canary_state(self.o.isvc, name)[1] or 1  # as it was: KServe resizes nothing
            return serving.Serving(version_of(by_name[stable_name]), gone, percent, canary_ready=False)
        canary = version_of(by_name[canary_name]) if canary_name in by_name else None
        ready = False
        if canary is not None and self.standard:
            ready = isvc.canary_state(self.o.isvc, isvc.predictor_name(isvc.isvc_name(self.r), canary_name))[0]
        weight = self.get("canaryWeight") or 0
        draining = None
        if (drain := self.draining()) is not None and drain[0] != canary_name and drain[0] in by_name:
            # A retargeted canary: kept in spec.canary, off the route, until the gateway has drained it.
            name = isvc.predictor_name(isvc.isvc_name(self.r), drain[0])
            percent = min(isvc.canary_state(self.o.isvc, name)[1] or 1, 100 - weight)
            draining = (version_of(by_name[drain[0]]), percent) if percent > 0 else None
        return serving.Serving(version_of(by_name[stable_name]), canary, weight, ready, draining)
