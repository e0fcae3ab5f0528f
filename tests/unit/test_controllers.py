"""Table tests of the pure decide() functions and the status diff, with a fixed clock."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from slipway.config import Settings
from slipway.controllers.base import Hooks, Result, desired_status, invalid, merge_diff
from slipway.kube import Kube
from slipway.storage import S3

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


class Echoing(StatusApi):
    """Writes status as the API does (a merge patch of top-level fields) and returns the object as written."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__()
        self.body, self.created = body, 0

    async def patch_status(self, plural: str, ns: str, name: str, patch: dict[str, Any], rv: str) -> Any:
        self.patches.append(patch)
        status = {k: v for k, v in {**(self.body.get("status") or {}), **patch}.items() if v is not None}
        return {**self.body, "metadata": {**self.body["metadata"], "resourceVersion": "2"}, "status": status}

    async def create(self, manifest: dict[str, Any]) -> bool:
        self.created += 1
        return True

    async def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.created += 1
        return {**manifest, "status": {"ready": False}}


class Converging(Hooks):
    """A decision that reaches its state in one pass, one that takes a step per pass, one that asks for a create
    at every pass (it does not observe what it created), and one that applies an object it reads (as a Rollout its
    InferenceService) and can tell what it would observe after (Hooks.observed_after)."""

    from slipway.api import DriftMonitor as kind

    def __init__(self, how: str) -> None:
        self.how = how

    async def observe(self, obj: Any, clients: Any, now: datetime) -> Any:
        return "observed"

    def observed_after(self, observed: Any, actions: list[Any], made: dict[tuple[str, str], Any]) -> Any:
        return made.get(("Thing", "t")) if self.how == "applies" else None

    def decide(self, obj: Any, observed: Any, now: datetime) -> Result:
        from slipway.conditions import Cond
        from slipway.controllers.base import Apply, Create

        # The settling decision reuses what the pass observed, or what its applies answered.
        assert observed == "observed" or observed["status"] == {"ready": False}
        seen = obj.status.windows_evaluated if obj.status else 0
        ready = [Cond("Ready", "True", "Monitoring", "ok")]
        if self.how == "steps":
            return Result(ready, fields={"windowsEvaluated": seen + 1})
        actions: list[Any] = [Create({"kind": "Pod", "metadata": {"name": "p"}})] if self.how == "creates" else []
        if self.how == "applies" and observed == "observed":
            actions = [Apply({"apiVersion": "x/v1", "kind": "Thing", "metadata": {"name": "t"}})]
        # The timer this state asks for is known only once the state is written (as a TTL counts from a
        # completion time the same pass writes).
        return Result(ready, fields={"windowsEvaluated": 1}, actions=actions, requeue_after=30.0 if seen else None)


@pytest.mark.parametrize(("how", "settled", "requeue"), [("once", True, 30.0), ("steps", False, None),
                                                         ("creates", False, None),
                                                         ("applies", True, 30.0)])  # fmt: skip
async def test_a_pass_whose_written_status_is_a_fixed_point_is_settled(how: str, settled: bool, requeue: Any) -> None:
    """Issue 13: the watch's echo of every status write was passed over again: a second pass per object at
    start-up, each with its reads (a TrainingJob's pods, a Rollout's InferenceService). reconcile() decides again
    over the object as written, with what the pass observed: nothing more to write or do is `settled` (its echo
    needs no pass), with the timer decided over the written status. A decision that takes a step per pass, or asks
    for an action again, is not settled: its echo is passed over as before."""
    from slipway.controllers.base import reconcile

    body = {"apiVersion": "slipway.dev/v1alpha1", "kind": "DriftMonitor",
            "metadata": {"name": "dm", "namespace": "ns", "resourceVersion": "1", "generation": 1},
            "spec": {"inferenceServiceRef": {"name": "i"}, "modelVersionRef": {"name": "m"}}}  # fmt: skip
    api = Echoing(body)
    result = await reconcile(Converging(how), body, clients(api), NOW)  # type: ignore[arg-type]
    assert len(api.patches) == 1 and result.versions == ["2"]
    assert result.settled is settled and result.requeue_after == requeue
    assert api.created == (1 if how in ("creates", "applies") else 0)  # settling decides only: it does nothing


async def test_an_echo_that_comes_while_its_pass_still_runs_is_that_pass_s_own() -> None:
    """The watch's echo of a status patch often comes before the pass ends (it posts its Events after the patch):
    it was handled like anyone's change, a second pass of 40 to 60 % of the TrainingJobs at start-up. It is the
    running pass's own: no pass when that pass is settled, one right after it when it is not."""
    from slipway import handlers

    rt, passes = handlers.Runtime(Kube.__new__(Kube), Settings(peering=""), S3()), []  # type: ignore[var-annotated]
    settle, echoes = True, list[asyncio.Task[None]]()

    def event(rv: str) -> dict[str, Any]:
        return {"metadata": {"name": "m-v1", "namespace": "ns", "resourceVersion": rv}, "spec": {}}

    async def fake(controller: Any, body: dict[str, Any], clients: Any, now: datetime, wrote: Any) -> Result:
        passes.append(body["metadata"]["resourceVersion"])
        rv = str(int(body["metadata"]["resourceVersion"]) + 1)
        wrote(rv)
        echoes.append(asyncio.create_task(rt.event(mvs, "MODIFIED", event(rv))))  # the echo, while Events go out
        await asyncio.sleep(0.01)
        written = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
        return Result([], body=written, versions=[rv], patched=True, settled=settle)

    mvs, key = rt.controllers["ModelVersion"], ("modelversions", "ns", "m-v1")
    handlers.reconcile, original = fake, handlers.reconcile  # type: ignore[assignment]
    try:
        await rt.event(mvs, "ADDED", event("1"))
        await asyncio.sleep(0.05)
        assert passes == ["1"] and key not in rt.written and rt.bodies[key]["metadata"]["resourceVersion"] == "2"
        settle = False
        await rt.event(mvs, "MODIFIED", event("5"))  # writes 6, not settled: passes over it at once
        await asyncio.sleep(0.05)
        assert passes[:3] == ["1", "5", "6"]
    finally:
        await asyncio.gather(*echoes)
        handlers.reconcile = original  # type: ignore[assignment]
        await rt.requeue.close()


async def test_the_echo_of_a_settled_pass_is_not_passed_over_again() -> None:
    """The runtime's side of base.settle: the watch's echo of a settled pass's write is remembered (and wakes what
    reads it) without a pass; any other event of the object, or the echo of a pass that was not settled, is."""
    from slipway import handlers

    rt, passes = handlers.Runtime(Kube.__new__(Kube), Settings(peering=""), S3()), []  # type: ignore[var-annotated]
    settle = True

    async def fake(controller: Any, body: dict[str, Any], clients: Any, now: datetime, wrote: Any) -> Result:
        passes.append(body["metadata"]["resourceVersion"])
        rv = str(int(body["metadata"]["resourceVersion"]) + 1)
        written = {**body, "metadata": {**body["metadata"], "resourceVersion": rv}}
        return Result([], body=written, versions=[rv], patched=True, settled=settle)

    def event(rv: str) -> dict[str, Any]:
        return {"metadata": {"name": "m-v1", "namespace": "ns", "resourceVersion": rv}, "spec": {}}

    mvs = rt.controllers["ModelVersion"]
    handlers.reconcile, original = fake, handlers.reconcile  # type: ignore[assignment]
    try:
        await rt.event(mvs, "ADDED", event("1"))  # writes 2
        await rt.event(mvs, "MODIFIED", event("2"))  # its echo: no pass
        assert passes == ["1"] and rt.bodies[("modelversions", "ns", "m-v1")]["metadata"]["resourceVersion"] == "2"
        await rt.event(mvs, "MODIFIED", event("5"))  # someone else's write: a pass (writes 6)
        settle = False
        await rt.event(mvs, "MODIFIED", event("8"))  # writes 9, not settled
        await rt.event(mvs, "MODIFIED", event("9"))  # its echo is passed over
        assert passes == ["1", "5", "8", "9"]
    finally:
        handlers.reconcile = original  # type: ignore[assignment]
        await rt.requeue.close()
