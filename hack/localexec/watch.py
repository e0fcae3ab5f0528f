"""List-then-watch of the executor's pods, feeding a queue the executor's loop drains.

Every pod with the `slipway.dev/component` label is watched, scheduled or not: the executor
runs only bound ones, but it resolves gang DNS names against all. A relist (at start, after
a 410 Gone, after the API was away) is sent as one `Relist` so the loop can drop pods that
vanished meanwhile; a watch that merely ends is resumed from its last resourceVersion.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .kube import Api, ApiError, Unavailable

COMPONENT_LABEL = "slipway.dev/component"
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
    def __init__(self, api: Api, out: queue.Queue[Any], selector: str = COMPONENT_LABEL) -> None:
        super().__init__(name="watch-pods", daemon=True)
        self.api, self.out, self.selector = api, out, selector
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
        query = urllib.parse.urlencode({"labelSelector": self.selector})
        listing = self.api.call("GET", f"{PODS}?{query}")
        if self.away_since is not None:
            log.info("API back after %.1fs", time.monotonic() - self.away_since)
        self.away_since, self.delay = None, 0.2
        rv = listing["metadata"]["resourceVersion"]
        self.out.put(Relist(list(listing.get("items") or [])))
        self.listed.set()
        params = {"labelSelector": self.selector, "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        while not self.stopping.is_set():
            for event in self.api.watch(PODS, {**params, "resourceVersion": rv}, READ_TIMEOUT):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    # 410 Gone: our resourceVersion is too old; anything else: start over too.
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self.out.put(PodEvent(kind, obj))
