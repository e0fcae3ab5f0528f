"""slipway_dev/fuzz_crs.py: seeded, pure mutants of every example, and the check that a refusal names the field."""

from __future__ import annotations

import copy
import json

import pytest
from slipway_dev.fuzz_crs import (
    KINDS,
    OPS,
    Mutation,
    dotted,
    get,
    load_examples,
    load_schemas,
    mutants,
    named_paths,
    names_field,
    schema_at,
    summary,
)

EXAMPLES = load_examples()
SCHEMAS = load_schemas()


def test_every_example_of_every_kind_is_fuzzed() -> None:
    assert {doc["kind"] for doc in EXAMPLES.values()} == set(KINDS)
    assert "demo/02-rollout.yaml" in EXAMPLES and "trainingjob-sklearn.yaml" in EXAMPLES
    items = mutants(EXAMPLES, SCHEMAS, seed=3, per_example=40)
    assert len(items) == 40 * len(EXAMPLES)
    assert {m.example for m in items} == set(EXAMPLES)
    assert len({m.name for m in items}) == len(items)  # one object per mutant
    assert set(summary(items)["per_op"]) == set(OPS)


def test_same_seed_same_mutants_and_examples_untouched() -> None:
    before = copy.deepcopy(EXAMPLES)
    first = mutants(EXAMPLES, SCHEMAS, seed=7, per_example=25)
    again = mutants(EXAMPLES, SCHEMAS, seed=7, per_example=25)
    other = mutants(EXAMPLES, SCHEMAS, seed=8, per_example=25)
    assert first == again
    assert first != other
    assert before == EXAMPLES


def test_mutants_differ_from_their_example_only_in_spec_and_stay_json() -> None:
    for m in mutants(EXAMPLES, SCHEMAS, seed=1, per_example=30):
        example = EXAMPLES[m.example]
        assert m.body["apiVersion"] == example["apiVersion"] and m.body["kind"] == example["kind"]
        assert m.body["metadata"]["name"] == m.name
        assert 1 <= len(m.mutations) <= 3 and all(mu.path[0] == "spec" for mu in m.mutations)
        encoded = json.dumps(m.body, allow_nan=False, ensure_ascii=False).encode()  # no NaN: JSON has none
        assert len(encoded) < 3 * 1024 * 1024  # the apiserver's limit on a request


def test_each_mutation_changes_what_it_names() -> None:
    changed = 0
    for m in mutants(EXAMPLES, SCHEMAS, seed=2, per_example=30):
        if len(m.mutations) != 1:
            continue
        mu, example = m.mutations[0], EXAMPLES[m.example]
        try:
            old = get(example, mu.path)
        except (KeyError, IndexError, TypeError):
            old = KeyError  # an added field
        try:
            new = get(m.body, mu.path)
        except (KeyError, IndexError, TypeError):
            new = KeyError  # a removed field
        if mu.op == "list" and old == new:
            continue  # reversing a one-item list
        assert old != new or mu.op in ("extra_field", "known_field"), (m.name, mu)
        changed += 1
    assert changed > 100


def test_known_fields_come_from_the_schema() -> None:
    node = schema_at(SCHEMAS["TrainingJob"], ("spec", "output", "credentialsSecretRef"))
    assert node is not None and node["properties"]["name"]["pattern"].startswith("^[a-z0-9]")
    added = [(m, mu) for m in mutants(EXAMPLES, SCHEMAS, seed=4, per_example=60) for mu in m.mutations
             if mu.op == "known_field" and len(m.mutations) == 1]  # fmt: skip
    assert added
    for m, mu in added:
        props = (schema_at(SCHEMAS[m.kind], mu.path[:-1]) or {}).get("properties") or {}
        assert mu.path[-1] in props
        assert mu.path[-1] not in get(EXAMPLES[m.example], mu.path[:-1])  # one the example leaves out


def test_dotted_paths_are_the_apiservers() -> None:
    assert dotted(("spec", "canary", "steps", 0, "weight")) == "spec.canary.steps[0].weight"
    assert dotted(("spec",)) == "spec"


@pytest.mark.parametrize(
    ("message", "path", "named"),
    [
        # The apiserver's own messages, as they come back for these mutants.
        ('TrainingJob.slipway.dev "x" is invalid: spec.seed: Invalid value: -1: spec.seed in body should be '
         "greater than or equal to 0", ("spec", "seed"), True),
        ("failed to create typed patch object (/x; slipway.dev/v1alpha1, Kind=Rollout): .spec.canary.steps[0]"
         ".weight: expected numeric, got string", ("spec", "canary", "steps", 0, "weight"), True),
        ('.spec.unknownField: field not declared in schema', ("spec", "unknownField"), True),
        ('.spec.🚀: field not declared in schema', ("spec", "🚀"), True),
        # Removing the whole object: the message names a field inside it.
        ("spec.output.uri: Required value", ("spec", "output"), True),
        # A CEL rule on the object holding the field, whose message names it.
        ('spec.resources: Invalid value: "object": gpuProduct needs gpus > 0', ("spec", "resources", "gpus"), True),
        ('spec: Invalid value: "object": distributed training needs framework pytorch', ("spec", "framework"),
         True),
        # A rule across a list's items names the list.
        ('spec.canary.steps: Invalid value: "object": canary step weights must be strictly increasing',
         ("spec", "canary", "steps", 2, "weight"), True),
        # A rule on spec that does not say which field: not enough.
        ('spec: Invalid value: "object": something is wrong', ("spec", "dataset", "uri"), False),
        ("spec.seed: Invalid value", ("spec", "dataset", "uri"), False),
        ("Internal error", ("spec", "seed"), False),
    ],
)  # fmt: skip
def test_names_field(message: str, path: tuple[str | int, ...], named: bool) -> None:
    assert names_field(message, [Mutation("null", path)]) is named


def test_named_paths() -> None:
    assert named_paths("x: .spec.a[1].b: y, spec.c: z") == ["spec.a[1].b", "spec.c"]
    assert named_paths("the trainingjob's spec is fine") == ["spec"]
