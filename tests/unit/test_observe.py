"""Each controller's observe() against fakes of the Clients it reads through (tests/unit/fakes.py): what it reads,
that it writes nothing, and that it works at the pass's `now`, not a clock of its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from slipway.analysis import PREDICTOR
from slipway.api import DriftMonitor, ModelVersion, TrainingJob
from slipway.conditions import rfc3339
from slipway.config import Settings
from slipway.controllers import driftmonitor_plan as plan
from slipway.controllers.base import ConfigureDetector, reconcile
from slipway.controllers.driftmonitor import DriftMonitorController
from slipway.controllers.modelversion import ModelVersionController
from slipway.controllers.trainingjob import TrainingJobController
from slipway.drift import DriftRejected
from slipway.storage import join_uri

from tests.unit import test_driftmonitor as tdm
from tests.unit import test_rollout as tro
from tests.unit.fakes import FakeDrift, FakeKube, FakePrometheus, FakeS3, clients

NOW = tro.T0 + timedelta(minutes=5)
SHA = "a" * 64


def kind(body: dict[str, Any], k: str) -> dict[str, Any]:
    return {"kind": k, **body}


# -- ModelVersion --------------------------------------------------------------------------------------------------


def model_version(status: dict[str, Any] | None = None) -> ModelVersion:
    body = tro.mv("m-v2")
    body["spec"]["artifact"]["credentialsSecretRef"] = {"name": "s3"}
    return ModelVersion.model_validate({**body, "status": status})


async def test_modelversion_observe_reads_who_serves_it_and_verifies_at_the_pass_time() -> None:
    serving = kind({"metadata": {"name": "r", "namespace": "ns"}, "spec": {"modelVersionRef": {"name": "m-v2"}}},
                   "Rollout")  # fmt: skip
    other = kind({"metadata": {"name": "o", "namespace": "ns"}, "spec": {"modelVersionRef": {"name": "m-v9"}}},
                 "Rollout")  # fmt: skip
    kube = FakeKube([serving, other], secrets={"s3": {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}})
    s3 = FakeS3({"s3://models/m-v2/model.joblib": (SHA, "etag1", 10)})
    ctrl = ModelVersionController(Settings(verify_seconds=600))
    seen = await ctrl.observe(model_version(), clients(kube, s3), NOW)
    assert seen.served_by == ("r",)
    assert seen.verification.check == "verified" and seen.verification.asked == NOW
    assert seen.verification.valid_until == NOW + timedelta(seconds=600)
    assert s3.calls == [("sha256", "s3://models/m-v2/model.joblib")]  # never verified: the read alone
    assert ("list", "rollouts", "", ("version", "m-v2")) in kube.reads


async def test_modelversion_observe_with_its_secret_gone_asks_s3_nothing() -> None:
    s3 = FakeS3()
    seen = await ModelVersionController(Settings()).observe(model_version(), clients(FakeKube(), s3), NOW)
    assert seen.verification.check == "secret-missing" and s3.calls == []


# -- TrainingJob ---------------------------------------------------------------------------------------------------


async def test_trainingjob_observe_reads_the_manifest_only_once_the_gang_succeeded() -> None:
    from tests.unit import test_trainingjob as ttj

    job = ttj.job(ttj.RUNNING)
    pod = ttj.pod(1, 0, "Succeeded", exit_code=0)
    pod["metadata"]["ownerReferences"] = [{"uid": ttj.UID}]
    pod["metadata"]["labels"][ttj.m.LABEL_JOB] = "j"
    kube = FakeKube([kind(pod, "Pod")], secrets={"s3": {}})
    manifest = join_uri(ttj.m.output_prefix(job), "manifest.json")
    s3 = FakeS3(docs={manifest: ttj.MANIFEST})
    seen = await TrainingJobController(ttj.CTRL.settings).observe(job, clients(kube, s3), NOW)
    assert s3.calls == [("read_json", manifest)] and seen.manifest == ttj.MANIFEST
    assert seen.next_version == 1 and seen.model_version is None
    assert ("list", "modelversions", "", None) in kube.reads  # fresh, from the API
    running = ttj.pod(1, 0, "Running")
    running["metadata"] |= {"ownerReferences": [{"uid": ttj.UID}], "labels": {ttj.m.LABEL_JOB: "j"}}
    s3.calls.clear()
    still = await TrainingJobController(ttj.CTRL.settings).observe(job, clients(FakeKube([kind(running, "Pod")]), s3),
                                                                   NOW)  # fmt: skip
    assert s3.calls == [] and still.manifest is None


# -- Rollout -------------------------------------------------------------------------------------------------------


def canarying(last_analysis: str | None) -> Any:
    status = tro.progressing(lastAnalysisTime=last_analysis) if last_analysis else tro.progressing()
    return tro.rollout("m-v2", status)


def rollout_world() -> FakeKube:
    return FakeKube([kind(tro.mv("m-v1"), "ModelVersion"), kind(tro.mv("m-v2"), "ModelVersion"),
                     kind(tro.READY_ISVC, "InferenceService")], secrets={"s3": {"k": "v"}})  # fmt: skip


def predictor_answer(promql: str) -> list[tuple[dict[str, str], float]]:
    if "_bucket" in promql:
        return []
    return [({"version": "m-v1", "outcome": "ok"}, 900.0), ({"version": "m-v2", "outcome": "ok"}, 100.0)]


async def test_rollout_observe_analyses_when_due_by_the_pass_time() -> None:
    prom = FakePrometheus(predictor_answer)
    due = canarying(rfc3339(NOW - timedelta(seconds=10)))  # intervalSeconds 5
    seen = await tro.CTRL.observe(due, clients(rollout_world(), prometheus=prom), NOW)
    assert seen.model_version is not None and seen.stable is not None and seen.isvc is not None
    assert seen.analysis is not None and prom.queries
    assert all(PREDICTOR.requests in q or PREDICTOR.latency in q for q in prom.queries)
    # The window is the canary's age at the pass's now (started 12:00, now 12:05): 300 s.
    assert "[300s]" in prom.queries[0]


async def test_rollout_observe_does_not_analyse_before_the_interval_is_up_at_the_pass_time() -> None:
    prom = FakePrometheus(predictor_answer)
    recent = canarying(rfc3339(NOW - timedelta(seconds=2)))
    seen = await tro.CTRL.observe(recent, clients(rollout_world(), prometheus=prom), NOW)
    assert seen.analysis is None and prom.queries == []


async def test_rollout_observe_with_prometheus_down_holds_inconclusive() -> None:
    seen = await tro.CTRL.observe(canarying(None), clients(rollout_world(), prometheus=FakePrometheus()), NOW)
    assert seen.analysis is not None and seen.analysis.verdict == "Inconclusive"
    assert "Prometheus unavailable" in seen.analysis.message


# -- DriftMonitor --------------------------------------------------------------------------------------------------


def monitor_world() -> FakeKube:
    return FakeKube([kind(tdm.rollout_body(), "Rollout"), kind(tdm.mv("m-v1"), "ModelVersion")])


async def test_driftmonitor_observe_only_reads_the_runtime() -> None:
    drift = FakeDrift()
    seen = await tdm.CTRL.observe(tdm.monitor(), clients(monitor_world(), drift=drift), NOW)
    assert drift.calls == [("get", "dm")] and seen.runtime is None and seen.runtime_error is None
    down = await tdm.CTRL.observe(tdm.monitor(), clients(monitor_world(), drift=FakeDrift(down=True)), NOW)
    assert down.runtime is None and "did not answer" in (down.runtime_error or "")
    without = await DriftMonitorController(Settings()).observe(tdm.monitor(), clients(monitor_world()), NOW)
    assert without.runtime is None and without.runtime_error is None


def desired(dm: DriftMonitor) -> dict[str, Any]:
    return plan.detector_config(dm, {"m-v1": ("stable", tdm.mv("m-v1"))})


@pytest.mark.parametrize("state", ["unknown", "other", "same"])
def test_driftmonitor_asks_for_its_configuration_when_the_runtime_has_another(state: str) -> None:
    dm = tdm.monitor()
    runtime = {"unknown": None, "other": {**tdm.runtime(), "config": {"windowSize": 1}},
               "same": {**tdm.runtime(), "config": desired(dm)}}[state]  # fmt: skip
    r = tdm.CTRL.decide(dm, tdm.Observed(tdm.rollout_body(), tdm.mv("m-v1"), runtime=runtime), tdm.NOW)
    asked = [a for a in r.actions if isinstance(a, ConfigureDetector)]
    # Configured or about to be, the monitor is Ready: a runtime that lost it after a restart is no outage.
    assert tdm.conds(r)["Ready"] == ("True", "Monitoring")
    assert [a.config for a in asked] == ([] if state == "same" else [desired(dm)])
    assert r.requeue_after == tdm.SETTINGS.drift_poll_seconds


def monitor_body() -> dict[str, Any]:
    dm = tdm.monitor()
    return {"apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {**dm.metadata, "resourceVersion": "1", "generation": 1},
            "spec": dm.spec.model_dump(by_alias=True, exclude_none=True)}  # fmt: skip


class StatusKube(FakeKube):
    def __init__(self) -> None:
        super().__init__(monitor_world().objects)
        self.patches: list[dict[str, Any]] = []

    async def patch_status(self, plural: str, ns: str, name: str, patch: dict[str, Any], rv: str) -> Any:
        self.patches.append(patch)
        return {"metadata": {"resourceVersion": "2"}}

    async def event(self, *args: Any) -> None:
        pass


async def test_a_pass_sends_the_configuration_through_the_drift_client() -> None:
    drift, kube = FakeDrift(), StatusKube()
    await reconcile(tdm.CTRL, monitor_body(), clients(kube, drift=drift), NOW)
    assert drift.calls == [("get", "dm"), ("put", "dm")]
    assert drift.monitors[("ns", "dm")]["config"] == desired(tdm.monitor())
    drift.calls.clear()
    await reconcile(tdm.CTRL, monitor_body(), clients(StatusKube(), drift=drift), NOW)
    assert drift.calls == [("get", "dm")]  # configured: read only


async def test_a_refused_or_unanswered_configuration_is_a_condition_not_a_failed_pass() -> None:
    class Refusing(FakeDrift):
        async def put(self, namespace: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
            raise DriftRejected("windowSize must be at least 10")

    refused = await reconcile(tdm.CTRL, monitor_body(), clients(StatusKube(), drift=Refusing()), NOW)
    assert tdm.conds(refused)["Stalled"] == ("True", "Rejected")
    assert "refused the configuration: windowSize" in refused.conditions[0].message

    class Vanishing(FakeDrift):
        async def put(self, namespace: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
            self.down = True
            return await super().put(namespace, name, config)

    gone = await reconcile(tdm.CTRL, monitor_body(), clients(StatusKube(), drift=Vanishing()), NOW)
    assert tdm.conds(gone)["Reconciling"] == ("True", "DetectorUnavailable") and gone.requeue_after == 10.0


def test_every_controller_observes_through_clients_at_the_pass_time() -> None:
    """The contract (controllers.base.Controller): observe(obj, clients, now), the same for every kind."""
    import inspect

    from slipway.controllers.rollout import RolloutController

    for ctrl in (ModelVersionController, TrainingJobController, RolloutController, DriftMonitorController):
        assert list(inspect.signature(ctrl.observe).parameters) == ["self", "obj", "clients", "now"]
    assert TrainingJob and DriftMonitor  # the kinds these controllers reconcile


def test_every_kind_has_one_controller_with_the_runtimes_hooks() -> None:
    """What the generic runtime (handlers.py) needs of a kind comes from its controller (controllers.base.Hooks),
    so a new kind adds a controller here and no branch there."""
    from slipway.api import KINDS
    from slipway.controllers import every_kind
    from slipway.controllers.base import Hooks

    controllers = every_kind(Settings())
    assert [c.kind for c in controllers] == list(KINDS)
    assert all(isinstance(c, Hooks) for c in controllers)
