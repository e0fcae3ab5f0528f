"""Revision and traffic planning in Serverless mode (hack/localkserve/revisions.py)."""

from __future__ import annotations

from localkserve import revisions
from localkserve.revisions import Plan, Target

R1, R2, R3 = "m-predictor-1111111111", "m-predictor-2222222222", "m-predictor-3333333333"


def serverless(latest: str, percent: int | None, prior: dict[str, str], existing: set[str], ready: set[str]) -> Plan:
    return revisions.serverless(latest, percent, prior, existing, ready)


def test_names_are_stable_hashes_that_fit_a_label() -> None:
    a = revisions.digest({"x": 1, "y": [1, 2]})
    assert a == revisions.digest({"y": [1, 2], "x": 1}) and len(a) == revisions.HASH_LEN
    assert a != revisions.digest({"x": 2, "y": [1, 2]})
    long = revisions.revision_name("a" * 80, a)
    assert len(long) <= 63 and long.endswith(f"-predictor-{a}")


def test_serverless_first_revision_takes_all_once_ready_and_is_rolled_out() -> None:
    plan = serverless(R1, None, {}, {R1}, set())
    assert plan.traffic == () and plan.latest_ready is None and plan.keep == {R1}
    plan = serverless(R1, None, {}, {R1}, {R1})
    assert plan.traffic == (Target(R1, 100, True),)
    assert (plan.latest_ready, plan.rolled_out, plan.previous_rolled_out) == (R1, R1, None)


def test_serverless_canary_waits_for_readiness_then_splits() -> None:
    prior = {"latestReadyRevision": R1, "latestRolledoutRevision": R1}
    # The new revision is not ready: "latest" is still the latest *ready* one (Knative).
    plan = serverless(R2, 30, prior, {R1}, {R1})
    assert plan.traffic == (Target(R1, 30, True), Target(R1, 70, False))
    assert plan.weights() == {R1: 100} and plan.keep == {R1, R2} and plan.latest_created == R2
    plan = serverless(R2, 30, prior, {R1, R2}, {R1, R2})
    assert plan.traffic == (Target(R2, 30, True), Target(R1, 70, False))
    assert (plan.latest_ready, plan.rolled_out) == (R2, R1)


def test_serverless_promotion_rolls_out_the_canary_and_drops_the_old_revision() -> None:
    prior = {"latestReadyRevision": R2, "latestRolledoutRevision": R1}
    plan = serverless(R2, None, prior, {R1, R2}, {R1, R2})
    assert plan.traffic == (Target(R2, 100, True),)
    assert (plan.rolled_out, plan.previous_rolled_out) == (R2, R1)
    assert plan.keep == {R2}


def test_serverless_rollback_pins_the_rolled_out_revision_then_restores_it() -> None:
    prior = {"latestReadyRevision": R2, "latestRolledoutRevision": R1}
    plan = serverless(R2, 0, prior, {R1, R2}, {R1, R2})
    assert plan.traffic == (Target(R2, 0, True), Target(R1, 100, False)) and plan.rolled_out == R1
    # The old spec restored: the same hash, so the revision that runs already.
    plan = serverless(R1, None, {**prior, "latestRolledoutRevision": R1}, {R1, R2}, {R1, R2})
    assert plan.traffic == (Target(R1, 100, True),) and plan.keep == {R1}
    assert (plan.latest_created, plan.latest_ready, plan.rolled_out) == (R1, R1, R1)


def test_serverless_rollback_after_full_rollout_hands_back_only_to_an_existing_revision() -> None:
    prior = {"latestReadyRevision": R2, "latestRolledoutRevision": R2, "previousRolledoutRevision": R1}
    plan = serverless(R2, 0, prior, {R1, R2}, {R1, R2})
    assert plan.rolled_out == R1  # KServe's rollback: the previous rolled-out revision again
    plan = serverless(R2, 0, prior, {R2}, {R2})  # R1's Deployment is gone: nothing to hand back to
    assert plan.rolled_out == R2 and plan.traffic == (Target(R2, 0, True), Target(R2, 100, False))


def test_serverless_canary_100_and_failed_canary() -> None:
    prior = {"latestReadyRevision": R1, "latestRolledoutRevision": R1}
    assert serverless(R2, 100, prior, {R1, R2}, {R1, R2}).traffic == (Target(R2, 100, True),)
    # A canary that never gets ready: traffic stays on R1, a third spec replaces it.
    plan = serverless(R3, 30, prior, {R1, R2}, {R1})
    assert plan.keep == {R1, R3} and plan.weights() == {R1: 100}


def test_serverless_tags_with_tag_routing() -> None:
    prior = {"latestReadyRevision": R1, "latestRolledoutRevision": R1}
    plan = revisions.serverless(R2, 10, prior, {R1, R2}, {R1, R2}, tag_routing=True)
    assert [t.to_status() for t in plan.traffic] == [
        {"revisionName": R2, "percent": 10, "latestRevision": True, "tag": "latest"},
        {"revisionName": R1, "percent": 90, "latestRevision": False, "tag": "prev"},
    ]
