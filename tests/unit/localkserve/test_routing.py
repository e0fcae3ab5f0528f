"""Routing table, endpoints from pods, revision states and discovery targets
(hack/localkserve/routing.py, pods.py, discovery.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from localkserve import discovery, manifests, pods, routing
from localkserve.routing import Backend, Route, Table

R1, R2 = "iris-predictor-1111111111", "iris-predictor-2222222222"


def pod(name: str, revision: str, ip: str | None = "127.64.0.9", ready: bool = True, **status: Any) -> dict[str, Any]:
    annotations: dict[str, str] = {}
    ip_status = {"podIP": ip} if ip else {}
    labels = {manifests.ISVC_LABEL: "iris", manifests.REVISION_LABEL: revision}
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": labels, "annotations": annotations},
        "spec": {"containers": [{"name": "kserve-container", "ports": [{"containerPort": 8080}]}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            **ip_status,
            **status,
        },
    }


def deployment(revision: str, replicas: int = 1, **status: Any) -> dict[str, Any]:
    labels = {manifests.ISVC_LABEL: "iris", manifests.REVISION_LABEL: revision}
    return {
        "metadata": {"name": revision, "namespace": "ml", "labels": labels},
        "spec": {"replicas": replicas},
        "status": status,
    }


def test_endpoint_is_pod_ip_and_container_port_of_a_ready_running_pod() -> None:
    assert routing.endpoint(pod("a", R1)) == "127.64.0.9:8080"
    assert routing.endpoint(pod("a", R1, ready=False)) is None
    assert routing.endpoint(pod("a", R1, ip=None)) is None
    terminating = pod("a", R1)
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert routing.endpoint(terminating) is None


def test_pick_follows_weights_and_is_seedable() -> None:
    route = Route("ml", "iris", frozenset(), (Backend(R1, 80, ("127.0.0.1:1",)), Backend(R2, 20, ("127.0.0.1:2",))))
    picks = [Table(seed=7).pick(route) for _ in range(3)]
    table = Table(seed=7)
    counts = Counter(pick[0].revision for _ in range(5000) if (pick := table.pick(route)))
    assert 0.17 < counts[R2] / 5000 < 0.23
    assert picks[0] == Table(seed=7).pick(route)  # same seed, same first choice


def test_unready_revision_share_goes_to_the_ready_ones() -> None:
    route = Route("ml", "iris", frozenset(), (Backend(R1, 80, ()), Backend(R2, 20, ("127.0.0.1:2",))))
    assert route.effective() == {R2: 1.0}
    assert Table().pick(route) == (route.backends[1], "127.0.0.1:2")
    zero = Route("ml", "iris", frozenset(), (Backend(R1, 0, ("127.0.0.1:1",)), Backend(R2, 100, ())))
    assert Table().pick(zero) is None  # 0% means no traffic, even as the only ready one


def test_find_by_host_then_by_model_path() -> None:
    table = Table()
    hosts = routing.hosts("iris", "ml", ["http://iris.ml.example.com", "http://iris.ml.svc.cluster.local"])
    assert {"iris.ml.example.com", "iris.ml.svc.cluster.local", "iris.ml", "iris-predictor.ml"} <= hosts
    table.put(Route("ml", "iris", hosts, ()))
    table.put(Route("other", "iris", routing.hosts("iris", "other", []), ()))
    table.put(Route("ml", "wine", routing.hosts("wine", "ml", []), ()))
    assert table.find("iris.ml.example.com:8080", "/v1/models/iris:predict")[0] == table.routes()[0]
    assert table.find("127.0.0.1:18081", "/v2/models/wine/infer")[0] == table.routes()[1]
    route, why = table.find("127.0.0.1", "/v1/models/iris:predict")
    assert route is None and "several namespaces" in why
    route, why = table.find(None, "/v2/health/ready")
    assert route is None and "no InferenceService" in why
    table.drop("ml", "wine")
    assert table.find(None, "/v2/models/wine/infer")[0] is None


def test_revision_states() -> None:
    crash: dict[str, Any] = {
        "containerStatuses": [
            {
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2s"}},
                "lastState": {"terminated": {"exitCode": 65, "message": "bad artifact\n"}},
            }
        ]
    }
    states = pods.states(
        [deployment(R1, replicas=2), deployment(R2)],
        [pod("a", R1), pod("b", R1, ip="127.64.0.10"), pod("c", R2, ready=False, **crash)],
    )
    assert states[R1].ready and states[R1].endpoints == (("a", "127.64.0.9:8080"), ("b", "127.64.0.10:8080"))
    assert not states[R2].ready
    failure = states[R2].failure
    assert failure is not None and (failure.reason, failure.message, failure.exit_code) == (
        "CrashLoopBackOff",
        "bad artifact",
        65,
    )
    assert pods.ready_set(states) == {R1}


def test_revision_failures_from_scheduling_and_replica_creation() -> None:
    unschedulable = {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes are available"}
        ],
    }
    p = pod("a", R1)
    p["status"] = unschedulable
    failure = pods.states([deployment(R1)], [p])[R1].failure
    assert failure is not None and failure.reason == "Unschedulable"
    d = deployment(
        R2,
        conditions=[
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'serviceaccount "x" not found',
            }
        ],
    )
    failure = pods.states([d], [])[R2].failure
    assert failure is not None and failure.reason == "FailedCreate"


def test_discovery_targets_and_atomic_write(tmp_path: Path) -> None:
    groups = discovery.targets([pod("b", R2, ip="127.64.0.10"), pod("a", R1), pod("c", R1, ready=False)])
    assert groups == [
        {
            "targets": ["127.64.0.9:8080"],
            "labels": {"namespace": "ml", "pod": "a", "inferenceservice": "iris", "revision": R1},
        },
        {
            "targets": ["127.64.0.10:8080"],
            "labels": {"namespace": "ml", "pod": "b", "inferenceservice": "iris", "revision": R2},
        },
    ]
    path = tmp_path / "sd" / "predictors.json"
    discovery.write(path, discovery.render(groups))
    assert json.loads(path.read_text()) == groups
    assert [p.name for p in path.parent.iterdir()] == ["predictors.json"]
