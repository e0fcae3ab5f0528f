"""Sharding on the local control plane (issue 13): two shards of two replicas each split the ModelVersions by
their sharding.slipway.dev/key label, each reconciles only its own, and SIGKILLing shard b's active replica
hands b's objects to b's standby while the default shard keeps its own.

Evidence: the objects' status.observedGeneration, and each operator's own metrics: slipway_objects{owned} (the
objects of its shard, and the others' it skipped) and slipway_reconcile_total. Waits count the operators' passes
or the objects' state, never seconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from slipway_dev.kubectl import Kubectl

from tests.conftest import REPO, Operator, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = REPO / "examples"
SHARD_LABEL = "sharding.slipway.dev/key"
DEFAULT = ["plain-0", "plain-1", "plain-2"]  # no label: the default shard's
SHARD_B = ["b-0", "b-1"]  # labelled b


def model_version(name: str, shard: str | None) -> str:
    doc = yaml.safe_load((EXAMPLES / "modelversion.yaml").read_text())
    doc["metadata"] = {"name": f"{name}-v1", "labels": {SHARD_LABEL: shard} if shard else {}}
    doc["spec"]["modelName"] = name
    return yaml.safe_dump(doc)


def observed(kubectl: Kubectl, name: str) -> int | None:
    """The generation the operator last reconciled (None: never)."""
    obj = kubectl.get("modelversions", f"{name}-v1") or {}
    return (obj.get("status") or {}).get("observedGeneration")


def current(kubectl: Kubectl, names: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        objs = [kubectl.get("modelversions", f"{n}-v1") or {} for n in names]
        return all((o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"] for o in objs)

    return check


def owned(op: Operator, mine: bool) -> float:
    op.alive()
    return op.metric("slipway_objects", kind="ModelVersion", owned="true" if mine else "false")


def passes(op: Operator) -> float:
    op.alive()
    return op.metric("slipway_reconcile_total", kind="ModelVersion")


def bump(kubectl: Kubectl, name: str, accuracy: float) -> int:
    """A spec change (a new generation) the shard that owns the object must reconcile."""
    kubectl(
        "patch",
        "modelversion",
        f"{name}-v1",
        "--type=merge",
        "-p",
        f'{{"spec":{{"metrics":{{"accuracy":{accuracy}}}}}}}',
    )
    return int((kubectl.get("modelversions", f"{name}-v1") or {})["metadata"]["generation"])


def test_two_shards_split_the_objects_and_a_killed_active_replica_hands_its_shard_to_the_standby(
    kubectl: Kubectl, operator_factory: Callable[..., Operator], s3_server: Any
) -> None:
    # Watching only this namespace: the KopfPeerings live here too, so no other test's replicas are peers.
    # Rounds of passes are counted: a resync every 2 s (the default is an hour).
    common = {"SLIPWAY_NAMESPACES": kubectl.namespace, "SLIPWAY_PEERING": "slipway", "SLIPWAY_RESYNC_SECONDS": "2"}
    kubectl.apply(EXAMPLES / "s3-credentials.yaml")
    for name in DEFAULT:
        kubectl.apply(model_version(name, None))
    for name in SHARD_B:
        kubectl.apply(model_version(name, "b"))

    # The default shard alone: it reconciles the unlabelled objects, and b's stay untouched over whole rounds of
    # its passes (every object it owns is reconciled every resync, 2 s here).
    a1 = operator_factory(**common, SLIPWAY_PRIORITY="20")
    wait_for("the default shard's objects reconciled", current(kubectl, DEFAULT))
    before = passes(a1)
    wait_for("three rounds of the default shard", lambda: passes(a1) >= before + 3 * len(DEFAULT))
    assert [observed(kubectl, n) for n in SHARD_B] == [None, None]
    assert (owned(a1, True), owned(a1, False)) == (len(DEFAULT), len(SHARD_B))

    # Shard b's active replica, then a standby for each shard (lower priority: paused by its own shard's peer).
    b1 = operator_factory(**common, SLIPWAY_SHARD="b", SLIPWAY_PRIORITY="20")
    wait_for("shard b's objects reconciled", current(kubectl, SHARD_B))
    wait_for("shard b counts its objects", lambda: owned(b1, True) == len(SHARD_B))
    assert owned(b1, False) == len(DEFAULT)
    a2 = operator_factory(**common, SLIPWAY_PRIORITY="10")
    b2 = operator_factory(**common, SLIPWAY_SHARD="b", SLIPWAY_PRIORITY="10")
    peerings = {p["metadata"]["name"] for p in kubectl.json("kopfpeerings")["items"]}
    assert {"slipway", "slipway-shard-b"} <= peerings  # one peering per shard
    # The two shards did not pause each other: both active replicas go on reconciling.
    a_now, b_now = passes(a1), passes(b1)
    wait_for("both shards' active replicas pass", lambda: passes(a1) > a_now and passes(b1) > b_now)

    # SIGKILL shard b's active replica: Kopf drops it from b's peering once its lifetime runs out, and b's standby
    # takes b's objects over; the default shard keeps its own and never takes b's.
    standby_passes = passes(b2)
    b1.stop(kill=True)
    b_generation = bump(kubectl, SHARD_B[0], 0.97)
    a_generation = bump(kubectl, DEFAULT[0], 0.97)
    wait_for("the default shard's change", lambda: observed(kubectl, DEFAULT[0]) == a_generation)
    wait_for("shard b's standby takes over", lambda: observed(kubectl, SHARD_B[0]) == b_generation, timeout=240)
    assert passes(b2) > standby_passes  # b's standby did it: the default shard never takes b's objects
    assert (owned(b2, True), owned(b2, False)) == (len(SHARD_B), len(DEFAULT))
    assert (owned(a1, True), owned(a1, False)) == (len(DEFAULT), len(SHARD_B))
    wait_for("shard b's objects all current", current(kubectl, SHARD_B))
    wait_for("the default shard's objects all current", current(kubectl, DEFAULT))
    a2.alive()
