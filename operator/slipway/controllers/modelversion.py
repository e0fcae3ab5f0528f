"""ModelVersion controller: verify the artifact in S3, evaluate gates, protect served versions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from slipway import conditions, contract
from slipway.api.common import Gate
from slipway.api.modelversion import ModelVersion
from slipway.clients import Clients
from slipway.conditions import Cond, parse_time, rfc3339
from slipway.config import Settings
from slipway.controllers.base import Decision, Event, Hooks, Result, SetFinalizers, Wake
from slipway.storage import ObjectMissing, S3Access, StorageError

FINALIZER = contract.IN_USE_PROTECTION
RETRY_STORAGE = 30.0
Check = Literal["verified", "mismatch", "missing", "unreachable", "secret-missing"]


@dataclass(frozen=True)
class Verification:
    check: Check
    sha256: str = ""
    etag: str = ""
    size: int = 0
    detail: str = ""
    asked: datetime | None = None  # when S3 was asked; None: the last verification still holds (not asked)
    valid_until: datetime | None = None  # a verified artifact: when S3 is to be asked again (None: next pass)


@dataclass(frozen=True)
class Observed:
    served_by: tuple[str, ...]
    verification: Verification


def evaluate_gates(gates: list[Gate], metrics: dict[str, float]) -> list[str]:
    """Every gate the metrics fail, as a sentence; empty when all pass."""
    failures = []
    for gate in gates:
        value = metrics.get(gate.metric)
        if value is None:
            failures.append(f"metric {gate.metric} is missing")
        elif gate.min is not None and value < gate.min:
            failures.append(f"{gate.metric}={value:.4g} is below the minimum {gate.min:g}")
        elif gate.max is not None and value > gate.max:
            failures.append(f"{gate.metric}={value:.4g} is above the maximum {gate.max:g}")
    return failures


def headline(mv: ModelVersion) -> str | None:
    metrics = mv.spec.metrics
    name = mv.spec.headline_metric or (mv.spec.gates[0].metric if mv.spec.gates else None) or next(iter(metrics), None)
    if name is None or name not in metrics:
        return None
    return f"{name}={metrics[name]:.4g}"


def rollout_reads(version: dict[str, Any]) -> tuple[Any, ...]:
    """What a Rollout reads of a ModelVersion (rollout.version_of, references.not_ready): its spec (by
    generation), its metadata and its Ready condition. Not servedBy, verification times or other conditions."""
    meta = version.get("metadata") or {}
    conds = (version.get("status") or {}).get("conditions") or []
    ready: dict[str, Any] = next((c for c in conds if c.get("type") == "Ready"), {})
    return (meta.get("generation"), meta.get("labels"), meta.get("annotations"), meta.get("deletionTimestamp"),
            ready.get("status"), ready.get("reason"), ready.get("message"))  # fmt: skip


def serves(rollout: dict[str, Any], name: str) -> bool:
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    ref = spec.get("modelVersionRef") or {}
    return name in (ref.get("name"), status.get("stableVersion"), status.get("canaryVersion"))


class ModelVersionController(Hooks):
    kind = ModelVersion

    def related(self, body: dict[str, Any]) -> list[Wake]:
        """The Rollouts serving it wait on its readiness."""
        return [("Rollout", r) for r in (body.get("status") or {}).get("servedBy") or []]

    def read_by_others(self, body: dict[str, Any]) -> Any:
        return rollout_reads(body)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def observe(self, obj: ModelVersion, clients: Clients, now: datetime) -> Observed:
        ns, name = obj.metadata.get("namespace", ""), obj.metadata.get("name", "")
        rollouts = await clients.kube.list_custom("rollouts", ns, index=("version", name))
        served = tuple(sorted(r["metadata"]["name"] for r in rollouts if serves(r, name)))
        return Observed(served, await self.verify(obj, clients, now))

    async def verify(self, mv: ModelVersion, clients: Clients, now: datetime) -> Verification:
        """Nothing asked while the last verification holds (verified_until); then a HEAD, and the full sha256
        only when the object's ETag is new. Never verified (or for another sha256): the read alone, whose answer
        carries the ETag too."""
        if mv.status and (until := verified_until(mv, self.settings.verify_seconds)) is not None and now < until:
            return Verification("verified", mv.spec.artifact.sha256, mv.status.verified_etag or "", valid_until=until)
        art, ns = mv.spec.artifact, mv.metadata.get("namespace", "")
        secret: dict[str, str] = {}
        if art.credentials_secret_ref:
            found = await clients.kube.secret_data(ns, art.credentials_secret_ref.name)
            if found is None:
                return Verification("secret-missing", detail=art.credentials_secret_ref.name)
            secret = found
        access = S3Access(
            art.endpoint or self.settings.s3_endpoint or None,
            art.region or self.settings.s3_region,
            secret.get("AWS_ACCESS_KEY_ID"),
            secret.get("AWS_SECRET_ACCESS_KEY"),
        )
        status = mv.status
        known = status.verified_etag if status and status.verified_sha256 == art.sha256 else None
        try:
            digest, info = art.sha256, None
            if known is not None:
                info = await clients.s3.head(access, art.uri)
            if info is None or info.etag != known:
                digest, info = await clients.s3.sha256(access, art.uri)
        except ObjectMissing as e:
            return Verification("missing", detail=str(e))
        except StorageError as e:
            return Verification("unreachable", detail=str(e))
        if digest != art.sha256:
            return Verification("mismatch", digest, info.etag, info.size, asked=now)
        interval = self.settings.verify_seconds
        until = now + timedelta(seconds=interval) if interval > 0 else None
        return Verification("verified", digest, info.etag, info.size, asked=now, valid_until=until)

    def decide(self, obj: ModelVersion, observed: Observed, now: datetime) -> Result:
        failures = evaluate_gates(obj.spec.gates, obj.spec.metrics)
        gates = (
            Cond("GatesPassed", "False", "GatesFailed", "; ".join(failures))
            if failures
            else Cond("GatesPassed", "True", "GatesPassed", f"{len(obj.spec.gates)} gate(s) passed")
        )
        verified, summary, fields, retry = verification(obj, observed.verification)
        if (until := observed.verification.valid_until) is not None:
            retry = max(1.0, (until - now).total_seconds())  # ask S3 again then (a resync may come sooner)
        elif observed.verification.check in ("mismatch", "missing") and self.settings.verify_seconds > 0:
            retry = self.settings.verify_seconds  # asked again as often as a verified one: it may be put back
        if self.settings.verify_seconds <= 0:
            fields.pop("verifiedAt", None)  # asked at every pass: a time written each pass would be a write each pass
        if summary is None:
            summary = (
                # A valid record of a model too poor to serve: only a new version (or new gates) changes that.
                conditions.stalled("GatesFailed", "; ".join(failures))
                if failures
                else conditions.ready("Verified", "artifact verified and gates passed: ready to serve")
            )
        d = Decision(obj, observed, now)
        d.fields |= fields | {"headline": headline(obj), "servedBy": list(observed.served_by)}
        if verified.status == "False":
            d.events.append(Event("Warning", verified.reason, verified.message))
        d.actions += finalizers(obj, observed.served_by)
        if obj.metadata.get("deletionTimestamp") and observed.served_by:
            message = (f"deletion is blocked while served by Rollout(s) {', '.join(observed.served_by)}: point them "
                       "elsewhere first")  # fmt: skip
            summary = conditions.progressing("DeletionBlocked", message)
            d.events.append(Event("Warning", "DeletionBlocked", message))
        return d.result([*summary, verified, gates], retry)


def verified_until(mv: ModelVersion, verify_seconds: float) -> datetime | None:
    """Until when the last verification in status holds without asking S3, or None when it must be asked now:
    never verified, verified another sha256 (the spec changed), or its ETag cleared."""
    status = mv.status
    if status is None or not status.verified_etag or status.verified_sha256 != mv.spec.artifact.sha256:
        return None
    at = status.verified_at
    if verify_seconds <= 0 or not at:
        return None
    verified = parse_time(at)
    return verified + timedelta(seconds=verify_seconds) if verified else None


UNVERIFIED: dict[str, Any] = {"verifiedSha256": None, "verifiedEtag": None, "verifiedAt": None}


def verification(mv: ModelVersion, v: Verification) -> tuple[Cond, list[Cond] | None, dict[str, Any], float | None]:
    """(Verified condition, summary conditions if verification decides them, status fields, requeue)."""
    uri = mv.spec.artifact.uri
    if v.check == "verified":
        if v.asked is None:  # nothing asked: the condition stays as the last verification wrote it
            kept = conditions.find([c.wire() for c in mv.status.conditions] if mv.status else [], "Verified") or {}
            msg = kept.get("message") or f"sha256 of {uri} matches"
            return Cond("Verified", "True", "ChecksumMatches", msg), None, {}, None
        msg = f"sha256 of {uri} matches ({v.size} bytes)"
        return (
            Cond("Verified", "True", "ChecksumMatches", msg),
            None,
            {"verifiedSha256": v.sha256, "verifiedEtag": v.etag, "verifiedAt": rfc3339(v.asked)},
            None,
        )
    if v.check == "mismatch":
        msg = f"{uri} has sha256 {v.sha256}, spec.artifact.sha256 is {mv.spec.artifact.sha256}: the object was changed"
        cond = Cond("Verified", "False", "ChecksumMismatch", msg)
        return cond, conditions.stalled("ChecksumMismatch", msg), dict(UNVERIFIED), None
    if v.check == "missing":
        msg = f"{uri} does not exist ({v.detail})"
        cond = Cond("Verified", "False", "ArtifactNotFound", msg)
        return cond, conditions.stalled("ArtifactNotFound", msg), dict(UNVERIFIED), None
    if v.check == "secret-missing":
        msg = f"Secret {v.detail!r} (spec.artifact.credentialsSecretRef) does not exist in this namespace"
        cond = Cond("Verified", "Unknown", "SecretNotFound", msg)
        return cond, conditions.progressing("SecretNotFound", msg), {}, RETRY_STORAGE
    msg = f"cannot reach S3 to verify {uri}: {v.detail}"
    return (
        Cond("Verified", "Unknown", "StorageUnreachable", msg),
        conditions.progressing("StorageUnreachable", msg),
        {},
        RETRY_STORAGE,
    )


def finalizers(mv: ModelVersion, served_by: tuple[str, ...]) -> list[SetFinalizers]:
    """The finalizer is there exactly while a Rollout serves the version; deletion waits for it to go."""
    present = list(mv.metadata.get("finalizers") or [])
    deleting = bool(mv.metadata.get("deletionTimestamp"))
    if served_by and FINALIZER not in present and not deleting:
        return [SetFinalizers((*present, FINALIZER))]
    if not served_by and FINALIZER in present:
        return [SetFinalizers(tuple(f for f in present if f != FINALIZER))]
    return []
