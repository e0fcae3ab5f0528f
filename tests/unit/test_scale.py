"""What keeps one operator cheap with thousands of objects (issue 13): reads of other slipway objects answered
from the watch cache (cache.py, kube.Kube), the wakes that let a long resync be only a safety net (a Rollout wakes
the versions it serves or stopped serving and its monitors), and the drift runtime listed once per poll instead
of every monitor read on its own (DriftMonitorController.outside, driftmonitor.Watch.poll)."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from slipway.cache import WatchCache
from slipway.config import Settings
from slipway.controllers.rollout import RolloutController
from slipway.kube import Kube
from slipway.storage import S3

from tests.unit.test_driftmonitor import SETTINGS, decide, monitor
from tests.unit.test_sharding import runtime


def obj(name: str, labels: dict[str, str] | None = None, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {}}, "status": status}


class Custom:
    """kubernetes_asyncio's CustomObjectsApi, as far as Kube uses it here: counts the listings."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items, self.lists = items, []

    async def list_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str,
                                            label_selector: str = "") -> dict[str, Any]:  # fmt: skip
        self.lists.append((plural, ns, label_selector))
        mine = [o for o in self.items if o["metadata"]["namespace"] == ns]
        return {"items": WatchCache.select(mine, label_selector)}

    async def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("a cached object must not be read from the API")


def kube(items: list[dict[str, Any]]) -> tuple[Kube, Custom]:
    k = Kube.__new__(Kube)
    k._custom, k.cache = Custom(items), WatchCache()  # type: ignore[assignment]
    return k, k._custom  # type: ignore[return-value]


async def test_one_api_listing_completes_the_cache_with_what_the_watch_has_not_delivered_yet() -> None:
    a, b = obj("a", {"team": "x"}), obj("b")
    b["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    k, api = kube([a, b])
    assert k.cache is not None
    k.cache.put(("rollouts", "ns", "a"), a)
    # The watch has not delivered b yet: one unfiltered API listing puts it in (without its managedFields) ...
    assert [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns", "team=x")] == ["a"]
    assert api.lists == [("rollouts", "ns", "")]
    assert k.cache.get("rollouts", "ns", "b") == obj("b")
    # ... and from then on the cache answers: what the watch adds, changes or removes is all it takes.
    assert [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns")] == ["a", "b"]
    c = obj("c", {"team": "x"})
    k.cache.put(("rollouts", "ns", "c"), c)
    k.cache.put(("rollouts", "ns", "a"), None)
    assert [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns")] == ["b", "c"]
    assert await k.list_custom("rollouts", "ns", "team=x") == [c]
    assert len(api.lists) == 1
    assert await k.list_custom("rollouts", "other") == [] and len(api.lists) == 2  # another namespace: its own
    # A selector the cache cannot evaluate goes to the API as it is.
    await k.list_custom("rollouts", "ns", "team in (x)")
    assert api.lists[-1] == ("rollouts", "ns", "team in (x)")


async def test_a_listing_answered_before_a_delete_does_not_put_the_deleted_object_back() -> None:
    gone = obj("gone")
    k, _ = kube([gone, obj("kept")])  # what the API listed, a moment before `gone` was deleted
    assert k.cache is not None
    k.cache.put(("rollouts", "ns", "gone"), gone)
    k.cache.put(("rollouts", "ns", "gone"), None)  # the watch delivered the delete first
    assert [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns")] == ["kept"]
    assert k.cache.get("rollouts", "ns", "gone") is None


async def test_passes_that_list_at_once_before_the_cache_is_complete_cost_one_api_listing() -> None:
    items = [obj(f"r{i}") for i in range(3)]
    k, api = kube(items)
    assert k.cache is not None
    for o in items:  # the watch has delivered every object, the cache does not know it is complete yet
        k.cache.put(("rollouts", "ns", o["metadata"]["name"]), o)
    answers = await asyncio.gather(*(k.list_custom("rollouts", "ns") for _ in range(50)))
    assert all(a == items for a in answers) and api.lists == [("rollouts", "ns", "")]


@pytest.mark.parametrize(
    ("selector", "answers"), [("", True), ("a=b", True), ("a=b,c=d", True), ("a==b", False), ("a!=b", False),
                              ("a", False), ("a in (b)", False)],
)  # fmt: skip
def test_the_cache_answers_only_equality_selectors(selector: str, answers: bool) -> None:
    assert WatchCache.answers(selector) is answers


async def test_indexed_listings_find_the_referring_objects_without_scanning_the_namespace() -> None:
    k, api = kube([])
    cache = k.cache
    assert cache is not None
    cache.fill("rollouts", "ns", [])
    cache.fill("trainingjobs", "ns", [])

    def rollout(name: str, ref: str, **status: Any) -> dict[str, Any]:
        return {**obj(name, **status), "spec": {"modelVersionRef": {"name": ref}}}

    cache.put(("rollouts", "ns", "r1"), rollout("r1", "m-v2", stableVersion="m-v1", canaryVersion="m-v2"))
    cache.put(("rollouts", "ns", "r2"), rollout("r2", "m-v1", stableVersion="m-v1"))
    cache.put(("rollouts", "ns", "r3"), rollout("r3", "x-v1", stableVersion="x-v1"))

    async def names(index: str) -> list[str]:
        return [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns", index=("version", index))]

    assert await names("m-v1") == ["r1", "r2"] and await names("m-v2") == ["r1"] and await names("nope") == []
    # Promoted: r1 names m-v2 only; the index follows the watch.
    cache.put(("rollouts", "ns", "r1"), rollout("r1", "m-v2", stableVersion="m-v2"))
    assert await names("m-v1") == ["r2"] and await names("m-v2") == ["r1"]
    cache.put(("rollouts", "ns", "r2"), None)
    assert await names("m-v1") == []
    # Equality selectors from the label index.
    cache.put(("trainingjobs", "ns", "j1"), obj("j1", {"slipway.dev/drift-monitor": "dm", "team": "a"}))
    cache.put(("trainingjobs", "ns", "j2"), obj("j2", {"slipway.dev/drift-monitor": "dm"}))
    cache.put(("trainingjobs", "ns", "j3"), obj("j3", {"slipway.dev/drift-monitor": "other"}))
    found = await k.list_custom("trainingjobs", "ns", "slipway.dev/drift-monitor=dm")
    assert [o["metadata"]["name"] for o in found] == ["j1", "j2"]
    found = await k.list_custom("trainingjobs", "ns", "slipway.dev/drift-monitor=dm,team=a")
    assert [o["metadata"]["name"] for o in found] == ["j1"]
    cache.put(("trainingjobs", "ns", "j1"), obj("j1", {"slipway.dev/drift-monitor": "other"}))  # relabelled
    assert [
        o["metadata"]["name"] for o in await k.list_custom("trainingjobs", "ns", "slipway.dev/drift-monitor=dm")
    ] == ["j2"]
    assert api.lists == []  # all from the cache


def test_a_rollout_wakes_the_versions_it_names() -> None:
    body = {"metadata": {"name": "r"}, "spec": {"modelVersionRef": {"name": "m-v2"}},
            "status": {"stableVersion": "m-v1", "canaryVersion": "m-v2", "drainingVersion": None}}  # fmt: skip
    assert RolloutController(Settings()).related(body) == [("ModelVersion", "m-v1"), ("ModelVersion", "m-v2")]


async def test_a_rollout_wakes_the_versions_that_list_it_and_its_monitors() -> None:
    rt, _ = runtime("")
    await rt.event(rt.controllers["ModelVersion"], None, obj("m-v1", servedBy=["r"]))
    await rt.event(rt.controllers["ModelVersion"], None, obj("m-v9", servedBy=["other"]))
    dm = {**obj("dm"), "spec": {"rolloutRef": {"name": "r"}}}
    await rt.event(rt.controllers["DriftMonitor"], None, dm)
    rt.requeue.cancel(("modelversions", "ns", "m-v1"))
    rt.requeue.cancel(("modelversions", "ns", "m-v9"))
    rt.requeue.cancel(("driftmonitors", "ns", "dm"))
    # The Rollout is gone (or serves another version now): m-v1 must drop it from servedBy, and its finalizer.
    await rt.event(rt.controllers["Rollout"], "DELETED", {**obj("r"), "spec": {"modelVersionRef": {"name": "m-v2"}}})
    timers = rt.requeue._timers
    assert ("modelversions", "ns", "m-v1") in timers and ("driftmonitors", "ns", "dm") in timers
    assert ("modelversions", "ns", "m-v9") not in timers
    await rt.requeue.close()


async def test_a_rollout_wakes_its_versions_and_monitors_only_when_the_versions_it_names_change() -> None:
    rt, _ = runtime("")
    await rt.event(rt.controllers["ModelVersion"], None, obj("m-v1", servedBy=["r"]))
    dm = {**obj("dm"), "spec": {"rolloutRef": {"name": "r"}}}
    await rt.event(rt.controllers["DriftMonitor"], None, dm)
    mv_key, dm_key = ("modelversions", "ns", "m-v1"), ("driftmonitors", "ns", "dm")

    def rollout(**status: Any) -> dict[str, Any]:
        return {**obj("r", **status), "spec": {"modelVersionRef": {"name": "m-v1"}}}

    await rt.event(rt.controllers["Rollout"], None, rollout(stableVersion="m-v1", phase="Promoted"))
    assert {mv_key, dm_key} <= set(rt.requeue._timers)  # first seen: they look
    rt.requeue.cancel(mv_key)
    rt.requeue.cancel(dm_key)
    # Its own status writes (an analysis, a condition): nothing a ModelVersion or a DriftMonitor reads.
    await rt.event(rt.controllers["Rollout"], None, rollout(stableVersion="m-v1", phase="Promoted", lastVerdict="x"))
    assert mv_key not in rt.requeue._timers and dm_key not in rt.requeue._timers
    # A canary: the monitor compares with it, the version it names is served.
    await rt.event(rt.controllers["Rollout"], None, rollout(stableVersion="m-v1", canaryVersion="m-v2"))
    assert {mv_key, dm_key, ("modelversions", "ns", "m-v2")} <= set(rt.requeue._timers)
    await rt.requeue.close()


def test_a_quiet_monitor_is_not_read_on_its_own_when_the_runtime_lists_summaries() -> None:
    dm = monitor()
    assert decide(dm).requeue_after == SETTINGS.drift_poll_seconds
    assert decide(dm, listed=True).requeue_after is None  # the listing wakes it
    # Drifting, or with an older runtime, or the runtime not answering: its own clock as before.
    drifting = monitor({"consecutiveDriftWindows": 1, "modelVersion": "m-v1"})
    assert decide(drifting, listed=True).requeue_after == SETTINGS.drift_poll_seconds
    assert decide(dm, listed=True, runtime=None, runtime_error="down").requeue_after == SETTINGS.drift_poll_seconds


class Drift:
    def __init__(self, listings: list[Any]) -> None:
        self.listings, self.listed = listings, False

    async def summaries(self) -> Any:
        from slipway.drift import DriftUnavailable

        if not self.listings:
            await asyncio.sleep(3600)
        out = self.listings.pop(0)
        if isinstance(out, Exception):
            raise DriftUnavailable(str(out))
        return out


async def test_the_runtime_listing_wakes_only_the_monitors_whose_summary_changed() -> None:
    rt, _ = runtime("")
    rt.settings = Settings(peering="", drift_poll_seconds=0.001)
    for name in ("a", "b", "c"):
        await rt.event(rt.controllers["DriftMonitor"], None, {**obj(name), "spec": {"rolloutRef": {"name": "r"}}})
    one = {("ns", "a"): {"seq": 1}, ("ns", "b"): {"seq": 1}, ("ns", "c"): {"seq": 1}}
    two = {("ns", "a"): {"seq": 2}, ("ns", "b"): {"seq": 1}}  # a has news, c is gone from the runtime
    woken: list[str] = []
    rt.wake = lambda kind, ns, name, delay=0.0: woken.append(name)  # type: ignore[method-assign]
    drift = Drift([one, two, RuntimeError("down"), two])
    rt.clients = dataclasses.replace(rt.clients, drift=drift)  # type: ignore[arg-type]
    rt.controllers["DriftMonitor"].settings = rt.settings  # type: ignore[attr-defined]
    task = asyncio.create_task(rt.watch_outside())
    for _ in range(100):
        await asyncio.sleep(0.01)
    task.cancel()
    # The first listing wakes nobody (every monitor is reconciled at start-up anyway); after an outage, all.
    assert sorted(woken[:2]) == ["a", "c"] and sorted(woken[2:]) == ["a", "b"], woken
    assert drift.listed
    await rt.requeue.close()


@pytest.mark.parametrize("proxy", [None, "http://proxy.example:3128"])
async def test_the_api_client_looks_up_netrc_and_proxies_only_when_a_proxy_is_configured(
    proxy: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes_asyncio import client
    from slipway.kube.client import PROXY_VARIABLES, quiet_environment

    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    if proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy)
    api = client.ApiClient()
    try:
        quiet_environment(api)
        # aiohttp's private flag: if a new aiohttp renamed it, this fails rather than the saving silently going.
        assert api.rest_client.pool_manager._trust_env is bool(proxy)
    finally:
        await api.close()


async def test_echoes_of_our_earlier_writes_are_passed_over_and_nothing_else() -> None:
    """The watch delivers our previous write's echo after our next write returned: reconciling it (older than
    the body kept) could only end in a 409. Only resourceVersions we wrote are passed over: the echo of the last
    write, or any state we did not write, means the watch caught up (as does ECHO_WAIT_SECONDS)."""
    import time as clock

    from slipway import handlers

    rt, passes = runtime("")
    mv = rt.controllers["ModelVersion"]
    key = ("modelversions", "ns", "m")

    def at(rv: str) -> dict[str, Any]:
        return {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": rv}, "status": {}}

    await rt.event(mv, "ADDED", at("1"))
    assert passes == ["m"]
    rt.written[key] = (["2", "3"], clock.monotonic(), False)  # two passes wrote rv 2, then rv 3
    rt.bodies[key] = at("3")
    await rt.event(mv, "MODIFIED", at("2"))  # the echo of the earlier write
    assert passes == ["m"] and rt.bodies[key]["metadata"]["resourceVersion"] == "3"
    await rt.event(mv, "MODIFIED", at("3"))  # our last write's echo: from here on every event counts
    assert passes == ["m", "m"] and key not in rt.written
    await rt.event(mv, "MODIFIED", at("4"))
    assert passes == ["m", "m", "m"]
    # The last write's echo came before its answer (handled then): the next event, whatever it is, counts.
    rt.written[key] = (["4", "5"], clock.monotonic(), False)
    await rt.event(mv, "MODIFIED", at("6"))  # a user's change
    assert passes == ["m", "m", "m", "m"] and key not in rt.written
    rt.written[key] = (["7", "9"], clock.monotonic() - handlers.ECHO_WAIT_SECONDS - 1, False)  # the echoes never came
    await rt.event(mv, "MODIFIED", at("7"))
    assert len(passes) == 5
    await rt.requeue.close()


async def test_every_write_of_a_pass_is_an_echo_to_pass_over_and_the_last_ones_echo_is_reconciled() -> None:
    """A pass that writes the status, then the finalizers, gets two resourceVersions: the watch's echo of the
    first is older than what the pass kept (reconciling it ended in a 409 from its stale finalizers, once per
    ModelVersion at start-up); the echo of the last is reconciled as any event is."""
    from slipway import handlers
    from slipway.controllers.base import Result

    rt = handlers.Runtime(Kube.__new__(Kube), Settings(peering=""), S3())
    mv, key, passes = rt.controllers["ModelVersion"], ("modelversions", "ns", "m"), list[str]()

    def at(rv: str) -> dict[str, Any]:
        return {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": rv}, "status": {}}

    async def writing(controller: Any, body: dict[str, Any], *args: Any) -> Result:
        passes.append(rv := body["metadata"]["resourceVersion"])
        return Result([], body=at("3"), versions=["2", "3"]) if rv == "1" else Result([])

    real, handlers.reconcile = handlers.reconcile, writing  # type: ignore[assignment]
    try:
        await rt.event(mv, "ADDED", at("1"))
        assert passes == ["1"] and rt.written[key][0] == ["2", "3"]
        await rt.event(mv, "MODIFIED", at("2"))  # the status patch's echo
        assert passes == ["1"] and rt.bodies[key]["metadata"]["resourceVersion"] == "3"
        await rt.event(mv, "MODIFIED", at("3"))  # the finalizer write's echo
        assert passes == ["1", "3"] and key not in rt.written
    finally:
        handlers.reconcile = real
    await rt.requeue.close()


async def test_a_write_answered_after_the_watch_moved_on_keeps_the_newer_body() -> None:
    from slipway import handlers
    from slipway.controllers.base import Result

    rt = handlers.Runtime(Kube.__new__(Kube), Settings(peering=""), S3())
    key = ("modelversions", "ns", "m")

    def at(rv: str) -> dict[str, Any]:
        return {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": rv}, "status": {}}

    async def writing(controller: Any, body: dict[str, Any], *args: Any) -> Result:
        rt.bodies[key] = at("3")  # the watch delivered our write's echo (rv 2) and someone's change (rv 3) first
        return Result([], body=at("2"))

    real, handlers.reconcile = handlers.reconcile, writing  # type: ignore[assignment]
    try:
        rt.bodies[key] = at("1")
        await rt._pass(rt.controllers["ModelVersion"], at("1"))
    finally:
        handlers.reconcile = real
    assert rt.bodies[key]["metadata"]["resourceVersion"] == "3" and key not in rt.written
    await rt.requeue.close()


async def test_a_conflict_drops_the_kept_body_so_that_the_retry_reads_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    from slipway import handlers
    from slipway.handlers import Runtime
    from slipway.kube import Conflict
    from slipway.storage import S3

    async def conflicting(*args: Any) -> Any:
        raise Conflict("modelversions/ns/m moved on")

    monkeypatch.setattr(handlers, "reconcile", conflicting)
    rt = Runtime(Kube.__new__(Kube), Settings(peering=""), S3())
    key, body = ("modelversions", "ns", "m"), {"metadata": {"name": "m", "namespace": "ns", "resourceVersion": "3"}}
    rt.bodies[key], rt.written[key] = body, (["3"], 0.0)
    assert await rt._pass(rt.controllers["ModelVersion"], body) == handlers.CONFLICT_RETRY_SECONDS
    assert key not in rt.bodies and key not in rt.written
    await rt.requeue.close()


async def test_a_pass_that_waited_for_the_lock_reconciles_the_body_written_meanwhile() -> None:
    from slipway.handlers import Runtime

    rt = Runtime(Kube.__new__(Kube), Settings(peering=""), S3())
    key, seen = ("rollouts", "ns", "r"), list[str]()
    old = {"metadata": {"name": "r", "namespace": "ns", "resourceVersion": "1"}}

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        seen.append(body["metadata"]["resourceVersion"])
        rt.bodies[key] = {"metadata": {**old["metadata"], "resourceVersion": "2"}}  # its status write
        return 60.0

    rt._pass = one_pass  # type: ignore[method-assign]
    rollouts = rt.controllers["Rollout"]
    await asyncio.gather(rt.handle(rollouts, old), rt.handle(rollouts, old))  # e.g. the watch's event and a wake
    assert seen == ["1", "2"]
    await rt.requeue.close()


MANAGED_SELECTOR = "app.kubernetes.io/managed-by=slipway"
ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")
ISVC_KIND = "inferenceservices.serving.kserve.io"


def managed(name: str, rv: str, **more: Any) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "slipway", **more.pop("labels", {})}
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": labels}, **more}


class Listed(Custom):
    """Listings with the resourceVersion the API answers them at; any GET fails the test."""

    version = "10"

    async def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        listed = await super().list_namespaced_custom_object(*args, **kwargs)
        return {**listed, "metadata": {"resourceVersion": self.version}}

    async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**args[-1], "metadata": {**args[-1]["metadata"], "resourceVersion": "12"}}


def managed_kube(items: list[dict[str, Any]]) -> tuple[Kube, Listed]:
    k = Kube.__new__(Kube)
    k._custom, k.cache = Listed(items), WatchCache()  # type: ignore[assignment]
    k.cache.watch_managed(*ISVC[:2], ISVC[2], MANAGED_SELECTOR)
    return k, k._custom  # type: ignore[return-value]


async def test_a_rollouts_inference_service_is_read_from_the_watch_cache_never_from_the_api() -> None:
    """At start-up every Rollout reads its InferenceService at each pass (5,413 GETs in a 10,000-object start-up):
    one labelled listing per namespace completes them, the watch keeps them, our apply's answer goes in ahead of
    the watch, and a state older than the one kept (the watch lagging behind that answer) is ignored."""
    a = managed("a", "5", status={"url": "http://a"})
    k, api = managed_kube([a])
    assert await k.get_managed(*ISVC, "ns", "b") is None
    assert await k.get_managed(*ISVC, "ns", "a") == a
    assert api.lists == [("inferenceservices", "ns", MANAGED_SELECTOR)]
    await k.apply({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                   "metadata": {"name": "b", "namespace": "ns", "labels": {"app.kubernetes.io/managed-by": "slipway"}},
                   "spec": {"predictor": {}}})  # fmt: skip
    assert (await k.get_managed(*ISVC, "ns", "b") or {})["metadata"]["resourceVersion"] == "12"
    assert k.cache is not None
    # The watch, behind the apply's answer, then the echo of the apply itself: nothing new, no wake of its owner.
    assert not k.cache.observe(ISVC_KIND, "ADDED", managed("b", "11"), mine=True)
    assert not k.cache.observe(ISVC_KIND, "MODIFIED", managed("b", "12"), mine=True)
    assert (await k.get_managed(*ISVC, "ns", "b") or {})["metadata"]["resourceVersion"] == "12"
    assert k.cache.observe(ISVC_KIND, "MODIFIED", managed("b", "13", status={"url": "http://b"}), mine=True)
    assert (await k.get_managed(*ISVC, "ns", "b") or {})["status"] == {"url": "http://b"}
    k.cache.observe(ISVC_KIND, "MODIFIED", managed("a", "14", labels={"app.kubernetes.io/managed-by": "you"}),
                    mine=False)  # fmt: skip
    k.cache.observe(ISVC_KIND, "DELETED", managed("b", "15"), mine=True)
    assert await k.get_managed(*ISVC, "ns", "a") is None and await k.get_managed(*ISVC, "ns", "b") is None
    assert len(api.lists) == 1


async def test_what_was_deleted_while_the_watch_was_down_is_dropped_when_it_lists_again() -> None:
    """Kopf's watch resumes with a listing (events of type None) after a peering pause or an expired watch, and
    says nothing of what was deleted meanwhile: its first listed event makes the namespace be listed anew, and
    the kept object the new listing lacks is dropped; one the watch delivered after that listing stays."""
    a, b = managed("a", "5"), managed("b", "6")
    k, api = managed_kube([a, b])
    assert await k.get_managed(*ISVC, "ns", "a") == a and k.cache is not None
    api.items, api.version = [b], "20"  # a deleted unseen; then the relisted b, and c created after the listing
    k.cache.observe(ISVC_KIND, None, b, mine=True)
    k.cache.observe(ISVC_KIND, "ADDED", managed("c", "21"), mine=True)
    assert await k.get_managed(*ISVC, "ns", "a") is None
    assert await k.get_managed(*ISVC, "ns", "b") == b and await k.get_managed(*ISVC, "ns", "c") is not None
    assert len(api.lists) == 2
    k.cache.observe(ISVC_KIND, "MODIFIED", managed("c", "22"), mine=True)  # events again, then one more of the
    k.cache.observe(ISVC_KIND, None, b, mine=True)  # listing kind: the next read lists once more
    await k.get_managed(*ISVC, "ns", "b")
    assert len(api.lists) == 3


async def test_a_trainingjobs_pods_are_listed_from_the_watch_cache_with_the_ones_just_created() -> None:
    """A TrainingJob's pass lists its pods (1.4 to 1.6 LISTs per job at start-up) from the cache: one labelled
    listing per namespace, the watch, and our create's answer, so a pod just created is never missing (a gang
    whose pod looked lost would restart)."""

    class Pods:
        lists, made = list[str](), list[str]()

        async def list_namespaced_pod(self, ns: str, label_selector: str = "") -> Any:
            self.lists.append(label_selector)
            return SimpleNamespace(items=[managed("p-0", "3", labels={"job": "j"})],
                                   metadata=SimpleNamespace(resource_version="4"))  # fmt: skip

        async def create_namespaced_pod(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
            self.made.append(body["metadata"]["name"])
            return {**body, "metadata": {**body["metadata"], "resourceVersion": "5"}}

    k = Kube.__new__(Kube)
    k._core, k.cache = Pods(), WatchCache()  # type: ignore[assignment]
    k._api = SimpleNamespace(sanitize_for_serialization=lambda o: o)  # type: ignore[assignment]
    k.cache.watch_managed("", "v1", "pods", MANAGED_SELECTOR)
    assert [p["metadata"]["name"] for p in await k.pods("ns", "job=j")] == ["p-0"]
    pod = {"kind": "Pod", **managed("p-1", "", labels={"job": "j"})}
    assert await k.create(pod)
    assert [p["metadata"]["name"] for p in await k.pods("ns", "job=j")] == ["p-0", "p-1"]
    assert await k.pods("ns", "job=other") == []
    assert k._core.lists == [MANAGED_SELECTOR]  # type: ignore[attr-defined]


def test_a_rollout_that_applied_its_inference_service_decides_over_the_apply_s_answer() -> None:
    """Its first deployment's pass applies the InferenceService and writes "waiting for KServe": deciding again
    over the apply's answer settles it (the echo of its write needs no pass; KServe's status write wakes it).
    What it cannot tell the outcome of (a Secret, a patch) leaves the pass unsettled."""
    from slipway.controllers.base import Apply, Patch
    from slipway.controllers.rollout import Observed

    ctrl, observed = RolloutController(SETTINGS), Observed(model_version=None)
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "r"}}
    answer = {**isvc, "metadata": {"name": "r", "resourceVersion": "7"}}
    after = ctrl.observed_after(observed, [Apply(isvc)], {("InferenceService", "r"): answer})
    assert after == dataclasses.replace(observed, isvc=answer)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    assert ctrl.observed_after(observed, [Apply(isvc), Apply(secret)], {("InferenceService", "r"): answer}) is None
    assert ctrl.observed_after(observed, [Patch(isvc, {})], {}) is None


def test_a_monitor_waiting_for_its_rollout_keeps_no_clock_of_its_own() -> None:
    """The Rollout wakes its monitors when it comes or names a version: 2,500 monitors waiting at start-up each
    polled every SLIPWAY_DRIFT_POLL_SECONDS (8 passes per monitor before every object was reconciled once)."""
    from tests.unit.test_driftmonitor import rollout_body

    no_rollout, no_version = decide(monitor(), target=None), decide(monitor(), target=rollout_body(stable=None))
    assert no_rollout.requeue_after is None and no_version.requeue_after is None
    assert {c.reason for c in no_version.conditions} >= {"WaitingForVersion"}


async def test_a_version_wakes_its_rollouts_only_when_what_they_read_of_it_changes() -> None:
    rt, _ = runtime("")
    mvs, key = rt.controllers["ModelVersion"], ("rollouts", "ns", "r")

    def version(ready: str, **status: Any) -> dict[str, Any]:
        cond = {"type": "Ready", "status": ready, "reason": "Verified" if ready == "True" else "Verifying"}
        return {**obj("m-v1", servedBy=["r"], conditions=[cond], **status), "spec": {}}

    await rt.event(mvs, None, version("False"))
    assert key in rt.requeue._timers  # first seen
    rt.requeue.cancel(key)
    await rt.event(mvs, None, version("False", verifiedAt="2026-12-02T10:00:00Z"))  # its own bookkeeping
    assert key not in rt.requeue._timers
    rt.remember("ModelVersion", ("modelversions", "ns", "m-v1"), version("True"))  # our write: Ready
    assert key in rt.requeue._timers
    rt.requeue.cancel(key)
    await rt.event(mvs, "DELETED", version("True"))  # gone: the Rollout says so
    assert key in rt.requeue._timers
    await rt.requeue.close()


async def test_passes_run_at_most_max_concurrent_reconciles_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from slipway.handlers import Runtime

    rt = Runtime(Kube.__new__(Kube), Settings(peering="", max_concurrent_reconciles=2), S3())
    running, most = 0, 0

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 60.0

    rt._pass = one_pass  # type: ignore[method-assign]
    mvs = rt.controllers["ModelVersion"]
    await asyncio.gather(*(rt.handle(mvs, obj(f"m-v{i}")) for i in range(6)))
    assert most == 2
    await rt.requeue.close()
    monkeypatch.setenv("SLIPWAY_MAX_CONCURRENT_RECONCILES", "0")
    with pytest.raises(ValueError, match="SLIPWAY_MAX_CONCURRENT_RECONCILES"):
        Settings.from_env().validate()


async def test_events_beyond_the_free_slots_wait_in_line_not_in_kopfs_workers() -> None:
    """With every slot taken (the start-up burst) an event's handler returns at once and its object waits in a line
    of keys: each once, in order, passed with its newest body, dropped when deleted; the line drains at the pace of
    the slots, never more passes at once than slots."""
    from slipway.handlers import Runtime

    rt = Runtime(Kube.__new__(Kube), Settings(peering="", max_concurrent_reconciles=2), S3())
    gate, running, most, passes = asyncio.Event(), 0, 0, []

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        passes.append((body["metadata"]["name"], body["status"].get("seen")))
        running -= 1
        return 60.0

    rt._pass = one_pass  # type: ignore[method-assign]
    mvs = rt.controllers["ModelVersion"]
    first = [asyncio.create_task(rt.event(mvs, "ADDED", obj(f"m-v{i}"))) for i in range(2)]
    await asyncio.sleep(0)
    assert running == 2
    # Beyond the slots: the handlers return at once (Kopf's worker is free), the keys wait in line.
    later = [asyncio.create_task(rt.event(mvs, "ADDED", obj(f"m-v{i}"))) for i in range(2, 6)]
    await asyncio.sleep(0)
    assert all(t.done() for t in later)
    await rt.event(mvs, "MODIFIED", obj("m-v3", seen="newer"))  # keeps its place, passes with this body
    await rt.event(mvs, "DELETED", obj("m-v4"))  # gone from the line
    assert list(rt.parked) == [("modelversions", "ns", n) for n in ("m-v2", "m-v3", "m-v5")]
    assert rt._unreconciled("modelversions") == 5.0  # two in their pass, three in line
    gate.set()
    await asyncio.gather(*first)
    while rt.parked or rt._launched:
        await asyncio.sleep(0.01)
    assert most == 2 and rt.launching == 0
    assert passes[2:] == [("m-v2", None), ("m-v3", "newer"), ("m-v5", None)]
    assert rt._unreconciled("modelversions") == 0.0
    await rt.requeue.close()


async def test_the_line_serves_a_kind_after_the_kinds_it_reads() -> None:
    """At start-up every object waits in line at once: first passes first, in api.KINDS' order (TrainingJobs,
    ModelVersions, Rollouts, DriftMonitors): a Rollout's first pass finds its ModelVersion already verified instead
    of writing "waiting" and passing again when woken. Then objects passed already (woken: several wakes while it
    waits are one pass), in the same order. Within a rank, in order of arrival."""
    from slipway.handlers import Runtime

    rt = Runtime(Kube.__new__(Kube), Settings(peering="", max_concurrent_reconciles=1), S3())
    gate, passes = asyncio.Event(), []

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        await gate.wait()
        passes.append(body["metadata"]["name"])
        return 60.0

    rt._pass = one_pass  # type: ignore[method-assign]
    first = asyncio.create_task(rt.event(rt.controllers["DriftMonitor"], "ADDED", obj("d-0")))
    await asyncio.sleep(0)
    rt.passed |= {("modelversions", "ns", "m-v0"), ("driftmonitors", "ns", "d-2")}
    for kind, name in [("DriftMonitor", "d-1"), ("Rollout", "r-1"), ("ModelVersion", "m-v1"), ("Rollout", "r-2"),
                       ("DriftMonitor", "d-2"), ("ModelVersion", "m-v0"), ("TrainingJob", "t-1"),
                       ("ModelVersion", "m-v2")]:  # fmt: skip
        await rt.event(rt.controllers[kind], "MODIFIED", obj(name))
    order = ["t-1", "m-v1", "m-v2", "r-1", "r-2", "d-1", "m-v0", "d-2"]
    assert [name for _, _, name in rt.parked] == order
    gate.set()
    await first
    while rt.parked or rt._launched:
        await asyncio.sleep(0.01)
    assert passes == ["d-0", *order]
    await rt.requeue.close()


async def test_events_during_a_pass_make_one_more_pass_with_the_newest_body() -> None:
    """Events and wakes of an object while its pass runs: one more pass after it, with the newest body, however
    many came (a workqueue keeps a key once)."""
    from slipway.handlers import Runtime

    rt = Runtime(Kube.__new__(Kube), Settings(peering=""), S3())
    gate, passes = asyncio.Event(), []

    async def one_pass(controller: Any, body: dict[str, Any]) -> float:
        passes.append(body["status"].get("seen"))
        await gate.wait()
        return 60.0

    rt._pass = one_pass  # type: ignore[method-assign]
    mvs = rt.controllers["ModelVersion"]
    first = asyncio.create_task(rt.event(mvs, "ADDED", obj("m-v1", seen=0)))
    await asyncio.sleep(0)
    assert passes == [0]
    later = [asyncio.create_task(rt.event(mvs, "MODIFIED", obj("m-v1", seen=n))) for n in (1, 2, 3)]
    later.append(asyncio.create_task(rt._refetch(mvs, ("modelversions", "ns", "m-v1"))))  # a wake
    await asyncio.sleep(0)
    assert sum(not t.done() for t in later) == 1  # one waits; the others are in it
    gate.set()
    await asyncio.gather(first, *later)
    assert passes == [0, 3]
    await rt.requeue.close()


async def test_start_up_progress_counts_this_shards_objects_without_a_pass_since_start() -> None:
    """slipway_objects_unreconciled: what the watch delivered of this shard and no pass has looked at yet (an
    object of another shard is never counted; a deleted one is forgotten)."""
    rt, passes = runtime("")
    mv = rt.controllers["ModelVersion"]
    rt.bodies[("modelversions", "ns", "listed")] = obj("listed")  # delivered, its pass still to come
    await rt.event(mv, "ADDED", obj("a"))
    await rt.event(mv, "ADDED", obj("other", {"sharding.slipway.dev/key": "b"}))
    assert passes == ["a"] and rt._unreconciled("modelversions") == 1.0
    await rt._refetch(mv, ("modelversions", "ns", "listed"))
    assert rt._unreconciled("modelversions") == 0.0
    await rt.event(mv, "DELETED", obj("a"))
    assert ("modelversions", "ns", "a") not in rt.passed
    await rt.requeue.close()


async def test_the_heap_start_up_leaves_is_frozen_once_every_object_had_its_pass() -> None:
    """Full collections skip what start-up left alive (heap.py): frozen after each full collection during start-up,
    and once more once `settled` held at two checks in a row; every collection is timed in
    slipway_gc_pause_seconds."""
    import gc

    from prometheus_client import REGISTRY
    from slipway import heap

    def collections() -> float:
        return REGISTRY.get_sample_value("slipway_gc_pause_seconds_count", {"generation": "2"}) or 0.0

    heap.time_collections()
    heap.time_collections()  # once per process, however often asked
    before = collections()
    gc.collect()
    assert collections() == before + 1
    checks: list[int] = []

    def settled() -> bool:
        checks.append(gc.get_freeze_count())
        if len(checks) == 1:
            gc.collect()  # a full collection during start-up: frozen after at the next tick
        if len(checks) == 2:
            gc.unfreeze()
        return len(checks) in (1, 3, 4)  # True, then False: the streak starts again

    gc.unfreeze()
    try:
        await heap.freeze_after_startup(settled, check_seconds=0, tick=0)
        assert checks[0] == 0 and checks[1] > 0 and len(checks) == 4
        assert gc.get_freeze_count() > 0  # and once more at the end
    finally:
        gc.unfreeze()
