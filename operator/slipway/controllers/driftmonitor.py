"""DriftMonitor controller: keeps the shared drift runtime configured for what the target serves, folds each
evaluated window into status, and retrains when drift persists.

observe() reads the target, its ModelVersions, the retraining jobs, and the runtime's state of this monitor;
decide() is pure: it builds the runtime's configuration from the spec and asks for it (a ConfigureDetector
action) when the runtime has another one (KServe-style: build the desired object purely, then diff).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slipway import conditions
from slipway.api.common import API_VERSION
from slipway.api.driftmonitor import DriftMonitor
from slipway.clients import Clients, Detectors
from slipway.conditions import Cond, rfc3339
from slipway.config import Settings
from slipway.controllers import driftmonitor_plan as plan
from slipway.controllers import rollout as rollout_ctl
from slipway.controllers import rollout_isvc as isvc
from slipway.controllers.base import ConfigureDetector, Create, Decision, Event, Hooks, Patch, Result, Wake
from slipway.controllers.references import missing
from slipway.drift import DriftUnavailable
from slipway.kube import Kube

log = logging.getLogger(__name__)
DRIFT = "DriftDetected"


@dataclass(frozen=True)
class Observed:
    target: dict[str, Any] | None
    stable: dict[str, Any] | None = None  # the served version's ModelVersion
    canary: dict[str, Any] | None = None
    runtime: dict[str, Any] | None = None  # the runtime's view of this monitor (config, versions, results)
    runtime_error: str | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)  # retraining jobs of this monitor
    retrained: dict[str, Any] | None = None  # ModelVersion of status.lastRetrain's job, once registered
    listed: bool = False  # the runtime lists every monitor's summary: handlers.py wakes this one when it changes


def target_of(dm: DriftMonitor) -> tuple[str, str, str]:
    """(kind, name, field) of what the monitor watches; the schema guarantees exactly one is set."""
    if dm.spec.rollout_ref is not None:
        return "Rollout", dm.spec.rollout_ref.name, "spec.rolloutRef"
    assert dm.spec.inference_service_ref is not None
    return "InferenceService", dm.spec.inference_service_ref.name, "spec.inferenceServiceRef"


def served(dm: DriftMonitor, target: dict[str, Any]) -> tuple[str | None, str | None]:
    """(stable, canary) version names of what the target serves now."""
    if dm.spec.rollout_ref is not None:
        status = target.get("status") or {}
        return status.get("stableVersion"), status.get("canaryVersion")
    return (dm.spec.model_version_ref.name if dm.spec.model_version_ref else None), None


class DriftMonitorController(Hooks):
    kind = DriftMonitor

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def related(self, body: dict[str, Any]) -> list[Wake]:
        """The Rollout points its service's payload logger at the monitor: only a new or changed spec matters to
        it, not the status written at every window."""
        unseen = (body.get("status") or {}).get("observedGeneration") != body["metadata"].get("generation")
        ref = (body.get("spec") or {}).get("rolloutRef") or {}
        return [("Rollout", ref["name"])] if ref.get("name") and unseen else []

    async def deleted(self, body: dict[str, Any], clients: Clients) -> list[Wake]:
        """Forget the monitor's windows in the drift runtime (best effort: no finalizer guards them, they hold no
        data worth blocking a delete for) and let its Rollout drop the payload logger."""
        meta = body["metadata"]
        ref = (body.get("spec") or {}).get("rolloutRef") or {}
        if clients.drift is not None:
            try:
                await clients.drift.delete(meta["namespace"], meta["name"])
            except DriftUnavailable as err:
                log.warning("could not remove DriftMonitor %s/%s from the drift runtime: %s", meta["namespace"],
                            meta["name"], err)  # fmt: skip
        return [("Rollout", ref["name"])] if ref.get("name") else []

    async def outside(self, clients: Clients, wake: Callable[[str, str], None]) -> None:
        """One listing of the drift runtime every SLIPWAY_DRIFT_POLL_SECONDS, waking the monitors whose summary
        changed (a new result or sample, a reference loaded, a monitor the runtime lost), so that a quiet monitor
        is not read on its own at every poll (Watch.poll). After the runtime was unreachable, every monitor it
        lists looks again."""
        drift = clients.drift
        if drift is None:
            return
        last: dict[tuple[str, str], Any] | None = None
        first = True
        while True:
            await asyncio.sleep(self.settings.drift_poll_seconds)
            try:
                now = await drift.summaries()
            except DriftUnavailable as err:
                log.debug("listing the drift runtime's monitors failed: %s", err)
                now = None
            drift.listed = now is not None
            if now is not None:
                if last is None:  # the first listing (everything is reconciled at start-up), or after an outage
                    changed = set() if first else set(now)
                else:
                    changed = {k for k in now.keys() | last.keys() if now.get(k) != last.get(k)}
                for ns, name in sorted(changed):
                    wake(ns, name)
                first = False
            last = now

    async def observe(self, obj: DriftMonitor, clients: Clients, now: datetime) -> Observed:
        ns, name, kube = obj.metadata.get("namespace", ""), obj.metadata["name"], clients.kube
        kind, target_name, _ = target_of(obj)
        if kind == "Rollout":
            target = await kube.get("rollouts", ns, target_name)
        else:
            target = await kube.get_custom(isvc.KSERVE_GROUP, isvc.KSERVE_VERSION, isvc.ISVC_PLURAL, ns, target_name)
        if target is None:
            return Observed(None)
        stable_name, canary_name = served(obj, target)
        stable = await kube.get("modelversions", ns, stable_name) if stable_name else None
        canary = await kube.get("modelversions", ns, canary_name) if canary_name else None
        jobs = await kube.list_custom("trainingjobs", ns, f"{plan.MONITOR_LABEL}={name}")
        retrained = await self._retrained(obj, jobs, kube)
        runtime, error = await self._runtime_state(obj, stable, clients.drift)
        listed = clients.drift is not None and clients.drift.listed
        return Observed(target, stable, canary, runtime, error, jobs, retrained, listed)

    async def _retrained(self, dm: DriftMonitor, jobs: list[dict[str, Any]], kube: Kube) -> dict[str, Any] | None:
        """The last retraining's ModelVersion, read only while the decision still needs it: until it is recorded,
        and with createRollout until it is proposed."""
        last = dm.status.last_retrain if dm.status else None
        proposing = bool(dm.spec.retrain and dm.spec.retrain.create_rollout and dm.spec.rollout_ref)
        if last is None or last.proposed or (last.model_version and not proposing):
            return None
        job = next((j for j in jobs if j["metadata"]["name"] == last.job_name), None)
        version = last.model_version or ((job or {}).get("status") or {}).get("modelVersionRef", {}).get("name")
        return await kube.get("modelversions", dm.metadata.get("namespace", ""), version) if version else None

    @staticmethod
    async def _runtime_state(
        dm: DriftMonitor, stable: dict[str, Any] | None, drift: Detectors | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The runtime's state of this monitor (None: it has none), read when there is a reference to monitor."""
        if drift is None or stable is None or plan.reference_problem(stable):
            return None, None
        try:
            return await drift.get(dm.metadata.get("namespace", ""), dm.metadata["name"]), None
        except DriftUnavailable as err:
            return None, str(err)

    def decide(self, obj: DriftMonitor, observed: Observed, now: datetime) -> Result:
        return Watch(obj, observed, now, self.settings).run()


class Watch(Decision[DriftMonitor, Observed]):
    """One decision over a DriftMonitor."""

    def __init__(self, dm: DriftMonitor, observed: Observed, now: datetime, settings: Settings) -> None:
        super().__init__(dm, observed, now)
        self.dm, self.settings = dm, settings
        self.last_drifted: dict[str, Any] | None = None
        self.retrain_message = ""

    def run(self) -> Result:
        kind, name, field_ = target_of(self.dm)
        # Waiting on a Rollout needs no clock of its own: the Rollout wakes its monitors when it comes, goes or
        # names another version (handlers.Runtime.remember). With 2,500 monitors waiting for their Rollouts at
        # start-up, a 10 s clock each was most of the operator's passes (bench/operator_scale.py).
        by_rollout = kind == "Rollout"
        if self.o.target is None:
            waiting = self.waiting_result(missing(kind, name, field_, {"state": "Pending"}))
            waiting.requeue_after = None if by_rollout else waiting.requeue_after
            return waiting
        stable, _ = served(self.dm, self.o.target)
        if not stable:
            message = f"{kind} {name!r} serves no version yet"
            result = self.finish(conditions.progressing("WaitingForVersion", message), "Pending")
            result.requeue_after = None if by_rollout else result.requeue_after
            return result
        if self.o.stable is None:
            return self.waiting_result(missing("ModelVersion", stable, f"what {kind} {name!r} serves", {}))
        if problem := plan.reference_problem(self.o.stable) or self.feature_problem():
            self.events.append(Event("Warning", "NoReferenceData", problem))
            return self.finish(conditions.stalled("NoReferenceData", problem), "Pending")
        if not self.settings.drift_url:
            message = "the operator has no SLIPWAY_DRIFT_URL: install the drift runtime and point the operator at it"
            return self.finish(conditions.stalled("DetectorNotConfigured", message), "Pending")
        self.switch_reference(stable)
        self.attach_logger(kind, stable)
        if self.o.runtime_error:
            why = self.o.runtime_error
            return self.finish(conditions.progressing("DetectorUnavailable", why), self.get("state") or "Pending")
        runtime = self.configure()
        version = (runtime.get("versions") or {}).get(stable) or {}
        if version.get("referenceError"):
            message = f"reference data of {stable} could not be loaded: {version['referenceError']}"
            return self.finish(conditions.progressing("ReferenceDataUnavailable", message), "Pending")
        self.take_windows(stable)
        self.retrain(stable)
        self.follow_retrain()
        return self.finish(conditions.ready("Monitoring", self.monitoring_message(stable, version)), self.state())

    # -- steps ------------------------------------------------------------------------------------------------

    def configure(self) -> dict[str, Any]:
        """Ask for the configuration built from the spec when the runtime has another (or none: it does not know
        this monitor, or lost it in a restart); returns the runtime's state to decide on. A monitor it does not
        know is, once configured, one with no samples and no results yet: what a PUT answers."""
        assert self.o.stable is not None
        versions = {self.o.stable["metadata"]["name"]: ("stable", self.o.stable)}
        if self.o.canary is not None and not plan.reference_problem(self.o.canary):
            versions[self.o.canary["metadata"]["name"]] = ("canary", self.o.canary)
        desired = plan.detector_config(self.dm, versions)
        current = self.o.runtime
        if current is not None and current.get("config") == desired:
            return current
        self.actions.append(ConfigureDetector(desired))
        return current if current is not None else {"config": desired, "versions": {}, "results": []}

    def feature_problem(self) -> str | None:
        assert self.o.stable is not None
        unknown = plan.unknown_features(self.dm, self.o.stable)
        if unknown:
            return f"spec.detector.features names inputs {self.o.stable['metadata']['name']} does not have: " + (
                ", ".join(unknown)
            )
        return None

    def switch_reference(self, stable: str) -> None:
        previous = self.status.get("modelVersion")
        if previous == stable:
            return
        self.fields |= {"modelVersion": stable, "consecutiveDriftWindows": 0}
        if previous:
            message = f"reference data switched from {previous} to {stable}, the version now served"
            self.events.append(Event("Normal", "ReferenceSwitched", message))

    def attach_logger(self, kind: str, stable: str) -> None:
        """A Rollout sets its service's logger itself (it knows every revision's version). An InferenceService
        watched directly gets only the `logger` field patched: the one field the monitor owns there."""
        if kind != "InferenceService" or self.o.target is None:
            return
        url = isvc.logger_url(self.settings, self.dm.metadata.get("namespace", ""), self.dm.metadata["name"], stable)
        want = {"mode": "request", "url": url}
        have = ((self.o.target.get("spec") or {}).get("predictor") or {}).get("logger")
        if have != want:
            ref = {
                "apiVersion": f"{isvc.KSERVE_GROUP}/{isvc.KSERVE_VERSION}",
                "kind": "InferenceService",
                "metadata": {"name": self.o.target["metadata"]["name"]},
            }
            self.actions.append(Patch(ref, {"spec": {"predictor": {"logger": want}}}))

    def take_windows(self, stable: str) -> None:
        results = list((self.o.runtime or {}).get("results") or [])
        windows = plan.fold({**self.status, **self.fields}, stable, results)
        self.fields |= windows.fields
        level = self.dm.spec.detector.p_value
        for result in windows.drifted:
            self.events.append(Event("Warning", "DriftDetected", plan.describe_window(plan.window_of(result), level)))
        self.last_drifted = windows.drifted[-1] if windows.drifted else None

    def retrain(self, stable: str) -> None:
        verdict = plan.retrain_verdict(self.dm, {**self.status, **self.fields}, self.o.jobs, self.now)
        self.retrain_message = verdict.message
        if not verdict.create:
            return
        window = self.last_drifted or {
            "seq": self.get("lastResultSeq"),
            "version": stable,
            **(self.get("lastWindow") or {}),
        }
        name = plan.job_name(self.dm, int(window.get("seq") or 0))
        last = plan.describe_window(self.get("lastWindow") or {}, self.dm.spec.detector.p_value)
        reason = f"{verdict.message} on {stable}; last: {last}"
        self.actions.append(Create(plan.retrain_job(self.dm, name, window, reason)))
        self.fields |= {"lastRetrain": {"jobName": name, "time": rfc3339(self.now), "reason": reason[:2048]},
                        "consecutiveDriftWindows": 0}  # fmt: skip
        self.events.append(Event("Normal", "RetrainingStarted", f"TrainingJob {name}: {reason}"[:1024]))

    def follow_retrain(self) -> None:
        """Record the retrained version; with createRollout, propose it to the Rollout once it is Ready."""
        last = dict(self.get("lastRetrain") or {})
        mv = self.o.retrained
        if not last or mv is None or last.get("jobName") != (self.status.get("lastRetrain") or {}).get("jobName"):
            return
        version = mv["metadata"]["name"]
        if last.get("modelVersion") != version:
            last["modelVersion"] = version
        retrain = self.dm.spec.retrain
        ready = conditions.is_true((mv.get("status") or {}).get("conditions") or [], conditions.READY)
        if retrain and retrain.create_rollout and self.dm.spec.rollout_ref and ready and not last.get("proposed"):
            self.propose(version)
            last["proposed"] = True
        if last != self.status.get("lastRetrain"):
            self.fields["lastRetrain"] = last

    def propose(self, version: str) -> None:
        assert self.o.target is not None
        rollout = self.o.target
        base = ((rollout.get("spec") or {}).get("modelVersionRef") or {}).get("name", "")
        source = f"DriftMonitor/{self.dm.metadata['name']}"
        annotations = {
            rollout_ctl.CANDIDATE: version,
            rollout_ctl.CANDIDATE_BASE: base,
            rollout_ctl.CANDIDATE_SOURCE: source,
        }
        ref = {"apiVersion": API_VERSION, "kind": "Rollout", "metadata": {"name": rollout["metadata"]["name"]}}
        self.actions.append(Patch(ref, {"metadata": {"annotations": annotations}}))
        message = f"proposed {version} (retrained) to Rollout {rollout['metadata']['name']}"
        self.events.append(Event("Normal", "CandidateProposed", message))

    # -- results ----------------------------------------------------------------------------------------------

    def state(self) -> str:
        running = [j for j in self.o.jobs if not plan.finished(j)]
        if running:
            return "Retraining"
        window = self.get("lastWindow") or {}
        return "Drifting" if window.get("drift") else "Monitoring"

    def monitoring_message(self, stable: str, version: dict[str, Any]) -> str:
        size = self.dm.spec.detector.window_size
        message = f"watching {stable}: {version.get('samples', 0)}/{size} samples in the current window"
        if self.dm.spec.retrain and self.get("consecutiveDriftWindows"):
            message += f"; {self.retrain_message}"
        return message

    def drift_condition(self) -> Cond:
        window = self.get("lastWindow")
        if not window:
            return Cond(DRIFT, "Unknown", "NoWindowYet", "no window has been evaluated yet")
        text = plan.describe_window(window, self.dm.spec.detector.p_value)
        if window.get("drift"):
            return Cond(DRIFT, "True", "DriftDetected", f"{text}; {self.get('consecutiveDriftWindows') or 0} in a row")
        return Cond(DRIFT, "False", "NoDrift", text)

    def finish(self, conds: list[Cond], state: str) -> Result:
        self.fields["state"] = state
        # After a ConfigureDetector no sooner look is needed: what the runtime then has to tell (a reference loaded
        # or refused, samples) changes its listing, which wakes the monitor, or the poll finds it.
        return self.result([*conds, self.drift_condition()], self.poll(state))

    def poll(self, state: str) -> float | None:
        """When to read the runtime again: every SLIPWAY_DRIFT_POLL_SECONDS, except while a Rollout's monitor is
        quietly Monitoring and the runtime lists summaries: then the runtime's listing (one for all monitors)
        wakes it when it has news and its Rollout wakes it when it serves another version; the resync is the
        safety net. Drifting or retraining, it keeps its clock (cooldowns, consecutive windows)."""
        quiet = state == "Monitoring" and not self.get("consecutiveDriftWindows")
        if quiet and self.o.listed and self.o.runtime is not None and target_of(self.dm)[0] == "Rollout":
            return None
        return self.settings.drift_poll_seconds

    def waiting_result(self, waiting: Result) -> Result:
        waiting.fields = {"state": "Pending", **waiting.fields}
        waiting.conditions.append(self.drift_condition())
        return waiting
