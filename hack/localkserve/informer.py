"""List-then-watch caches of the objects the gateway follows (one thread per resource).

Each change is handed to `on_change(obj)` so the controller can queue the InferenceService
it concerns; a relist (at start, after a 410 Gone, after the API was away) hands over every
object, and the ones that vanished meanwhile as well, since their owner must be looked at.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from localexec.kube import Api, ApiError, Unavailable

log = logging.getLogger("localkserve.watch")
Obj = dict[str, Any]
Key = tuple[str, str]

WATCH_SECONDS = 290
READ_TIMEOUT = 330.0


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def _version(obj: Obj | None) -> int:
    meta = (obj or {}).get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return int(rv) if isinstance(rv, str) and rv.isdigit() else -1


class Informer(threading.Thread):
    def __init__(
        self, api: Api, path: str, on_change: Callable[[Obj], None], selector: str = "", name: str = ""
    ) -> None:
        super().__init__(name=f"watch-{name or path.rsplit('/', 1)[-1]}", daemon=True)
        self.api, self.path, self.selector, self.on_change = api, path, selector, on_change
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._cache: dict[Key, Obj] = {}
        self._delay = 0.2

    # ---- reads (any thread) -----------------------------------------------------------

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._cache.get((namespace, name))

    def items(self, namespace: str | None = None) -> list[Obj]:
        with self._lock:
            return [o for k, o in self._cache.items() if namespace is None or k[0] == namespace]

    def put(self, obj: Obj) -> None:
        """Take an object the controller just wrote, unless the watch already has a newer one."""
        with self._lock:
            key = key_of(obj)
            if _version(obj) >= _version(self._cache.get(key)):
                self._cache[key] = obj

    # ---- the watch --------------------------------------------------------------------

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._list_and_watch()
            except Unavailable as err:
                log.debug("%s: API unavailable: %s", self.path, err)
            except (ApiError, ValueError, KeyError, TypeError) as err:
                log.warning("%s: watch failed, relisting: %s", self.path, err)
            else:
                continue
            self.stopping.wait(self._delay)
            self._delay = min(self._delay * 2, 5.0)

    def _params(self) -> dict[str, str]:
        return {"labelSelector": self.selector} if self.selector else {}

    def _list_and_watch(self) -> None:
        query = urllib.parse.urlencode(self._params())
        listing = self.api.call("GET", f"{self.path}?{query}" if query else self.path)
        self._delay = 0.2
        items = {key_of(o): o for o in listing.get("items") or []}
        with self._lock:
            gone = [o for k, o in self._cache.items() if k not in items]
            self._cache = dict(items)
        self.synced.set()
        for obj in [*gone, *items.values()]:
            self.on_change(obj)
        rv = listing["metadata"]["resourceVersion"]
        params = {**self._params(), "allowWatchBookmarks": "true", "timeoutSeconds": str(WATCH_SECONDS)}
        while not self.stopping.is_set():
            started = time.monotonic()
            for event in self.api.watch(self.path, {**params, "resourceVersion": rv}, READ_TIMEOUT):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":  # 410 Gone (too old a resourceVersion) or worse: relist
                    raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(kind, obj)
            if time.monotonic() - started < 1.0:
                self.stopping.wait(0.5)  # a watch that ends at once: do not spin

    def _apply(self, kind: str, obj: Obj) -> None:
        with self._lock:
            if kind == "DELETED":
                self._cache.pop(key_of(obj), None)
            else:
                self._cache[key_of(obj)] = obj
        self.on_change(obj)
