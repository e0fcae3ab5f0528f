"""How the executor stops and probes a running pod's containers (slipway_dev/localexec/executor.py):
preStop hooks before SIGTERM, SIGKILL after the grace period, startup and liveness probes
that kill the container. Processes are stand-ins that record the signals they get; the
preStop hook reaches a real HTTP server in the test."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from slipway_dev.kube import Api
from slipway_dev.localexec import probes
from slipway_dev.localexec.containers import Config
from slipway_dev.localexec.executor import Executor, HookDone, PodRecord
from slipway_dev.localexec.probes import ProbeResult
from slipway_dev.localexec.status import RUNNING, container_status

from tests.unit.http_server import QuietHandler, serving

LOG: list[tuple[float, str]] = []  # (when, what): the hook's request and the signals, in order


class FakeProcess:
    def __init__(self, name: str, pid: int) -> None:
        self.name, self.pid = name, pid
        self.returncode: int | None = None
        self.signals: list[signal.Signals] = []

    def signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig)
        LOG.append((time.monotonic(), f"{self.name} {sig.name}"))


class Drain(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float) -> None:
        super().__init__(("127.0.0.1", 0), DrainHandler)
        self.delay = delay


class DrainHandler(QuietHandler):
    server: Drain

    def do_GET(self) -> None:
        LOG.append((time.monotonic(), f"GET {self.path} {self.headers.get('User-Agent')}"))
        time.sleep(self.server.delay)  # the queue-proxy's /wait-for-drain blocks while it drains
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def drain() -> Iterator[Drain]:
    with serving(Drain(delay=0.3)) as srv:
        yield srv


class QuietExecutor(Executor):
    """No API to write events to; the events are kept."""

    def __init__(self, config: Config) -> None:
        super().__init__(Api("https://127.0.0.1:1", None), config)
        self.events: list[tuple[str, str, str]] = []

    def _event(self, rec: PodRecord, container: str, kind: str, reason: str, message: str) -> None:
        self.events.append((container, reason, message))


def knative_pod(drain_port: int, **user: Any) -> dict[str, Any]:
    """A revision pod's shape as far as stopping goes (deploy.go:101-112,302: the preStop
    hook, terminationGracePeriodSeconds = the revision's timeoutSeconds)."""
    pre_stop = {"httpGet": {"port": drain_port, "path": "/wait-for-drain"}}
    return {
        "metadata": {"name": "hello-00001-deployment-abc", "namespace": "default", "uid": "uid-kn-0001"},
        "spec": {
            "nodeName": "cpu-0",
            "terminationGracePeriodSeconds": 300,
            "containers": [
                {
                    "name": "user-container",
                    "image": "ghcr.io/x/predictor:1",
                    "lifecycle": {"preStop": pre_stop},
                    **user,
                },
                {"name": "queue-proxy", "image": "gcr.io/knative-releases/knative.dev/serving/cmd/queue:v1.21.1"},
            ],
        },
    }


def running(tmp_path: Path, pod: dict[str, Any], max_grace: float = 5.0) -> tuple[QuietExecutor, PodRecord]:
    cfg = Config(root=tmp_path / "executor", python="/venv/bin/python", repo_root=tmp_path, max_grace=max_grace)
    executor = QuietExecutor(cfg)
    rec = executor.records[pod["metadata"]["uid"]] = executor._adopt(pod)
    rec.pod_ip = "127.0.0.1"  # the test's server stands in for the queue-proxy at the pod IP
    for pid, c in enumerate(pod["spec"]["containers"], start=100):
        rec.procs[c["name"]] = FakeProcess(c["name"], pid)
        rec.runs[c["name"]].state, rec.runs[c["name"]].pid = RUNNING, pid
    return executor, rec


def next_item(executor: Executor, kind: type, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = executor.queue.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, kind):
            return item
    raise AssertionError(f"no {kind.__name__} within {timeout}s")


def test_pre_stop_hook_runs_before_sigterm_and_sigkill_follows_the_grace(tmp_path: Path, drain: Drain) -> None:
    LOG.clear()
    executor, rec = running(tmp_path, knative_pod(drain.server_address[1]), max_grace=10.0)
    t0 = time.monotonic()
    executor._stop_all(rec)
    t1 = time.monotonic()
    # The queue-proxy has no hook: SIGTERM at once (it starts draining); the user container
    # waits for its hook.
    assert rec.procs["queue-proxy"].signals == [signal.SIGTERM]
    assert rec.procs["user-container"].signals == []
    done = next_item(executor, HookDone)
    assert done == HookDone("uid-kn-0001", "user-container", 100, "")
    # The grace period (300 s, capped at max_grace) counts from the start of the hook.
    hook_deadline = rec.stopping["user-container"]
    assert t0 + 10.0 <= hook_deadline <= t1 + 10.0
    h0 = time.monotonic()
    executor._handle(done)
    h1 = time.monotonic()
    assert rec.procs["user-container"].signals == [signal.SIGTERM]
    # The containers are stopped in parallel, as the kubelet does: the queue-proxy's SIGTERM
    # and the hook's request in either order, the user container's SIGTERM after both.
    what = [w for _, w in LOG]
    assert sorted(what[:2]) == ["GET /wait-for-drain kube-lifecycle/" + probes.KUBE_VERSION, "queue-proxy SIGTERM"]
    assert what[2:] == ["user-container SIGTERM"]
    # SIGKILL once the grace period is over: the queue-proxy's counted from its SIGTERM, the
    # user container's from the start of its hook (the hook's 0.3 s are not added on top;
    # whatever _handle itself took may be, as the executor measures the rest from its clock).
    assert t0 + 10.0 <= rec.kill_at["queue-proxy"] <= t1 + 10.0
    assert hook_deadline <= rec.kill_at["user-container"] <= hook_deadline + (h1 - h0)
    executor._tick()
    assert rec.procs["user-container"].signals == [signal.SIGTERM]  # not yet
    rec.kill_at = {name: time.monotonic() - 0.01 for name in rec.kill_at}
    executor._tick()
    assert rec.procs["user-container"].signals == [signal.SIGTERM, signal.SIGKILL]
    assert rec.procs["queue-proxy"].signals == [signal.SIGTERM, signal.SIGKILL]


def test_sigkill_comes_at_least_the_kubelets_minimum_after_sigterm(tmp_path: Path, drain: Drain) -> None:
    drain.delay = 0.0
    executor, rec = running(tmp_path, knative_pod(drain.server_address[1]), max_grace=5.0)
    rec.pod["metadata"]["deletionGracePeriodSeconds"] = 1  # e.g. kubectl delete --grace-period=1
    rec.terminating = True
    t0 = time.monotonic()
    executor._stop_all(rec)
    t1 = time.monotonic()
    assert t0 + 2.0 <= rec.kill_at["queue-proxy"] <= t1 + 2.0  # MIN_STOP_GRACE, not the 1 s asked for


def test_a_pre_stop_hook_that_outlasts_the_grace_period_gives_way_to_sigterm(tmp_path: Path, drain: Drain) -> None:
    drain.delay = 2.0
    executor, rec = running(tmp_path, knative_pod(drain.server_address[1]), max_grace=0.3)
    executor._stop_all(rec)
    assert "user-container" in rec.stopping
    assert rec.procs["user-container"].signals == []
    rec.stopping = {name: time.monotonic() - 0.01 for name in rec.stopping}  # the grace is over
    executor._tick()
    assert rec.procs["user-container"].signals == [signal.SIGTERM]
    executor._handle(next_item(executor, HookDone, timeout=5.0))  # late: nothing more happens
    assert rec.procs["user-container"].signals == [signal.SIGTERM]


def test_a_failed_pre_stop_hook_is_an_event_and_the_container_is_stopped(tmp_path: Path) -> None:
    executor, rec = running(tmp_path, knative_pod(1))  # nothing listens on port 1
    executor._stop_all(rec)
    executor._handle(next_item(executor, HookDone))
    assert rec.procs["user-container"].signals == [signal.SIGTERM]
    [(container, reason, message)] = executor.events
    assert (container, reason) == ("user-container", "FailedPreStopHook")
    assert message.startswith('PreStopHook failed: Get "http://127.0.0.1:1/wait-for-drain"')


def test_startup_probe_holds_readiness_and_liveness_back_until_it_passes(tmp_path: Path) -> None:
    startup = {"tcpSocket": {"port": 8080}, "failureThreshold": 3, "periodSeconds": 1}
    liveness = {"tcpSocket": {"port": 8080}, "failureThreshold": 2}
    pod = knative_pod(1, startupProbe=startup, livenessProbe=liveness, readinessProbe={"tcpSocket": {"port": 8080}})
    executor, rec = running(tmp_path, pod)
    run = rec.runs["user-container"]
    run.startup_done, run.probe_ready = False, False
    spec = probes.probe_spec(pod["spec"]["containers"][0], probes.STARTUP, "127.0.0.1")
    assert spec is not None
    executor.prober.watch(rec.uid, "user-container", 100, spec, 0.0, probes.STARTUP)
    status = container_status(run)
    assert status["started"] is False and status["ready"] is False
    executor._handle(ProbeResult(rec.uid, "user-container", 100, True, "", probes.STARTUP))
    assert run.startup_done and container_status(run)["started"] is True
    kinds = sorted(k for (_, c, k) in executor.prober.states if c == "user-container")
    assert kinds == [probes.LIVENESS, probes.READINESS]
    executor._handle(ProbeResult(rec.uid, "user-container", 100, True, "", probes.READINESS))
    assert container_status(run)["ready"] is True
    # Liveness: two failures in a row kill the container (its preStop hook first).
    executor._handle(ProbeResult(rec.uid, "user-container", 100, False, "dial tcp: refused", probes.LIVENESS))
    assert "user-container" not in rec.stopping
    executor._handle(ProbeResult(rec.uid, "user-container", 100, False, "dial tcp: refused", probes.LIVENESS))
    assert "user-container" in rec.stopping  # its preStop hook runs, then SIGTERM
    assert ("user-container", "Unhealthy", "Liveness probe failed: dial tcp: refused") in executor.events
    assert ("user-container", "Killing", "Container user-container failed liveness probe, will be restarted") in (
        executor.events
    )
    assert not [k for k in executor.prober.states if k[1] == "user-container"]


def test_a_startup_probe_that_keeps_failing_kills_the_container(tmp_path: Path) -> None:
    startup = {"tcpSocket": {"port": 8080}, "failureThreshold": 2, "terminationGracePeriodSeconds": 0}
    pod = knative_pod(1, startupProbe=startup)
    executor, rec = running(tmp_path, pod)
    spec = probes.probe_spec(pod["spec"]["containers"][0], probes.STARTUP, "127.0.0.1")
    assert spec is not None
    executor.prober.watch(rec.uid, "user-container", 100, spec, 0.0, probes.STARTUP)
    for _ in range(2):
        executor._handle(ProbeResult(rec.uid, "user-container", 100, False, "refused", probes.STARTUP))
    # The probe's terminationGracePeriodSeconds (0) wins over the pod's: no time for the hook.
    assert rec.procs["user-container"].signals == [signal.SIGTERM]
    assert rec.procs["queue-proxy"].signals == []
