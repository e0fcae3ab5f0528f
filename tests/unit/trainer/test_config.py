"""The --config JSON: what is accepted, and that every malformed field is InvalidInput naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from slipway_trainer.config import DatasetSpec, load_config_arg, parse_config, split_s3_uri
from slipway_trainer.errors import EXIT_INVALID_INPUT, InvalidInput

BASE: dict[str, Any] = {
    "modelName": "iris",
    "framework": "sklearn",
    "algorithm": "sklearn.linear_model.LogisticRegression",
    "hyperparameters": {"C": 0.5},
    "dataset": {"uri": "sklearn://iris"},
    "seed": 7,
    "output": "s3://models/jobs/iris-12345678/",
}


def cfg(**changes: Any) -> str:
    return json.dumps({**BASE, **changes})


def test_parses_the_controllers_config() -> None:
    c = parse_config(cfg())
    assert (c.model_name, c.framework, c.algorithm, c.seed) == ("iris", "sklearn", BASE["algorithm"], 7)
    assert c.hyperparameters == {"C": 0.5}
    assert c.output == "s3://models/jobs/iris-12345678"  # trailing slash dropped: keys are joined with "/"
    assert c.dataset == DatasetSpec(uri="sklearn://iris")
    assert c.dataset.bundled_name == "iris"


def test_nulls_and_missing_optionals_take_defaults() -> None:
    raw = {k: v for k, v in BASE.items() if k not in ("seed", "hyperparameters")}
    raw["dataset"] = {"uri": "s3://data/x.csv", "format": None, "target": None, "features": None}
    c = parse_config(json.dumps(raw))
    assert c.seed == 0 and c.hyperparameters == {}
    assert c.dataset == DatasetSpec(uri="s3://data/x.csv") and c.dataset.bundled_name is None


def test_unknown_top_level_keys_are_ignored() -> None:
    assert parse_config(cfg(newerOperatorField={"x": 1})).model_name == "iris"


def test_dataset_fields() -> None:
    c = parse_config(cfg(dataset={"uri": "s3://data/t.parquet", "format": "parquet", "target": "y", "features": ["a"]}))
    assert c.dataset == DatasetSpec("s3://data/t.parquet", "parquet", "y", ("a",))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (cfg(framework="tensorflow"), "framework"),
        (cfg(modelName=""), "modelName"),
        (cfg(algorithm=None), "algorithm"),
        (cfg(seed=-1), "seed"),
        (cfg(seed=True), "seed"),
        (cfg(seed="7"), "seed"),
        (cfg(hyperparameters=[1]), "hyperparameters"),
        (cfg(output="/local/dir"), "output"),
        (cfg(output="s3://Bad_Bucket/x"), "s3://"),
        (cfg(dataset="sklearn://iris"), "dataset"),
        (cfg(dataset={"uri": "sklearn://mnist"}), "unknown bundled dataset 'sklearn://mnist'"),
        (cfg(dataset={"uri": "https://example.com/x.csv"}), "dataset.uri"),
        (cfg(dataset={"uri": "s3://data/x.csv", "format": "xlsx"}), "dataset.format"),
        (cfg(dataset={"uri": "sklearn://iris", "features": []}), "dataset.features"),
        (cfg(dataset={"uri": "sklearn://iris", "features": ["a", "a"]}), "twice"),
        (cfg(dataset={"uri": "sklearn://iris", "target": "a", "features": ["a"]}), "includes the target"),
        (cfg(framework="pytorch", algorithm="resnet"), "'mlp'"),
    ],
)
def test_malformed_config_is_invalid_input(text: str, named: str) -> None:
    with pytest.raises(InvalidInput, match=named.replace("(", r"\(")) as e:
        parse_config(text)
    assert e.value.exit_code == EXIT_INVALID_INPUT == 65


def test_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(cfg())
    assert load_config_arg(f"@{path}").model_name == "iris"
    with pytest.raises(InvalidInput, match="cannot read config file"):
        load_config_arg(f"@{tmp_path / 'missing.json'}")


def test_split_s3_uri() -> None:
    assert split_s3_uri("s3://bucket/a/b.csv") == ("bucket", "a/b.csv")
    for bad in ("s3://bucket", "s3://bucket/", "gs://bucket/x", "s3:///x"):
        with pytest.raises(InvalidInput):
            split_s3_uri(bad)
