"""The executor's loop: it plays the kubelet for slipway's runtime pods.

One thread (this loop) owns all state and makes every API write and process start; the pod
watch and the process waiters only put items on its queue. Each pod is handled on its own
(`_guarded`), so a pod that breaks something is logged and the others carry on; API writes
that fail because the API is away are retried from the timer tick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway_dev.kube import Api, ApiError, Unavailable

from . import containers, envres, network, podnet, probes, sources, status
from .containers import Config, pod_ref
from .probes import Prober, ProbeResult
from .procs import Process, Records, read_capped, read_tail
from .status import RUNNING, TERMINATED, WAITING, ContainerRun
from .watch import PodEvent, Relist, Watcher

log = logging.getLogger("localexec")
Obj = dict[str, Any]

COMPONENT = "localexec"
IMAGE_PULL_BACKOFF = (10.0, 300.0)  # the kubelet's image back-off: 10s doubling to 5 min
CONFIG_RETRY = (1.0, 10.0)  # a missing Secret is picked up soon after it appears
CRASH_BACKOFF = (1.0, 60.0)  # shorter than the kubelet's 10s..5min: a dev loop, not a fleet
CRASH_RESET_AFTER = 60.0  # a run this long resets the crash back-off
LOST_REASON = "ContainerStatusUnknown"
LOST_MESSAGE = "The container could not be located: the local executor restarted and its process was lost"
MIN_STOP_GRACE = 2.0  # the kubelet's minimumGracePeriodInSeconds between SIGTERM and SIGKILL


@dataclass(frozen=True)
class Exited:
    uid: str
    container: str
    process: Process
    returncode: int


@dataclass(frozen=True)
class HookDone:
    """A container's preStop hook returned (message: why it failed, "" when it did not)."""

    uid: str
    container: str
    pid: int
    message: str


@dataclass
class PodRecord:
    uid: str
    pod: Obj
    runs: dict[str, ContainerRun]
    start_time: str
    procs: dict[str, Process] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)
    backoff: dict[tuple[str, str], float] = field(default_factory=dict)  # (container, kind) -> next delay
    started_mono: dict[str, float] = field(default_factory=dict)
    terminating: bool = False
    stopping: dict[str, float] = field(default_factory=dict)  # container -> when its preStop hook gives way to SIGTERM
    kill_at: dict[str, float] = field(default_factory=dict)  # container -> when it gets SIGKILL (SIGTERM sent)
    vanished: bool = False
    delete_pending: bool = False
    deleted: bool = False
    sent: str | None = None  # the last status written, to skip writes that change nothing
    init: list[str] = field(default_factory=list)  # init containers, in order (their runs are in `runs`)
    pod_ip: str | None = None  # set once its network namespace exists (the kubelet's sandbox)
    dirty: bool = False  # the last status write failed: retried from the tick
    last_event: dict[str, tuple[str, str]] = field(default_factory=dict)


class Executor:
    def __init__(self, api: Api, config: Config, base_env: Mapping[str, str] | None = None) -> None:
        self.api, self.config, self.base_env = api, config, base_env
        self.queue: queue.Queue[Any] = queue.Queue()
        self.cache: dict[str, Obj] = {}  # every labelled pod, by uid
        self.records: dict[str, PodRecord] = {}  # pods bound to a node we play, by uid
        self.net = podnet.PodNetworks(
            config.root, podnet.PodRange.parse(config.pod_range), service_cidr=config.service_cidr
        )
        self.prober = Prober(self.queue.put)
        self.proc_records = Records(config.run)
        self.watcher = Watcher(api, self.queue)
        self.stopping = threading.Event()
        self.ready = threading.Event()  # set after the first list was handled

    # ---- loop -------------------------------------------------------------------------

    def run(self) -> None:
        killed = self.proc_records.kill_leftovers()
        if killed:
            log.info("killed %d process group(s) left by an earlier executor: %s", len(killed), killed)
        removed = self.net.start()
        if removed:
            log.info("removed %d network namespace(s) left by an earlier executor: %s", len(removed), removed)
        self.watcher.start()
        while not self.stopping.is_set():
            timeout = max(0.0, min(1.0, self._next_deadline() - time.monotonic()))
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None:
                self._guarded("event", self._handle, item)
            self._guarded("tick", self._tick)
        self._shutdown()

    def stop(self) -> None:
        self.stopping.set()
        self.queue.put(None)  # wake the loop

    def _guarded(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # one bad pod or event must not take the executor down
            log.exception("error handling %s; carrying on", what)

    def _handle(self, item: Any) -> None:
        if isinstance(item, Relist):
            listed = {p["metadata"]["uid"]: p for p in item.pods}
            for uid in [u for u in self.cache if u not in listed]:
                self._guarded(uid, self._gone, uid)
            self.cache = listed
            for uid in list(listed):
                self._guarded(uid, self._sync, uid)
            if not self.ready.is_set():
                self.ready.set()
                (self.config.root / "ready").write_text(f"{os.getpid()}\n")
                log.info("watching pods; %d of ours listed", sum(self._ours(p) for p in listed.values()))
        elif isinstance(item, PodEvent):
            uid = item.pod["metadata"]["uid"]
            if item.type == "DELETED":
                self.cache.pop(uid, None)
                self._gone(uid)
            else:
                self.cache[uid] = item.pod
                self._sync(uid)
        elif isinstance(item, Exited):
            self._exited(item)
        elif isinstance(item, ProbeResult):
            self._probed(item)
        elif isinstance(item, HookDone):
            self._hook_done(item)

    def _next_deadline(self) -> float:
        deadlines = [time.monotonic() + 1.0]
        for rec in self.records.values():
            deadlines += [*rec.retry_at.values(), *rec.stopping.values(), *rec.kill_at.values()]
        probe_at = self.prober.next_deadline()
        return min(deadlines) if probe_at is None else min(*deadlines, probe_at)

    def _tick(self) -> None:
        now = time.monotonic()
        for rec in list(self.records.values()):
            for name, at in list(rec.stopping.items()):
                if now >= at:  # its preStop hook ran out of time
                    self._sigterm(rec, name, 0.0)
            for name, at in list(rec.kill_at.items()):
                if now >= at:
                    del rec.kill_at[name]
                    if name in rec.procs:
                        rec.procs[name].signal(signal.SIGKILL)
            if rec.delete_pending:
                self._guarded(rec.uid, self._delete, rec)
            if rec.dirty:
                self._guarded(rec.uid, self._publish, rec)
            due = [name for name, t in rec.retry_at.items() if t <= now]
            if due:
                for name in due:
                    del rec.retry_at[name]
                self._guarded(rec.uid, self._sync, rec.uid)
        self.prober.run_due(now)
        # IPs handed out for DNS names of pods that are gone (never run by us, or dropped).
        for uid in self.net.allocator.retain(set(self.cache) | set(self.records)):
            self.net.remove(uid, release=True)

    def _shutdown(self) -> None:
        """Stop every process (as a node going down would); pod statuses are left as they
        are: the next executor finds the pods it can no longer account for (see _adopt)."""
        procs = [p for rec in self.records.values() for p in rec.procs.values()]
        for proc in procs:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + min(self.config.max_grace, 3.0)
        while any(p.returncode is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for proc in procs:
            proc.signal(signal.SIGKILL)
        self.prober.shutdown()
        self.watcher.stopping.set()
        try:
            self.net.stop()
        except Exception:  # the next executor removes what is left
            log.exception("removing the pod networks failed")

    # ---- one pod ----------------------------------------------------------------------

    def _ours(self, pod: Obj) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        return bool(node) and (not self.config.nodes or node in self.config.nodes)

    def _sync(self, uid: str) -> None:
        pod = self.cache.get(uid)
        if pod is None or not self._ours(pod):
            return  # never an unscheduled pod: the scheduler has not picked this "node" yet
        rec = self.records.get(uid)
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if rec is None:
            if deleting:  # nothing of ours runs for it (e.g. it finished before we started)
                self._delete_pod(pod)
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return  # finished before this executor saw it: its status is final
            rec = self.records[uid] = self._adopt(pod)
        rec.pod = pod
        if deleting:
            self._terminate(rec)
            return
        # Init containers one at a time, in order; the others once all of them succeeded.
        pending = [n for n in rec.init if not _succeeded(rec.runs[n])]
        due = pending[:1] if pending else [n for n in rec.runs if n not in rec.init]
        for name in due:
            run = rec.runs[name]
            # A container with a retry pending waits for it (the tick clears it when due).
            if run.state == WAITING and name not in rec.procs and name not in rec.retry_at:
                self._start(rec, name)
        self._publish(rec)

    def _adopt(self, pod: Obj) -> PodRecord:
        """A record for a pod first seen by this executor. A container the pod's status says
        has started but that we have no process for was lost with an earlier executor, as
        containers are lost when a node reboots: the kubelet then reports it terminated with
        ContainerStatusUnknown (exit 137); restartPolicy Never makes the pod Failed, others
        restart it."""
        previous = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
        restart_policy = pod["spec"].get("restartPolicy", "Always")
        runs: dict[str, ContainerRun] = {}
        init = [c["name"] for c in pod["spec"].get("initContainers") or []]
        old_init = {s["name"]: s for s in (pod.get("status") or {}).get("initContainerStatuses") or []}
        had_started = any(
            (s.get("state") or {}).get("running") or (s.get("lastState") or {}).get("terminated")
            for s in previous.values()
        )
        for name in init:
            run = runs[name] = ContainerRun(name, _spec(pod, name).get("image", ""))
            old = old_init.get(name) or {}
            run.restart_count = int(old.get("restartCount") or 0)
            done = (old.get("state") or {}).get("terminated") or {}
            if restart_policy == "Never" and had_started and done.get("exitCode") == 0:
                # Nothing will run in this pod again: its init containers stay done.
                run.state, run.exit_code, run.reason = TERMINATED, 0, done.get("reason", "Completed")
                run.started_at, run.finished_at = done.get("startedAt"), done.get("finishedAt")
            # Otherwise their sandbox is gone with the executor, as after a node reboot: they run again.
        for c in pod["spec"]["containers"]:
            run = ContainerRun(c["name"], c.get("image", ""), reason="PodInitializing" if init else "ContainerCreating")
            old = previous.get(c["name"]) or {}
            run.restart_count = int(old.get("restartCount") or 0)
            started = (old.get("state") or {}).get("running", {}).get("startedAt")
            before = (old.get("lastState") or {}).get("terminated")
            if before and not started:  # waiting to restart (CrashLoopBackOff): still a restart
                run.last_terminated, run.exit_code = before, before.get("exitCode", 0)
            if started:
                run.exit_code, run.reason, run.message = 137, LOST_REASON, LOST_MESSAGE
                run.started_at, run.finished_at = started, status.now()
                if restart_policy == "Never":
                    run.state = TERMINATED
                else:
                    run.last_terminated, run.reason, run.message = run.terminated_state(), "ContainerCreating", ""
            runs[c["name"]] = run
        start_time = (pod.get("status") or {}).get("startTime") or status.now()
        return PodRecord(pod["metadata"]["uid"], pod, runs, start_time, init=init)

    def _start(self, rec: PodRecord, name: str) -> None:
        pod, run = rec.pod, rec.runs[name]
        container = _spec(pod, name)
        if name in rec.init and container.get("restartPolicy") == "Always":
            message = "native sidecars (init containers with restartPolicy Always) are not supported by localexec"
            self._waiting(rec, name, "CreateContainerConfigError", message)
            return
        if not self._sandbox(rec, name):
            return
        assert rec.pod_ip is not None
        api_sources = sources.ApiSources(self.api)
        services: dict[tuple[str, str], Obj | None] = {}  # asked once per container start

        def service(ns: str, svc: str) -> Obj | None:
            if (ns, svc) not in services:
                try:
                    services[(ns, svc)] = self.api.read(f"/api/v1/namespaces/{ns}/services/{svc}")
                except ApiError as err:
                    raise envres.ConfigError(str(err)) from None
            return services[(ns, svc)]

        resolver = network.Resolver(self.cache.values(), service, self._ip_of)
        try:
            launch = containers.prepare(
                self.config, pod, container, api_sources, resolver, rec.pod_ip, self.net.path(rec.pod_ip), self.base_env
            )
        except containers.ImageUnavailable as err:
            self._image_unavailable(rec, name, str(err))
            return
        except envres.ConfigError as err:
            self._waiting(rec, name, "CreateContainerConfigError", str(err))
            self._retry(rec, name, "config", CONFIG_RETRY)
            return
        for source, _, _ in launch.mounts:  # the volume's dir, or its subPath in it (the kubelet makes both)
            Path(source).mkdir(parents=True, exist_ok=True)
        containers.termination_path(self.config, pod, name).unlink(missing_ok=True)
        (launch.cwd / "tmp").mkdir(parents=True, exist_ok=True)
        started = status.now()
        try:
            proc = Process(launch, lambda p, code: self.queue.put(Exited(rec.uid, name, p, code)))
        except OSError as err:  # e.g. the executable does not exist: the runtime's StartError
            run.state, run.reason, run.message = TERMINATED, "StartError", f"failed to start container process: {err}"
            run.exit_code, run.started_at, run.finished_at = 128, started, status.now()
            self._event(rec, name, "Warning", "Failed", run.message)
            self._after_exit(rec, name)
            return
        if run.exit_code is not None:  # a restart
            run.restart_count += 1
        run.state, run.reason, run.message, run.exit_code = RUNNING, "", "", None
        run.pid, run.started_at, run.finished_at = proc.pid, started, None
        rec.procs[name] = proc
        rec.started_mono[name] = time.monotonic()
        run.probe_ready = probes.readiness(container, rec.pod_ip) is None
        startup = probes.probe_spec(container, probes.STARTUP, rec.pod_ip)
        run.startup_done = startup is None
        if startup is not None:  # readiness and liveness wait for it (the kubelet's `started`)
            self.prober.watch(rec.uid, name, proc.pid, startup, time.monotonic(), probes.STARTUP)
        else:
            self._watch_started(rec, name, proc.pid)
        self.proc_records.add(f"{rec.uid}_{name}", proc.pid)
        # The spec's command, not the expanded argv: `$(VAR)` may have pulled in a secret.
        log.info("%s/%s started, pid %d: %s", pod_ref(pod), name, proc.pid, _spec_command(container))
        self._event(rec, name, "Normal", "Started", f"Started container {name} (pid {proc.pid})")

    def _waiting(self, rec: PodRecord, name: str, reason: str, message: str) -> None:
        run = rec.runs[name]
        run.state, run.reason, run.message = WAITING, reason, message
        self._event(rec, name, "Warning", "Failed", f"Error: {message}")

    def _retry(self, rec: PodRecord, name: str, kind: str, bounds: tuple[float, float], reset: bool = False) -> float:
        """Schedule the next start of a container after a back-off of `kind` that doubles
        from bounds[0] to bounds[1] (from the start again when `reset`)."""
        delay = bounds[0] if reset else rec.backoff.get((name, kind), bounds[0])
        rec.backoff[(name, kind)] = min(delay * 2, bounds[1])
        rec.retry_at[name] = time.monotonic() + delay
        return delay

    def _image_unavailable(self, rec: PodRecord, name: str, message: str) -> None:
        """ErrImagePull for a moment, then ImagePullBackOff until the back-off expires and
        the "pull" is tried again, as the kubelet cycles through them."""
        run = rec.runs[name]
        if run.reason == "ErrImagePull":
            self._waiting(rec, name, "ImagePullBackOff", f'Back-off pulling image "{run.image}": {message}')
            self._retry(rec, name, "image", IMAGE_PULL_BACKOFF)
        else:
            self._waiting(rec, name, "ErrImagePull", message)
            rec.retry_at[name] = time.monotonic() + 1.0

    def _exited(self, item: Exited) -> None:
        rec = self.records.get(item.uid)
        self.proc_records.remove(f"{item.uid}_{item.container}")
        if rec is None or rec.procs.get(item.container) is not item.process:
            return
        del rec.procs[item.container]
        rec.stopping.pop(item.container, None)
        rec.kill_at.pop(item.container, None)
        self.prober.forget(rec.uid, item.container)
        run = rec.runs[item.container]
        run.probe_ready = run.startup_done = True  # only a running container has probes
        code = status.exit_code(item.returncode)
        container = _spec(rec.pod, item.container)
        text = read_capped(containers.termination_path(self.config, rec.pod, item.container), status.MAX_MESSAGE_BYTES)
        tail = read_tail(item.process.log, item.process.log_offset, 64 * 1024)
        policy = container.get("terminationMessagePolicy")
        run.state, run.exit_code, run.finished_at = TERMINATED, code, status.now()
        run.reason, run.message = status.exit_reason(code), status.termination_message(text, tail, policy, code)
        log.info("%s/%s exited with %d", pod_ref(rec.pod), item.container, code)
        self._after_exit(rec, item.container)

    def _after_exit(self, rec: PodRecord, name: str) -> None:
        """Restart the container if its pod's restartPolicy says so, with a back-off; then
        report, and finish a deletion or a vanished pod's clean-up."""
        run = rec.runs[name]
        policy = rec.pod["spec"].get("restartPolicy", "Always")
        restart = policy == "Always" or (policy == "OnFailure" and run.exit_code != 0)
        if name in rec.init:  # an init container runs again only when it failed
            restart = policy != "Never" and run.exit_code != 0
        if restart and not (rec.terminating or rec.vanished):
            ran = time.monotonic() - rec.started_mono.get(name, time.monotonic())
            delay = self._retry(rec, name, "crash", CRASH_BACKOFF, reset=ran >= CRASH_RESET_AFTER)
            run.last_terminated = run.terminated_state()
            ref = pod_ref(rec.pod).replace("/", "_")
            run.state, run.reason = WAITING, "CrashLoopBackOff"
            run.message = f"back-off {delay:.0f}s restarting failed container={name} pod={ref}"
            self._event(rec, name, "Warning", "BackOff", "Back-off restarting failed container")
        if rec.vanished:
            self._drop_if_done(rec)
            return
        if name in rec.init and _succeeded(run) and not rec.terminating:
            self._sync(rec.uid)  # the next init container, or the pod's containers
            return
        self._publish(rec)
        if rec.terminating:
            self._terminate(rec)
        elif not rec.procs and self._phase(rec) in ("Succeeded", "Failed"):
            self.net.remove(rec.uid, release=False)  # nothing will run in it again; the IP stays reported

    # ---- deletion ---------------------------------------------------------------------

    def _terminate(self, rec: PodRecord) -> None:
        """The pod is being deleted: SIGTERM, SIGKILL after its grace period (capped), and
        once nothing runs, the final status and the deletion with grace 0 (the kubelet's
        "the pod is gone from the node")."""
        if not rec.terminating:
            rec.terminating = True
            rec.retry_at.clear()
            for name in rec.procs:
                self._event(rec, name, "Normal", "Killing", f"Stopping container {name}")
            self._stop_all(rec)
        if rec.procs or rec.deleted:
            return
        self._publish(rec)
        self._delete(rec)

    def _grace(self, rec: PodRecord, probe_grace: Any = None) -> float:
        """The grace period to stop the pod's containers with: the deletion's, else the
        (probe's, for a probe's kill) terminationGracePeriodSeconds, capped at max_grace."""
        meta, spec = rec.pod["metadata"], rec.pod.get("spec") or {}
        grace = meta.get("deletionGracePeriodSeconds") if rec.terminating or rec.vanished else None
        if grace is None:
            grace = probe_grace if probe_grace is not None else spec.get("terminationGracePeriodSeconds", 30)
        return min(float(grace), self.config.max_grace)

    def _stop_all(self, rec: PodRecord) -> None:
        grace = self._grace(rec)
        for name in list(rec.procs):
            self._stop(rec, name, grace)

    def _stop(self, rec: PodRecord, name: str, grace: float) -> None:
        """Stop a container as the kubelet's killContainer does: its preStop hook first (on a
        thread, for at most the grace period), then SIGTERM, then SIGKILL when the rest of
        the grace period (at least MIN_STOP_GRACE, capped at max_grace) is over."""
        proc = rec.procs.get(name)
        if proc is None or name in rec.stopping or name in rec.kill_at:
            return  # already on its way out
        hook = probes.pre_stop(_spec(rec.pod, name), rec.pod_ip or "127.0.0.1")
        if hook is None or grace <= 0:
            self._sigterm(rec, name, grace)
            return
        deadline = time.monotonic() + grace
        rec.stopping[name] = deadline
        uid, pid = rec.uid, proc.pid

        def run() -> None:
            try:
                message = probes.run_hook(hook, grace)
            except Exception as err:  # noqa: BLE001 -- a hook that breaks has failed; the stop goes on
                message = f"hook error: {err}"
            self.queue.put(HookDone(uid, name, pid, message))

        threading.Thread(target=run, name=f"prestop-{pid}", daemon=True).start()

    def _hook_done(self, done: HookDone) -> None:
        rec = self.records.get(done.uid)
        if rec is None or done.container not in rec.stopping:
            return  # the hook ran out of time (SIGTERM already sent) or the container exited
        proc = rec.procs.get(done.container)
        if proc is None or proc.pid != done.pid:
            return
        if done.message:
            message = f"PreStopHook failed: {done.message}"
            self._event(rec, done.container, "Warning", "FailedPreStopHook", message)
        self._sigterm(rec, done.container, rec.stopping[done.container] - time.monotonic())

    def _sigterm(self, rec: PodRecord, name: str, remaining: float) -> None:
        rec.stopping.pop(name, None)
        proc = rec.procs.get(name)
        if proc is None:
            return
        proc.signal(signal.SIGTERM)
        grace = max(remaining, min(MIN_STOP_GRACE, self.config.max_grace))
        rec.kill_at[name] = time.monotonic() + grace

    def _delete(self, rec: PodRecord) -> None:
        rec.deleted = self._delete_pod(rec.pod)
        rec.delete_pending = not rec.deleted

    def _delete_pod(self, pod: Obj) -> bool:
        """DELETE with grace 0 and the uid as precondition; False when the API is away."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}"
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}
        try:
            self.api.call("DELETE", path, {**options, "preconditions": {"uid": meta["uid"]}})
        except Unavailable:
            return False
        except ApiError as err:
            if err.status not in (404, 409):  # gone already / a new pod of the same name
                raise
        log.info("%s deleted", pod_ref(pod))
        return True

    def _gone(self, uid: str) -> None:
        """The pod left the API (deleted by us, forced, or its namespace went): nothing to
        report any more, only processes to stop."""
        rec = self.records.get(uid)
        if rec is None:
            return
        rec.vanished, rec.dirty, rec.delete_pending = True, False, False
        rec.retry_at.clear()
        self._stop_all(rec)
        self._drop_if_done(rec)

    def _drop_if_done(self, rec: PodRecord) -> None:
        if rec.procs:
            return
        self.records.pop(rec.uid, None)
        self.prober.forget(rec.uid)
        self.net.remove(rec.uid, release=True)
        shutil.rmtree(containers.pod_dir(self.config, rec.pod), ignore_errors=True)

    # ---- network and probes -----------------------------------------------------------

    def _sandbox(self, rec: PodRecord, name: str) -> bool:
        """The pod's network namespace and IP, made before its first container (as the
        kubelet makes the pod sandbox before pulling images); False, with the container
        waiting and a retry, when it cannot be made."""
        if rec.pod_ip is not None and self.net.path(rec.pod_ip).exists():
            return True
        preferred = (rec.pod.get("status") or {}).get("podIP")
        try:
            rec.pod_ip = self.net.ensure(rec.uid, podnet.own_ports(rec.pod), preferred)
        except podnet.NetworkError as err:
            message = f"failed to create pod sandbox: {err}"
            run = rec.runs[name]
            run.state, run.reason, run.message = WAITING, "ContainerCreating", message
            if rec.last_event.get(name) != ("FailedCreatePodSandBox", message):
                rec.last_event[name] = ("FailedCreatePodSandBox", message)
                event = sources.event(rec.pod, name, "Warning", "FailedCreatePodSandBox", message, COMPONENT)
                with contextlib.suppress(ApiError):
                    self.api.call("POST", f"/api/v1/namespaces/{event['metadata']['namespace']}/events", event)
            log.warning("%s: %s", pod_ref(rec.pod), message)
            self._retry(rec, name, "sandbox", CONFIG_RETRY)
            return False
        return True

    def _ip_of(self, pod: Obj) -> str | None:
        """A pod's IP for DNS names that point at it: allocated now if it has none yet (a
        gang's rank 0 may start after rank 1 resolved its name)."""
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        uid = pod["metadata"]["uid"]
        rec = self.records.get(uid)
        if rec is not None and rec.pod_ip is not None:
            return rec.pod_ip
        try:
            return self.net.allocate(uid, (pod.get("status") or {}).get("podIP"))
        except podnet.NetworkError:
            return None

    def _phase(self, rec: PodRecord) -> str:
        runs = [r for n, r in rec.runs.items() if n not in rec.init]
        return status.pod_phase(runs, rec.pod["spec"].get("restartPolicy", "Always"), [rec.runs[n] for n in rec.init])

    def _watch_started(self, rec: PodRecord, name: str, pid: int) -> None:
        """Readiness and liveness probes of a container that has started (past its startup
        probe, if it has one)."""
        container, now = _spec(rec.pod, name), time.monotonic()
        for kind in (probes.READINESS, probes.LIVENESS):
            spec = probes.probe_spec(container, kind, rec.pod_ip or "127.0.0.1")
            if spec is not None:
                self.prober.watch(rec.uid, name, pid, spec, now, kind)

    def _probed(self, result: ProbeResult) -> None:
        rec = self.records.get(result.uid)
        state = self.prober.apply(result, time.monotonic())
        if rec is None or state is None:
            return  # about a run that has ended since
        name, kind = result.container, result.kind
        if not result.ok:  # the kubelet's event (not repeated while the message holds)
            self._event(rec, name, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {result.message}")
        run = rec.runs[name]
        if kind == probes.READINESS:
            if run.probe_ready != state.ready:
                run.probe_ready = state.ready
                self._publish(rec)
            return
        if kind == probes.STARTUP and result.ok and state.ready:
            self.prober.forget(rec.uid, name, probes.STARTUP)
            run.startup_done = True
            self._watch_started(rec, name, result.pid)
            self._publish(rec)
            return
        if not result.ok and state.failures >= state.spec.failure_threshold and not rec.terminating:
            # The kubelet kills the container (its preStop hook included) and restarts it as
            # the restartPolicy says; the probe's terminationGracePeriodSeconds, if set, wins.
            self.prober.forget(rec.uid, name)
            message = f"Container {name} failed {kind} probe, will be restarted"
            self._event(rec, name, "Normal", "Killing", message)
            probe = _spec(rec.pod, name).get(probes.PROBE_FIELDS[kind]) or {}
            self._stop(rec, name, self._grace(rec, probe.get("terminationGracePeriodSeconds")))

    # ---- API writes -------------------------------------------------------------------

    def _publish(self, rec: PodRecord) -> None:
        if rec.vanished:
            return
        runs = [r for n, r in rec.runs.items() if n not in rec.init]
        init_runs = [rec.runs[n] for n in rec.init]
        new = status.pod_status(rec.pod, runs, rec.start_time, rec.pod_ip, init_runs)
        fingerprint = _fingerprint(new)
        if fingerprint == rec.sent and not rec.dirty:
            return
        meta = rec.pod["metadata"]
        path = f"/api/v1/namespaces/{meta.get('namespace', 'default')}/pods/{meta['name']}/status"
        body = {"metadata": {"uid": rec.uid}, "status": new}  # the uid makes it a precondition
        try:
            updated = self.api.call("PATCH", path, body, "application/strategic-merge-patch+json")
        except Unavailable:
            rec.dirty = True
            return
        except ApiError as err:
            rec.dirty = False
            if err.status in (404, 409):
                self._gone(rec.uid)
                return
            rec.sent = fingerprint  # a status the API refuses would be refused again
            raise
        rec.dirty, rec.sent = False, fingerprint
        if isinstance(updated, dict) and updated.get("metadata", {}).get("uid") == rec.uid:
            rec.pod = self.cache[rec.uid] = updated

    def _event(self, rec: PodRecord, container: str, kind: str, reason: str, message: str) -> None:
        """A core/v1 Event like the kubelet's, for `kubectl describe pod`; best effort, and
        not repeated while the same (reason, message) holds for the container."""
        if rec.last_event.get(container) == (reason, message):
            return
        rec.last_event[container] = (reason, message)
        event = sources.event(rec.pod, container, kind, reason, message, COMPONENT)
        ns = event["metadata"]["namespace"]
        try:
            self.api.call("POST", f"/api/v1/namespaces/{ns}/events", event)
        except ApiError as err:
            log.debug("event %s for %s not recorded: %s", reason, pod_ref(rec.pod), err)


def _spec(pod: Obj, name: str) -> Obj:
    """A container's spec, init containers included ({} when the pod has no such one)."""
    spec = pod.get("spec") or {}
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        if c.get("name") == name:
            return dict(c)
    return {}


def _succeeded(run: ContainerRun) -> bool:
    return run.state == TERMINATED and run.exit_code == 0


def _fingerprint(pod_status: Obj) -> str:
    # lastTransitionTime depends on what the cached pod said last; it alone is no change.
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in pod_status["conditions"]]
    return json.dumps({**pod_status, "conditions": conditions}, sort_keys=True)


def _spec_command(container: Obj) -> str:
    return " ".join([*(container.get("command") or ["<entrypoint>"]), *(container.get("args") or [])])[:300]
