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
- Objects of other APIs that slipway creates with its managed-by label (a Rollout's InferenceService, a
  TrainingJob's pods) are kept too (`watch_managed`): their watch, one labelled listing per namespace and our own
  create's or apply's answer (the newest of them by resourceVersion) answer a pass's read of them, instead of a GET
  or a LIST per pass (a fifth of the API requests of a 10,000-object start-up). Kopf's watch does not say what was
  deleted while it was down (a replica paused by its peering, a watch expired: 410): when it lists again
  (`observe`), their namespaces are listed anew at the next read, and what the new listing lacks is dropped.
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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Key = tuple[str, str, str]  # (plural, namespace, name)


def serving_names(rollout: dict[str, Any]) -> tuple[Any, ...]:
    """What a Rollout's ModelVersions (modelversion.serves) and DriftMonitors (driftmonitor.served, propose) read
    of it: the version it targets and the ones its status names (None where it names none)."""
    spec, status = rollout.get("spec") or {}, rollout.get("status") or {}
    fields = ("stableVersion", "canaryVersion", "drainingVersion")
    return ((spec.get("modelVersionRef") or {}).get("name"), *(status.get(f) for f in fields))


def managed_kind(group: str, plural: str) -> str:
    """The cache's name of another API's kind: "plural.group", a core kind by its plural alone ("pods")."""
    return f"{plural}.{group}" if group else plural


def _version(body: Mapping[str, Any] | None) -> int | None:
    rv = ((body or {}).get("metadata") or {}).get("resourceVersion")
    return int(rv) if isinstance(rv, str) and rv.isdigit() else None


def older(body: Mapping[str, Any] | None, than: Mapping[str, Any] | None) -> bool:
    """Whether `body` is an older state than `than` by resourceVersion (the apiserver's are etcd revisions:
    integers that grow; anything else is taken as not older)."""
    a, b = _version(body), _version(than)
    return a is not None and b is not None and a < b


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
        # Kinds of other APIs slipway creates ("plural.group" -> (group, version, label selector)), see
        # `watch_managed`; and whether each one's watch is listing (Kopf's events of type None).
        self._managed: dict[str, tuple[str, str, str]] = {}
        self._listing_kind: dict[str, bool] = {}
        # (plural, namespace, index, value) -> names; and what each object is indexed under, to undo it.
        self._index: dict[tuple[str, str, str, str], set[str]] = {}
        self._indexed: dict[Key, dict[str, set[str]]] = {}
        # Names the watch deleted while their (kind, namespace) was not yet complete: an API listing answered a
        # moment before the delete must not put them back (`fill`).
        self._gone: dict[tuple[str, str], set[str]] = {}

    def watch_managed(self, group: str, version: str, plural: str, selector: str) -> None:
        """Keep the objects of another API matching `selector` (those slipway labels as its own), under
        `managed_kind(group, plural)`: the watch's events for them go to `observe`, a listing with that selector
        completes a namespace of them (kube.Kube), and our own writes' answers go to `put`."""
        self._managed[managed_kind(group, plural)] = (group, version, selector)

    def watched(self, kind: str) -> tuple[str, str, str] | None:
        """(group, version, label selector) of a managed kind, or None."""
        return self._managed.get(kind)

    def observe(self, kind: str, type_: str | None, body: Mapping[str, Any], mine: bool) -> bool:
        """A watch event of a managed kind (`mine`: it carries the selector's labels); False when it says nothing
        new: the state kept here already (the echo of our own create or apply, whose answer went in), or an older
        one. Only slipway's objects are copied and kept: every object of the kind comes here. Kopf's events of type
        None are its listing, at its start and whenever its watch restarts: what was deleted meanwhile is not among
        them, so the first of them makes every namespace of the kind incomplete, to be listed anew."""
        if type_ is None and not self._listing_kind.get(kind):
            self.expire(kind)
        self._listing_kind[kind] = type_ is None
        meta = body.get("metadata") or {}
        key = (kind, meta.get("namespace") or "", meta.get("name") or "")
        held = self._objects.get(key)
        if type_ == "DELETED" or not mine:  # deleted, or relabelled away from slipway
            if type_ == "DELETED" or held is not None:
                self.put(key, None, body)
            return True
        if held is not None and (
            older(body, held) or (_version(held) is not None and _version(body) == _version(held))
        ):
            return False
        self.put(key, slim(dict(body)))
        return True

    def expire(self, kind: str) -> None:
        """Every namespace of `kind` is to be listed anew before the next read is answered here."""
        self._complete = {scope for scope in self._complete if scope[0] != kind}

    def listing(self, plural: str, namespace: str) -> asyncio.Lock:
        """Held while an API listing that completes (plural, namespace) is under way (kube.Kube.list_custom)."""
        return self._listing.setdefault((plural, namespace), asyncio.Lock())

    def put(self, key: Key, body: dict[str, Any] | None, last: Mapping[str, Any] | None = None) -> None:
        """The watch (or our own write's answer) delivered `body` for `key`; None: deleted (`last`: its last
        state, when known). For a managed kind, a state older than the one kept is ignored: our create's or
        apply's answer can be ahead of the watch."""
        plural, namespace, name = key
        if plural in self._managed and older(body if body is not None else last, self._objects.get(key)):
            return
        for index, values in self._indexed.pop(key, {}).items():
            for value in values:
                self._index.get((plural, namespace, index, value), set()).discard(name)
        if body is None:
            self._objects.pop(key, None)
            self._by_scope.get((plural, namespace), set()).discard(name)
            if (plural, namespace) not in self._complete:
                self._gone.setdefault((plural, namespace), set()).add(name)
            return
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

    def fill(self, plural: str, namespace: str, listed: Iterable[dict[str, Any]], version: str = "") -> None:
        """An unfiltered API listing of (plural, namespace) came back: the objects in it the watch has not
        delivered yet go in as listed (the watch's own events, in order, follow them), and from now on this kind
        and namespace are complete here. At start-up the watch of thousands of objects takes a while to reach
        them all: waiting for that cost one whole listing per pass that asked meanwhile. For a managed kind
        (listed anew after `expire`), a listed state newer than the one kept replaces it, and a kept object the
        listing (at resourceVersion `version`) lacks and is not newer than is dropped: it was deleted unseen."""
        scope = (plural, namespace)
        if scope in self._complete:
            return
        gone, managed = self._gone.pop(scope, set()), plural in self._managed
        names = set()
        for body in listed:
            name = (body.get("metadata") or {}).get("name", "")
            names.add(name)
            key = (plural, namespace, name)
            if name and name not in gone and (key not in self._objects or managed):
                self.put(key, slim(body))
        self._complete.add(scope)
        if managed and version:
            at = {"metadata": {"resourceVersion": version}}
            for name in self._by_scope.get(scope, set()) - names:
                if not older(at, self._objects.get((plural, namespace, name))):
                    self.put((plural, namespace, name), None)


def _equalities(selector: str) -> dict[str, str] | None:
    out: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or value.startswith("=") or key.endswith("!") or not key.strip():
            return None
        out[key.strip()] = value.strip()
    return out
