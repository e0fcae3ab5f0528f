"""DNS rewriting and per-gang ports of the local executor (hack/localexec/network.py)."""

from __future__ import annotations

from typing import Any

import pytest
from localexec.network import Candidate, GangPorts, Resolver, dns_candidates, gang_key, rewrite_hosts


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
        ("job-w0.job", "127.0.0.1"),
        ("job-w0.job:29500", "127.0.0.1:29500"),
        ("tcp://job-w0.job:29500", "tcp://127.0.0.1:29500"),
        ("http://user:pw@job-w0.job.ml.svc.cluster.local/x?y=z", "http://user:pw@127.0.0.1/x?y=z"),
        ("job-w0.job:1,minio.storage.svc:9000", "127.0.0.1:1,minio.storage.svc:9000"),
        ("s3://bucket/job-w0.job", "s3://bucket/job-w0.job"),  # a bucket name is not a host we run
        ("elsewhere.example.com", "elsewhere.example.com"),
        ("some words with job-w0.job inside", "some words with job-w0.job inside"),
        ("", ""),
    ],
)
def test_rewrite_hosts(value: str, expected: str) -> None:
    assert rewrite_hosts(value, lambda host: host.startswith("job-w0.job")) == expected


def test_resolver_pod_and_service_names() -> None:
    client = pod("job-a1-w1", hostname="job-w1", subdomain="job")
    other_gang = pod("other-a1-w0", hostname="other-w0", subdomain="other")
    predictor = pod("pred-1", **{"app": "pred"})
    selectors = {("ml", "pred"): {"app": "pred"}, ("ml", "nothing"): {"app": "none"}}
    asked: list[tuple[str, str]] = []

    def selector(ns: str, name: str) -> Any:
        asked.append((ns, name))
        return selectors.get((ns, name))

    r = Resolver([client, other_gang, predictor], selector)
    assert r.is_local("job-w0.job", client)  # a sibling of the client's gang, not created yet
    assert r.is_local("job.ml.svc", client)  # the gang's headless Service
    assert r.is_local("other-w0.other.ml.svc.cluster.local", client)  # a known pod of another gang
    assert not r.is_local("other-w9.other", client)
    assert r.is_local("pred", client)  # a Service selecting a pod of ours
    assert not r.is_local("nothing.ml.svc", client)  # a Service selecting no pod of ours
    assert not r.is_local("missing", client)
    assert not r.is_local("pred.elsewhere.svc", client)  # no pod of ours there: the API is not even asked
    assert ("elsewhere", "pred") not in asked


def test_gang_ports_are_per_gang_and_stable() -> None:
    picks = iter([30001, 30001, 30002, 30003])
    ports = GangPorts(pick=lambda: next(picks))
    a, b = ("ml", "job", "1"), ("ml", "job", "2")
    assert ports.port(a) == 30001
    assert ports.port(a) == 30001  # every pod of the gang gets the same port
    assert ports.port(b) == 30002  # the kernel's 30001 again is skipped: another gang holds it
    ports.retain([b])
    assert ports.port(a) == 30003  # released, then picked afresh


def test_gang_key() -> None:
    labels = {"slipway.dev/training-job": "job", "slipway.dev/attempt": "2"}
    assert gang_key(pod("p", **labels)) == ("ml", "job", "2")
    assert gang_key(pod("p")) is None
