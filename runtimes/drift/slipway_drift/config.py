"""The monitor document the operator PUTs: validation and a normalised form (defaults filled in).

Pure: no I/O. The normalised document is what GET echoes as `config` and what idempotency compares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

METHODS = ("ks", "chisquare", "tabular", "mmd", "lsdd")
MULTIVARIATE = ("mmd", "lsdd")
CORRECTIONS = ("bonferroni", "fdr")
BACKENDS = ("numpy", "pytorch")
ROLES = ("stable", "canary")
NUMERIC_DTYPES = ("float64", "float32", "int64", "int32")
DTYPES = (*NUMERIC_DTYPES, "bool", "string")
# Kubernetes object names (DNS-1123 subdomain): safe as path segments and file names.
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
MIN_WINDOW, MAX_WINDOW = 2, 1_000_000


class ConfigError(ValueError):
    """A PUT body that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str

    @property
    def categorical(self) -> bool:
        return self.dtype in ("bool", "string")


@dataclass(frozen=True)
class VersionConfig:
    role: str
    reference_uri: str
    endpoint: str | None
    region: str | None
    inputs: tuple[Column, ...]

    def reference_key(self) -> dict[str, Any]:
        """What identifies the reference data: a change here reloads it and resets the window."""
        return {"uri": self.reference_uri, "endpoint": self.endpoint, "region": self.region}

    def columns(self, features: tuple[str, ...]) -> tuple[Column, ...]:
        """The monitored columns, in the monitor's feature order (all inputs when `features` is empty)."""
        if not features:
            return self.inputs
        by_name = {c.name: c for c in self.inputs}
        return tuple(by_name[f] for f in features)


@dataclass(frozen=True)
class DetectorConfig:
    method: str
    p_value: float
    correction: str
    window_size: int
    features: tuple[str, ...]
    backend: str

    @property
    def backend_used(self) -> str:
        # TensorFlow is not installed: the multivariate tests always run on PyTorch.
        return "pytorch" if self.method in MULTIVARIATE else "numpy"


@dataclass(frozen=True)
class MonitorConfig:
    detector: DetectorConfig
    versions: dict[str, VersionConfig]
    document: dict[str, Any]  # the normalised body


def check_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise ConfigError(f"{what}: {value!r} is not a valid Kubernetes name")
    return value


def parse_monitor(body: Any) -> MonitorConfig:
    if not isinstance(body, dict):
        raise ConfigError("body: expected a JSON object")
    detector, det_doc = _detector(body.get("detector"))
    raw_versions = body.get("versions", {})
    if not isinstance(raw_versions, dict):
        raise ConfigError("versions: expected an object keyed by ModelVersion name")
    versions: dict[str, VersionConfig] = {}
    ver_docs: dict[str, Any] = {}
    for name, raw in raw_versions.items():
        check_name(name, f"versions.{name}")
        versions[name], ver_docs[name] = _version(raw, f"versions.{name}")
        known = {c.name for c in versions[name].inputs}
        for f in detector.features:
            if f not in known:
                raise ConfigError(f"detector.features: {f!r} is not an input of versions.{name}.signature")
    return MonitorConfig(detector, versions, {"detector": det_doc, "versions": ver_docs})


def _detector(raw: Any) -> tuple[DetectorConfig, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError("detector: expected an object")
    method = raw.get("method")
    if method not in METHODS:
        raise ConfigError(f"detector.method: expected one of {', '.join(METHODS)}")
    p_value = raw.get("pValue", 0.05)
    if isinstance(p_value, bool) or not isinstance(p_value, int | float) or not 0 < p_value < 1:
        raise ConfigError("detector.pValue: expected a number in (0, 1)")
    correction = raw.get("correction", "bonferroni")
    if correction not in CORRECTIONS:
        raise ConfigError(f"detector.correction: expected one of {', '.join(CORRECTIONS)}")
    window = raw.get("windowSize", 1000)
    if isinstance(window, bool) or not isinstance(window, int) or not MIN_WINDOW <= window <= MAX_WINDOW:
        raise ConfigError(f"detector.windowSize: expected an integer in [{MIN_WINDOW}, {MAX_WINDOW}]")
    features = raw.get("features") or []
    if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
        raise ConfigError("detector.features: expected a list of input names")
    if len(set(features)) != len(features):
        raise ConfigError("detector.features: names must be unique")
    backend = raw.get("backend", "pytorch" if method in MULTIVARIATE else "numpy")
    if backend not in BACKENDS:
        raise ConfigError(f"detector.backend: expected one of {', '.join(BACKENDS)}")
    det = DetectorConfig(method, float(p_value), correction, window, tuple(features), backend)
    doc = {
        "method": method,
        "pValue": float(p_value),
        "correction": correction,
        "windowSize": window,
        "features": list(features),
        "backend": backend,
    }
    return det, doc


def _version(raw: Any, where: str) -> tuple[VersionConfig, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object")
    role = raw.get("role")
    if role not in ROLES:
        raise ConfigError(f"{where}.role: expected one of {', '.join(ROLES)}")
    uri = raw.get("referenceUri")
    if not isinstance(uri, str) or not re.match(r"^s3://[^/]+/.+", uri):
        raise ConfigError(f"{where}.referenceUri: expected s3://bucket/key")
    endpoint = raw.get("endpoint")
    if endpoint is not None and (not isinstance(endpoint, str) or not re.match(r"^https?://", endpoint)):
        raise ConfigError(f"{where}.endpoint: expected an http(s) URL or null")
    region = raw.get("region")
    if region is not None and (not isinstance(region, str) or not region):
        raise ConfigError(f"{where}.region: expected a string or null")
    inputs = _signature(raw.get("signature"), f"{where}.signature")
    ver = VersionConfig(role, uri, endpoint or None, region or None, inputs)
    doc = {
        "role": role,
        "referenceUri": uri,
        "endpoint": ver.endpoint,
        "region": ver.region,
        "signature": {"inputs": [{"name": c.name, "dtype": c.dtype} for c in inputs]},
    }
    return ver, doc


def _signature(raw: Any, where: str) -> tuple[Column, ...]:
    if not isinstance(raw, dict) or not isinstance(raw.get("inputs"), list) or not raw["inputs"]:
        raise ConfigError(f"{where}.inputs: expected a non-empty list")
    cols: list[Column] = []
    for i, item in enumerate(raw["inputs"]):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ConfigError(f"{where}.inputs[{i}].name: expected a non-empty string")
        if item.get("dtype") not in DTYPES:
            raise ConfigError(f"{where}.inputs[{i}].dtype: expected one of {', '.join(DTYPES)}")
        cols.append(Column(item["name"], item["dtype"]))
    if len({c.name for c in cols}) != len(cols):
        raise ConfigError(f"{where}.inputs: names must be unique")
    return tuple(cols)
