"""DNS rewriting to pod IPs in the local executor (slipway_dev/localexec/network.py)."""

from __future__ import annotations

from typing import Any

import pytest
from slipway_dev.localexec.network import (
    Candidate,
    Resolver,
    Target,
    dns_candidates,
    gang_key,
    rewrite_hosts,
    target_port,
)


def pod(name: str, ns: str = "ml", hostname: str | None = None, subdomain: str | None = None, **labels: str) -> Any:
    spec = {k: v for k, v in (("hostname", hostname), ("subdomain", subdomain)) if v}
    return {"metadata": {"name": name, "namespace": ns, "labels": labels}, "spec": spec}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("svc", [Candidate("ml", "svc")]),
        ("job-w0.job", [Candidate("ml", "job", "job-w0"), Candidate("job", "job-w0")]),
        ("svc.other.svc", [Candidate("other", "svc")]),
        ("svc.other.svc.cluster.local", [Candidate("other", "svc")]),
        ("job-w0.job.ml", [Candidate("ml", "job", "job-w0")]),
        ("job-w0.job.ml.svc.cluster.local.", [Candidate("ml", "job", "job-w0")]),
        ("127.0.0.1", []),
        ("Has_Underscore", []),
        ("a.b.c.d.e", []),
    ],
)
def test_dns_candidates(host: str, expected: list[Candidate]) -> None:
    assert dns_candidates(host, "ml") == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("job-w0.job", "198.18.0.2"),
        ("job-w0.job:29500", "198.18.0.2:29500"),
        ("tcp://job-w0.job:29500", "tcp://198.18.0.2:29500"),
        ("http://user:pw@job-w0.job.ml.svc.cluster.local/x?y=z", "http://user:pw@198.18.0.2/x?y=z"),
        ("job-w0.job:1,minio.storage.svc:9000", "198.18.0.2:1,minio.storage.svc:9000"),
        ("pred:80", "198.18.0.5:8080"),  # a Service: its port becomes the targetPort
        ("http://pred.ml.svc/v1/models", "http://198.18.0.5/v1/models"),
        ("http://pred.ml.svc:80/v1/models", "http://198.18.0.5:8080/v1/models"),
        ("pred:81", "198.18.0.5:81"),  # a port the Service does not map is kept
        ("s3://bucket/job-w0.job", "s3://bucket/job-w0.job"),  # a bucket name is not a host we run
        ("elsewhere.example.com", "elsewhere.example.com"),
        ("some words with job-w0.job inside", "some words with job-w0.job inside"),
        ("", ""),
    ],
)
def test_rewrite_hosts(value: str, expected: str) -> None:
    def resolve(host: str) -> Target | None:
        if host.startswith("job-w0.job"):
            return Target("198.18.0.2")
        if host.startswith("pred"):
            return Target("198.18.0.5", {80: 8080})
        return None

    assert rewrite_hosts(value, resolve) == expected


def test_resolver_pod_and_service_names() -> None:
    client = pod("job-a1-w1", hostname="job-w1", subdomain="job")
    other_gang = pod("other-a1-w0", hostname="other-w0", subdomain="other")
    predictor = pod("pred-1", **{"app": "pred"})
    unready = pod("pred-0", **{"app": "pred"})
    predictor["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    predictor["spec"]["containers"] = [{"ports": [{"name": "http", "containerPort": 8080}]}]
    done = pod("pred-2", **{"app": "pred"})
    done["status"] = {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "True"}]}
    services = {
        ("ml", "pred"): {"spec": {"selector": {"app": "pred"}, "ports": [{"port": 80, "targetPort": "http"}]}},
        ("ml", "nothing"): {"spec": {"selector": {"app": "none"}}},
        ("ml", "job"): {"spec": {"clusterIP": "None"}},  # a gang's headless Service: no selector
    }
    asked: list[tuple[str, str]] = []

    def service(ns: str, name: str) -> Any:
        asked.append((ns, name))
        return services.get((ns, name))

    ips = {"job-a1-w1": "198.18.0.3", "other-a1-w0": "198.18.0.4", "pred-1": "198.18.0.5", "pred-0": "198.18.0.6"}
    r = Resolver([client, other_gang, unready, predictor, done], service, lambda p: ips.get(p["metadata"]["name"]))
    assert r.resolve("job-w0.job", client) is None  # a sibling not created yet: no IP to give
    assert r.resolve("job-w1.job", client) == Target("198.18.0.3")
    assert r.resolve("other-w0.other.ml.svc.cluster.local", client) == Target("198.18.0.4")
    assert r.resolve("other-w9.other", client) is None
    assert r.resolve("pred", client) == Target("198.18.0.5", {80: 8080})  # the ready pod, its named port
    assert r.resolve("nothing.ml.svc", client) is None  # a Service selecting no pod of ours
    assert r.resolve("missing", client) is None
    assert r.resolve("pred.elsewhere.svc", client) is None  # no pod of ours there: the API is not even asked
    assert ("elsewhere", "pred") not in asked


def test_target_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 9000}, {"port": 90, "targetPort": "x"}]}}
    assert target_port(svc, {"spec": {"containers": []}}) == {80: 8080, 9000: 9000}


def test_gang_key() -> None:
    labels = {"slipway.dev/training-job": "job", "slipway.dev/attempt": "2"}
    assert gang_key(pod("p", **labels)) == ("ml", "job", "2")
    assert gang_key(pod("p")) is None
