"""What keeps one operator cheap with thousands of objects (issue 13): reads of other slipway objects answered
from the watch cache (cache.py, kube.Kube), the wakes that let a long resync be only a safety net (a Rollout wakes
the versions it serves or stopped serving and its monitors), and the drift runtime listed once per poll instead
of every monitor read on its own (handlers.Runtime.poll_drift, driftmonitor.Decision.poll)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slipway.cache import WatchCache
from slipway.config import Settings
from slipway.handlers import related
from slipway.kube import Kube

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


async def test_a_listing_comes_from_the_cache_once_the_watch_has_delivered_everything_the_api_listed() -> None:
    a, b = obj("a", {"team": "x"}), obj("b")
    k, api = kube([a, b])
    assert k.cache is not None
    k.cache.put(("rollouts", "ns", "a"), a)
    # The watch has not delivered b yet: the API answers (unfiltered, to learn whether the cache is complete).
    assert [o["metadata"]["name"] for o in await k.list_custom("rollouts", "ns", "team=x")] == ["a"]
    assert api.lists == [("rollouts", "ns", "")]
    k.cache.put(("rollouts", "ns", "b"), b)
    assert await k.list_custom("rollouts", "ns") == [a, b]
    assert len(api.lists) == 2  # this listing found the cache complete ...
    c = obj("c", {"team": "x"})
    k.cache.put(("rollouts", "ns", "c"), c)  # ... so what the watch adds, changes or removes is all it takes
    k.cache.put(("rollouts", "ns", "a"), None)
    assert await k.list_custom("rollouts", "ns") == [b, c]
    assert await k.list_custom("rollouts", "ns", "team=x") == [c]
    assert await k.list_custom("rollouts", "other") == [] and len(api.lists) == 3  # another namespace: its own
    assert await k.get("rollouts", "ns", "b") is b
    # A selector the cache cannot evaluate goes to the API as it is.
    await k.list_custom("rollouts", "ns", "team in (x)")
    assert api.lists[-1] == ("rollouts", "ns", "team in (x)")


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


def test_a_rollout_wakes_the_versions_it_names() -> None:
    body = {"metadata": {"name": "r"}, "spec": {"modelVersionRef": {"name": "m-v2"}},
            "status": {"stableVersion": "m-v1", "canaryVersion": "m-v2", "drainingVersion": None}}  # fmt: skip
    assert related("Rollout", body) == [("ModelVersion", "m-v1"), ("ModelVersion", "m-v2")]


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
    rt.drift = Drift([one, two, RuntimeError("down"), two])  # type: ignore[assignment]
    task = asyncio.create_task(rt.poll_drift())
    for _ in range(100):
        await asyncio.sleep(0.01)
    task.cancel()
    # The first listing wakes nobody (every monitor is reconciled at start-up anyway); after an outage, all.
    assert sorted(woken[:2]) == ["a", "c"] and sorted(woken[2:]) == ["a", "b"], woken
    assert rt.drift.listed
    await rt.requeue.close()
