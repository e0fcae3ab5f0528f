"""The executor's pod watch (slipway_dev/localexec/watch.py): every pod is listed and watched, and
only those with slipway's or KServe's label are passed on."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

from slipway_dev.localexec.watch import PodEvent, Relist, Watcher


def pod(uid: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "ns", "labels": labels, "resourceVersion": "1"}}


class FakeApi:
    def __init__(self, items: list[dict[str, Any]], events: list[dict[str, Any]], watcher: list[Watcher]) -> None:
        self.items, self.events, self.watcher = items, events, watcher
        self.paths: list[str] = []

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.paths.append(path)
        return {"metadata": {"resourceVersion": "1"}, "items": self.items}

    def watch(self, path: str, params: dict[str, str], timeout: float) -> Iterator[dict[str, Any]]:
        self.paths.append(path)
        assert "labelSelector" not in params  # "this label or that one" is filtered here
        yield from self.events
        self.watcher[0].stopping.set()


def test_only_slipway_and_kserve_pods_are_passed_on() -> None:
    trainer = pod("t", **{"slipway.dev/component": "trainer"})
    predictor = pod("p", **{"serving.kserve.io/inferenceservice": "iris", "component": "predictor"})
    plain = pod("k", app="plain")
    relabelled = pod("p")  # the predictor pod, its label removed
    events = [
        {"type": "ADDED", "object": pod("k2", app="plain")},
        {"type": "ADDED", "object": pod("p2", **{"serving.kserve.io/inferenceservice": "iris"})},
        {"type": "MODIFIED", "object": relabelled},
        {"type": "DELETED", "object": pod("k", app="plain")},
        {"type": "DELETED", "object": trainer},
    ]
    out: queue.Queue[Any] = queue.Queue()
    holder: list[Watcher] = []
    api = FakeApi([trainer, predictor, plain], events, holder)
    w = Watcher(api, out)  # type: ignore[arg-type]
    holder.append(w)
    w._list_and_watch()
    assert api.paths == ["/api/v1/pods", "/api/v1/pods"]
    relist = out.get_nowait()
    assert isinstance(relist, Relist) and [p["metadata"]["uid"] for p in relist.pods] == ["t", "p"]
    got = []
    while not out.empty():
        item = out.get_nowait()
        assert isinstance(item, PodEvent)
        got.append((item.type, item.pod["metadata"]["uid"]))
    assert got == [("ADDED", "p2"), ("DELETED", "p"), ("DELETED", "t")]
