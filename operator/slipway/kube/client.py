"""A small async facade over kubernetes_asyncio: the calls slipway makes, with errors mapped.

Controllers get plain dicts in and out; nothing else in the operator imports the client library.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from slipway import contract
from slipway.api import KINDS, RECORDS
from slipway.api.common import GROUP, VERSION
from slipway.cache import WatchCache, managed_kind, slim

log = logging.getLogger(__name__)
REPORTING_CONTROLLER = contract.REPORTING_CONTROLLER
FIELD_MANAGER = "slipway"
APPLY = "application/apply-patch+yaml"  # JSON is YAML: the body goes as JSON


# The resource (plural) of every custom kind the operator writes: slipway's own from their API models, the
# others named, never guessed from the kind (a guess goes wrong for the first kind ending in y or s).
PLURALS = {kind.kind: kind.plural for kind in (*KINDS, *RECORDS)} | {
    "InferenceService": "inferenceservices",
    "HTTPRoute": "httproutes",
}


def plural_of(kind: str) -> str:
    try:
        return PLURALS[kind]
    except KeyError:
        raise ValueError(f"kube.client.PLURALS has no resource for kind {kind!r}: add it there") from None


class Conflict(Exception):
    """The object changed since it was read (HTTP 409); reconcile again from a fresh read."""


class Gone(Exception):
    """The object was deleted since it was read (HTTP 404 on a write to it): there is nothing left to write."""


class Forbidden(Exception):
    """The operator's RBAC does not allow a read it needs (HTTP 403); the message says which."""


class Rejected(Exception):
    """The API server or an admission webhook refused a write as invalid (HTTP 400 or 422, or a webhook's
    denial): trying the same write again cannot help, and the message is for the object's owner."""


def rejection(e: ApiException, what: str) -> Rejected | None:
    """The Rejected a failed write amounts to, or None for errors that are not about the object (RBAC, the
    server being unavailable, a conflict)."""
    try:
        message = str(json.loads(e.body or "{}").get("message") or e.reason)
    except (ValueError, AttributeError):
        message = str(e.reason)
    if e.status in (400, 422) or (e.status == 403 and "admission webhook" in message):
        return Rejected(f"{what} was refused: {message}")
    return None


@dataclass(frozen=True)
class ObjectRef:
    """Enough of an object to name it in an Event."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str
    resource_version: str = ""

    @classmethod
    def of(cls, body: dict[str, Any]) -> ObjectRef:
        meta = body.get("metadata", {})
        return cls(
            body.get("apiVersion", ""),
            body.get("kind", ""),
            meta.get("namespace", ""),
            meta.get("name", ""),
            meta.get("uid", ""),
            meta.get("resourceVersion", ""),
        )


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def quiet_environment(api: client.ApiClient) -> None:
    """kubernetes_asyncio's aiohttp session trusts the environment: before every request it looks in ~/.netrc and
    the proxy variables, each in a worker thread (two thread hops per API call, a tenth of the operator's CPU at
    start-up with thousands of objects). A netrc password cannot apply (the client authenticates by certificate
    or token), so without proxy variables there is nothing to look up; with them, nothing changes."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return
    session = api.rest_client.pool_manager
    if hasattr(session, "_trust_env"):  # aiohttp's ClientSession keeps it there; if that changes, nothing happens
        session._trust_env = False


class Kube:
    """One API client for the whole operator."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        # Reads of slipway objects answered from what the watches delivered (cache.py), once the handlers set it.
        self.cache: WatchCache | None = None
        self._custom = client.CustomObjectsApi(api)
        self._core = client.CoreV1Api(api)

    @classmethod
    async def connect(cls) -> Kube:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        else:
            await config.load_kube_config()
        api = client.ApiClient()
        quiet_environment(api)
        return cls(api)

    async def close(self) -> None:
        await self._api.close()

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A slipway object, or None when it does not exist: from the watch cache (cache.py). A miss while the
        cache is not complete for the kind and namespace completes it first (at start-up thousands of passes read
        objects the watch has not delivered yet: one listing instead of a GET each); a miss after that is read
        from the API (an object created a moment ago)."""
        cache = self.cache
        if cache is not None:
            if (cached := cache.get(plural, namespace, name)) is not None:
                return cached
            if not cache.complete(plural, namespace):
                await self._fill(cache, plural, namespace)
                if (cached := cache.get(plural, namespace, name)) is not None:
                    return cached
        return await self.get_custom(GROUP, VERSION, plural, namespace, name)

    async def get_custom(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """Any namespaced custom object (e.g. a KServe InferenceService), or None when it does not exist."""
        try:
            obj: dict[str, Any] = await self._custom.get_namespaced_custom_object(
                group, version, namespace, plural, name
            )
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def get_managed(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """A custom object slipway creates with its managed-by label (a Rollout's InferenceService): from the watch
        cache (cache.WatchCache.watch_managed; one labelled listing completes a namespace of them), or from the
        API when the cache does not keep the kind or could not list it (not installed, not allowed)."""
        kind = managed_kind(group, plural)
        if (found := await self._managed(kind, namespace)) is not None:
            return found.get(kind, namespace, name)
        return await self.get_custom(group, version, plural, namespace, name)

    async def _managed(self, kind: str, namespace: str) -> WatchCache | None:
        """The watch cache when it answers for a managed kind in `namespace` (listing it first if need be)."""
        cache = self.cache
        if cache is None or not cache.watched(kind):
            return None
        if not cache.complete(kind, namespace):
            await self._fill(cache, kind, namespace)
        return cache if cache.complete(kind, namespace) else None

    async def get_optional(
        self, group: str, version: str, plural: str, namespace: str, name: str
    ) -> dict[str, Any] | None:
        """A custom object read only to explain something (Kueue's Workload of a queued gang): None when it does
        not exist, its API is not installed (both 404) or RBAC does not let the operator read it (logged), so
        that it cannot stop a reconcile that works without it."""
        try:
            return await self.get_custom(group, version, plural, namespace, name)
        except ApiException as e:
            if e.status != 403:
                raise
            log.warning("may not read %s.%s %s/%s (the chart's RBAC grants get): %s", plural, group, namespace,
                        name, e.reason)  # fmt: skip
            return None

    async def list_custom(
        self, plural: str, namespace: str, selector: str = "", index: tuple[str, str] | None = None, fresh: bool = False
    ) -> list[dict[str, Any]]:
        """Slipway objects of one kind in a namespace, sorted by name; from the watch cache once it is complete
        for them (cache.py): until then one unfiltered listing, which completes it. `index`
        (cache.INDEXES) narrows a cached listing to the objects referring to a name; callers still filter, as
        the API's answer is not narrowed. `fresh`: from the API, for a decision that must not rest on a watch
        that lags (a new version number)."""
        cache = self.cache
        if fresh or cache is None or not cache.answers(selector):
            return await self._list(plural, namespace, selector)
        if not cache.complete(plural, namespace):
            await self._fill(cache, plural, namespace)
        return cache.list(plural, namespace, selector, index) or []

    async def _fill(self, cache: WatchCache, plural: str, namespace: str) -> None:
        """Complete the cache for one kind and namespace with one unfiltered listing. One at a time: at start-up
        thousands of passes ask at once, and the first listing completes it for all the others."""
        async with cache.listing(plural, namespace):
            if cache.complete(plural, namespace):
                return
            if (managed := cache.watched(plural)) is None:
                cache.fill(plural, namespace, await self._list(plural, namespace, ""))
                return
            group, version, selector = managed
            try:
                if not group:  # core: pods
                    pods = await self._core.list_namespaced_pod(namespace, label_selector=selector)
                    items, at = [self._plain(p) for p in pods.items], str(pods.metadata.resource_version or "")
                else:
                    res = await self._custom.list_namespaced_custom_object(
                        group, version, namespace, plural.split(".", 1)[0], label_selector=selector
                    )
                    items, at = res.get("items", []), str((res.get("metadata") or {}).get("resourceVersion") or "")
            except ApiException as e:  # not installed (404) or not allowed: read each object from the API
                log.debug("cannot list %s in %s (%s): not cached", plural, namespace, e.reason)
                return
            cache.fill(plural, namespace, items, at)

    async def _list(self, plural: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        res = await self._custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=selector
        )
        items: list[dict[str, Any]] = res.get("items", [])
        return items

    async def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods slipway launched (its managed-by label) matching an equality `selector`, from the watch cache (a
        pod we created is in it from the create's answer on, ahead of the watch); from the API otherwise."""
        cache = await self._managed("pods", namespace)
        if cache is not None and cache.answers(selector):
            return cache.list("pods", namespace, selector) or []
        res = await self._core.list_namespaced_pod(namespace, label_selector=selector)
        return [self._plain(p) for p in res.items]

    async def service_exists(self, namespace: str, name: str) -> bool:
        return await self._exists(self._core.read_namespaced_service(name, namespace))

    async def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's decoded data, or None when it does not exist. Callers must never log or store it."""
        found = await self.secret_version(namespace, name)
        return found[0] if found else None

    async def secret_version(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        """A Secret's decoded data and resourceVersion (which says when it changed), or None when it does not
        exist. Callers must never log or store the data."""
        try:
            secret = await self._core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            if e.status == 403:
                raise Forbidden(f"the operator may not read Secret {namespace}/{name}: grant it get on that Secret "
                                "(the chart's rbac.secretNames)") from e  # fmt: skip
            raise
        data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
        return data, str(secret.metadata.resource_version or "")

    async def create(self, manifest: dict[str, Any]) -> bool:
        """Create a Pod, Service or slipway object; False when one of that name already exists."""
        kind, ns = manifest["kind"], manifest["metadata"]["namespace"]
        try:
            if kind == "Pod":
                created = await self._core.create_namespaced_pod(ns, manifest)  # type: ignore[arg-type]
                self._answered("pods", self._plain(created))
            elif kind == "Service":
                await self._core.create_namespaced_service(ns, manifest)  # type: ignore[arg-type]
            else:
                group, version = manifest["apiVersion"].split("/")
                await self._custom.create_namespaced_custom_object(group, version, ns, plural_of(kind), manifest)
        except ApiException as e:
            if e.status == 409:
                return False
            if (refused := rejection(e, f"creating {kind} {manifest['metadata'].get('name')}")) is not None:
                raise refused from e
            raise
        return True

    async def service_account_exists(self, namespace: str, name: str) -> bool:
        return await self._exists(self._core.read_namespaced_service_account(name, namespace))

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply (field manager `slipway`, forced): create the object or set the fields `manifest`
        holds, remove the ones slipway applied before and no longer holds, leave everyone else's alone. Returns
        the object as applied (a custom object's; None for the core kinds)."""
        what = f"applying {manifest['kind']} {manifest['metadata']['name']}"
        applied: dict[str, Any] | None = await self._refusable(self._apply(manifest), what)
        return applied

    async def _apply(self, manifest: dict[str, Any]) -> dict[str, Any] | None:
        kind, meta = manifest["kind"], manifest["metadata"]
        opts: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": APPLY}
        if kind == "Secret":
            await self._core.patch_namespaced_secret(meta["name"], meta["namespace"], manifest, **opts)
        elif kind == "ServiceAccount":
            await self._core.patch_namespaced_service_account(meta["name"], meta["namespace"], manifest, **opts)
        elif kind == "Service":
            await self._core.patch_namespaced_service(meta["name"], meta["namespace"], manifest, **opts)
        else:
            group, version = manifest["apiVersion"].split("/")
            applied = await self._custom.patch_namespaced_custom_object(
                group, version, meta["namespace"], plural_of(kind), meta["name"], manifest, **opts
            )
            self._answered(managed_kind(group, plural_of(kind)), applied)
            return applied if isinstance(applied, dict) else None
        return None

    def _answered(self, kind: str, body: Any) -> None:
        """Our own create's or apply's answer of a managed kind into the watch cache: the next pass reads what
        it wrote even when the watch has not delivered it yet (a pod missing there would look lost)."""
        if self.cache is not None and self.cache.watched(kind) and isinstance(body, dict):
            meta = body.get("metadata") or {}
            self.cache.put((kind, meta.get("namespace") or "", meta.get("name") or ""), slim(body))

    async def patch_object(self, manifest: dict[str, Any], patch: dict[str, Any]) -> None:
        """Merge-patch a namespaced custom object (e.g. an InferenceService) named by `manifest`."""
        what = f"patching {manifest['kind']} {manifest['metadata']['name']}"
        await self._refusable(self._patch_object(manifest, patch), what)

    async def _patch_object(self, manifest: dict[str, Any], patch: dict[str, Any]) -> None:
        group, version = manifest["apiVersion"].split("/")
        meta = manifest["metadata"]
        await self._custom.patch_namespaced_custom_object(
            group,
            version,
            meta["namespace"],
            plural_of(manifest["kind"]),
            meta["name"],
            patch,
            _content_type="application/merge-patch+json",  # type: ignore[call-arg]
        )

    async def delete(self, kind: str, namespace: str, name: str, grace_seconds: int | None = None) -> None:
        """Delete; an object already gone is fine. Dependents go by garbage collection (background)."""
        bg = "Background"
        try:
            if kind == "Pod":
                await self._core.delete_namespaced_pod(
                    name,
                    namespace,
                    grace_period_seconds=grace_seconds,  # type: ignore[arg-type]
                    propagation_policy=bg,
                )
            elif kind == "Service":
                await self._core.delete_namespaced_service(name, namespace, propagation_policy=bg)
            else:
                await self._custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural_of(kind), name)
        except ApiException as e:
            if e.status != 404:
                raise

    async def set_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], rv: str
    ) -> dict[str, Any]:
        """Replace a slipway object's finalizers, guarded by resourceVersion; returns the object as written."""
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": rv}}
        return await self._merge_guarded(self._custom.patch_namespaced_custom_object, plural, namespace, name, body)

    async def _merge_guarded(self, patch: Any, plural: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
        """A merge patch of a slipway object (or its status) that carries its resourceVersion (see _guarded)."""
        call = patch(GROUP, VERSION, namespace, plural, name, body, _content_type="application/merge-patch+json")
        obj: dict[str, Any] = await self._guarded(call, f"{plural}/{namespace}/{name}")
        return obj

    @staticmethod
    async def _refusable(call: Any, what: str) -> Any:
        """A write the API may refuse as invalid: that refusal becomes Rejected, for the object's owner."""
        try:
            return await call
        except ApiException as e:
            if (refused := rejection(e, what)) is not None:
                raise refused from e
            raise

    @staticmethod
    async def _guarded(call: Any, what: str) -> Any:
        """A write that carries a resourceVersion: a 409 means the object moved on, reconcile again; a 404 that
        it was deleted meanwhile (its deletion is the watch's news, not a failed pass)."""
        try:
            return await call
        except ApiException as e:
            if e.status == 409:
                raise Conflict(f"{what} changed since it was read") from e
            if e.status == 404:
                raise Gone(f"{what} was deleted since it was read") from e
            raise

    def _plain(self, obj: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self._api.sanitize_for_serialization(obj)
        return plain

    @staticmethod
    async def _exists(call: Any) -> bool:
        try:
            await call
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    async def patch_status(
        self, plural: str, namespace: str, name: str, status_patch: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """Apply a status merge patch, guarded by resourceVersion so a stale decision is never written."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status_patch}
        patch = self._custom.patch_namespaced_custom_object_status
        return await self._merge_guarded(patch, plural, namespace, name, body)

    async def ensure_peering(self, name: str, namespaces: tuple[str, ...]) -> bool:
        """Create Kopf's peering object(s) if missing; False when the peering CRDs are not installed."""
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        try:
            if not namespaces:
                await self._create_if_missing(
                    self._custom.create_cluster_custom_object(
                        "kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"}
                    )
                )
            for ns in namespaces:
                await self._create_if_missing(
                    self._custom.create_namespaced_custom_object(
                        "kopf.dev", "v1", ns, "kopfpeerings", {**body, "kind": "KopfPeering"}
                    )
                )
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    async def peers(self, name: str, namespaces: tuple[str, ...]) -> dict[str, Any] | None:
        """The status of Kopf's peering object (peer id → priority, lifetime, lastseen), or None if there is
        none. Listed rather than read: list/watch is what Kopf itself needs, so no extra RBAC."""
        selector = f"metadata.name={name}"
        if namespaces:
            res = await self._custom.list_namespaced_custom_object(
                "kopf.dev", "v1", namespaces[0], "kopfpeerings", field_selector=selector
            )
        else:
            res = await self._custom.list_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", field_selector=selector
            )
        items = res.get("items") or []
        return dict(items[0].get("status") or {}) if items else None

    @staticmethod
    async def _create_if_missing(call: Any) -> None:
        try:
            await call
        except ApiException as e:
            if e.status != 409:
                raise

    async def event(self, ref: ObjectRef, type_: str, reason: str, message: str, now: datetime | None = None) -> None:
        """Post an events.k8s.io-style core Event; failures are logged, never raised (events are best effort)."""
        now = now or datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
                "resourceVersion": ref.resource_version,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "slipway-operator"},
            "reportingComponent": REPORTING_CONTROLLER,
            "reportingInstance": os.environ.get("HOSTNAME", "slipway-operator"),
            "action": reason,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "eventTime": stamp,
            "count": 1,
        }
        try:
            await self._core.create_namespaced_event(ref.namespace, body)  # type: ignore[arg-type]
        except ApiException as e:
            log.warning("could not post event %s for %s/%s: %s", reason, ref.namespace, ref.name, e.reason)
