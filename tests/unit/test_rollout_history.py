"""A Rollout's canary records (CanaryAnalysis): every decision on a canary, kept beyond the status's latest 20."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import CanaryAnalysis
from slipway.api.canaryanalysis import MAX_RECORDED
from slipway.api.rollout import Decision
from slipway.controllers import rollout_history as history
from slipway.controllers.base import Apply, Result
from slipway.controllers.rollout import Observed

from tests.unit import test_rollout as tro
from tests.unit.fakes import FakeKube, FakePrometheus, clients

T0 = tro.T0
NAME = "r-m-v2-20260301-115800"  # rollout r, canary m-v2 asked for at status.canaryDeployedAt


def records(result: Result) -> dict[str, dict[str, Any]]:
    found = [a.manifest for a in result.actions if isinstance(a, Apply) and a.manifest["kind"] == "CanaryAnalysis"]
    return {m["metadata"]["name"]: m for m in found}


def decide_with(status: dict[str, Any], record: dict[str, Any] | None, **kw: Any) -> Result:
    now = kw.pop("now", T0)
    observed = Observed(tro.mv("m-v2"), tro.mv("m-v1"), tro.READY_ISVC, kw.pop("outcome", None), record=record)
    return tro.CTRL.decide(tro.rollout("m-v2", status), observed, now)


def test_a_started_canary_gets_a_record_owned_by_its_rollout() -> None:
    status = {"stableVersion": "m-v1", "phase": "Promoted"}
    r = tro.decide(tro.rollout("m-v2", status), "m-v2", stable="m-v1", isvc_obj=tro.served())
    [(name, record)] = records(r).items()
    assert name == "r-m-v2-20260301-120000"  # asked for now: canaryDeployedAt is the pass's clock
    assert record["spec"] == {"rolloutRef": {"name": "r"}, "canaryVersion": "m-v2", "stableVersion": "m-v1",
                              "startedAt": "2026-03-01T12:00:00Z"}  # fmt: skip
    assert record["status"]["phase"] == "Running" and [d["action"] for d in record["status"]["decisions"]] == [
        "CanaryStarted"
    ]
    [owner] = record["metadata"]["ownerReferences"]
    assert owner["kind"] == "Rollout" and owner["uid"] == "u1" and owner["controller"] is True
    assert record["metadata"]["labels"]["slipway.dev/rollout"] == "r"
    CanaryAnalysis.model_validate(record)  # what the CRD's schema says


def test_a_pass_without_a_decision_writes_no_record() -> None:
    r = decide_with(tro.progressing(lastVerdict="Healthy"), None, outcome=tro.HEALTHY)
    assert records(r) == {}


def test_decisions_accumulate_past_the_status_limit() -> None:
    many = [{"time": f"2026-03-01T11:{m:02d}:00Z", "action": "Analysis", "message": str(m)} for m in range(30)]
    read = history.manifest({"name": "r", "uid": "u1"}, history.Canary("m-v2", "m-v1", "2026-03-01T11:58:00Z"),
                            many, 0)  # fmt: skip
    status = tro.progressing(decisions=many[-20:])
    r = decide_with(status, read, outcome=tro.REGRESSED, now=T0 + timedelta(seconds=5))
    record = records(r)[NAME]
    assert len(r.fields["decisions"]) == 20
    assert len(record["status"]["decisions"]) == 31 and record["status"]["decisions"][-1]["action"] == "Rollback"
    assert record["status"]["phase"] == "RolledBack" and record["status"]["lastVerdict"] == "Regressed"
    assert record["status"]["finishedAt"] == record["status"]["decisions"][-1]["time"]
    assert record["status"]["decisions"][-1]["evidence"][0]["pValue"] == 0.001
    # The same decision in the status and in the record, as the API model writes it (the status is read back
    # through the model, with its defaults: a decision kept as decided would differ from its copy there).
    assert record["status"]["decisions"][-1] == r.fields["decisions"][-1]
    assert r.fields["decisions"][-1] == Decision.model_validate(r.fields["decisions"][-1]).wire()


def test_a_decision_whose_status_write_failed_is_not_kept() -> None:
    done = {"time": "2026-03-01T11:59:00Z", "action": "CanaryReady", "message": "ready"}
    lost = {"time": "2026-03-01T12:00:01Z", "action": "Advance", "message": "never written to the status"}
    read = history.manifest({"name": "r", "uid": "u1"}, history.Canary("m-v2", "m-v1", "2026-03-01T11:58:00Z"),
                            [done, lost], 0)  # fmt: skip
    r = decide_with(tro.progressing(decisions=[done]), read, outcome=tro.REGRESSED, now=T0 + timedelta(seconds=5))
    assert [d["action"] for d in records(r)[NAME]["status"]["decisions"]] == ["CanaryReady", "Rollback"]


def test_a_record_keeps_the_latest_decisions_and_counts_the_rest() -> None:
    many = [{"time": "2026-03-01T11:00:00Z", "action": "Analysis", "message": str(i)} for i in range(MAX_RECORDED + 5)]
    made = history.manifest({"name": "r"}, history.Canary("m-v2", "m-v1", "2026-03-01T11:58:00Z"), many, 3)
    assert len(made["status"]["decisions"]) == MAX_RECORDED and made["status"]["decisionsDropped"] == 8
    assert made["status"]["decisions"][0]["message"] == "5"


def test_a_retarget_ends_the_old_record_and_starts_a_new_one() -> None:
    status = tro.progressing(step=1, weight=50)
    observed = Observed(tro.mv("m-v3"), tro.mv("m-v1"), tro.served(("m-v2", 50, True)))
    r = tro.CTRL.decide(tro.rollout("m-v3", status), observed, T0 + timedelta(seconds=5))
    found = records(r)
    assert found[NAME]["status"]["phase"] == "Replaced"
    assert [d["action"] for d in found[NAME]["status"]["decisions"]] == ["Retarget"]
    [new] = [m for n, m in found.items() if n != NAME]
    assert new["spec"]["canaryVersion"] == "m-v3" and new["status"]["phase"] == "Running"


def test_a_promotion_ends_the_record_with_the_stable_it_replaced() -> None:
    full = tro.progressing(step=2, weight=100, lastVerdict="Healthy")
    at_100 = tro.live_route({"r-m-v1-predictor": 0, "r-m-v2-predictor": 100})
    r = tro.decide(tro.rollout("m-v2", full), "m-v2", T0 + timedelta(seconds=62), stable="m-v1",
                   isvc_obj=tro.served(("m-v2", 100, True)), route_obj=at_100)  # fmt: skip
    record = records(r)[NAME]
    assert record["status"]["phase"] == "Promoted" and record["spec"]["stableVersion"] == "m-v1"


async def test_observe_reads_the_running_canarys_record_and_none_without_a_canary() -> None:
    canary = tro.rollout("m-v2", tro.progressing(lastAnalysisTime=tro.rfc3339(T0)))
    stored = {"kind": "CanaryAnalysis", "metadata": {"name": NAME, "namespace": "ns"}}
    kube = FakeKube([{"kind": "ModelVersion", **tro.mv("m-v1")}, {"kind": "ModelVersion", **tro.mv("m-v2")}, stored],
                    secrets={"s3": {"k": "v"}})  # fmt: skip
    both = clients(kube, prometheus=FakePrometheus())
    seen = await tro.CTRL.observe(canary, both, T0)
    assert seen.record is stored and ("get", "canaryanalyses", NAME) in kube.reads
    kube.reads.clear()
    steady = tro.rollout("m-v1", {"stableVersion": "m-v1", "phase": "Promoted"})
    assert (await tro.CTRL.observe(steady, both, T0)).record is None
    assert not [r for r in kube.reads if r[1] == "canaryanalyses"]
