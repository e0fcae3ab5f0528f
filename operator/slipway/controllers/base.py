"""The reconcile shape every kind shares: snapshot, decide purely, write status once.

`reconcile()` is the only impure step: it validates the body, asks the kind's controller to observe (reads only,
through the pass's Clients, at the pass's `now`) and decide, carries out the decision's actions, merges
conditions, and sends one status patch only when something changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import ValidationError

from slipway import conditions
from slipway.api.kind import Kind
from slipway.clients import Clients
from slipway.conditions import Cond
from slipway.drift import DriftRejected, DriftUnavailable
from slipway.kube import Conflict, Forbidden, Gone, Kube, ObjectRef, Rejected

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Kind)
Obs = TypeVar("Obs")


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Create:
    """Create an object (Pod, Service, slipway kind); one that already exists is left as it is. `claim`: the name
    is this decision's to take (the next free version number, which another pass may take first); if someone else
    has it, the decision was made on stale reads and the pass ends in a Conflict, retried afresh."""

    manifest: dict[str, Any]
    claim: bool = False


@dataclass(frozen=True)
class Delete:
    """Delete an object in the reconciled object's namespace (the object itself included)."""

    kind: str
    name: str
    grace_seconds: int | None = None


@dataclass(frozen=True)
class SetFinalizers:
    """Replace the reconciled object's finalizers."""

    finalizers: tuple[str, ...]


@dataclass(frozen=True)
class Apply:
    """Server-side apply `manifest` (field manager `slipway`, forced): it holds only the fields slipway owns;
    fields it held before and leaves out are removed, fields others set (defaults, webhooks) stay theirs."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class Patch:
    """Merge-patch an existing object in the reconciled object's namespace, named by `ref`
    (apiVersion, kind, metadata.name). Only for fields slipway owns there, never a user's spec."""

    ref: dict[str, Any]
    patch: dict[str, Any]


@dataclass(frozen=True)
class ConfigureDetector:
    """Make the drift runtime's configuration of the reconciled DriftMonitor `config` (an idempotent PUT)."""

    config: dict[str, Any]


Action = Create | Delete | SetFinalizers | Apply | Patch | ConfigureDetector


@dataclass
class Result:
    """What a decision says the status should be, what to announce, and when to look again."""

    conditions: list[Cond]
    fields: dict[str, Any] = field(default_factory=dict)  # other status fields, by wire name
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    actions: list[Action] = field(default_factory=list)
    patched: bool = False  # set by reconcile(): whether a status patch was sent
    body: dict[str, Any] | None = None  # set by reconcile(): the object as our last write returned it
    # Set by reconcile(): the resourceVersion each of its writes of the object returned, in order (a status patch,
    # then a finalizer change): the watch's echoes of them are states this pass already decided on.
    versions: list[str] = field(default_factory=list)
    # Set by reconcile(): the object as written is a fixed point of the decision: decided again over it, with what
    # this pass observed, nothing would be written or done (`settled`).
    settled: bool = False


class Decision(Generic[K, Obs]):
    """One decision over one object, as every kind's decide() makes it: the status as read with the fields this
    decision sets laid over it (`get`), the Events it announces and the actions it asks for, gathered into one
    Result by `result`. Pure: the clock is the pass's `now`."""

    def __init__(self, obj: K, observed: Obs, now: datetime) -> None:
        self.obj, self.o, self.now = obj, observed, now
        status = getattr(obj, "status", None)
        self.status: dict[str, Any] = status.wire() if status is not None else {}
        self.fields: dict[str, Any] = {}
        self.events: list[Event] = []
        self.actions: list[Action] = []

    def get(self, key: str) -> Any:
        """A status field as it will be after this decision."""
        return self.fields[key] if key in self.fields else self.status.get(key)

    def result(self, conds: list[Cond], requeue_after: float | None = None) -> Result:
        return Result(conds, self.fields, self.events, requeue_after, list(self.actions))


Wake = tuple[str, str]  # (kind, name) of an object in the same namespace to reconcile soon


class Hooks:
    """What the generic runtime (handlers.py) asks of a kind besides observe and decide, with the answers of a kind
    that has nothing to say: a kind overrides what applies to it, so the runtime has no branch per kind."""

    def related(self, body: dict[str, Any]) -> list[Wake]:
        """Objects whose decision reads this one: woken when it changes rather than at their next resync."""
        return []

    def read_by_others(self, body: dict[str, Any]) -> Any:
        """What those objects read of this one (compared between two states of it), so that they are woken only
        when it changed, and also after this operator's own status writes. None: no such summary; they are woken
        at every watch event of it."""
        return None

    def dependents(self, namespace: str, name: str, cache: Any) -> list[Wake]:
        """Objects that read this one and are found by the watch cache's indexes (cache.INDEXES), not by its
        body: woken with `related` when what they read changed, or it came or went."""
        return []

    def metrics(self, body: dict[str, Any], fields: dict[str, Any]) -> None:
        """Prometheus metrics of a pass: `fields` is what it decided over the status in `body`."""

    async def deleted(self, body: dict[str, Any], clients: Clients) -> list[Wake]:
        """Clean-up outside the API once the object is gone (no finalizer guards it); what to wake."""
        return []

    async def outside(self, clients: Clients, wake: Callable[[str, str], None]) -> None:
        """Watch what objects of this kind read outside the API (no watch event says when it changes), calling
        wake(namespace, name) for those that should look again; runs for the operator's life. Nothing to watch:
        returns at once."""

    def observed_after(self, observed: Any, actions: list[Action], made: dict[tuple[str, str], Any]) -> Any:
        """What the pass would observe once its actions are done, from what they answered (`made`: each applied
        object by kind and name), for `settle`; None when it cannot tell (the pass is then not settled, and
        passes again at the echo of its write)."""
        return None


class Controller(Protocol, Generic[K, Obs]):
    kind: type[K]

    def related(self, body: dict[str, Any]) -> list[Wake]: ...

    def read_by_others(self, body: dict[str, Any]) -> Any: ...

    def dependents(self, namespace: str, name: str, cache: Any) -> list[Wake]: ...

    def metrics(self, body: dict[str, Any], fields: dict[str, Any]) -> None: ...

    async def deleted(self, body: dict[str, Any], clients: Clients) -> list[Wake]: ...

    async def outside(self, clients: Clients, wake: Callable[[str, str], None]) -> None: ...

    def observed_after(self, observed: Obs, actions: list[Action], made: dict[tuple[str, str], Any]) -> Obs | None: ...

    async def observe(self, obj: K, clients: Clients, now: datetime) -> Obs:
        """Reads only: everything the decision needs, as of `now` (the pass's clock, the one decide() gets)."""
        ...

    def decide(self, obj: K, observed: Obs, now: datetime) -> Result: ...


def invalid(problems: list[str]) -> Result:
    """A spec the operator cannot act on: Stalled until a person changes it."""
    message = "; ".join(problems)
    return Result(conditions.stalled("InvalidSpec", message), events=[Event("Warning", "InvalidSpec", message)])


# A refused write is retried this often: what refused it (a webhook's rule, another object) may change.
REJECTED_RETRY_SECONDS = 60.0
# A write to a service that did not answer (the drift runtime) is tried again this soon.
UNAVAILABLE_RETRY_SECONDS = 10.0


def rejected(message: str) -> Result:
    """A write the decision needed was refused as invalid (kube.Rejected): the status keeps what it said before
    (the decision did not happen) and says why it is stuck, instead of the reconcile failing over and over."""
    return Result(conditions.stalled("Rejected", message), events=[Event("Warning", "Rejected", message)],
                  requeue_after=REJECTED_RETRY_SECONDS)  # fmt: skip


def describe(error: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]


def desired_status(old: dict[str, Any], result: Result, generation: int | None, now: datetime) -> dict[str, Any]:
    """The full status after `result`: fields it names are replaced, others kept, conditions merged."""
    new = {**old, **result.fields}
    new["conditions"] = conditions.merge(old.get("conditions", []), result.conditions, generation, now)
    if generation is not None:
        new["observedGeneration"] = generation
    return {k: v for k, v in new.items() if v is not None}


def merge_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: only changed keys, nulls for removed ones."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_diff(before, value)
            if sub:
                patch[key] = sub
        elif before != value or key not in old:
            patch[key] = value
    return patch


async def reconcile(
    controller: Controller[K, Any],
    body: dict[str, Any],
    clients: Clients,
    now: datetime,
    wrote: Callable[[str], None] = lambda rv: None,
) -> Result:
    """One pass over one object; raises kube.Conflict when the object moved underneath. `wrote` is told each
    resourceVersion the pass's writes return, as they return (its watch echo may come before the pass ends)."""
    kube = clients.kube
    meta = body.get("metadata", {})
    observed: Any = None
    decided: Result | None = None  # the decision over what was observed, while it is what this pass carries out
    try:
        obj = controller.kind.model_validate(body)
    except ValidationError as e:
        result = invalid(describe(e))
    else:
        try:
            observed = await controller.observe(obj, clients, now)
        except Forbidden as e:
            # Not the object's fault and not the operator's to fix: say so where its owner looks.
            result = Result(conditions.stalled("Forbidden", str(e)), events=[Event("Warning", "Forbidden", str(e))])
        else:
            result = decided = controller.decide(obj, observed, now)
    ref = ObjectRef.of(body)
    made: dict[tuple[str, str], Any] = {}
    try:
        if await act(controller.kind, ref, result.actions, clients, made):
            return result  # the object itself was deleted: there is no status left to write
    except Rejected as e:
        result = rejected(str(e))
    except DriftRejected as e:
        result = rejected(f"the drift runtime refused the configuration: {e}")
    except DriftUnavailable as e:
        # The status keeps what it said (the runtime still holds the last configuration it took).
        result = Result(conditions.progressing("DetectorUnavailable", str(e)), requeue_after=UNAVAILABLE_RETRY_SECONDS)
    old = body.get("status") or {}
    new = desired_status(old, result, meta.get("generation"), now)
    try:
        await write(controller.kind.plural, ref, old, new, result, kube, now, wrote)
    except Gone:
        # Deleted while this pass ran (the fuzz campaign found it: the pass failed with a 404 and was retried):
        # nothing is left to write, and the watch's DELETED event forgets the object.
        log.debug("%s %s/%s was deleted during its reconcile", controller.kind.kind, ref.namespace, ref.name)
        return result
    if result.body is not None and decided is result:
        settle(controller, result, observed, now, made)
    return result


def settle(
    controller: Controller[K, Obs], result: Result, observed: Obs, now: datetime, made: dict[tuple[str, str], Any]
) -> None:
    """Decide again over the object as this pass wrote it, with what it observed (as its actions left it, when
    the kind can tell: Hooks.observed_after): when that would write and do nothing, the pass is `settled` and the
    watch's echo of its writes needs no pass of its own (handlers.Runtime): what that pass would read anew either
    is watched (its change wakes the object) or has a timer, and the timer is the one decided over the written
    status (a finished TrainingJob's TTL counts from the completion this pass wrote). A decision that takes one
    step per pass is not settled after a step, and passes again at the echo."""
    body = result.body or {}
    after = controller.observed_after(observed, result.actions, made) if result.actions else observed
    if after is None:
        return
    try:
        again = controller.decide(controller.kind.model_validate(body), after, now)
    except Exception:  # the pass itself succeeded: its echo is simply passed over, as without settling
        log.debug("deciding again over %s %s failed", controller.kind.kind, body.get("metadata"), exc_info=True)
        return
    status = body.get("status") or {}
    if again.actions or desired_status(status, again, body.get("metadata", {}).get("generation"), now) != status:
        return
    result.settled = True
    waits = [w for w in (result.requeue_after, again.requeue_after) if w]
    result.requeue_after = min(waits) if waits else None


async def write(
    plural: str,
    ref: ObjectRef,
    old: dict[str, Any],
    new: dict[str, Any],
    result: Result,
    kube: Kube,
    now: datetime,
    wrote: Callable[[str], None] = lambda rv: None,
) -> None:
    """The status patch (when it changed), its Events, then the finalizers."""
    rv = ref.resource_version
    if new != old:
        patched = await kube.patch_status(plural, ref.namespace, ref.name, merge_diff(old, new), rv)
        rv, result.patched, result.body = patched["metadata"]["resourceVersion"], True, patched
        result.versions.append(rv)
        wrote(rv)
        # Events describe transitions, so they go out only with a status change: a resync never repeats them.
        for ev in result.events:
            await kube.event(ref, ev.type, ev.reason, ev.message, now)
    for action in result.actions:
        # After the status patch, with its resourceVersion: a finalizer change must not race the status.
        if isinstance(action, SetFinalizers):
            result.body = await kube.set_finalizers(plural, ref.namespace, ref.name, list(action.finalizers), rv)
            rv = result.body["metadata"]["resourceVersion"]
            result.versions.append(rv)
            wrote(rv)


async def act(
    kind: type[Kind],
    ref: ObjectRef,
    actions: list[Action],
    clients: Clients,
    made: dict[tuple[str, str], Any] | None = None,
) -> bool:
    """Create and delete what the decision asks for; True when the reconciled object itself was deleted. Each
    applied object's answer goes into `made`, by kind and name."""
    kube, deleted_self = clients.kube, False
    for action in actions:
        if isinstance(action, Create):
            meta = {"namespace": ref.namespace, **action.manifest["metadata"]}
            if not await kube.create({**action.manifest, "metadata": meta}) and action.claim:
                raise Conflict(f"{action.manifest['kind']} {meta.get('name')} was created by someone else meanwhile")
        elif isinstance(action, Apply):
            meta = {**action.manifest["metadata"], "namespace": ref.namespace}
            answer = await kube.apply({**action.manifest, "metadata": meta})
            if made is not None:
                made[(action.manifest["kind"], meta["name"])] = answer
        elif isinstance(action, Patch):
            await kube.patch_object(
                {**action.ref, "metadata": {"namespace": ref.namespace, **action.ref["metadata"]}}, action.patch
            )
        elif isinstance(action, ConfigureDetector):
            if clients.drift is not None:  # decide() asks only when the operator has a drift runtime
                await clients.drift.put(ref.namespace, ref.name, action.config)
        elif isinstance(action, Delete):
            await kube.delete(action.kind, ref.namespace, action.name, action.grace_seconds)
            deleted_self = deleted_self or (action.kind == kind.kind and action.name == ref.name)
    return deleted_self
