"""The latest body of every slipway object the watches delivered, for the reads one reconcile makes of others.

A ModelVersion asks which Rollouts serve it, a Rollout which DriftMonitor watches it, a DriftMonitor what its
Rollout serves: as API calls, N objects each listing the N of another kind cost N² at start-up and at every
resync. The watches already hold every one of them, so (as controller-runtime's cached client does) these reads
come from here:

- `get` answers only what the watch delivered; a miss goes to the API (an object created a moment ago).
- `list` answers a (kind, namespace) only once it is known complete: after one API listing of it whose every
  object the watch had already delivered (`confirm`). From then on the watch adds, changes and removes. Only
  equality label selectors (`a=b,c=d`) are answered; anything else goes to the API.

A body read here may be a few milliseconds older than the API's, as with any informer; decisions are
level-triggered and a status write carries its own object's resourceVersion, so a stale read costs one more pass.
Bodies are shared, never copied: readers must not change them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

Key = tuple[str, str, str]  # (plural, namespace, name)


class WatchCache:
    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_scope: dict[tuple[str, str], set[str]] = {}
        self._complete: set[tuple[str, str]] = set()
        self._listing: dict[tuple[str, str], asyncio.Lock] = {}

    def listing(self, plural: str, namespace: str) -> asyncio.Lock:
        """Held while an API listing that may confirm (plural, namespace) is under way (kube.Kube.list_custom)."""
        return self._listing.setdefault((plural, namespace), asyncio.Lock())

    def put(self, key: Key, body: dict[str, Any] | None) -> None:
        """The watch (or our own write's answer) delivered `body` for `key`; None: deleted."""
        plural, namespace, name = key
        if body is None:
            self._objects.pop(key, None)
            self._by_scope.get((plural, namespace), set()).discard(name)
            return
        self._objects[key] = body
        self._by_scope.setdefault((plural, namespace), set()).add(name)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((plural, namespace, name))

    def scope(self, plural: str, namespace: str) -> list[dict[str, Any]]:
        """What the watch delivered so far of one kind in one namespace (complete or not), in no order."""
        return [self._objects[(plural, namespace, n)] for n in self._by_scope.get((plural, namespace), ())]

    @staticmethod
    def answers(selector: str) -> bool:
        """Whether a listing with this label selector can be answered here (equalities only)."""
        return _equalities(selector) is not None

    @staticmethod
    def select(bodies: Iterable[dict[str, Any]], selector: str) -> list[dict[str, Any]]:
        """The bodies whose labels match an equality selector (see `answers`)."""
        wanted = _equalities(selector) or {}
        return [
            b for b in bodies if all((b.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def list(self, plural: str, namespace: str, selector: str = "") -> list[dict[str, Any]] | None:
        """Every object of the kind in the namespace matching an equality `selector`, sorted by name as the API
        lists them; None while (plural, namespace) is not known complete."""
        if (plural, namespace) not in self._complete:
            return None
        names = sorted(self._by_scope.get((plural, namespace), ()))
        return self.select((self._objects[(plural, namespace, n)] for n in names), selector)

    def confirm(self, plural: str, namespace: str, listed: Iterable[dict[str, Any]]) -> None:
        """An unfiltered API listing of (plural, namespace) came back: when the watch had delivered every object
        in it, this kind and namespace are complete here from now on."""
        if (plural, namespace) in self._complete:
            return
        if all((plural, namespace, o.get("metadata", {}).get("name", "")) in self._objects for o in listed):
            self._complete.add((plural, namespace))


def _equalities(selector: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("=") or key.endswith("!") or not key.strip():
            return None
        out[key.strip()] = value.strip()
    return out
