"""The generator: structural schemas, CEL rules where they belong, and the staleness check."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from slipway.api import KINDS, Rollout, TrainingJob, crdgen

REPO = Path(__file__).resolve().parents[2]


def walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        nodes += walk(sub, f"{path}.{name}")
    if "items" in schema:
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Any) -> None:
    schema = crdgen.schema_for(kind)
    for path, node in walk(schema):
        assert not {"$ref", "anyOf", "allOf", "oneOf", "title", "$defs"} & node.keys(), path
        # Kubernetes' structural rule: a type, or one of the two extensions that stand in for it.
        untyped_ok = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
        assert "type" in node or untyped_ok, path
        free = node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node
        if free and path != ".metadata":  # the apiserver owns metadata's schema
            assert node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("default", 0) is not None, f"null default at {path}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_metadata(kind: Any) -> None:
    crd = crdgen.crd(kind)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{kind.plural}.slipway.dev"
    assert names["categories"] == ["slipway"] and names["shortNames"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert any(c["name"] == "Age" for c in version["additionalPrinterColumns"])
    conds = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]


def test_descriptions_reach_the_schema_for_kubectl_explain() -> None:
    spec = crdgen.schema_for(Rollout)["properties"]["spec"]
    analysis = spec["properties"]["canary"]["properties"]["analysis"]
    assert "no evidence never promotes" in analysis["description"].lower()
    assert "sequential test" in analysis["properties"]["errorRate"]["description"]


def test_cel_rules_are_attached_to_their_types() -> None:
    spec = crdgen.schema_for(TrainingJob)["properties"]["spec"]
    gate_rules = [r["rule"] for r in spec["properties"]["gates"]["items"]["x-kubernetes-validations"]]
    assert "has(self.min) || has(self.max)" in gate_rules
    workers = spec["properties"]["distributed"]["x-kubernetes-validations"][0]
    assert workers["rule"] == "self.workers >= 1"


def test_free_form_maps_preserve_unknown_fields() -> None:
    hp = crdgen.schema_for(TrainingJob)["properties"]["spec"]["properties"]["hyperparameters"]
    assert hp == {"type": "object", "description": hp["description"], "x-kubernetes-preserve-unknown-fields": True}


def test_exclusive_bounds_become_openapi_v3() -> None:
    analysis = crdgen.schema_for(Rollout)["properties"]["spec"]["properties"]["canary"]["properties"]["analysis"]
    alpha = analysis["properties"]["falseRollbackRate"]
    assert alpha["minimum"] == 0 and alpha["exclusiveMinimum"] is True and alpha["maximum"] == 0.5


def test_committed_crds_are_fresh() -> None:
    assert crdgen.stale(REPO / "crds") == [], "run `make generate` and commit crds/"


def test_check_mode_catches_a_stale_file(tmp_path: Path) -> None:
    crdgen.write(tmp_path)
    assert crdgen.main(["--check", str(tmp_path)]) == 0
    victim = tmp_path / "rollouts.slipway.dev.yaml"
    victim.write_text(victim.read_text().replace("strictly increasing", "increasing"))
    assert crdgen.main(["--check", str(tmp_path)]) == 1
    (tmp_path / "extra.slipway.dev.yaml").write_text("{}")
    assert "extra.slipway.dev.yaml" in crdgen.stale(tmp_path)


def test_rendered_yaml_round_trips() -> None:
    for name, text in crdgen.rendered().items():
        assert yaml.safe_load(text)["metadata"]["name"] == name.removesuffix(".yaml")
