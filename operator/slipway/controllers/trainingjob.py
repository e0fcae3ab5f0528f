"""TrainingJob controller: a gang of trainer pods per attempt, retried whole, then a ModelVersion.

State lives in status (attempts, preemptions, startTime, phase) and in the pods' labels; after a restart both
are read back, and the attempt in progress is the larger of status.attempts and the newest pod's attempt label.
With a Kueue queue name each attempt is one Kueue pod group (trainingjob_manifests.kueue_group): queued and
admitted whole, and, when Kueue evicts it, started again as a new attempt that uses up no retry.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from slipway import conditions, contract
from slipway.api.modelversion import model_version_name
from slipway.api.trainingjob import TrainingJob
from slipway.clients import Clients
from slipway.conditions import Cond, parse_time, rfc3339
from slipway.config import Settings
from slipway.controllers import trainingjob_manifests as m
from slipway.controllers.base import Create, Delete, Event, Hooks, Result, Wake, invalid
from slipway.controllers.pods import EVICTED_BY_KUEUE, PodView, stall_in, view
from slipway.storage import ObjectMissing, S3Access, StorageError, join_uri

CLASS_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
PYTORCH_ALGORITHMS = ("mlp",)
WAIT_FOR_DEPENDENCY = 30.0
WATCH_RUNNING = 30.0  # pod events wake the job up; this is only a safety net
MANIFEST_RETRY = 10.0


@dataclass(frozen=True)
class Observed:
    secret_exists: bool | None  # None: no Secret is referenced
    pods: tuple[dict[str, Any], ...] = ()
    service_exists: bool = False
    manifest: dict[str, Any] | None = None
    manifest_problem: str = ""
    model_version: str | None = None  # the ModelVersion already created for this job object
    next_version: int = 1
    workload: dict[str, Any] | None = None  # Kueue's Workload of the current attempt's pod group, if any


def problems(job: TrainingJob) -> list[str]:
    """What the schema cannot say about a spec."""
    spec, found = job.spec, []
    if spec.framework == "sklearn" and not CLASS_PATH.match(spec.algorithm):
        found.append(f"algorithm {spec.algorithm!r} is not a Python class path such as sklearn.svm.SVC")
    if spec.framework == "pytorch" and spec.algorithm not in PYTORCH_ALGORITHMS:
        found.append(
            f"algorithm {spec.algorithm!r} is not one of {', '.join(PYTORCH_ALGORITHMS)} for framework pytorch"
        )
    if spec.framework == "sklearn" and spec.resources and spec.resources.gpus > 0:
        found.append("scikit-learn does not use GPUs: set resources.gpus to 0 or use framework pytorch")
    return found


def attempt_of(pod: dict[str, Any]) -> int:
    try:
        return int(pod["metadata"].get("labels", {}).get(m.LABEL_ATTEMPT, "0"))
    except ValueError:
        return 0


def preemptions_of(pod: dict[str, Any]) -> int:
    try:
        return int((pod["metadata"].get("annotations") or {}).get(m.ANNOTATION_PREEMPTIONS, "0"))
    except ValueError:
        return 0


@dataclass
class Plan:
    """The facts decide() works from, derived once from spec, status and pods."""

    job: TrainingJob
    status: dict[str, Any]
    attempt: int
    gang: list[PodView] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # pods of earlier attempts still present
    preempted_per_pods: int = 0  # the count the newest pods were launched with (m.worker_pod)

    @classmethod
    def of(cls, job: TrainingJob, observed: Observed) -> Plan:
        status = job.status.wire() if job.status else {}
        attempt = max([status.get("attempts", 0), *(attempt_of(p) for p in observed.pods)])
        gang = [view(p) for p in observed.pods if attempt_of(p) == attempt]
        stale = [p["metadata"]["name"] for p in observed.pods if attempt_of(p) < attempt]
        preempted = max((preemptions_of(p) for p in observed.pods), default=0)
        return cls(job, status, attempt, sorted(gang, key=lambda v: v.name), stale, preempted)

    @property
    def preemptions(self) -> int:
        """Like the attempt, the larger of status and the pods: a status write lost after a relaunch (the operator
        killed between the two) must not turn that relaunch into a retry."""
        return max(int(self.status.get("preemptions") or 0), self.preempted_per_pods)

    def retries_used(self) -> int:
        """Restarts after the job's own failures: those after a Kueue eviction were not its fault."""
        return self.attempt - 1 - self.preemptions

    def active(self) -> list[str]:
        return [v.name for v in self.gang if v.state not in ("succeeded", "failed", "terminating")]

    def stop_active(self) -> list[Delete]:
        return [Delete("Pod", n) for n in self.active()]


class TrainingJobController(Hooks):
    kind = TrainingJob

    def related(self, body: dict[str, Any]) -> list[Wake]:
        """A retraining job's outcome moves its monitor."""
        monitor = (body["metadata"].get("labels") or {}).get(contract.DRIFT_MONITOR)
        return [("DriftMonitor", monitor)] if monitor else []

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def observe(self, obj: TrainingJob, clients: Clients, now: datetime) -> Observed:
        kube = clients.kube
        ns, name, uid = obj.metadata.get("namespace", ""), obj.metadata["name"], obj.metadata.get("uid", "")
        ref = obj.spec.output.credentials_secret_ref
        secret = None if ref is None else await kube.secret_data(ns, ref.name)
        pods = await kube.pods(ns, f"{m.LABEL_JOB}={name}")
        owned = tuple(p for p in pods if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or []))
        observed = Observed(
            secret_exists=None if ref is None else secret is not None,
            pods=owned,
            service_exists=m.distributed(obj) and await kube.service_exists(ns, name),
        )
        status = obj.status.wire() if obj.status else {}
        if status.get("phase") in ("Succeeded", "Failed") and status.get("modelVersionRef"):
            return observed
        plan = Plan.of(obj, observed)
        if not plan.gang or any(v.state != "succeeded" for v in plan.gang) or len(plan.gang) < m.workers(obj):
            if m.queue_name(obj) and any(v.state == "gated" for v in plan.gang):
                # Only to say why Kueue holds the gang back; it names the Workload after the group.
                workload = await kube.get_optional(m.KUEUE_API_GROUP, m.KUEUE_VERSION, m.WORKLOAD_PLURAL, ns,
                                                   m.pod_group(obj, plan.attempt))  # fmt: skip
                return dataclasses.replace(observed, workload=workload)
            return observed
        return await self._observe_outcome(obj, clients, observed, secret)

    async def _observe_outcome(
        self, job: TrainingJob, clients: Clients, observed: Observed, secret: dict[str, str] | None
    ) -> Observed:
        """The gang finished: read the manifest and find what is already registered."""
        ns, uid = job.metadata.get("namespace", ""), job.metadata.get("uid", "")
        # From the API, not the watch cache: a number read from a watch that lags names a version that exists (chaos
        # saw jobs 30 s apart take the same number), and the claim would fail until the watch caught up. Once per
        # finished job.
        versions = await clients.kube.list_custom("modelversions", ns, fresh=True)
        mine = [v["metadata"]["name"] for v in versions if v["metadata"].get("labels", {}).get(m.LABEL_JOB_UID) == uid]
        numbers = [v["spec"].get("version", 0) for v in versions if v["spec"].get("modelName") == job.spec.model_name]
        taken = {v["metadata"]["name"] for v in versions}
        following = max(numbers, default=0) + 1
        while model_version_name(job.spec.model_name, following) in taken:  # a name another model's version has
            following += 1
        fields: dict[str, Any] = {"model_version": mine[0] if mine else None, "next_version": following}
        uri = join_uri(m.output_prefix(job), "manifest.json")
        try:
            fields["manifest"] = await clients.s3.read_json(self.access(job, secret), uri)
        except ObjectMissing:
            fields["manifest_problem"] = f"the trainer exited 0 but wrote no {uri}"
        except (StorageError, ValueError) as e:
            fields["manifest_problem"] = f"cannot read {uri}: {e}"
        return dataclasses.replace(observed, **fields)

    def access(self, job: TrainingJob, secret: dict[str, str] | None) -> S3Access:
        out = job.spec.output
        return S3Access(
            out.endpoint or self.settings.s3_endpoint or None,
            out.region or self.settings.s3_region,
            (secret or {}).get("AWS_ACCESS_KEY_ID"),
            (secret or {}).get("AWS_SECRET_ACCESS_KEY"),
        )

    def decide(self, obj: TrainingJob, observed: Observed, now: datetime) -> Result:
        if found := problems(obj):
            return invalid(found)
        plan = Plan.of(obj, observed)
        phase = plan.status.get("phase")
        cleanup = [Delete("Pod", n) for n in plan.stale]
        if phase in ("Succeeded", "Failed") and (phase == "Failed" or plan.status.get("modelVersionRef")):
            return with_actions(finished(plan, now), cleanup)
        if obj.spec.run_policy.suspend:
            return with_actions(suspended(plan), [*cleanup, *plan.stop_active()])
        if observed.secret_exists is False:
            return secret_missing(obj)
        if deadline := deadline_passed(plan, now):
            return with_actions(failed(plan, "DeadlineExceeded", deadline, now), plan.stop_active())
        return with_actions(self.progress(plan, observed, now), cleanup)

    def progress(self, plan: Plan, observed: Observed, now: datetime) -> Result:
        job = plan.job
        if plan.attempt == 0:
            return self.launch(plan, 1, now, "Launched", "launching attempt 1")
        # Before failures: the workers Kueue leaves running lose their peers and fail too, for the same reason.
        evicted = [v for v in plan.gang if v.state == "evicted"]
        if evicted:
            return self.after_eviction(plan, evicted[0], now)
        if vanished := vanished_after_admission(plan):
            return self.after_eviction(plan, None, now, vanished)
        failed_pods = [v for v in plan.gang if v.state == "failed"]
        if failed_pods:
            return self.after_failure(plan, failed_pods[0], now)
        if lost := lost_from_gang(plan):
            what = (f"worker pod(s) {', '.join(lost)} of attempt {plan.attempt} are gone (deleted, or their node "
                    "was): a running torchrun gang cannot take a new worker in")  # fmt: skip
            return self.restart_gang(plan, what, now)
        missing = self.gang(plan, plan.attempt, {v.name for v in plan.gang}, observed.service_exists)
        if len(plan.gang) == m.workers(job) and all(v.state == "succeeded" for v in plan.gang):
            return self.register(plan, observed, now)
        result = running(plan, observed.workload, missing, now)
        if plan.preemptions != int(plan.status.get("preemptions") or 0):
            result.fields["preemptions"] = plan.preemptions  # what the pods say and status lost
        return result

    def gang(
        self, plan: Plan, attempt: int, present: set[str], have_service: bool, preemptions: int | None = None
    ) -> list[Create]:
        """The attempt's worker pods not in `present`, and the headless Service a distributed job needs."""
        job, count = plan.job, plan.preemptions if preemptions is None else preemptions
        creates = [
            Create(m.worker_pod(job, attempt, rank, self.settings, count))
            for rank in range(m.workers(job))
            if m.pod_name(job, attempt, rank) not in present
        ]
        if m.distributed(job) and not have_service:
            creates.insert(0, Create(m.headless_service(job)))
        return creates

    def launch(
        self,
        plan: Plan,
        attempt: int,
        now: datetime,
        reason: str,
        message: str,
        condition: str = "Launching",
        preemptions: int | None = None,
    ) -> Result:
        job = plan.job
        # A new attempt has no pods yet; creating its Service again is harmless (an existing one is kept).
        actions = self.gang(plan, attempt, set(), have_service=False, preemptions=preemptions)
        fields: dict[str, Any] = {"phase": "Pending", "attempts": attempt}
        # Queued by Kueue, activeDeadlineSeconds counts from the gang's admission (running() starts the clock), as a
        # Job's does from Kueue's unsuspending it: time in the queue is not the job's.
        if start := plan.status.get("startTime") or (None if m.queue_name(job) else rfc3339(now)):
            fields["startTime"] = start
        result = Result(pending_conditions(condition, f"attempt {attempt}: creating {m.workers(job)} worker pod(s)"),
                        fields, [Event("Normal", reason, message)], WATCH_RUNNING)  # fmt: skip
        return with_actions(result, actions)

    def after_eviction(self, plan: Plan, pod: PodView | None, now: datetime, vanished: tuple[str, ...] = ()) -> Result:
        """Kueue evicted the gang (preempted it, most often) and is deleting its pods: the gang is queued again
        whole as a new attempt, a new pod group and so a new Workload, because the evicted one holds the old pods.
        Not the job's failure, so it uses up no retry (status.preemptions). Without `pod`, the eviction was not
        seen, only its result: the admitted gang's pods are gone (`vanished`)."""
        group = m.pod_group(plan.job, plan.attempt)
        if pod is not None:
            why = pod.reason.removeprefix(EVICTED_BY_KUEUE)
            reason = "Preempted" if why == "Preempted" else "Evicted"
            message = f"Kueue evicted pod group {group} ({why}): {pod.message or 'no message'}"
        else:
            reason = "Evicted"
            message = (f"worker pod(s) {', '.join(vanished)} of pod group {group} are gone after Kueue admitted it "
                       "(Kueue preempted or evicted the gang, or they were deleted)")  # fmt: skip
        attempt = plan.attempt + 1
        count = plan.preemptions + 1
        restart = self.launch(plan, attempt, now, reason, f"{message}; queueing all workers again as attempt {attempt}",
                              condition=reason, preemptions=count)  # fmt: skip
        restart.fields["preemptions"] = count
        restart.fields["startTime"] = None  # the deadline counts again from the re-admission
        return with_actions(restart, [Delete("Pod", v.name) for v in plan.gang])

    def after_failure(self, plan: Plan, pod: PodView, now: datetime) -> Result:
        """One worker failed: the gang is restarted whole, unless the input is bad or retries are spent."""
        what = f"worker {pod.name} failed (exit code {pod.exit_code}): {pod.message or pod.reason or 'no message'}"
        kill = plan.stop_active()
        if pod.permanent_failure:
            return with_actions(failed(plan, "InvalidInput", what, now), kill)
        return self.restart_gang(plan, what, now)

    def restart_gang(self, plan: Plan, what: str, now: datetime) -> Result:
        """The attempt cannot finish (`what`): all its workers again as the next attempt, one of the job's retries,
        or Failed once they are spent."""
        limit = plan.job.spec.run_policy.backoff_limit
        if plan.retries_used() >= limit:
            return with_actions(failed(plan, "BackoffLimitExceeded", f"{what}; {limit} retries used", now),
                                plan.stop_active())  # fmt: skip
        restart = self.launch(plan, plan.attempt + 1, now, "GangRestart", f"{what}; restarting all workers")
        return with_actions(restart, [Delete("Pod", v.name) for v in plan.gang])

    def register(self, plan: Plan, observed: Observed, now: datetime) -> Result:
        job = plan.job
        if observed.manifest is None:
            message = observed.manifest_problem or "waiting for the trainer's manifest"
            result = Result(pending_conditions("ManifestUnavailable", message), {"phase": "Running"},
                            requeue_after=MANIFEST_RETRY)  # fmt: skip
            return result
        name = observed.model_version or model_version_name(job.spec.model_name, observed.next_version)
        actions = []
        if observed.model_version is None:
            # Claimed: two jobs of one model finishing together read the same next number (chaos found three
            # jobs registered under one version); the second one's create fails and it takes the next number.
            manifest = m.model_version(job, observed.manifest, observed.next_version, self.settings)
            actions.append(Create(manifest, claim=True))
        artifact = observed.manifest["artifact"]
        fields = {
            "phase": "Succeeded",
            "completionTime": rfc3339(now),
            "metrics": observed.manifest.get("metrics") or {},
            "artifact": {
                "uri": artifact["uri"],
                "sha256": artifact["sha256"],
                "sizeBytes": artifact.get("sizeBytes", 0),
            },
            "modelVersionRef": {"name": name},
        }
        message = f"trained in {plan.attempt} attempt(s); registered ModelVersion {name}"
        conds = [*conditions.ready("Succeeded", message), *phase_conditions("Succeeded", "Succeeded", message)]
        return with_actions(Result(conds, fields, [Event("Normal", "Succeeded", message)]), actions)


def with_actions(result: Result, actions: list[Any]) -> Result:
    result.actions.extend(actions)
    return result


def phase_conditions(active: str, reason: str, message: str) -> list[Cond]:
    """Running / Succeeded / Failed: exactly one is True once the job has started."""
    return [
        Cond(t, "True" if t == active else "False", reason, message if t == active else "")
        for t in ("Running", "Succeeded", "Failed")
    ] + [Cond("Suspended", "False", "NotSuspended")]


def pending_conditions(reason: str, message: str) -> list[Cond]:
    return [*conditions.progressing(reason, message), *phase_conditions("", reason, message)]


def running(plan: Plan, workload: dict[str, Any] | None, missing: list[Create], now: datetime) -> Result:
    views, queue = plan.gang, m.queue_name(plan.job)
    # A gate without a queue name is not Kueue's: nothing here lifts it, so it is shown like a scheduling failure.
    blocked = next((v for v in views if v.state in ("unschedulable", "waiting") or (v.state == "gated" and not queue)),
                   None)  # fmt: skip
    up, gated = sum(v.state == "running" for v in views), any(v.state == "gated" for v in views)
    fields: dict[str, Any] = {"phase": "Running" if up else "Pending"}
    if views and not plan.status.get("startTime") and not gated:
        # After a resume, or once Kueue admitted the gang: activeDeadlineSeconds counts from here.
        fields["startTime"] = rfc3339(now)
    stall = stall_in(blocked, now) if blocked is not None else None
    if blocked is not None:
        message = f"worker {blocked.name}: {blocked.reason}: {blocked.message}"
        # Still Pending either way (a fixed image or Secret lets it go on), but once only a person can end the
        # wait it is Stalled, which kstatus reads as failed instead of in progress.
        summary = conditions.stalled if stall == 0 else conditions.progressing
        conds = [*summary(blocked.reason, message), *phase_conditions("", blocked.reason, message)]
        result = Result(conds, fields, [Event("Warning", blocked.reason, message)])
    elif gated:
        # Waiting in Kueue's queue is the normal course of things, not a problem: Normal, with Kueue's reason.
        message = queued_message(m.pod_group(plan.job, plan.attempt), queue, workload)
        result = Result(pending_conditions("Queued", message), fields, [Event("Normal", "Queued", message)])
    elif up:
        message = f"attempt {plan.attempt}: {up}/{m.workers(plan.job)} worker(s) running"
        result = Result([*conditions.progressing("Running", message), *phase_conditions("Running", "Running", message)],
                        fields)  # fmt: skip
    else:
        result = Result(pending_conditions("Pending", f"attempt {plan.attempt}: waiting for worker pods"), fields)
    result.requeue_after = min(WATCH_RUNNING, seconds_to_deadline(plan, now) or WATCH_RUNNING, stall or WATCH_RUNNING)
    return with_actions(result, list(missing))


def vanished_after_admission(plan: Plan) -> tuple[str, ...]:
    """The workers of a Kueue-admitted attempt that are gone, when none of them is still terminating. Kueue deletes
    an evicted gang's pods and, as soon as none runs, releases them (retriable-in-group "false"): a fast kubelet
    lets them vanish before an eviction condition was seen. startTime is set only once Kueue admitted the attempt
    (running()), and cleared by a suspend, so a resumed or a freshly launched gang is never taken for one."""
    if not m.queue_name(plan.job) or not plan.status.get("startTime"):
        return ()
    return gone_from_launched_attempt(plan)


def lost_from_gang(plan: Plan) -> tuple[str, ...]:
    """The workers of a distributed attempt (not Kueue's: vanished_after_admission) that are gone once it was
    launched whole, when none is still terminating. torchrun's static rendezvous forms the gang once: a worker
    created again alone would wait for peers that are training, or finished, without it (bench/chaos.py saw a
    gang hang after its rank 0 was deleted). A single worker is simply created again in its attempt."""
    if m.workers(plan.job) < 2 or m.queue_name(plan.job):
        return ()
    return gone_from_launched_attempt(plan)


def gone_from_launched_attempt(plan: Plan) -> tuple[str, ...]:
    """The current attempt's worker pods that are gone, once its launch is in status and none is terminating."""
    if int(plan.status.get("attempts") or 0) != plan.attempt:
        return ()  # the attempt's launch is not in status yet: its pods were not all created, so create the rest
    if any(v.state == "terminating" for v in plan.gang):
        return ()
    present = {v.name for v in plan.gang}
    return tuple(n for r in range(m.workers(plan.job)) if (n := m.pod_name(plan.job, plan.attempt, r)) not in present)


def queued_message(group: str, queue: str, workload: dict[str, Any] | None) -> str:
    """Why Kueue has not admitted the group, in its own words (the Workload's QuotaReserved, or Admitted while
    admission checks run), when there is a Workload yet."""
    waiting = f"waiting for Kueue to admit pod group {group} (queue {queue})"
    conds = {c.get("type"): c for c in ((workload or {}).get("status") or {}).get("conditions") or []}
    why = next((c.get("message") for t in ("QuotaReserved", "Admitted")
                if (c := conds.get(t)) and c.get("status") == "False" and c.get("message")), "")  # fmt: skip
    return f"{waiting}: {why}" if why else waiting


def failed(plan: Plan, reason: str, message: str, now: datetime) -> Result:
    fields = {"phase": "Failed", "completionTime": plan.status.get("completionTime") or rfc3339(now)}
    conds = [*conditions.stalled(reason, message), *phase_conditions("Failed", reason, message)]
    return Result(conds, fields, [Event("Warning", reason, message)])


def finished(plan: Plan, now: datetime) -> Result:
    """Nothing left to do but clean up after ttlSecondsAfterFinished; conditions stay as they are."""
    ttl = plan.job.spec.run_policy.ttl_seconds_after_finished
    done = parse_time(plan.status.get("completionTime"))
    result = Result([])
    if ttl is not None and done is not None:
        left = (done + timedelta(seconds=ttl) - now).total_seconds()
        if left <= 0:
            result.actions.append(Delete("TrainingJob", plan.job.metadata["name"]))
        else:
            result.requeue_after = left
    return result


def suspended(plan: Plan) -> Result:
    message = "runPolicy.suspend is true: pods removed, set it to false to resume"
    conds = [*conditions.finished_unready("Suspended", message), Cond("Suspended", "True", "Suspended", message),
             Cond("Running", "False", "Suspended")]  # fmt: skip
    # startTime is cleared so activeDeadlineSeconds counts from the resume, as for a Kubernetes Job.
    return Result(conds, {"phase": "Suspended", "startTime": None}, [Event("Normal", "Suspended", message)])


def secret_missing(job: TrainingJob) -> Result:
    name = job.spec.output.credentials_secret_ref.name if job.spec.output.credentials_secret_ref else ""
    message = f"Secret {name!r} (spec.output.credentialsSecretRef) does not exist in this namespace"
    return Result(pending_conditions("SecretNotFound", message), {"phase": "Pending"},
                  [Event("Warning", "SecretNotFound", message)], requeue_after=WAIT_FOR_DEPENDENCY)  # fmt: skip


def seconds_to_deadline(plan: Plan, now: datetime) -> float | None:
    limit, start = plan.job.spec.run_policy.active_deadline_seconds, parse_time(plan.status.get("startTime"))
    if limit is None or start is None:
        return None
    return (start + timedelta(seconds=limit) - now).total_seconds()


def deadline_passed(plan: Plan, now: datetime) -> str:
    left = seconds_to_deadline(plan, now)
    if left is None or left > 0:
        return ""
    return f"ran longer than runPolicy.activeDeadlineSeconds ({plan.job.spec.run_policy.active_deadline_seconds}s)"
