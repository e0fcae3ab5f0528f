"""Table tests of the pure decide() functions and the status diff, with a fixed clock."""

from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.controllers.base import Result, desired_status, invalid, merge_diff

from tests.unit.fakes import clients

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def conds(result: Result) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in result.conditions}


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"w": {"x": 1, "y": 2}}, {"w": {"x": 1}}, {"w": {"y": None}}),
        ({"l": [1, 2]}, {"l": [1]}, {"l": [1]}),
        ({}, {"n": None}, {"n": None}),
    ],
)
def test_merge_diff(old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]) -> None:
    assert merge_diff(old, new) == patch


def test_desired_status_is_stable_when_nothing_changed() -> None:
    first = desired_status({}, invalid(["spec.x: bad"]), 4, NOW)
    again = desired_status(first, invalid(["spec.x: bad"]), 4, datetime(2027, 1, 1, tzinfo=UTC))
    assert again == first and first["observedGeneration"] == 4


class StatusApi:
    """The part of the one API layer reconcile() writes status and Events through, recording both."""

    def __init__(self) -> None:
        self.patches: list[dict[str, Any]] = []
        self.events: list[str] = []

    async def patch_status(self, plural: str, ns: str, name: str, patch: dict[str, Any], rv: str) -> Any:
        self.patches.append(patch)
        return {"metadata": {"resourceVersion": "2"}}

    async def event(self, ref: Any, type_: str, reason: str, message: str, now: Any = None) -> None:
        self.events.append(reason)


async def test_a_forbidden_read_becomes_a_stalled_condition_not_a_crash() -> None:
    """The reconcile shape with a stand-in for the one API layer: a 403 while observing is reported on the
    object (Stalled, reason Forbidden, an Event) instead of failing the pass."""
    from slipway.api import DriftMonitor
    from slipway.controllers.base import reconcile
    from slipway.kube import Forbidden

    class Denied:
        kind = DriftMonitor

        async def observe(self, obj: Any, clients: Any, now: datetime) -> Any:
            raise Forbidden("the operator may not read Secret ns/s3")

        def decide(self, obj: Any, observed: Any, now: datetime) -> Result:
            raise AssertionError("not reached")

    body = {"apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": "dm", "namespace": "ns", "resourceVersion": "1", "generation": 1},
            "spec": {"inferenceServiceRef": {"name": "i"}, "modelVersionRef": {"name": "m"}}}  # fmt: skip
    api = StatusApi()
    result = await reconcile(Denied(), body, clients(api), NOW)  # type: ignore[arg-type]
    assert conds(result)["Stalled"] == ("True", "Forbidden")
    assert api.events == ["Forbidden"] and api.patches


async def test_a_refused_write_becomes_a_stalled_condition_and_keeps_the_status() -> None:
    """KServe's webhook refusing the InferenceService (say, a predictor rename on an unchanged storageUri) or the
    apiserver refusing a name: the object says so (Stalled, reason Rejected, the API's message, an Event), the
    decision's other status fields are not written (it did not happen), and the pass is retried later."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from slipway.api import DriftMonitor
    from slipway.controllers.base import REJECTED_RETRY_SECONDS, Apply, reconcile
    from slipway.kube.client import rejection

    denial = ApiException(status=400, reason="Bad Request")
    denial.body = '{"message": "admission webhook \\"inferenceservice.kserve-webhook-server.validator\\" denied the ' \
                  'request: predictor.name change requires a model change (e.g. storageUri)"}'  # fmt: skip
    refused = rejection(denial, "applying InferenceService r")
    assert refused is not None and "requires a model change" in str(refused)
    assert rejection(ApiException(status=403, reason="Forbidden"), "x") is None  # RBAC: not the object's fault
    assert rejection(ApiException(status=503, reason="Unavailable"), "x") is None

    class Deciding:
        kind = DriftMonitor

        async def observe(self, obj: Any, clients: Any, now: datetime) -> Any:
            return None

        def decide(self, obj: Any, observed: Any, now: datetime) -> Result:
            return Result([], fields={"phase": "Moved"}, actions=[Apply({"kind": "X", "metadata": {"name": "x"}})])

    class Api(StatusApi):
        async def apply(self, manifest: dict[str, Any]) -> None:
            raise refused  # type: ignore[misc]

    body = {"apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": "dm", "namespace": "ns", "resourceVersion": "1", "generation": 1},
            "spec": {"inferenceServiceRef": {"name": "i"}, "modelVersionRef": {"name": "m"}},
            "status": {"phase": "Before"}}  # fmt: skip
    api = Api()
    result = await reconcile(Deciding(), body, clients(api), NOW)  # type: ignore[arg-type]
    assert conds(result)["Stalled"] == ("True", "Rejected") and result.requeue_after == REJECTED_RETRY_SECONDS
    assert api.events == ["Rejected"] and "phase" not in api.patches[0]
    stalled = next(c for c in api.patches[0]["conditions"] if c["type"] == "Stalled")
    assert "requires a model change" in stalled["message"]


async def test_an_object_deleted_during_its_pass_is_not_a_failed_pass() -> None:
    """Found by the fuzz campaign (tests/integration/test_fuzz.py): a TrainingJob deleted between the read and the
    status patch failed its pass with the patch's 404 (slipway_reconcile_total{outcome="error"}, a traceback, a
    retry 10 s later). A 404 on the guarded writes is Gone, and reconcile() ends the pass quietly."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from slipway.api import DriftMonitor
    from slipway.controllers.base import SetFinalizers, reconcile
    from slipway.kube import Conflict, Gone
    from slipway.kube.client import Kube

    async def status(code: int) -> None:
        raise ApiException(status=code, reason="x")

    with pytest.raises(Gone):
        await Kube._guarded(status(404), "driftmonitors/ns/dm")
    with pytest.raises(Conflict):
        await Kube._guarded(status(409), "driftmonitors/ns/dm")
    with pytest.raises(ApiException):
        await Kube._guarded(status(500), "driftmonitors/ns/dm")

    class Deciding:
        kind = DriftMonitor

        async def observe(self, obj: Any, clients: Any, now: datetime) -> Any:
            return None

        def decide(self, obj: Any, observed: Any, now: datetime) -> Result:
            return Result(invalid(["x"]).conditions, actions=[SetFinalizers(("f",))])

    class Deleted(StatusApi):
        finalizers = 0

        async def patch_status(self, plural: str, ns: str, name: str, patch: dict[str, Any], rv: str) -> Any:
            raise Gone(f"{plural}/{ns}/{name} was deleted since it was read")

        async def set_finalizers(self, *args: Any) -> None:
            self.finalizers += 1

    body = {"apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": "dm", "namespace": "ns", "resourceVersion": "1", "generation": 1},
            "spec": {"inferenceServiceRef": {"name": "i"}, "modelVersionRef": {"name": "m"}}}  # fmt: skip
    api = Deleted()
    result = await reconcile(Deciding(), body, clients(api), NOW)  # type: ignore[arg-type]
    assert not result.patched and api.events == [] and api.finalizers == 0


async def test_a_resync_reconciles_the_body_the_watch_delivered_without_a_get() -> None:
    """Issue 13: at idle every object was re-read from the API at every resync. The runtime keeps the latest
    body (the watch's, or the one its own status patch returned) and reconciles from it; only an object whose
    last pass found its body stale (a conflict) is read. One never delivered (a wake at start-up before its
    kind's watch reached it) or deleted is not: the watch's event for it is its pass."""
    from slipway.config import Settings
    from slipway.handlers import Runtime
    from slipway.storage import S3

    class Api:
        gets: list[tuple[str, str, str]] = []

        async def get_custom(self, group: str, version: str, plural: str, ns: str, name: str) -> dict[str, Any] | None:
            self.gets.append((plural, ns, name))
            return None

    runtime = Runtime(Api(), Settings(peering=""), S3())  # type: ignore[arg-type]
    handled: list[dict[str, Any]] = []

    async def handle(controller: Any, body: dict[str, Any]) -> None:
        handled.append(body)

    runtime.handle = handle  # type: ignore[method-assign]
    controller = runtime.controllers["ModelVersion"]
    key = ("modelversions", "ns", "m-v1")
    body = {"metadata": {"name": "m-v1", "namespace": "ns", "resourceVersion": "7"}}
    runtime.seen(key, body)
    await runtime._refetch(controller, key)
    assert handled == [body] and Api.gets == []
    runtime.seen(key, None)  # deleted
    await runtime._refetch(controller, key)
    never = ("modelversions", "ns", "m-v2")
    await runtime._refetch(controller, never)
    assert Api.gets == [] and handled == [body]
    runtime.stale.add(key)  # what handlers.Runtime._pass does on a conflict
    await runtime._refetch(controller, key)
    assert Api.gets == [key] and handled == [body]
    await runtime.requeue.close()


async def test_every_write_the_api_refuses_as_invalid_is_rejected() -> None:
    """Apply and merge-patch (the stray-field patch of an InferenceService) both turn a webhook's denial into
    kube.Rejected; other failures pass through unchanged."""
    from kubernetes_asyncio.client.exceptions import ApiException
    from slipway.kube import Kube, Rejected

    denial = ApiException(status=400, reason="Bad Request")
    denial.body = '{"message": "admission webhook denied the request: no"}'

    class Custom:
        error: ApiException = denial

        async def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> None:
            raise self.error

    kube = Kube.__new__(Kube)
    kube._custom = Custom()  # type: ignore[assignment]
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "r", "namespace": "ns"}}  # fmt: skip
    with pytest.raises(Rejected, match="patching InferenceService r was refused: admission webhook denied"):
        await kube.patch_object(isvc, {"spec": {"predictor": {"logger": None}}})
    with pytest.raises(Rejected, match="applying InferenceService r was refused"):
        await kube.apply(isvc)
    Custom.error = ApiException(status=503, reason="Unavailable")
    with pytest.raises(ApiException):
        await kube.patch_object(isvc, {})
