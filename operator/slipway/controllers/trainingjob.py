"""TrainingJob controller: a gang of trainer pods per attempt, retried whole, then a ModelVersion.

State lives in status (attempts, preemptions, startTime, phase) and in the pods' labels; after a restart both
are read back, and the attempt in progress is the larger of status.attempts and the newest pod's attempt label.
With a Kueue queue name each attempt is one Kueue pod group (trainingjob_manifests.kueue_group): queued and
admitted whole, and, when Kueue evicts it, started again as a new attempt that uses up no retry.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slipway import conditions, contract
from slipway.api.modelversion import model_version_name
from slipway.api.trainingjob import TrainingJob
from slipway.clients import Clients
from slipway.conditions import Cond, parse_time, rfc3339
from slipway.config import Settings
from slipway.controllers import trainingjob_manifests as m
from slipway.controllers.base import Create, Decision, Delete, Event, Hooks, Result, Wake, invalid
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


def current_attempt(status: dict[str, Any], pods: tuple[dict[str, Any], ...]) -> tuple[int, list[PodView]]:
    """The attempt in progress (the larger of status.attempts and the newest pod's label) and its pods by name."""
    attempt = max([int(status.get("attempts") or 0), *(attempt_of(p) for p in pods)])
    return attempt, sorted((view(p) for p in pods if attempt_of(p) == attempt), key=lambda v: v.name)


Step = tuple[list[Cond], float | None]  # what a state of the decision says: conditions, when to look again


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
        attempt, gang = current_attempt(status, owned)
        if not gang or any(v.state != "succeeded" for v in gang) or len(gang) < m.workers(obj):
            if m.queue_name(obj) and any(v.state == "gated" for v in gang):
                # Only to say why Kueue holds the gang back; it names the Workload after the group.
                workload = await kube.get_optional(m.KUEUE_API_GROUP, m.KUEUE_VERSION, m.WORKLOAD_PLURAL, ns,
                                                   m.pod_group(obj, attempt))  # fmt: skip
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
        return Run(obj, observed, now, self.settings).run()


class Run(Decision[TrainingJob, Observed]):
    """One decision over a TrainingJob: the facts derived once from spec, status and pods (the attempt, its gang,
    pods of earlier attempts), then the state it is in. Each state lays its fields, Events and actions over the
    decision and says its conditions and when to look again (a Step)."""

    def __init__(self, job: TrainingJob, observed: Observed, now: datetime, settings: Settings) -> None:
        super().__init__(job, observed, now)
        self.job, self.settings = job, settings
        self.attempt, self.gang = current_attempt(self.status, observed.pods)
        self.stale = [p["metadata"]["name"] for p in observed.pods if attempt_of(p) < self.attempt]
        self.preempted_per_pods = max((preemptions_of(p) for p in observed.pods), default=0)

    def run(self) -> Result:
        phase = self.status.get("phase")
        cleanup = [Delete("Pod", n) for n in self.stale]
        if phase in ("Succeeded", "Failed") and (phase == "Failed" or self.status.get("modelVersionRef")):
            step = self.finished()
            self.actions += cleanup
        elif self.job.spec.run_policy.suspend:
            step = self.suspended()
            self.actions += [*cleanup, *self.stop_active()]
        elif self.o.secret_exists is False:
            step = self.secret_missing()
        elif deadline := self.deadline_passed():
            step = self.failed("DeadlineExceeded", deadline)
            self.actions += self.stop_active()
        else:
            step = self.progress()
            self.actions += cleanup
        return self.result(*step)

    # -- facts ----------------------------------------------------------------------------------------------

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

    def seconds_to_deadline(self) -> float | None:
        limit, start = self.job.spec.run_policy.active_deadline_seconds, parse_time(self.status.get("startTime"))
        if limit is None or start is None:
            return None
        return (start + timedelta(seconds=limit) - self.now).total_seconds()

    def deadline_passed(self) -> str:
        left = self.seconds_to_deadline()
        if left is None or left > 0:
            return ""
        return f"ran longer than runPolicy.activeDeadlineSeconds ({self.job.spec.run_policy.active_deadline_seconds}s)"

    def gone_from_launched_attempt(self) -> tuple[str, ...]:
        """The current attempt's worker pods that are gone, once its launch is in status and none is terminating."""
        if int(self.status.get("attempts") or 0) != self.attempt:
            return ()  # the attempt's launch is not in status yet: its pods were not all created, so create the rest
        if any(v.state == "terminating" for v in self.gang):
            return ()
        present = {v.name for v in self.gang}
        job = self.job
        return tuple(n for r in range(m.workers(job)) if (n := m.pod_name(job, self.attempt, r)) not in present)

    def vanished_after_admission(self) -> tuple[str, ...]:
        """The workers of a Kueue-admitted attempt that are gone, when none of them is still terminating. Kueue
        deletes an evicted gang's pods and, as soon as none runs, releases them (retriable-in-group "false"): a fast
        kubelet lets them vanish before an eviction condition was seen. startTime is set only once Kueue admitted
        the attempt (running()), and cleared by a suspend, so a resumed or a freshly launched gang is never taken
        for one."""
        if not m.queue_name(self.job) or not self.status.get("startTime"):
            return ()
        return self.gone_from_launched_attempt()

    def lost_from_gang(self) -> tuple[str, ...]:
        """The workers of a distributed attempt (not Kueue's: vanished_after_admission) that are gone once it was
        launched whole, when none is still terminating. torchrun's static rendezvous forms the gang once: a worker
        created again alone would wait for peers that are training, or finished, without it (bench/chaos.py saw a
        gang hang after its rank 0 was deleted). A single worker is simply created again in its attempt."""
        if m.workers(self.job) < 2 or m.queue_name(self.job):
            return ()
        return self.gone_from_launched_attempt()

    # -- states ---------------------------------------------------------------------------------------------

    def progress(self) -> Step:
        job = self.job
        if self.attempt == 0:
            return self.launch(1, "Launched", "launching attempt 1")
        # Before failures: the workers Kueue leaves running lose their peers and fail too, for the same reason.
        evicted = [v for v in self.gang if v.state == "evicted"]
        if evicted:
            return self.after_eviction(evicted[0])
        if vanished := self.vanished_after_admission():
            return self.after_eviction(None, vanished)
        failed_pods = [v for v in self.gang if v.state == "failed"]
        if failed_pods:
            return self.after_failure(failed_pods[0])
        if lost := self.lost_from_gang():
            what = (f"worker pod(s) {', '.join(lost)} of attempt {self.attempt} are gone (deleted, or their node "
                    "was): a running torchrun gang cannot take a new worker in")  # fmt: skip
            return self.restart_gang(what)
        if len(self.gang) == m.workers(job) and all(v.state == "succeeded" for v in self.gang):
            return self.register()
        step = self.running(self.missing_workers(self.attempt, {v.name for v in self.gang}, self.o.service_exists))
        if self.preemptions != int(self.status.get("preemptions") or 0):
            self.fields["preemptions"] = self.preemptions  # what the pods say and status lost
        return step

    def missing_workers(
        self, attempt: int, present: set[str], have_service: bool, preemptions: int | None = None
    ) -> list[Create]:
        """The attempt's worker pods not in `present`, and the headless Service a distributed job needs."""
        job, count = self.job, self.preemptions if preemptions is None else preemptions
        creates = [
            Create(m.worker_pod(job, attempt, rank, self.settings, count))
            for rank in range(m.workers(job))
            if m.pod_name(job, attempt, rank) not in present
        ]
        if m.distributed(job) and not have_service:
            creates.insert(0, Create(m.headless_service(job)))
        return creates

    def launch(
        self, attempt: int, reason: str, message: str, condition: str = "Launching", preemptions: int | None = None
    ) -> Step:
        job = self.job
        # A new attempt has no pods yet; creating its Service again is harmless (an existing one is kept).
        self.actions += self.missing_workers(attempt, set(), have_service=False, preemptions=preemptions)
        self.fields |= {"phase": "Pending", "attempts": attempt}
        # Queued by Kueue, activeDeadlineSeconds counts from the gang's admission (running() starts the clock), as a
        # Job's does from Kueue's unsuspending it: time in the queue is not the job's.
        if start := self.status.get("startTime") or (None if m.queue_name(job) else rfc3339(self.now)):
            self.fields["startTime"] = start
        self.events.append(Event("Normal", reason, message))
        return pending_conditions(
            condition, f"attempt {attempt}: creating {m.workers(job)} worker pod(s)"
        ), WATCH_RUNNING

    def after_eviction(self, pod: PodView | None, vanished: tuple[str, ...] = ()) -> Step:
        """Kueue evicted the gang (preempted it, most often) and is deleting its pods: the gang is queued again
        whole as a new attempt, a new pod group and so a new Workload, because the evicted one holds the old pods.
        Not the job's failure, so it uses up no retry (status.preemptions). Without `pod`, the eviction was not
        seen, only its result: the admitted gang's pods are gone (`vanished`)."""
        group = m.pod_group(self.job, self.attempt)
        if pod is not None:
            why = pod.reason.removeprefix(EVICTED_BY_KUEUE)
            reason = "Preempted" if why == "Preempted" else "Evicted"
            message = f"Kueue evicted pod group {group} ({why}): {pod.message or 'no message'}"
        else:
            reason = "Evicted"
            message = (f"worker pod(s) {', '.join(vanished)} of pod group {group} are gone after Kueue admitted it "
                       "(Kueue preempted or evicted the gang, or they were deleted)")  # fmt: skip
        attempt, count = self.attempt + 1, self.preemptions + 1
        step = self.launch(attempt, reason, f"{message}; queueing all workers again as attempt {attempt}",
                           condition=reason, preemptions=count)  # fmt: skip
        # The deadline counts again from the re-admission.
        self.fields |= {"preemptions": count, "startTime": None}
        self.actions += [Delete("Pod", v.name) for v in self.gang]
        return step

    def after_failure(self, pod: PodView) -> Step:
        """One worker failed: the gang is restarted whole, unless the input is bad or retries are spent."""
        what = f"worker {pod.name} failed (exit code {pod.exit_code}): {pod.message or pod.reason or 'no message'}"
        if pod.permanent_failure:
            step = self.failed("InvalidInput", what)
            self.actions += self.stop_active()
            return step
        return self.restart_gang(what)

    def restart_gang(self, what: str) -> Step:
        """The attempt cannot finish (`what`): all its workers again as the next attempt, one of the job's retries,
        or Failed once they are spent."""
        limit = self.job.spec.run_policy.backoff_limit
        if self.retries_used() >= limit:
            step = self.failed("BackoffLimitExceeded", f"{what}; {limit} retries used")
            self.actions += self.stop_active()
            return step
        step = self.launch(self.attempt + 1, "GangRestart", f"{what}; restarting all workers")
        self.actions += [Delete("Pod", v.name) for v in self.gang]
        return step

    def register(self) -> Step:
        job, seen = self.job, self.o
        if seen.manifest is None:
            self.fields["phase"] = "Running"
            return pending_conditions("ManifestUnavailable", seen.manifest_problem or "waiting for the trainer's "
                                      "manifest"), MANIFEST_RETRY  # fmt: skip
        name = seen.model_version or model_version_name(job.spec.model_name, seen.next_version)
        if seen.model_version is None:
            # Claimed: two jobs of one model finishing together read the same next number (chaos found three
            # jobs registered under one version); the second one's create fails and it takes the next number.
            manifest = m.model_version(job, seen.manifest, seen.next_version, self.settings)
            self.actions.append(Create(manifest, claim=True))
        artifact = seen.manifest["artifact"]
        self.fields |= {
            "phase": "Succeeded",
            "completionTime": rfc3339(self.now),
            "metrics": seen.manifest.get("metrics") or {},
            "artifact": {
                "uri": artifact["uri"],
                "sha256": artifact["sha256"],
                "sizeBytes": artifact.get("sizeBytes", 0),
            },
            "modelVersionRef": {"name": name},
        }
        message = f"trained in {self.attempt} attempt(s); registered ModelVersion {name}"
        self.events.append(Event("Normal", "Succeeded", message))
        return [*conditions.ready("Succeeded", message), *phase_conditions("Succeeded", "Succeeded", message)], None

    def running(self, missing: list[Create]) -> Step:
        views, queue = self.gang, m.queue_name(self.job)
        # A gate without a queue name is not Kueue's: nothing here lifts it, so it is shown like a scheduling
        # failure.
        stuck = [v for v in views if v.state in ("unschedulable", "waiting") or (v.state == "gated" and not queue)]
        blocked = stuck[0] if stuck else None
        up, gated = sum(v.state == "running" for v in views), any(v.state == "gated" for v in views)
        self.fields["phase"] = "Running" if up else "Pending"
        if views and not self.status.get("startTime") and not gated:
            # After a resume, or once Kueue admitted the gang: activeDeadlineSeconds counts from here.
            self.fields["startTime"] = rfc3339(self.now)
        stall = stall_in(blocked, self.now) if blocked is not None else None
        if blocked is not None:
            message = f"worker {blocked.name}: {blocked.reason}: {blocked.message}"
            # Still Pending either way (a fixed image or Secret lets it go on), but once only a person can end the
            # wait it is Stalled, which kstatus reads as failed instead of in progress.
            summary = conditions.stalled if stall == 0 else conditions.progressing
            conds = [*summary(blocked.reason, message), *phase_conditions("", blocked.reason, message)]
            self.events.append(Event("Warning", blocked.reason, message))
        elif gated:
            # Waiting in Kueue's queue is the normal course of things, not a problem: Normal, with Kueue's reason.
            message = queued_message(m.pod_group(self.job, self.attempt), queue, self.o.workload)
            conds = pending_conditions("Queued", message)
            self.events.append(Event("Normal", "Queued", message))
        elif up:
            message = f"attempt {self.attempt}: {up}/{m.workers(self.job)} worker(s) running"
            conds = [*conditions.progressing("Running", message), *phase_conditions("Running", "Running", message)]
        else:
            conds = pending_conditions("Pending", f"attempt {self.attempt}: waiting for worker pods")
        self.actions += missing
        return conds, min(WATCH_RUNNING, self.seconds_to_deadline() or WATCH_RUNNING, stall or WATCH_RUNNING)

    def failed(self, reason: str, message: str) -> Step:
        self.fields |= {"phase": "Failed", "completionTime": self.status.get("completionTime") or rfc3339(self.now)}
        self.events.append(Event("Warning", reason, message))
        return [*conditions.stalled(reason, message), *phase_conditions("Failed", reason, message)], None

    def finished(self) -> Step:
        """Nothing left to do but clean up after ttlSecondsAfterFinished; conditions stay as they are."""
        ttl = self.job.spec.run_policy.ttl_seconds_after_finished
        done = parse_time(self.status.get("completionTime"))
        if ttl is None or done is None:
            return [], None
        left = (done + timedelta(seconds=ttl) - self.now).total_seconds()
        if left <= 0:
            self.actions.append(Delete("TrainingJob", self.job.metadata["name"]))
            return [], None
        return [], left

    def suspended(self) -> Step:
        message = "runPolicy.suspend is true: pods removed, set it to false to resume"
        conds = [*conditions.finished_unready("Suspended", message), Cond("Suspended", "True", "Suspended", message),
                 Cond("Running", "False", "Suspended")]  # fmt: skip
        # startTime is cleared so activeDeadlineSeconds counts from the resume, as for a Kubernetes Job.
        self.fields |= {"phase": "Suspended", "startTime": None}
        self.events.append(Event("Normal", "Suspended", message))
        return conds, None

    def secret_missing(self) -> Step:
        ref = self.job.spec.output.credentials_secret_ref
        message = (
            f"Secret {ref.name if ref else ''!r} (spec.output.credentialsSecretRef) does not exist in this namespace"
        )
        self.fields["phase"] = "Pending"
        self.events.append(Event("Warning", "SecretNotFound", message))
        return pending_conditions("SecretNotFound", message), WAIT_FOR_DEPENDENCY


def phase_conditions(active: str, reason: str, message: str) -> list[Cond]:
    """Running / Succeeded / Failed: exactly one is True once the job has started."""
    return [
        Cond(t, "True" if t == active else "False", reason, message if t == active else "")
        for t in ("Running", "Succeeded", "Failed")
    ] + [Cond("Suspended", "False", "NotSuspended")]


def pending_conditions(reason: str, message: str) -> list[Cond]:
    return [*conditions.progressing(reason, message), *phase_conditions("", reason, message)]


def queued_message(group: str, queue: str, workload: dict[str, Any] | None) -> str:
    """Why Kueue has not admitted the group, in its own words (the Workload's QuotaReserved, or Admitted while
    admission checks run), when there is a Workload yet."""
    waiting = f"waiting for Kueue to admit pod group {group} (queue {queue})"
    conds = {c.get("type"): c for c in ((workload or {}).get("status") or {}).get("conditions") or []}
    why = next((c.get("message") for t in ("QuotaReserved", "Admitted")
                if (c := conds.get(t)) and c.get("status") == "False" and c.get("message")), "")  # fmt: skip
    return f"{waiting}: {why}" if why else waiting
