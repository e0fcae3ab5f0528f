"""Seeded mutants of slipway's example custom resources, for the fuzz campaign (tests/integration/test_fuzz.py).

Pure: `mutants(examples, schemas, seed, per_example)` returns the same mutants for the same arguments and touches
nothing. Each mutant is one example with one to three mutations of its `spec` (never its metadata): a value of the
wrong type, a missing field, an out-of-range number, a huge string, unicode, a null, an extra field (unknown, or
one the schema knows that the example leaves out), a boundary string (`100%`, `-a`, upper case, ...) or a list
emptied or grown. Every mutation records the field path it touched, so a rejection can be checked to name it.

    python -m slipway_dev.fuzz_crs [--seed N] [--per-example N] [--summary]   # the mutants as JSON lines, or counts
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from slipway import api

from slipway_dev import REPO

KINDS = tuple(k.kind for k in api.KINDS)  # the kinds a person writes (a record kind is the operator's)
OPS = (
    "wrong_type",
    "missing",
    "out_of_range",
    "huge_string",
    "unicode",
    "null",
    "extra_field",
    "known_field",
    "boundary_string",
    "list",
)

Path_ = tuple[str | int, ...]

# Numbers just outside (and on) the bounds the schemas use, and far beyond any (JSON has no NaN or infinity).
NUMBERS: tuple[int | float, ...] = (
    -(2**63), -(2**31) - 1, -1, -0.5, 0, 0.0, 1e-300, 0.5, 1, 2, 15, 16, 17, 63, 64, 65, 99, 100, 101,
    1000, 1001, 3600, 3601, 86400, 86401, 100000, 100001, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 1e20, 1e308,
    -1e308,
)  # fmt: skip
UNICODE = (
    "módel", "模型", "モデル-v1", "🚀", "e\u0301", "\u200b", "\u202eevil", "a\u0000b", "\ufeffbom",
    "\u00a0", "ß", "İ", "\U0001f600" * 40, "\ud7ff", "\\u0000", "Ⅻ", "٣",
)  # fmt: skip
BOUNDARY = (
    "", " ", "100%", "-a", "a-", "A", "UPPER", "a_b", "a.b", "a..b", ".a", "a/b", "../../etc", "a b", "a\nb",
    "s3://", "s3://x", "s3://UPPER/k", "http://", "http://127.0.0.1:1", "ftp://x", "sklearn://nope", "0", "-1",
    "1e3", "true", "null", "{}", "[]", "${HOME}", "$(echo x)", "'; drop", "a" * 63, "a" * 64, "a" * 254,
    "1.5", "1Gi", "-1Gi", "1000000000Ei", "0x10",
)  # fmt: skip
HUGE = (254, 1025, 4097, 65537, 200_000)  # three of the largest stay under the apiserver's 3 MiB a request
EXTRA_KEYS = ("unknownField", "x", "Spec", "apiVersion", "🚀", "a" * 300, "status")


@dataclass(frozen=True)
class Mutation:
    op: str
    path: Path_  # from the object's root, e.g. ("spec", "output", "credentialsSecretRef", "name")

    def dotted(self) -> str:
        return dotted(self.path)


@dataclass(frozen=True)
class Mutant:
    name: str  # the object's metadata.name
    kind: str
    example: str  # the example's file, relative to examples/
    body: dict[str, Any]
    mutations: tuple[Mutation, ...]


def dotted(path: Path_) -> str:
    """spec.canary.steps[0].weight: the way the apiserver writes a field path."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def load_examples(root: Path = REPO / "examples") -> dict[str, dict[str, Any]]:
    """Every slipway object in examples/ and examples/demo/, by file (relative to `root`)."""
    out = {}
    for path in sorted([*root.glob("*.yaml"), *root.glob("demo/*.yaml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in KINDS:
                out[str(path.relative_to(root))] = doc
    return out


def load_schemas(root: Path = REPO / "crds") -> dict[str, dict[str, Any]]:
    """The openAPIV3Schema of each kind, from the generated CRDs."""
    out = {}
    for path in sorted(root.glob("*.slipway.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every path in `value`, containers and leaves, parents first."""
    out = [prefix]
    if isinstance(value, dict):
        for key in value:
            out += paths(value[key], (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += paths(item, (*prefix, i))
    return out


def get(doc: Any, path: Path_) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def schema_at(schema: Mapping[str, Any] | None, path: Path_) -> Mapping[str, Any] | None:
    """The schema node for `path`, or None where the schema says nothing (free-form maps)."""
    node = schema
    for p in path:
        if node is None:
            return None
        if isinstance(p, int):
            node = node.get("items")
        else:
            node = (node.get("properties") or {}).get(p) or (
                node.get("additionalProperties") if isinstance(node.get("additionalProperties"), dict) else None
            )
    return node


def _string(rng: random.Random, op: str) -> str:
    if op == "huge_string":
        return rng.choice("aZ0-é模") * rng.choice(HUGE)
    if op == "unicode":
        return rng.choice(UNICODE)
    return rng.choice(BOUNDARY)


def _any(rng: random.Random) -> Any:
    """A value of any JSON type."""
    return rng.choice(
        [
            rng.choice(NUMBERS),
            rng.choice(BOUNDARY),
            rng.choice(UNICODE),
            True,
            False,
            None,
            [],
            {},
            [rng.choice(NUMBERS)],
            {"a": rng.choice(BOUNDARY)},
            [{"name": "x", "weight": 1}],
        ]
    )


def _of_type(rng: random.Random, node: Mapping[str, Any] | None) -> Any:
    """A value the schema's type allows, often at or past its bounds; any value where it says nothing."""
    kind = (node or {}).get("type")
    if (node or {}).get("enum") and rng.random() < 0.5:
        return rng.choice(node["enum"]) if node else None
    if kind == "string":
        return rng.choice([_string(rng, "boundary_string"), _string(rng, "unicode"), _string(rng, "huge_string")])
    if kind == "integer":
        return rng.choice([n for n in NUMBERS if isinstance(n, int)])
    if kind == "number":
        return rng.choice(NUMBERS)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "array":
        return rng.choice([[], [_of_type(rng, (node or {}).get("items"))]])
    if kind == "object":
        return rng.choice([{}, {"unknownField": 1}])
    return _any(rng)


def _wrong_type(rng: random.Random, value: Any) -> Any:
    choices: list[Any] = [
        "x",
        "1",
        7,
        0.25,
        True,
        [],
        {},
        [value],
        {"value": value},
    ]
    wrong = [c for c in choices if type(c) is not type(value)]
    return rng.choice(wrong)


def _parent_key(doc: dict[str, Any], path: Path_) -> tuple[Any, str | int]:
    return get(doc, path[:-1]), path[-1]


def mutate(doc: dict[str, Any], schema: Mapping[str, Any] | None, rng: random.Random) -> Mutation:
    """Apply one random mutation to `doc["spec"]` in place; return what it did."""
    op = rng.choice(OPS)
    candidates = paths(doc["spec"], ("spec",))
    path = rng.choice(candidates)
    if op == "missing" and len(path) == 1:
        path = rng.choice(candidates[1:] or candidates)
    value = get(doc, path)
    if op in ("extra_field", "known_field"):
        dicts = [p for p in candidates if isinstance(get(doc, p), dict)]
        path = rng.choice(dicts)
        target = get(doc, path)
        if op == "known_field":
            props = (schema_at(schema, path) or {}).get("properties") or {}
            absent = sorted(k for k in props if k not in target)
            if absent:
                key = rng.choice(absent)
                target[key] = _of_type(rng, props[key])
                return Mutation(op, (*path, key))
        key = rng.choice(EXTRA_KEYS)
        target[key] = _any(rng)
        return Mutation("extra_field", (*path, key))
    if op == "list":
        lists = [p for p in candidates if isinstance(get(doc, p), list)]
        if lists:
            path = rng.choice(lists)
            items = get(doc, path)
            how = rng.choice(["empty", "grow", "duplicate", "reverse"])
            if how == "empty":
                items.clear()
            elif how == "grow":
                template = items[0] if items else "x"
                size = len(json.dumps(template, ensure_ascii=False).encode())
                grow = min(rng.choice([20, 100, 5000]), max(1, 200_000 // size))
                items.extend(copy.deepcopy(template) for _ in range(grow))
            elif how == "duplicate" and items:
                items.append(copy.deepcopy(items[0]))
            else:
                items.reverse()
            return Mutation(op, path)
        op = "null"
    if op == "missing":
        parent, key = _parent_key(doc, path)
        del parent[key]
        return Mutation(op, path)
    if op == "wrong_type":
        new: Any = _wrong_type(rng, value)
    elif op == "out_of_range":
        new = rng.choice(NUMBERS)
    elif op in ("huge_string", "unicode", "boundary_string"):
        new = _string(rng, op)
        if isinstance(value, str) and op == "unicode" and rng.random() < 0.5:
            new = value + new  # unicode inside an otherwise valid value
    else:  # null
        new = None
    if len(path) == 1:
        doc["spec"] = new
    else:
        parent, key = _parent_key(doc, path)
        parent[key] = new
    return Mutation(op, path)


def mutants(
    examples: Mapping[str, dict[str, Any]], schemas: Mapping[str, Mapping[str, Any]], seed: int, per_example: int
) -> list[Mutant]:
    """`per_example` mutants of every example, named <prefix>-<example index>-<n>; the same for the same seed."""
    out = []
    for index, (name, example) in enumerate(sorted(examples.items())):
        rng = random.Random(f"{seed}/{name}")
        kind = example["kind"]
        for n in range(per_example):
            doc = copy.deepcopy(example)
            doc["metadata"] = {"name": f"fz{index}-{kind.lower()[:2]}-{n}"}
            done: list[Mutation] = []
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                if not isinstance(doc.get("spec"), dict):
                    break
                done.append(mutate(doc, schemas.get(kind), rng))
            out.append(Mutant(doc["metadata"]["name"], kind, name, doc, tuple(done)))
    return out


FIELD_PATH = re.compile(r"(?<![\w.])\.?(spec(?:\.[^\s.:,\"'()\[\]]+|\[\d+\])*)")


def named_paths(message: str) -> list[str]:
    """The field paths (spec...) an apiserver message names, without a leading dot."""
    return [m.group(1) for m in FIELD_PATH.finditer(message)]


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer + ".") or inner.startswith(outer + "[")


def names_field(message: str, mutations: Iterable[Mutation]) -> bool:
    """Whether a rejection names a field one of the mutations touched: the field itself or something inside it,
    the list it is an item of, or an object holding it whose rule's message names the field (a CEL rule there)."""
    named = named_paths(message)
    for mutation in mutations:
        mutated = mutation.dotted()
        leaf = next((str(p) for p in reversed(mutation.path) if isinstance(p, str)), "")
        for path in named:
            if _within(path, mutated) or mutated.startswith(path + "["):
                return True  # the field, something inside it, or the list it is an item of (a rule across items)
            if _within(mutated, path) and re.search(rf"(?<!\w){re.escape(leaf)}(?!\w)", message.replace(path, "")):
                return True
    return False


def summary(items: Iterable[Mutant]) -> dict[str, Any]:
    items = list(items)
    return {
        "mutants": len(items),
        "per_kind": dict(Counter(m.kind for m in items)),
        "per_op": dict(Counter(mu.op for m in items for mu in m.mutations)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-example", type=int, default=10)
    parser.add_argument("--summary", action="store_true", help="print counts, not the mutants")
    args = parser.parse_args(argv)
    items = mutants(load_examples(), load_schemas(), args.seed, args.per_example)
    if args.summary:
        print(json.dumps(summary(items), indent=2))
        return 0
    for m in items:
        line = {"example": m.example, "mutations": [[mu.op, mu.dotted()] for mu in m.mutations], "body": m.body}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
