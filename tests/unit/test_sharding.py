"""Sharding (operator/slipway/sharding.py, handlers.Runtime): which shard owns an object, each shard's peering,
and a Runtime that reconciles only its shard's objects, forgets one relabelled away, and never wakes another
shard's."""

from __future__ import annotations

from typing import Any

import pytest
from slipway.config import Settings
from slipway.controllers import driftmonitor_plan as plan
from slipway.controllers import trainingjob_manifests as m
from slipway.sharding import DEFAULT_SHARD, SHARD_LABEL, owns, peering_name, shard_of

from tests.unit.test_driftmonitor import monitor
from tests.unit.test_trainingjob import MANIFEST
from tests.unit.test_trainingjob import job as training_job


@pytest.mark.parametrize(
    ("labels", "shard"),
    [
        (None, DEFAULT_SHARD),
        ({}, DEFAULT_SHARD),
        ({"app": "x"}, DEFAULT_SHARD),
        ({SHARD_LABEL: ""}, DEFAULT_SHARD),  # an empty value is no shard, as an absent label
        ({SHARD_LABEL: "b"}, "b"),
        ({SHARD_LABEL: " b "}, "b"),
        ({"sharding.fluxcd.io/key": "b"}, DEFAULT_SHARD),  # Flux's key is Flux's, not ours
    ],
)
def test_shard_of(labels: dict[str, str] | None, shard: str) -> None:
    assert shard_of(labels) == shard


def test_the_default_shard_owns_unlabelled_objects_and_a_named_shard_only_its_own() -> None:
    unlabelled, b, c = {"app": "x"}, {SHARD_LABEL: "b"}, {SHARD_LABEL: "c"}
    assert owns(DEFAULT_SHARD, unlabelled) and owns(DEFAULT_SHARD, None)
    assert not owns(DEFAULT_SHARD, b) and not owns(DEFAULT_SHARD, c)
    assert owns("b", b)
    assert not owns("b", unlabelled) and not owns("b", c)
    # Each object has exactly one owner among the shards that run.
    for labels in (unlabelled, b, c, None):
        assert sum(owns(s, labels) for s in (DEFAULT_SHARD, "b", "c")) == 1


def test_each_shard_has_its_own_peering_and_the_default_keeps_the_unsharded_name() -> None:
    assert peering_name("slipway", DEFAULT_SHARD) == "slipway"
    assert peering_name("slipway", "b") == "slipway-shard-b"
    assert peering_name("slipway", "b") != peering_name("slipway", "c")
    assert peering_name("", "b") == ""  # standalone stays standalone
    assert Settings(peering="slipway", shard="b").peering_name == "slipway-shard-b"
    assert Settings().peering_name == "slipway"


def test_the_shard_comes_from_slipway_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPWAY_SHARD", raising=False)
    assert Settings.from_env().shard == DEFAULT_SHARD
    monkeypatch.setenv("SLIPWAY_SHARD", "gpu-team")
    settings = Settings.from_env()
    assert settings.shard == "gpu-team" and settings.peering_name == "slipway-shard-gpu-team"
    settings.validate()


@pytest.mark.parametrize("bad", ["B", "gpu_team", "-b", "b-", "a.b", "x" * 31])
def test_a_shard_name_must_be_a_short_dns_label(bad: str) -> None:
    Settings(shard="b" * 30).validate()  # the control: the longest good name
    with pytest.raises(ValueError, match="SLIPWAY_SHARD must be"):
        Settings(shard=bad).validate()


def test_a_jobs_model_version_and_a_monitors_retraining_job_stay_in_its_shard() -> None:
    settings = Settings()
    mv = m.model_version(training_job(labels={SHARD_LABEL: "b"}), MANIFEST, 3, settings)
    assert mv["metadata"]["labels"][SHARD_LABEL] == "b"
    assert SHARD_LABEL not in m.model_version(training_job(labels={}), MANIFEST, 3, settings)["metadata"]["labels"]
    dm = monitor()
    window = {"seq": 2, "version": "m-v1", "pValue": 0.001}
    assert SHARD_LABEL not in plan.retrain_job(dm, "dm-retrain-2", window, "drift")["metadata"]["labels"]
    dm.metadata["labels"] = {SHARD_LABEL: "b"}
    assert plan.retrain_job(dm, "dm-retrain-2", window, "drift")["metadata"]["labels"][SHARD_LABEL] == "b"


def body(kind: str, name: str, shard: str | None = None, **status: Any) -> dict[str, Any]:
    labels = {SHARD_LABEL: shard} if shard is not None else {}
    return {"kind": kind, "metadata": {"name": name, "namespace": "ns", "labels": labels}, "status": status}


class Api:
    def __init__(self, objects: dict[tuple[str, str, str], dict[str, Any]] | None = None) -> None:
        self.objects, self.gets = objects or {}, list[tuple[str, str, str]]()

    async def get_custom(self, group: str, version: str, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        self.gets.append((plural, ns, name))
        return self.objects.get((plural, ns, name))


def runtime(shard: str, api: Api | None = None) -> tuple[Any, list[str]]:
    """A Runtime of `shard` whose reconcile pass only records the object's name."""
    from slipway.handlers import Runtime
    from slipway.storage import S3

    rt = Runtime(api or Api(), Settings(peering="", shard=shard), S3())  # type: ignore[arg-type]
    passes: list[str] = []

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        passes.append(body["metadata"]["name"])
        return 60.0

    rt._pass = one_pass
    return rt, passes


async def test_a_shard_reconciles_only_its_own_objects() -> None:
    a, a_passes = runtime(DEFAULT_SHARD)
    b, b_passes = runtime("b")
    mvs = a.controllers["ModelVersion"]
    for rt in (a, b):
        for obj in (body("ModelVersion", "plain"), body("ModelVersion", "mine", "b"), body("ModelVersion", "c", "c")):
            await rt.event(rt.controllers["ModelVersion"], None, obj)
    assert a_passes == ["plain"] and b_passes == ["mine"]
    assert set(a.bodies) == {("modelversions", "ns", "plain")}
    assert a.foreign == {("modelversions", "ns", "mine"), ("modelversions", "ns", "c")}
    # A resync timer of the default shard reconciles its own object from the cached body.
    await a._refetch(mvs, ("modelversions", "ns", "plain"))
    assert a_passes == ["plain", "plain"]
    for rt in (a, b):
        await rt.requeue.close()


async def test_an_object_relabelled_to_another_shard_is_forgotten_at_once() -> None:
    a, passes = runtime(DEFAULT_SHARD)
    mvs = a.controllers["ModelVersion"]
    key = ("modelversions", "ns", "mv")
    await a.event(mvs, None, body("ModelVersion", "mv"))
    assert passes == ["mv"] and key in a.requeue._timers  # the resync timer is set
    await a.event(mvs, "MODIFIED", body("ModelVersion", "mv", "b"))
    assert passes == ["mv"] and key not in a.requeue._timers and key not in a.bodies and key in a.foreign
    # ... and taken back when the label goes.
    await a.event(mvs, "MODIFIED", body("ModelVersion", "mv"))
    assert passes == ["mv", "mv"] and key not in a.foreign
    await a.event(mvs, "DELETED", body("ModelVersion", "mv"))
    assert key not in a.bodies and key not in a.foreign and key not in a.requeue._timers
    await a.requeue.close()


async def test_another_shards_objects_are_never_woken_nor_read() -> None:
    api = Api({("rollouts", "ns", "unknown"): body("Rollout", "unknown", "b")})
    a, passes = runtime(DEFAULT_SHARD, api)
    rollouts = a.controllers["Rollout"]
    await a.event(rollouts, None, body("Rollout", "theirs", "b"))
    a.wake("Rollout", "ns", "theirs")  # e.g. a pod or a ModelVersion of theirs changed
    assert ("rollouts", "ns", "theirs") not in a.requeue._timers
    # An object read again after a conflict is left alone when it turns out to be another shard's.
    a.stale.add(("rollouts", "ns", "unknown"))
    await a._refetch(rollouts, ("rollouts", "ns", "unknown"))
    assert api.gets == [("rollouts", "ns", "unknown")] and passes == []
    assert ("rollouts", "ns", "unknown") in a.foreign
    a.wake("Rollout", "ns", "unknown")
    assert ("rollouts", "ns", "unknown") not in a.requeue._timers
    await a.requeue.close()


async def test_another_shards_model_version_still_wakes_this_shards_rollout() -> None:
    """A Rollout of shard b serving a default-shard ModelVersion: b sees the version's status change and wakes
    its Rollout without reconciling the version."""
    b, passes = runtime("b")
    await b.event(b.controllers["Rollout"], None, body("Rollout", "r", "b"))
    b.requeue.cancel(("rollouts", "ns", "r"))
    await b.event(b.controllers["ModelVersion"], "MODIFIED", body("ModelVersion", "m-v1", servedBy=["r"]))
    assert passes == ["r"] and ("rollouts", "ns", "r") in b.requeue._timers
    await b.requeue.close()


async def test_the_metrics_count_this_shards_objects_and_the_others() -> None:
    from prometheus_client import REGISTRY

    b, _ = runtime("b")
    mvs = b.controllers["ModelVersion"]
    for obj in (body("ModelVersion", "x", "b"), body("ModelVersion", "y"), body("ModelVersion", "z", "c")):
        await b.event(mvs, None, obj)
    assert REGISTRY.get_sample_value("slipway_objects", {"kind": "ModelVersion", "owned": "true"}) == 1
    assert REGISTRY.get_sample_value("slipway_objects", {"kind": "ModelVersion", "owned": "false"}) == 2
    assert REGISTRY.get_sample_value("slipway_shard_info", {"shard": "b"}) == 1
    await b.requeue.close()
