"""Kopf wiring: thin handlers that hand every watch event to the kind's controller.

Level-triggered on purpose: `on.event` sees every change (and every object at start-up), the
controller compares desired with observed status, and nothing is written when they agree. Kopf's
change handlers are not used, so Kopf writes no annotations and adds no finalizers of its own.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

import kopf

from slipway import contract
from slipway.analysis import Prometheus
from slipway.api.common import GROUP, VERSION
from slipway.cache import WatchCache, managed_kind, slim
from slipway.clients import Clients
from slipway.config import Settings
from slipway.controllers import every_kind
from slipway.controllers.base import Controller, reconcile
from slipway.controllers.rollout_isvc import ISVC_PLURAL
from slipway.controllers.rollout_isvc import KSERVE_GROUP as ISVC_GROUP
from slipway.controllers.rollout_isvc import KSERVE_VERSION as ISVC_VERSION
from slipway.drift import DriftRuntime
from slipway.kube import Conflict, Kube
from slipway.observability import (
    OBJECTS,
    RECONCILE_SECONDS,
    RECONCILES,
    SHARD,
    STATUS_PATCHES,
    UNRECONCILED,
    WAITING,
)
from slipway.peering import Leadership
from slipway.requeue import Line, Requeuer
from slipway.sharding import owns
from slipway.storage import S3

log = logging.getLogger(__name__)

POD_DEBOUNCE_SECONDS = 0.2
CONFLICT_RETRY_SECONDS = 1.0
# How long events older than our own last write of an object are passed over while its echo is awaited (a
# watch that restarted delivers only the latest state, never the echo).
ECHO_WAIT_SECONDS = 30.0
MANAGED = contract.MANAGED  # the label on what slipway creates
ERROR_RETRY_SECONDS = 10.0


Key = tuple[str, str, str]  # (plural, namespace, name)


class Runtime:
    """What the handlers share: the API client, the requeue timers, the settings, and the latest body of every
    object as the watch (or our own status patch) delivered it: a resync or a wake reconciles from that, not from
    a GET per object (the watch keeps it current; a stale one only costs a 409 and a retry).

    Sharded (sharding.py), the watch still delivers every object: those of other shards are only remembered as
    `foreign`, so a wake for one of them (a pod it owns, a ModelVersion it serves) costs nothing, and an object
    relabelled away from this shard stops being reconciled here at once.

    Every shard's objects also go into `cache` (cache.py), which answers the reads of other slipway objects a
    reconcile makes (a Rollout's ModelVersion, the Rollouts serving a ModelVersion) without an API call."""

    def __init__(self, kube: Kube, settings: Settings, s3: S3) -> None:
        self.kube, self.settings, self.requeue = kube, settings, Requeuer()
        self.slots = asyncio.Semaphore(settings.max_concurrent_reconciles)
        self.cache = kube.cache = WatchCache()
        self.bodies: dict[Key, dict[str, Any]] = {}
        # The resourceVersions our writes of an object returned whose echo the watch has not delivered yet (in
        # order), when the last was written, and whether the pass that wrote it was settled (base.settle: the
        # echo of its last write is remembered, and wakes what reads it, but is not passed over again).
        self.written: dict[Key, tuple[list[str], float, bool]] = {}
        # The resourceVersions the pass running now wrote so far, and those of them whose echo the watch delivered
        # before the pass ended (it posts its Events after the status patch): an echo of the running pass's own
        # write is not a reason for another pass, unless the pass ends unsettled (`_pass`).
        self.writing: dict[Key, list[str]] = {}
        self.early: dict[Key, set[str]] = {}
        self.foreign: set[Key] = set()
        # Objects whose last pass ended in a conflict: their kept body is stale, the next pass reads them from the
        # API (`_refetch`).
        self.stale: set[Key] = set()
        self.passed: set[Key] = set()  # objects with a pass since start (slipway_objects_unreconciled)
        # Objects whose pass waits for a free slot, oldest first, each once (`handle`): a queue of keys, as
        # controller-runtime's workqueue, not a Kopf worker per object holding its event.
        # Served first passes first (an object not reconciled since start: the start-up burst, a new object), then
        # passes again (wakes, resyncs), each in the kinds' order (api.KINDS: a kind after the kinds it reads):
        # at start-up a Rollout's first pass then finds its ModelVersion verified instead of writing "waiting"
        # and passing again when woken, and the wakes of objects already passed wait, so that several become one
        # pass, instead of holding back objects that have none yet (`place`).
        self.parked: Line[Key, tuple[Controller[Any, Any], dict[str, Any]]] = Line()
        self._launched: set[asyncio.Task[None]] = set()
        self.launching = 0  # called in from the line, not yet in a slot (launch_parked)
        self.pending: set[Key] = set()  # objects with a pass waiting for their lock or a slot (handle)
        self.drift = DriftRuntime(settings.drift_url) if settings.drift_url else None
        self.prometheus = Prometheus()
        self.clients = Clients(kube, s3, self.prometheus, self.drift)
        self.leadership = Leadership(kube, settings)
        self.controllers: dict[str, Controller[Any, Any]] = {c.kind.kind: c for c in every_kind(settings)}
        self.rank = {kind: i for i, kind in enumerate(self.controllers)}
        SHARD.labels(settings.shard or "default").set(1)
        for controller in self.controllers.values():
            plural = controller.kind.plural
            OBJECTS.labels(controller.kind.kind, "true").set_function(partial(self._count, self.bodies, plural))
            OBJECTS.labels(controller.kind.kind, "false").set_function(partial(self._count, self.foreign, plural))
            UNRECONCILED.labels(controller.kind.kind).set_function(partial(self._unreconciled, plural))
        WAITING.set_function(lambda: float(len(self.parked)))

    @staticmethod
    def _count(keys: Iterable[Key], plural: str) -> float:
        return float(sum(1 for key in keys if key[0] == plural))

    def _unreconciled(self, plural: str) -> float:
        return float(sum(1 for key in self.bodies if key[0] == plural and key not in self.passed))

    def settled(self) -> bool:
        """Whether this shard has objects and every one has had a pass since start, none waiting for a slot."""
        return bool(self.bodies) and not self.parked and all(key in self.passed for key in self.bodies)

    def owns(self, body: dict[str, Any]) -> bool:
        """Whether this operator's shard reconciles `body` (its sharding.slipway.dev/key label)."""
        return owns(self.settings.shard, (body.get("metadata") or {}).get("labels"))

    async def event(self, controller: Controller[Any, Any], type_: str | None, obj: dict[str, Any]) -> None:
        """One watch event of one of the four kinds: reconcile it when it is this shard's, and wake what depends
        on it either way (a Rollout of this shard may serve another shard's ModelVersion)."""
        namespace, name = obj["metadata"].get("namespace") or "", obj["metadata"].get("name") or ""
        key = (controller.kind.plural, namespace, name)
        echo = "" if type_ == "DELETED" else self.echo(key, obj)
        if echo == "older":
            return
        if echo == "early":
            self.early.setdefault(key, set()).add(obj["metadata"].get("resourceVersion") or "")
        self.remember(controller.kind.kind, key, None if type_ == "DELETED" else obj)
        if type_ == "DELETED":
            self.written.pop(key, None)
            self.foreign.discard(key)
            self.passed.discard(key)
            self.seen(key, None)
            self.requeue.forget(key)
            if self.owns(obj):
                for kind, other in await controller.deleted(obj, self.clients):
                    self.wake(kind, namespace, other)
            return
        self.seen(key, obj)
        if key not in self.foreign and echo not in ("settled", "early"):
            await self.handle(controller, obj)
        if controller.read_by_others(obj) is None:  # otherwise woken by remember(), when what they read changed
            for kind, other in controller.related(obj):
                self.wake(kind, namespace, other)

    def echo(self, key: Key, obj: dict[str, Any]) -> Literal["older", "settled", "early", ""]:
        """What the watch's `obj` is to our own writes of the object. "older": the echo of one of them after a later
        one returned; reconciling that older state again could only end in a 409 and a retry (thousands at start-up
        with 10,000 objects). "settled": the echo of our last write, by a settled pass. "early": the echo of a
        write of the pass running now (it passes again at its end if it is not settled). "": anything else. Only
        resourceVersions we wrote ourselves are passed over. The echo of our last write, or any state we did not
        write (made after our last write: each write carries the resourceVersion it was decided from), means the
        watch has caught up. So does ECHO_WAIT_SECONDS: a watch that restarted sends no echoes. An echo that came
        before its write's answer was handled then, like any event."""
        if obj["metadata"].get("resourceVersion") in self.writing.get(key, ()):
            return "early"
        pending = self.written.get(key)
        if pending is None:
            return ""
        rvs, at, settled = pending
        rv = obj["metadata"].get("resourceVersion")
        if rv in rvs[:-1] and time.monotonic() - at <= ECHO_WAIT_SECONDS:
            rvs.remove(rv)
            return "older"
        del self.written[key]
        return "settled" if settled and rv == rvs[-1] else ""

    def remember(self, kind: str, key: Key, body: dict[str, Any] | None) -> None:
        """The newest body of an object (None: deleted), from the watch or our own status write, into the cache,
        and, for a kind that says what others read of it (Hooks.read_by_others: a Rollout's ModelVersions and
        DriftMonitors read which versions it names, a ModelVersion's Rollouts its spec, metadata and Ready
        condition), a wake for them when that changed (or it came or went), not at each of its status writes."""
        before = self.cache.get(*key)
        self.cache.put(key, body)
        controller, namespace, name = self.controllers[kind], key[1], key[2]
        states = [b for b in (before, body) if b is not None]
        if controller.read_by_others(states[0] if states else {}) is None:
            return
        if len(states) == 2 and controller.read_by_others(before or {}) == controller.read_by_others(body or {}):
            return
        wakes = controller.dependents(namespace, name, self.cache)  # e.g. versions it stopped serving
        wakes += sorted({w for b in states for w in controller.related(b)})
        for other_kind, other in wakes:
            self.wake(other_kind, namespace, other)

    async def watch_outside(self) -> None:
        """Every kind's watch of what it reads outside the API (Hooks.outside: the drift runtime's results), for
        the operator's life; an object woken that this operator does not know (another namespace's, or gone) is
        left alone."""

        def waker(controller: Controller[Any, Any]) -> Callable[[str, str], None]:
            def wake(namespace: str, name: str) -> None:
                if self.cache.get(controller.kind.plural, namespace, name) is not None:
                    self.wake(controller.kind.kind, namespace, name)

            return wake

        await asyncio.gather(*(c.outside(self.clients, waker(c)) for c in self.controllers.values()))

    def wake(self, kind: str, namespace: str, name: str, delay: float = POD_DEBOUNCE_SECONDS) -> None:
        """Reconcile an object soon because something it owns changed (debounced per object)."""
        controller = self.controllers[kind]
        key = (controller.kind.plural, namespace, name)
        if key in self.foreign:  # another shard's: its own operator wakes it
            return
        self.requeue.schedule(key, delay, lambda: self._refetch(controller, key))

    async def handle(self, controller: Controller[Any, Any], body: dict[str, Any], parked: bool = False) -> None:
        """One pass over `body`'s object, one pass per object at a time, at most max_concurrent_reconciles at
        once. `parked`: called in from the line of keys waiting for a slot (launch_parked)."""
        meta = body["metadata"]
        key = (controller.kind.plural, meta["namespace"], meta["name"])
        if parked and not await self.leadership.active():
            # Paused by Kopf's peering since it got in line: the active replica has it (see _refetch).
            self.called_in()
            return
        if not self.owns(body):  # read back by a wake, or relabelled since the timer was set
            self.seen(key, body)
            if parked:
                self.called_in()
            return
        if key in self.pending:
            # A pass of it already waits for the one running (or for a slot): it reads the newest body when it
            # starts, so this event or wake is in it (controller-runtime's workqueue keeps a key once, as Kopf's
            # batching did while its worker was blocked).
            if parked:
                self.called_in()
            return
        if not parked and self.slots.locked():
            # Every slot is taken (the start-up burst: every object at once): the key waits in line and the caller
            # (Kopf's worker for this object, a timer) returns at once instead of waiting with its event, so that
            # 10,000 objects do not mean 10,000 workers alive. A key already in line keeps its place; its pass
            # reads the newest body then. Passes that end call the line in (launch_parked).
            self.parked.add(key, self.place(controller, key), (controller, body))
            return
        self.pending.add(key)
        started = False
        try:
            async with self.requeue.lock(key), self.slots:
                self.pending.discard(key)
                started = True
                if parked:  # in a slot: the next in line may be called in
                    self.called_in()
                # This pass reads everything afresh, so a pending timer is spent; a wake arriving while it runs is
                # not (Requeuer.schedule keeps the earlier timer).
                self.requeue.cancel(key)
                # The newest body: another pass may have written the object while this one waited for the lock, and
                # reconciling what the caller read before that could only end in a 409 (one per Rollout at
                # start-up). The echo of our own last write is reconciled like any event (a decision may take its
                # next step from what it wrote), unless the pass that wrote it was settled (`echo`, base.settle).
                delay = await self._pass(controller, self.bodies.get(key) or body)
                self.passed.add(key)
        finally:
            if not started:  # cancelled while waiting
                self.pending.discard(key)
            self.launch_parked()
        self.requeue.schedule(key, delay, lambda: self._refetch(controller, key))

    def place(self, controller: Controller[Any, Any], key: Key) -> int:
        """An object's rank in line (`parked`): its kind's, after every kind's first passes once it has had one."""
        return self.rank[controller.kind.kind] + (len(self.rank) if key in self.passed else 0)

    def called_in(self) -> None:
        """A key called in from the line holds a slot now, or needs none: the next in line may be called in."""
        self.launching -= 1
        self.launch_parked()

    def launch_parked(self) -> None:
        """Call the first key in line (`handle`) to a free slot. One at a time: the one called in calls the next
        once it holds a slot, so a line of thousands never becomes thousands of tasks waiting for a slot. Its task
        runs in an empty context (see Requeuer.schedule)."""
        if not self.parked or self.launching or self.slots.locked():
            return
        key, (controller, body) = self.parked.take()
        self.launching += 1
        task = asyncio.get_running_loop().create_task(
            self.handle(controller, self.bodies.get(key) or body, parked=True), context=contextvars.Context()
        )
        self._launched.add(task)
        task.add_done_callback(self._launched.discard)

    def seen(self, key: Key, body: dict[str, Any] | None) -> None:
        """The watch delivered `body` for `key` (None: deleted). Another shard's object is only remembered as
        such, and forgotten here if it was ours until now."""
        self.stale.discard(key)
        if body is None:
            self.bodies.pop(key, None)
            self.parked.discard(key)
        elif self.owns(body):
            self.foreign.discard(key)
            self.bodies[key] = body
        else:
            self.foreign.add(key)
            self.bodies.pop(key, None)
            self.parked.discard(key)
            self.requeue.forget(key)

    async def _refetch(self, controller: Controller[Any, Any], key: tuple[str, str, str]) -> None:
        if not await self.leadership.active():
            # Paused by Kopf's peering: the active replica owns this object now; Kopf re-lists everything
            # (and so restarts our timers) when this replica resumes.
            self.requeue.forget(key)
            return
        if (cached := self.bodies.get(key)) is not None:
            await self.handle(controller, cached)
            return
        if key not in self.stale:
            # Never delivered (a wake at start-up for an object whose kind's watch has not reached it yet: one
            # GET per object of a kind), or deleted since: the watch's event for it, when it comes, is its pass.
            self.requeue.forget(key)
            return
        try:  # from the API: the last pass of it found the body kept here stale
            body = await self.kube.get_custom(GROUP, VERSION, *key)
        except Exception:
            log.warning("could not re-read %s/%s/%s", *key, exc_info=True)
            self.requeue.schedule(key, ERROR_RETRY_SECONDS, lambda: self._refetch(controller, key))
            return
        if body is None:
            self.requeue.forget(key)
        else:
            body = slim(body)
            self.seen(key, body)
            await self.handle(controller, body)

    async def _pass(self, controller: Controller[Any, Any], body: dict[str, Any]) -> float:
        """One reconcile; returns when to look again. Never raises: a bad object must not stop the operator."""
        kind, started = controller.kind.kind, time.perf_counter()
        meta = body["metadata"]
        key = (controller.kind.plural, meta.get("namespace") or "", meta["name"])
        self.writing[key] = []
        try:
            result = await reconcile(controller, body, self.clients, datetime.now(UTC), self.writing[key].append)
        except Conflict:
            RECONCILES.labels(kind, "conflict").inc()
            # What this pass read is stale: the retry reads the object from the API, not the body kept here.
            self.bodies.pop(key, None)
            self.stale.add(key)
            self.written.pop(key, None)
            return CONFLICT_RETRY_SECONDS
        except Exception:
            RECONCILES.labels(kind, "error").inc()
            log.exception("reconcile of %s %s/%s failed", kind, meta.get("namespace"), meta["name"])
            return ERROR_RETRY_SECONDS
        finally:
            RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
            self.writing.pop(key, None)
            early = self.early.pop(key, set())
        RECONCILES.labels(kind, "ok").inc()
        kept = (self.bodies.get(key) or {}).get("metadata", {}).get("resourceVersion")
        if result.body is not None and kept in (None, meta.get("resourceVersion"), *result.versions):
            # What we wrote is the newest state, unless the watch delivered a later one (someone else's write)
            # while the write's answer was on its way; the echo of this pass's own write is the same state.
            self.bodies[key] = written = slim(result.body)
            rvs = [rv for rv in (self.written[key][0] if key in self.written else []) if rv not in result.versions]
            awaited = [rv for rv in result.versions if rv not in early]
            if awaited:
                self.written[key] = ([*rvs, *awaited], time.monotonic(), result.settled)
            else:
                self.written.pop(key, None)
            self.remember(kind, key, written)
        controller.metrics(body, result.fields)
        if result.patched:
            STATUS_PATCHES.labels(kind).inc()
        if result.versions and result.versions[-1] in early and not result.settled:
            return 0.0  # the echo of its last write came while it ran: the pass that echo would have caused, now
        resync = self.settings.resync_seconds
        return min(result.requeue_after, resync) if result.requeue_after else resync


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """One event handler per kind, plus one each for the pods and InferenceServices slipway creates."""
    for controller in runtime.controllers.values():
        _register_one(registry, controller, runtime)

    async def wake_owner(body: kopf.Body, **_: Any) -> None:
        for owner in body.metadata.get("ownerReferences") or []:
            if owner.get("apiVersion") == f"{GROUP}/{VERSION}" and owner.get("kind") in runtime.controllers:
                runtime.wake(owner["kind"], body.metadata.namespace or "", owner["name"])

    # The pods slipway launched and the InferenceServices of its Rollouts: kept in the watch cache
    # (cache.WatchCache.watch_managed), so that a TrainingJob's pass lists its pods and a Rollout's reads its service
    # from there, not from the API; an event that says something new (not the echo of our own create or apply)
    # wakes its owner at once, not at its next resync. Every object of the kind comes here, slipway's or not:
    # Kopf's listing (events of type None) of any of them says its watch restarted. Without KServe's CRDs Kopf
    # watches no InferenceServices.
    def keeper(kind: str) -> Callable[..., Awaitable[None]]:
        async def keep(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
            labels = body.metadata.get("labels") or {}
            mine = all(labels.get(k) == v for k, v in MANAGED.items())
            if runtime.cache.observe(kind, event["type"], event["object"], mine) and mine:
                await wake_owner(body)

        return keep

    selector = ",".join(f"{k}={v}" for k, v in MANAGED.items())
    for group, version, plural in (("", "v1", "pods"), (ISVC_GROUP, ISVC_VERSION, ISVC_PLURAL)):
        runtime.cache.watch_managed(group, version, plural, selector)
        resource = (group, version, plural) if group else (version, plural)
        kopf.on.event(*resource, registry=registry, id=f"keep-{plural}")(keeper(managed_kind(group, plural)))


def _register_one(registry: kopf.OperatorRegistry, controller: Controller[Any, Any], runtime: Runtime) -> None:
    @kopf.on.event(GROUP, VERSION, controller.kind.plural, registry=registry, id=f"reconcile-{controller.kind.plural}")
    async def on_event(event: kopf.RawEvent, **_: Any) -> None:
        # Every object, not a Kopf label filter: an object relabelled to another shard must be forgotten here.
        await runtime.event(controller, event["type"], slim(dict(event["object"])))
