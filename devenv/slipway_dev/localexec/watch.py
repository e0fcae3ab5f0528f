"""List-then-watch of the executor's pods, feeding a queue the executor's loop drains.

The executor's pods are those with the `slipway.dev/component` label (slipway's runtimes) or
the `serving.kserve.io/inferenceservice` label (KServe's predictor pods), scheduled or not: the
executor runs only bound ones, but it resolves gang DNS names against all. A label selector
cannot say "this label or that one", so every pod is watched and the others are filtered out
here; a pod that loses its label is passed on as DELETED. A relist (at start, after a 410
Gone, after the API was away) is sent as one `Relist` so the loop can drop pods that
vanished meanwhile; a watch that merely ends is resumed from its last resourceVersion.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from slipway import contract

from slipway_dev.kube import Api, ApiError, Unavailable

COMPONENT_LABEL = contract.COMPONENT
ISVC_LABEL = "serving.kserve.io/inferenceservice"
LABELS = (COMPONENT_LABEL, ISVC_LABEL)  # kwok.yaml's pod stages skip pods with either
PODS = "/api/v1/pods"
# The server ends a watch after this long and it is resumed; the client gives up on a
# silent connection a bit later (bookmarks arrive about every minute).
WATCH_SECONDS = 290
READ_TIMEOUT = 330.0

log = logging.getLogger("localexec.watch")
Obj = dict[str, Any]


@dataclass(frozen=True)
class Relist:
    pods: list[Obj]


@dataclass(frozen=True)
class PodEvent:
    type: str  # ADDED, MODIFIED, DELETED
    pod: Obj


class Watcher(threading.Thread):
    def __init__(self, api: Api, out: queue.Queue[Any], labels: tuple[str, ...] = LABELS) -> None:
        super().__init__(name="watch-pods", daemon=True)
        self.api, self.out, self.labels = api, out, labels
        self.seen: set[str] = set()  # uids of matching pods passed on since the last list
        self.listed = threading.Event()  # set once the first list went through
        self.stopping = threading.Event()
        self.delay = 0.2  # before the next try, after a failure
        self.away_since: float | None = None  # when the API stopped answering

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._list_and_watch()
            except Unavailable as err:
                if self.away_since is None:
                    self.away_since = time.monotonic()
                    log.warning("API unavailable, retrying: %s", err)
            except (ApiError, ValueError, KeyError, TypeError) as err:
                log.warning("pod watch failed, relisting: %s", err)
            else:
                continue
            self.stopping.wait(self.delay)
            self.delay = min(self.delay * 2, 5.0)

    def _list_and_watch(self) -> None:
        listing = self.api.call("GET", PODS)
        if self.away_since is not None:
            log.info("API back after %.1fs", time.monotonic() - self.away_since)
        self.away_since, self.delay = None, 0.2
        rv = listing["metadata"]["resourceVersion"]
        pods = [p for p in listing.get("items") or [] if self.matches(p)]
        self.seen = {p["metadata"]["uid"] for p in pods}
        self.out.put(Relist(pods))
        self.listed.set()
        params = {"allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        while not self.stopping.is_set():
            for event in self.api.watch(PODS, {**params, "resourceVersion": rv}, READ_TIMEOUT):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone: our resourceVersion is too old; anything else: start over too.
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._pass_on(kind, obj)

    def matches(self, pod: Obj) -> bool:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return any(label in labels for label in self.labels)

    def _pass_on(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if self.matches(pod):
            if kind == "DELETED":
                self.seen.discard(uid)
            else:
                self.seen.add(uid)
            self.out.put(PodEvent(kind, pod))
        elif uid in self.seen:  # not ours any more (its label was removed): gone, for us
            self.seen.discard(uid)
            self.out.put(PodEvent("DELETED", pod))
