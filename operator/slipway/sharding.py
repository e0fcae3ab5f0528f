"""Which operator shard owns an object, by the `sharding.slipway.dev/key` label (Flux's convention).

A fleet that outgrows one process runs several operator Deployments, each a shard (`SLIPWAY_SHARD`). A named
shard owns exactly the objects labelled `sharding.slipway.dev/key: <its name>`; the default shard (no
`SLIPWAY_SHARD`, or an empty one) owns every object without the label (or with an empty value), as Flux's
controllers take `!sharding.fluxcd.io/key`. An object labelled for a shard that does not run waits for it.
Each shard runs its own Kopf peering (`<SLIPWAY_PEERING>-shard-<name>`, the default shard keeps
`SLIPWAY_PEERING`), so the replicas of one shard are active/standby without pausing another shard's.

Pure functions; handlers.py applies them to every watch event and every timer's pass.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from slipway import contract

SHARD_LABEL = contract.SHARD_KEY
DEFAULT_SHARD = ""
# A DNS label (it names the peering object and, in the chart, a Deployment) that is also a label value.
SHARD_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,28}[a-z0-9])?$")


def shard_of(labels: Mapping[str, Any] | None) -> str:
    """The shard an object belongs to, from its labels: DEFAULT_SHARD without the label or with an empty value."""
    value = (labels or {}).get(SHARD_LABEL)
    return value.strip() if isinstance(value, str) else DEFAULT_SHARD


def owns(shard: str, labels: Mapping[str, Any] | None) -> bool:
    """Whether the operator shard `shard` reconciles an object with these labels."""
    return shard_of(labels) == shard


def peering_name(peering: str, shard: str) -> str:
    """The Kopf peering of a shard's replicas: one per shard, so shards never pause each other. Empty peering
    (standalone) stays empty; the default shard keeps the plain name (unsharded installs are unchanged)."""
    if not peering or shard == DEFAULT_SHARD:
        return peering
    return f"{peering}-shard-{shard}"


def shard_labels(shard: str) -> dict[str, str]:
    """The label an object the operator creates for an object of `shard` carries (a TrainingJob's ModelVersion,
    a DriftMonitor's retraining job), so a model's lineage stays in one shard. None for the default shard."""
    return {SHARD_LABEL: shard} if shard != DEFAULT_SHARD else {}


def validate(shard: str) -> None:
    if shard != DEFAULT_SHARD and not SHARD_NAME.match(shard):
        raise ValueError(
            f"SLIPWAY_SHARD must be empty (the default shard) or a lowercase DNS label of at most 30 characters "
            f"(letters, digits, '-'), not {shard!r}"
        )
