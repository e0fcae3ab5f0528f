"""The latest body of every slipway object the watches delivered, for the reads one reconcile makes of others.

A ModelVersion asks which Rollouts serve it, a Rollout which DriftMonitor watches it, a DriftMonitor what its
Rollout serves: as API calls, N objects each listing the N of another kind cost N² at start-up and at every
resync. The watches already hold every one of them, so (as controller-runtime's cached client does) these reads
come from here:

- `get` answers what the watch delivered (or a listing put in, see `list`); kube.Kube.get reads a miss from the
  API (an object created a moment ago).
- `list` answers a (kind, namespace) only once it is known complete: after one API listing of it, whose objects
  the watch had not delivered yet go in as listed (`fill`). From then on the watch adds, changes and removes.
  Only equality label selectors (`a=b,c=d`) are answered; anything else goes to the API.
- Indexes (as client-go's indexers) keep a listing from scanning the whole namespace: by label (an equality
  selector) and by the name an object refers to (INDEXES: the Rollouts naming a version, the DriftMonitors on a
  Rollout, the ModelVersions listing a Rollout in servedBy). Without them each pass scanned every object of the
  other kind: quadratic at start-up, 10,000 objects in one namespace did not finish (bench/operator_scale.py).

A body read here may be a few milliseconds older than the API's, as with any informer; decisions are
level-triggered and a status write carries its own object's resourceVersion, so a stale read costs one more pass.
Bodies are shared, never copied: readers must not change them. They are kept without managedFields (`slim`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

Key = tuple[str, str, str]  # (plural, namespace, name)


def serving_names(rollout: dict[str, Any]) -> tuple[Any, ...]:
    """What a Rollout's ModelVersions (modelversion.serves) and DriftMonitors (driftmonitor.served, propose) read
    of it: the version it targets and the ones its status names (None where it names none)."""
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    fields = ("stableVersion", "canaryVersion", "drainingVersion")
    return ((spec.get("modelVersionRef") or {}).get("name"), *(status.get(f) for f in fields))


def _names(values: Iterable[Any]) -> list[str]:
    return [v for v in values if isinstance(v, str) and v]


def _monitor_rollout(body: dict[str, Any]) -> list[str]:
    return _names([((body.get("spec") or {}).get("rolloutRef") or {}).get("name")])


def _served_by(body: dict[str, Any]) -> list[str]:
    return _names((body.get("status") or {}).get("servedBy") or [])


# plural -> index name -> the values an object is found under. A listing by index returns at least the objects
# that refer to the value (callers filter anyway: the API's answer, without the cache, is the whole namespace).
INDEXES: dict[str, dict[str, Callable[[dict[str, Any]], Iterable[str]]]] = {
    "rollouts": {"version": lambda body: _names(serving_names(body))},
    "driftmonitors": {"rollout": _monitor_rollout},
    "modelversions": {"servedBy": _served_by},
}
LABEL = "label"  # every kind: "key=value" of each label


def _values(plural: str, body: dict[str, Any]) -> dict[str, set[str]]:
    labels = (body.get("metadata") or {}).get("labels") or {}
    out = {LABEL: {f"{k}={v}" for k, v in labels.items()}}
    for index, fn in INDEXES.get(plural, {}).items():
        out[index] = set(fn(body))
    return out


def slim(body: dict[str, Any]) -> dict[str, Any]:
    """`body` without metadata.managedFields (a shallow copy when it had them): no decision reads them, and they
    are often the larger part of a body the cache keeps for every object (as controller-runtime strips them)."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


class WatchCache:
    def __init__(self) -> None:
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_scope: dict[tuple[str, str], set[str]] = {}
        self._complete: set[tuple[str, str]] = set()
        self._listing: dict[tuple[str, str], asyncio.Lock] = {}
        # Kinds of other APIs kept by name only ("plural.group" -> (group, version, label selector)), see
        # `watch_names`.
        self._names_only: dict[str, tuple[str, str, str]] = {}
        # (plural, namespace, index, value) -> names; and what each object is indexed under, to undo it.
        self._index: dict[tuple[str, str, str, str], set[str]] = {}
        self._indexed: dict[Key, dict[str, set[str]]] = {}
        # Names the watch deleted while their (kind, namespace) was not yet complete: an API listing answered a
        # moment before the delete must not put them back (`fill`).
        self._gone: dict[tuple[str, str], set[str]] = {}

    def watch_names(self, group: str, version: str, plural: str, selector: str) -> None:
        """Keep the names of another API's objects matching `selector` (those slipway labels as its own), under
        "plural.group": the watch's events for them go to `put`, which keeps nothing of them but their name and
        resourceVersion, and a listing with that selector completes them (kube.Kube.get_managed)."""
        self._names_only[f"{plural}.{group}"] = (group, version, selector)

    def watched(self, kind: str) -> tuple[str, str, str] | None:
        """(group, version, label selector) of a kind kept by name only, or None."""
        return self._names_only.get(kind)

    def listing(self, plural: str, namespace: str) -> asyncio.Lock:
        """Held while an API listing that completes (plural, namespace) is under way (kube.Kube.list_custom)."""
        return self._listing.setdefault((plural, namespace), asyncio.Lock())

    def put(self, key: Key, body: dict[str, Any] | None) -> None:
        """The watch (or our own write's answer) delivered `body` for `key`; None: deleted."""
        plural, namespace, name = key
        for index, values in self._indexed.pop(key, {}).items():
            for value in values:
                self._index.get((plural, namespace, index, value), set()).discard(name)
        if body is None:
            self._objects.pop(key, None)
            self._by_scope.get((plural, namespace), set()).discard(name)
            if (plural, namespace) not in self._complete:
                self._gone.setdefault((plural, namespace), set()).add(name)
            return
        if plural in self._names_only:
            meta = body.get("metadata") or {}
            body = {"metadata": {"name": name, "namespace": namespace, "resourceVersion": meta.get("resourceVersion")}}
        self._objects[key] = body
        self._by_scope.setdefault((plural, namespace), set()).add(name)
        self._indexed[key] = _values(plural, body)
        for index, values in self._indexed[key].items():
            for value in values:
                self._index.setdefault((plural, namespace, index, value), set()).add(name)

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((plural, namespace, name))

    def complete(self, plural: str, namespace: str) -> bool:
        """Whether every object of the kind in the namespace is here (`fill`)."""
        return (plural, namespace) in self._complete

    def find(self, plural: str, namespace: str, index: str, value: str) -> list[dict[str, Any]]:
        """What the watch delivered so far (complete or not) of one kind in one namespace found under an index
        (INDEXES, or LABEL with "key=value"), in no order."""
        names = self._index.get((plural, namespace, index, value), ())
        return [self._objects[(plural, namespace, n)] for n in names]

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

    def list(
        self, plural: str, namespace: str, selector: str = "", index: tuple[str, str] | None = None
    ) -> list[dict[str, Any]] | None:
        """Every object of the kind in the namespace matching an equality `selector` (and, given an `index`
        (name, value), found under it), sorted by name as the API lists them; None while (plural, namespace) is
        not known complete."""
        if (plural, namespace) not in self._complete:
            return None
        wanted = [(LABEL, f"{k}={v}") for k, v in (_equalities(selector) or {}).items()]
        if index is not None:
            wanted.append(index)
        names: set[str] | None = None
        for idx, value in wanted:
            found = self._index.get((plural, namespace, idx, value), set())
            names = set(found) if names is None else names & found
        if names is None:
            names = self._by_scope.get((plural, namespace), set())
        return [self._objects[(plural, namespace, n)] for n in sorted(names)]

    def fill(self, plural: str, namespace: str, listed: Iterable[dict[str, Any]]) -> None:
        """An unfiltered API listing of (plural, namespace) came back: the objects in it the watch has not
        delivered yet go in as listed (the watch's own events, in order, follow them), and from now on this kind
        and namespace are complete here. At start-up the watch of thousands of objects takes a while to reach
        them all: waiting for that cost one whole listing per pass that asked meanwhile."""
        scope = (plural, namespace)
        if scope in self._complete:
            return
        gone = self._gone.pop(scope, set())
        for body in listed:
            name = (body.get("metadata") or {}).get("name", "")
            if name and name not in gone and (plural, namespace, name) not in self._objects:
                self.put((plural, namespace, name), slim(body))
        self._complete.add(scope)


def _equalities(selector: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("=") or key.endswith("!") or not key.strip():
            return None
        out[key.strip()] = value.strip()
    return out
