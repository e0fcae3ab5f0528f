"""Env resolution and $(VAR) expansion as the kubelet does them (slipway_dev/localexec/envres.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from slipway_dev.localexec.envres import ConfigError, expand, field_value, resolve_env


class FakeSources:
    def __init__(self, secrets: dict[str, dict[str, str]], config_maps: dict[str, dict[str, str]]) -> None:
        self.secrets, self.config_maps = secrets, config_maps

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(f"{namespace}/{name}")

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.config_maps.get(f"{namespace}/{name}")


SOURCES = FakeSources(
    {"ns/creds": {"key": "s3cr3t", "id": "AKIA"}},
    {"ns/settings": {"region": "eu-west-1", "bad key": "x"}},
)


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x", "slipway.dev/rank": "0"}},
        "spec": {"nodeName": "cpu-0", "serviceAccountName": "sa", **spec},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("x-$(A)-$(B)", "x-1-two"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("a$", "a$"),
        ("$x$(A)", "$x1"),
        ("$(A", "$(A"),
        ("--port=$(A)$(A)", "--port=11"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    assert expand(text, {"A": "1", "B": "two"}.get) == expected


def test_env_in_order_with_references_to_earlier_vars() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "LATER", "value": "$(FIRST)"},  # FIRST is not defined yet: kept as written
            {"name": "FIRST", "value": "one"},
            {"name": "BOTH", "value": "$(FIRST)+$(SECRET)"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "key"}}},
            {"name": "EMPTY"},
        ],
    }
    env = resolve_env(pod(), container, SOURCES, "127.0.0.1")
    assert env == {"LATER": "$(FIRST)", "FIRST": "one", "BOTH": "one+$(SECRET)", "SECRET": "s3cr3t", "EMPTY": ""}


def test_config_map_refs_and_env_from() -> None:
    container = {
        "name": "c",
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}, {"secretRef": {"name": "creds"}}],
        "env": [{"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "region"}}}],
    }
    env = resolve_env(pod(), container, SOURCES, "127.0.0.1")
    # "bad key" is not a valid env var name: skipped, as the kubelet does.
    assert env == {"CFG_region": "eu-west-1", "key": "s3cr3t", "id": "AKIA", "REGION": "eu-west-1"}


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ({"secretKeyRef": {"name": "nope", "key": "k"}}, 'secret "nope" not found'),
        ({"secretKeyRef": {"name": "creds", "key": "k"}}, "couldn't find key k in Secret ns/creds"),
        ({"configMapKeyRef": {"name": "nope", "key": "k"}}, 'configmap "nope" not found'),
        ({"configMapKeyRef": {"name": "settings", "key": "k"}}, "couldn't find key k in ConfigMap ns/settings"),
    ],
)
def test_missing_references_are_config_errors(var: dict[str, Any], message: str) -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": var}]}
    with pytest.raises(ConfigError) as err:
        resolve_env(pod(), container, SOURCES, "127.0.0.1")
    assert str(err.value) == message


def test_optional_references_leave_the_var_unset() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k", "optional": True}}},
        ],
        "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
    }
    assert resolve_env(pod(), container, SOURCES, "127.0.0.1") == {}
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        resolve_env(pod(), {"name": "c", "envFrom": [{"secretRef": {"name": "nope"}}]}, SOURCES, "127.0.0.1")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("metadata.name", "p"),
        ("metadata.namespace", "ns"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['slipway.dev/rank']", "0"),
        ('metadata.labels["app"]', "x"),
        ("metadata.labels['absent']", ""),
        ("spec.nodeName", "cpu-0"),
        ("spec.serviceAccountName", "sa"),
        ("status.podIP", "127.0.0.1"),
        ("status.hostIP", "127.0.0.1"),
    ],
)
def test_field_refs(path: str, value: str) -> None:
    assert field_value(pod(), path, "127.0.0.1") == value


def test_unsupported_field_ref() -> None:
    with pytest.raises(ConfigError, match="unsupported fieldPath"):
        field_value(pod(), "status.phase", "127.0.0.1")


def test_adjust_applies_before_later_expansion() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "MASTER_ADDR", "value": "job-w0.job"},
            {"name": "MASTER_PORT", "value": "29500"},
            {"name": "INIT", "value": "tcp://$(MASTER_ADDR):$(MASTER_PORT)"},
        ],
    }
    overrides = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "40000"}
    env = resolve_env(pod(), container, SOURCES, "127.0.0.1", lambda name, value: overrides.get(name, value))
    assert env["INIT"] == "tcp://127.0.0.1:40000"
