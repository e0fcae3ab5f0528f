"""Which predictor revisions an InferenceService serves, and with what share of the traffic.

Pure functions of the spec, the previous status and which revisions are ready, so the
traffic planning is unit-tested without a cluster. Serverless mode only: Standard
(RawDeployment) mode is KServe's own, run by its real controller on the local cluster
(hack/localcluster/serving.py), and the gateway leaves such InferenceServices alone.

A revision is one rendered predictor pod template (plus its replica count): its name is
`<isvc>-predictor-<hash>`, the hash of that template. Knative numbers revisions instead
(`-00001`); a hash gives the same name to the same spec, so a rollback to an earlier spec
finds that spec's revision still running and ready.

Serverless follows KServe's Knative reconciler: with `canaryTrafficPercent` and a rolled-out
revision, the latest revision gets that percent and the last rolled-out revision the rest;
otherwise the latest gets 100%. "Latest" is Knative's latest *ready* revision, so a new
revision takes no traffic before it is ready. The rolled-out revisions are tracked in
`status.components.predictor` (`latestRolledoutRevision`, `previousRolledoutRevision`)
exactly as KServe's status propagation does, which is what lets a restarted gateway carry on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

HASH_LEN = 10
LABEL_MAX = 63


def digest(template: Obj) -> str:
    """A short, stable hash of a rendered revision (key order does not matter)."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LEN]


def revision_name(isvc: str, template_digest: str) -> str:
    """`<isvc>-predictor-<hash>`, the isvc part cut so the name fits a label value."""
    suffix = f"-predictor-{template_digest}"
    return isvc[: LABEL_MAX - len(suffix)].rstrip("-") + suffix


@dataclass(frozen=True)
class Target:
    """One entry of status.components.predictor.traffic."""

    revision: str
    percent: int
    latest: bool
    tag: str | None = None

    def to_status(self) -> Obj:
        entry: Obj = {"revisionName": self.revision, "percent": self.percent, "latestRevision": self.latest}
        if self.tag:
            entry["tag"] = self.tag
        return entry


@dataclass(frozen=True)
class Plan:
    """What is served: the traffic table, the revisions that must keep running (`keep`),
    and the revision bookkeeping status.components.predictor carries."""

    latest_created: str
    latest_ready: str | None
    traffic: tuple[Target, ...]
    keep: frozenset[str]
    rolled_out: str | None = None
    previous_rolled_out: str | None = None

    def weights(self) -> dict[str, int]:
        """Percent per revision (a revision listed twice counts twice)."""
        out: dict[str, int] = {}
        for t in self.traffic:
            out[t.revision] = out.get(t.revision, 0) + t.percent
        return out


def serverless(
    latest: str,
    canary_percent: int | None,
    prior: Mapping[str, Any],
    existing: Set[str],
    ready: Set[str],
    tag_routing: bool = False,
) -> Plan:
    """The Knative service KServe would write for the predictor, as Knative would route it.

    `latest`: the revision of the current spec; `prior`: the previous
    status.components.predictor; `existing`: revisions whose Deployment exists; `ready`:
    revisions that are ready. Traffic only goes to revisions that exist: unlike a Knative
    revision scaled to zero, a revision no longer served is deleted, so a rolled-out
    revision whose Deployment is gone does not take the `100 - canaryTrafficPercent` share.
    """
    prior_ready = prior.get("latestReadyRevision")
    latest_ready = latest if latest in ready else (prior_ready if prior_ready in existing else None)
    rolled, previous = _name(prior.get("latestRolledoutRevision")), _name(prior.get("previousRolledoutRevision"))
    targets: list[Target] = []
    if latest_ready is not None:
        if canary_percent is not None and rolled in existing:
            percent = max(0, min(100, canary_percent))
            targets.append(Target(latest_ready, percent, True, "latest" if tag_routing else None))
            if percent < 100 and rolled is not None:
                targets.append(Target(rolled, 100 - percent, False, "prev" if tag_routing else None))
        else:
            targets.append(Target(latest_ready, 100, True, "latest" if tag_routing else None))
    rolled, previous = _track_rollout(targets, latest, latest_ready, rolled, previous, existing)
    keep = frozenset({latest, *(t.revision for t in targets)})
    return Plan(latest, latest_ready, tuple(targets), keep, rolled, previous)


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _track_rollout(
    targets: Sequence[Target],
    latest_created: str,
    latest_ready: str | None,
    rolled: str | None,
    previous: str | None,
    existing: Set[str],
) -> tuple[str | None, str | None]:
    """KServe's PropagateStatus: the latest ready revision becomes the rolled-out one once it
    takes 100% as "latest"; a rolled-out revision that is rolled back (traffic split over
    itself, below 100% as latest) hands the title back to the previous one, here only if
    that one still exists (else the next round would route 100% back and flip again)."""
    per_revision: dict[str, int] = {}
    for t in targets:
        per_revision[t.revision] = per_revision.get(t.revision, 0) + t.percent
    for t in targets:
        if t.revision != latest_ready or not t.latest:
            continue
        if rolled != latest_ready:
            if t.percent == 100:
                previous, rolled = rolled, latest_ready
        elif (
            latest_ready == latest_created
            and t.percent < 100
            and per_revision.get(t.revision) == 100
            and previous in existing
        ):
            rolled = previous
    return rolled, previous
