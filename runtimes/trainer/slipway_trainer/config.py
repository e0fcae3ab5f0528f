"""The `--config` JSON the controller passes: parsed and checked here, so later code can trust its types."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slipway_trainer.errors import InvalidInput

FRAMEWORKS = ("sklearn", "pytorch")
FORMATS = ("csv", "parquet")
BUNDLED = ("breast_cancer", "iris", "wine", "digits", "diabetes")
MAX_SEED = 2**31 - 1
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])/(.+)$")


@dataclass(frozen=True)
class DatasetSpec:
    uri: str
    format: str | None = None
    target: str | None = None
    features: tuple[str, ...] | None = None

    @property
    def bundled_name(self) -> str | None:
        """`iris` for `sklearn://iris`; None for S3 datasets."""
        return self.uri.removeprefix("sklearn://") if self.uri.startswith("sklearn://") else None


@dataclass(frozen=True)
class TrainConfig:
    model_name: str
    framework: str
    algorithm: str
    dataset: DatasetSpec
    output: str  # s3://bucket/prefix, no trailing slash
    seed: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` -> (`bucket`, `some/key`); InvalidInput for anything else."""
    m = _S3_URI.match(uri)
    if not m:
        raise InvalidInput(f"not an s3://bucket/key URI: {uri!r}")
    return m.group(1), m.group(2)


def load_config_arg(value: str) -> TrainConfig:
    """The `--config` value: inline JSON (what the controller passes) or `@path` to a JSON file (for people)."""
    if value.startswith("@"):
        try:
            value = Path(value[1:]).read_text()
        except OSError as e:
            raise InvalidInput(f"cannot read config file {value[1:]!r}: {e.strerror}") from e
    return parse_config(value)


def parse_config(text: str) -> TrainConfig:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"config is not valid JSON: {e}") from e
    if not isinstance(raw, dict):
        raise InvalidInput("config must be a JSON object")
    # Unknown keys are ignored on purpose: a newer operator may send fields an older trainer image predates.
    framework = _choice(raw, "framework", FRAMEWORKS)
    cfg = TrainConfig(
        model_name=_str(raw, "modelName"),
        framework=framework,
        algorithm=_str(raw, "algorithm"),
        dataset=_dataset(raw.get("dataset")),
        output=_output(raw.get("output")),
        seed=_seed(raw.get("seed", 0)),
        hyperparameters=_hyperparameters(raw.get("hyperparameters")),
    )
    if cfg.framework == "pytorch" and cfg.algorithm != "mlp":
        raise InvalidInput(f"framework pytorch supports algorithm 'mlp', not {cfg.algorithm!r}")
    return cfg


def _str(raw: dict[str, Any], key: str, where: str = "") -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"config field {where}{key} must be a non-empty string, got {value!r}")
    return value


def _choice(raw: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = _str(raw, key)
    if value not in allowed:
        raise InvalidInput(f"config field {key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _dataset(raw: Any) -> DatasetSpec:
    if not isinstance(raw, dict):
        raise InvalidInput("config field dataset must be an object with at least a uri")
    uri = _str(raw, "uri", "dataset.")
    if uri.startswith("sklearn://"):
        if uri.removeprefix("sklearn://") not in BUNDLED:
            raise InvalidInput(f"unknown bundled dataset {uri!r}; choose sklearn://{{{','.join(BUNDLED)}}}")
    elif uri.startswith("s3://"):
        split_s3_uri(uri)
    else:
        raise InvalidInput(f"dataset.uri must be s3://bucket/key or sklearn://<name>, got {uri!r}")
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidInput(f"dataset.format must be csv or parquet, got {fmt!r}")
    target = raw.get("target")
    if target is not None and (not isinstance(target, str) or not target):
        raise InvalidInput(f"dataset.target must be a non-empty string, got {target!r}")
    features = raw.get("features")
    if features is not None:
        if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
            raise InvalidInput("dataset.features must be a non-empty list of column names")
        if len(set(features)) != len(features):
            raise InvalidInput("dataset.features names a column twice")
        if target is not None and target in features:
            raise InvalidInput(f"dataset.features includes the target column {target!r}")
    return DatasetSpec(uri=uri, format=fmt, target=target, features=tuple(features) if features else None)


def _output(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.startswith("s3://"):
        raise InvalidInput(f"config field output must be an s3://bucket/prefix URI, got {raw!r}")
    out = raw.rstrip("/")
    split_s3_uri(out + "/x")  # the bucket must be valid; the prefix may be empty
    return out


def _seed(raw: Any) -> int:
    # bool is an int in Python; `"seed": true` is a mistake, not seed 1.
    if raw is None:
        return 0
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_SEED:
        raise InvalidInput(f"config field seed must be an integer in [0, {MAX_SEED}], got {raw!r}")
    return raw


def _hyperparameters(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(f"config field hyperparameters must be an object, got {type(raw).__name__}")
    return dict(raw)
