"""The predictor's configuration: the environment the Rollout controller sets on the InferenceService.

SLIPWAY_MODEL_VERSION  the ModelVersion's name; the `version` label of every metric
SLIPWAY_FRAMEWORK      sklearn | pytorch (unset: guessed from the artifact's file name)
SLIPWAY_ARTIFACT_SHA256  the hex sha256 the artifact must have; the server refuses to start on any other
SLIPWAY_SIGNATURE      JSON {"inputs": [{"name", "dtype"}, ...]}: the columns every request is checked against
                       (unset: a scikit-learn model fitted on a DataFrame gives its column names, as float64)
SLIPWAY_CLASSES        optional JSON list: the class labels of a TorchScript classifier (the manifest's `classes`);
                       unset, its classes are the column indices 0..C-1 (scikit-learn models carry their own)
SLIPWAY_SCORE_BUCKETS  optional comma-separated bucket bounds of the prediction_score histogram (with a negative
                       bound, prometheus_client leaves out the histogram's _sum)
SLIPWAY_MAX_BODY_BYTES optional: a larger request body is refused with 413 (default 16 MiB)
SLIPWAY_BODY_TIMEOUT_SECONDS optional: a body not all there this long after the headers is refused with 408
                       and its connection closed (default 30)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slipway_predictor.limits import DEFAULT_BODY_TIMEOUT_SECONDS, DEFAULT_MAX_BODY_BYTES

FRAMEWORKS = ("sklearn", "pytorch")
# The signature dtypes a ModelVersion may declare (the CRD's enum); the trainer writes all but `string`.
FLOAT_DTYPES = ("float64", "float32")
INT_DTYPES = ("int64", "int32")
DTYPES = (*FLOAT_DTYPES, *INT_DTYPES, "bool", "string")
UNKNOWN_VERSION = "unknown"


class StartupError(Exception):
    """Anything that must keep the server from serving: bad configuration, a missing or altered artifact."""


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str

    @property
    def numeric(self) -> bool:
        return self.dtype != "string"


@dataclass(frozen=True)
class Settings:
    model_version: str
    framework: str | None
    sha256: str | None
    signature: tuple[Column, ...] | None
    classes: tuple[Any, ...] | None = None
    score_buckets: tuple[float, ...] | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        framework = env.get("SLIPWAY_FRAMEWORK") or None
        if framework is not None and framework not in FRAMEWORKS:
            raise StartupError(f"SLIPWAY_FRAMEWORK must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
        sha256 = (env.get("SLIPWAY_ARTIFACT_SHA256") or "").strip().lower() or None
        if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise StartupError(f"SLIPWAY_ARTIFACT_SHA256 must be 64 hex digits, got {sha256!r}")
        return cls(
            model_version=env.get("SLIPWAY_MODEL_VERSION") or UNKNOWN_VERSION,
            framework=framework,
            sha256=sha256,
            signature=parse_signature(env.get("SLIPWAY_SIGNATURE")),
            classes=_parse_classes(env.get("SLIPWAY_CLASSES")),
            score_buckets=_parse_buckets(env.get("SLIPWAY_SCORE_BUCKETS")),
            max_body_bytes=int(_positive(env, "SLIPWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, integer=True)),
            body_timeout_seconds=_positive(env, "SLIPWAY_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS),
        )


def _positive(env: Mapping[str, str], name: str, default: float, integer: bool = False) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = -1
    if not (math.isfinite(value) and value > 0):
        what = "a positive integer" if integer else "a positive number"
        raise StartupError(f"{name} must be {what}, got {text!r}")
    return value


def parse_signature(text: str | None) -> tuple[Column, ...] | None:
    """SLIPWAY_SIGNATURE: the ModelVersion's `signature` (the trainer's manifest has the same shape)."""
    if not text:
        return None  # a hand-registered ModelVersion may have none; backends.load decides whether that will do
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise StartupError(f"SLIPWAY_SIGNATURE is not JSON: {e}") from None
    inputs = doc.get("inputs") if isinstance(doc, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise StartupError('SLIPWAY_SIGNATURE must be an object with a non-empty list "inputs"')
    columns: list[Column] = []
    for i, item in enumerate(inputs):
        name = item.get("name") if isinstance(item, dict) else None
        dtype = item.get("dtype") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise StartupError(f"SLIPWAY_SIGNATURE inputs[{i}] has no name")
        if dtype not in DTYPES:
            raise StartupError(f"SLIPWAY_SIGNATURE inputs[{i}] ({name!r}): dtype must be one of {', '.join(DTYPES)}")
        columns.append(Column(name, dtype))
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StartupError(f"SLIPWAY_SIGNATURE names a column more than once: {', '.join(duplicates)}")
    return tuple(columns)


def _parse_classes(text: str | None) -> tuple[Any, ...] | None:
    if not text:
        return None
    try:
        classes = json.loads(text)
    except json.JSONDecodeError as e:
        raise StartupError(f"SLIPWAY_CLASSES is not JSON: {e}") from None
    if not isinstance(classes, list) or len(classes) < 2:
        raise StartupError("SLIPWAY_CLASSES must be a JSON list of at least two class labels")
    return tuple(classes)


def _parse_buckets(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        bounds = [float(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise StartupError(f"SLIPWAY_SCORE_BUCKETS must be comma-separated numbers, got {text!r}") from None
    if not bounds or any(not math.isfinite(b) for b in bounds) or bounds != sorted(set(bounds)):
        raise StartupError(f"SLIPWAY_SCORE_BUCKETS must be finite, increasing numbers, got {text!r}")
    return tuple(bounds)
