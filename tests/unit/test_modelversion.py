"""ModelVersion decide(): verification outcomes, gates, and the in-use finalizer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.api import ModelVersion
from slipway.api.common import Gate
from slipway.config import Settings
from slipway.controllers.base import Result, SetFinalizers
from slipway.controllers.modelversion import (
    FINALIZER,
    ModelVersionController,
    Observed,
    Verification,
    evaluate_gates,
    serves,
)

from tests.unit.fakes import clients

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CTRL = ModelVersionController(Settings())
SHA = "a" * 64
OK = Verification("verified", SHA, "etag1", 10)


def mv(metrics: dict[str, float] | None = None, gates: list[dict[str, Any]] | None = None, **meta: Any) -> ModelVersion:
    return ModelVersion.model_validate(
        {
            "metadata": {"name": "m-v1", "namespace": "ns", **meta},
            "spec": {
                "modelName": "m",
                "version": 1,
                "framework": "sklearn",
                "artifact": {"uri": "s3://bucket/k", "sha256": SHA, "format": "joblib"},
                "metrics": metrics or {},
                "gates": gates or [],
            },
        }
    )


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


@pytest.mark.parametrize(
    ("gates", "metrics", "failures"),
    [
        ([], {}, []),
        ([Gate(metric="accuracy", min=0.9)], {"accuracy": 0.95}, []),
        ([Gate(metric="accuracy", min=0.9)], {"accuracy": 0.85}, ["accuracy=0.85 is below the minimum 0.9"]),
        ([Gate(metric="rmse", max=1.0)], {"rmse": 2.0}, ["rmse=2 is above the maximum 1"]),
        ([Gate(metric="f1", min=0.5)], {}, ["metric f1 is missing"]),
    ],
)
def test_evaluate_gates(gates: list[Gate], metrics: dict[str, float], failures: list[str]) -> None:
    assert evaluate_gates(gates, metrics) == failures


@pytest.mark.parametrize(
    ("verification", "verified", "ready", "stalled"),
    [
        (OK, ("True", "ChecksumMatches"), ("True", "Verified"), "False"),
        (Verification("mismatch", "b" * 64), ("False", "ChecksumMismatch"), ("False", "ChecksumMismatch"), "True"),
        (Verification("missing", detail="NoSuchKey"), ("False", "ArtifactNotFound"),
         ("False", "ArtifactNotFound"), "True"),
        (Verification("unreachable", detail="timeout"), ("Unknown", "StorageUnreachable"),
         ("False", "StorageUnreachable"), "False"),
        (Verification("secret-missing", detail="s3"), ("Unknown", "SecretNotFound"),
         ("False", "SecretNotFound"), "False"),
    ],
)  # fmt: skip
def test_verification_outcomes(
    verification: Verification, verified: tuple[str, str], ready: tuple[str, str], stalled: str
) -> None:
    r = CTRL.decide(mv(), Observed((), verification), NOW)
    c = conds(r)
    assert c["Verified"] == verified and c["Ready"] == ready and c["Stalled"][0] == stalled


def test_mismatch_message_names_both_checksums() -> None:
    r = CTRL.decide(mv(), Observed((), Verification("mismatch", "b" * 64)), NOW)
    verified = next(c for c in r.conditions if c.type == "Verified")
    assert "b" * 64 in verified.message and SHA in verified.message
    assert r.fields["verifiedSha256"] is None and [e.reason for e in r.events] == ["ChecksumMismatch"]


@pytest.mark.parametrize("check", ["mismatch", "missing"])
def test_a_changed_or_missing_artifact_is_asked_again_at_the_verify_interval(check: str) -> None:
    # It may be put back: the resync (an hour by default) is not what notices that.
    ctrl = ModelVersionController(Settings(verify_seconds=30))
    assert ctrl.decide(mv(), Observed((), Verification(check, "b" * 64)), NOW).requeue_after == 30
    every_pass = ModelVersionController(Settings(verify_seconds=0))
    assert every_pass.decide(mv(), Observed((), Verification(check, "b" * 64)), NOW).requeue_after is None


def test_failing_gate_is_stalled_for_kstatus() -> None:
    # Only a person can change it (a new version, other gates): kstatus must read failed, not in progress.
    r = CTRL.decide(mv({"accuracy": 0.5}, [{"metric": "accuracy", "min": 0.9}]), Observed((), OK), NOW)
    c = conds(r)
    assert c["GatesPassed"] == ("False", "GatesFailed") and c["Ready"] == ("False", "GatesFailed")
    assert c["Stalled"] == ("True", "GatesFailed") and c["Reconciling"][0] == "False"
    assert r.fields["headline"] == "accuracy=0.5"


def test_served_version_gets_the_finalizer_and_loses_it_when_unserved() -> None:
    r = CTRL.decide(mv(), Observed(("r1",), OK), NOW)
    assert r.actions == [SetFinalizers((FINALIZER,))] and r.fields["servedBy"] == ["r1"]
    r = CTRL.decide(mv(finalizers=[FINALIZER, "other"]), Observed((), OK), NOW)
    assert r.actions == [SetFinalizers(("other",))]
    assert CTRL.decide(mv(finalizers=[FINALIZER]), Observed(("r1",), OK), NOW).actions == []


def test_deleting_a_served_version_is_blocked_with_a_message() -> None:
    r = CTRL.decide(mv(finalizers=[FINALIZER], deletionTimestamp="2026-03-01T11:59:00Z"), Observed(("r1",), OK), NOW)
    assert conds(r)["Ready"] == ("False", "DeletionBlocked") and "Rollout(s) r1" in r.conditions[0].message
    assert r.actions == [] and "DeletionBlocked" in [e.reason for e in r.events]


@pytest.mark.parametrize(
    ("rollout_body", "name", "expected"),
    [
        ({"spec": {"modelVersionRef": {"name": "a"}}}, "a", True),
        ({"spec": {"modelVersionRef": {"name": "b"}}, "status": {"stableVersion": "a"}}, "a", True),
        ({"spec": {"modelVersionRef": {"name": "b"}}, "status": {"canaryVersion": "c"}}, "a", False),
    ],
)
def test_serves(rollout_body: dict[str, Any], name: str, expected: bool) -> None:
    assert serves(rollout_body, name) is expected


async def test_a_verified_artifact_is_asked_again_only_after_the_interval_or_a_spec_change() -> None:
    """At idle a Ready ModelVersion asks S3 nothing: the last verification holds for SLIPWAY_VERIFY_SECONDS (its
    status.verifiedAt), then one HEAD (the sha256 again only for a new ETag); a new spec sha256 or a cleared
    verifiedEtag asks at once. The requeue says when the next HEAD is due."""
    from datetime import timedelta

    from slipway.api.modelversion import ModelVersionStatus
    from slipway.storage import ObjectInfo

    class CountingS3:
        heads, reads = 0, 0

        async def head(self, access: Any, uri: str) -> ObjectInfo:
            self.heads += 1
            return ObjectInfo(etag="etag1", size=10)

        async def sha256(self, access: Any, uri: str) -> tuple[str, ObjectInfo]:
            self.reads += 1
            return SHA, ObjectInfo(etag="etag1", size=10)

    s3 = CountingS3()
    ctrl, seen = ModelVersionController(Settings(verify_seconds=600)), clients(s3=s3)
    first = mv()
    v = await ctrl.verify(first, seen, NOW)
    r = ctrl.decide(first, Observed((), v), NOW)
    # Never verified: the read alone (its answer has the ETag), no HEAD before it.
    assert (s3.heads, s3.reads) == (0, 1) and r.fields["verifiedAt"] == "2026-03-01T12:00:00Z"
    assert r.requeue_after == 600
    verified = mv()
    kept = {
        "type": "Verified",
        "status": "True",
        "reason": "ChecksumMatches",
        "message": "sha256 of s3://bucket/k matches (10 bytes)",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
    }
    status = {
        "verifiedSha256": SHA,
        "verifiedEtag": "etag1",
        "verifiedAt": "2026-03-01T12:00:00Z",
        "conditions": [kept],
    }
    verified.status = ModelVersionStatus.model_validate(status)
    v = await ctrl.verify(verified, seen, NOW + timedelta(seconds=599))
    r = ctrl.decide(verified, Observed((), v), NOW + timedelta(seconds=599))
    assert (s3.heads, s3.reads) == (0, 1), "nothing asked within the interval"
    assert "verifiedAt" not in r.fields and r.requeue_after == 1.0
    assert next(c for c in r.conditions if c.type == "Verified").message.endswith("(10 bytes)")  # no rewrite
    await ctrl.verify(verified, seen, NOW + timedelta(seconds=600))
    assert (s3.heads, s3.reads) == (1, 1), "a HEAD once due; the same ETag needs no new sha256"
    assert verified.status is not None
    verified.status.verified_etag = None  # someone cleared it: ask now
    await ctrl.verify(verified, seen, NOW + timedelta(seconds=1))
    assert (s3.heads, s3.reads) == (1, 2)


def test_an_unreachable_store_after_the_interval_is_retried_at_the_storage_pace() -> None:
    """Once the last verification has expired and S3 cannot be reached, the object is looked at again after
    RETRY_STORAGE, not at once: the expired verification in status sets no requeue."""
    from slipway.api.modelversion import ModelVersionStatus
    from slipway.controllers.modelversion import RETRY_STORAGE

    expired = mv()
    expired.status = ModelVersionStatus.model_validate(
        {"verifiedSha256": SHA, "verifiedEtag": "etag1", "verifiedAt": "2026-03-01T10:00:00Z"}
    )
    r = ModelVersionController(Settings(verify_seconds=600)).decide(
        expired, Observed((), Verification("unreachable", detail="timeout")), NOW
    )
    assert r.requeue_after == RETRY_STORAGE
