"""A seeded fuzzer of request payloads for the runtimes' HTTP endpoints. Pure: generator functions of a
`random.Random`, no I/O, the same seed gives the same payloads.

Every payload is wrong by construction (no mutation can turn it back into a valid request), so every answer
to it must be a 4xx; `names` holds the words, one of which the answer's message must contain (lower case),
so that the message names the problem rather than just refusing.

    drift_payloads(rng, n, columns)       CloudEvents for POST /v1/events/... (a monitor of float64 `columns`)
    predictor_payloads(rng, n, columns)   v1 (`route` "v1") and v2 (`route` "v2") inference requests

Size: `campaign_size()`, from SLIPWAY_FUZZ_PAYLOADS (default a CI-sized 300 per runtime); the seed from
SLIPWAY_FUZZ_SEED (default 14).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SIZE = 300
REQUEST_TYPE = "org.kubeflow.serving.inference.request"

KINDS = (
    "malformed_json",
    "content_type",
    "nan_inf",
    "shape",
    "dtype",
    "null",
    "huge_number",
    "unicode",
    "deep_nesting",
    "ce_headers",
)


def campaign_size(default: int = DEFAULT_SIZE) -> int:
    return int(os.environ.get("SLIPWAY_FUZZ_PAYLOADS") or default)


def campaign_seed() -> int:
    return int(os.environ.get("SLIPWAY_FUZZ_SEED") or 14)


@dataclass(frozen=True)
class Payload:
    kind: str
    what: str  # one line saying how it is wrong, for failure messages
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()  # one of these (lower case) must be in the refusal's message
    route: str = ""  # the predictor's: "v1" or "v2"


# ---- building blocks ----

NON_JSON_TYPES = (
    "text/plain",
    "application/xml",
    "text/csv",
    "application/octet-stream",
    "multipart/form-data; boundary=xyz",
    "image/png",
    "application/jsonx",
    "text/html; charset=utf-8",
)
# JSON numbers as other languages write them: none is valid JSON.
BAD_NUMBERS = ("nan", "NaN", "Infinity", "-Infinity", "inf", "0x1F", ".5", "01", "+1", "1.", "1e", "--1", "1_000")
UNICODE = ("é", "日本語", "🚀", "\u202eevil", "\u0000", "\ud800", "\ufeff", "x\u0301", "\U0001d518\U0001d52b", "\uffff")


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _cell(rng: random.Random) -> float:
    return round(rng.uniform(-5, 5), rng.choice((0, 2, 6, 17)))


def _rows(rng: random.Random, width: int) -> list[list[float]]:
    return [[_cell(rng) for _ in range(width)] for _ in range(rng.randint(1, 5))]


def valid_v1(rng: random.Random, columns: list[str]) -> dict[str, Any]:
    rows = _rows(rng, len(columns))
    if rng.random() < 0.5:
        return {"instances": rows}
    return {"instances": [dict(zip(columns, r, strict=True)) for r in rows]}


def valid_v2(rng: random.Random, columns: list[str]) -> dict[str, Any]:
    rows = _rows(rng, len(columns))
    if rng.random() < 0.5:
        data: list[Any] = rows if rng.random() < 0.5 else [v for r in rows for v in r]
        return {"inputs": [{"name": "input-0", "shape": [len(rows), len(columns)], "datatype": "FP64", "data": data}]}
    return {
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": [r[j] for r in rows]}
            for j, c in enumerate(columns)
        ]
    }


def valid_body(rng: random.Random, columns: list[str], route: str = "") -> dict[str, Any]:
    if route == "v1":
        return valid_v1(rng, columns)
    if route == "v2":
        return valid_v2(rng, columns)
    return valid_v1(rng, columns) if rng.random() < 0.5 else valid_v2(rng, columns)


def cells(doc: dict[str, Any]) -> list[tuple[list[Any] | dict[str, Any], Any]]:
    """(container, key) of every value cell of a valid v1 or v2 body, to be replaced in place."""
    out: list[tuple[Any, Any]] = []
    if "instances" in doc:
        for row in doc["instances"]:
            out.extend((row, k) for k in (row if isinstance(row, dict) else range(len(row))))
    else:
        for t in doc["inputs"]:
            data = t["data"]
            for item in data:
                if isinstance(item, list):
                    out.extend((item, k) for k in range(len(item)))
            if not any(isinstance(item, list) for item in data):
                out.extend((data, k) for k in range(len(data)))
    return out


def _replace_cell(rng: random.Random, doc: dict[str, Any], value: Any) -> dict[str, Any]:
    container, key = rng.choice(cells(doc))
    container[key] = value
    return doc


_MARK = "@@FUZZ@@"


def _with_literal(rng: random.Random, doc: dict[str, Any], literal: str) -> bytes:
    """The body with one cell written as `literal`, verbatim (for what json.dumps would not write)."""
    _replace_cell(rng, doc, _MARK)
    return _dumps(doc).replace(f'"{_MARK}"'.encode(), literal.encode(), 1)


# ---- the kinds, shared by both runtimes (`route` "" for the drift runtime) ----


def malformed_json(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    raw = _dumps(valid_body(rng, columns, route))
    how = rng.randrange(8)
    if how == 0:  # a strict prefix of a compact JSON object is never JSON
        return "truncated", raw[: rng.randrange(0, len(raw))]
    if how == 1:
        return "trailing garbage", raw + rng.choice((b"x", b"}", b",", b"{}", b"\x00"))
    if how == 2:
        i = rng.randrange(1, len(raw))
        return "invalid UTF-8", raw[:i] + rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80")) + raw[i:]
    if how == 3:
        return "single quotes", raw.replace(b'"', b"'")
    if how == 4:
        return "a number no JSON has", _with_literal(rng, valid_body(rng, columns, route), rng.choice(BAD_NUMBERS))
    if how == 5:
        return "a trailing comma", raw[:-1] + b",}"
    if how == 6:
        return "a control character in a string", raw.replace(b'"', b'"\x01', 1)
    return "not JSON at all", rng.choice((b"", b" ", b"instances=1,2,3", b"<xml/>", b"\x00\x01\x02", b"{", b"null x"))


def nan_inf(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    literal = rng.choice(("NaN", "Infinity", "-Infinity", "1e400", "-1e309", "1E999"))
    return f"{literal} in a cell", _with_literal(rng, valid_body(rng, columns, route), literal)


def huge_number(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    digits = rng.choice((310, 400, 5000))
    literal = rng.choice(("", "-")) + "9" * digits
    if rng.random() < 0.3:
        literal += ".5"
    return f"a {digits}-digit number", _with_literal(rng, valid_body(rng, columns, route), literal)


def dtype(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    value = rng.choice(("1.5", "abc", "", {"a": 1}, {}, ["x"], [1.0, 2.0], "NaN", "1e3"))
    return f"{type(value).__name__} {value!r:.20} in a number cell", _dumps(
        _replace_cell(rng, valid_body(rng, columns, route), value)
    )


def null(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    doc = valid_body(rng, columns, route)
    how = rng.randrange(4)
    if how == 0:
        return "a null cell", _dumps(_replace_cell(rng, doc, None))
    if how == 1:
        return "null body", b"null"
    if "instances" in doc:
        if how == 2:
            return "null instances", _dumps({"instances": None})
        return "a null row", _dumps({"instances": [*doc["instances"], None]})
    # The drift runtime reads no `datatype`, and takes a single tensor of any name (even none).
    keys = (
        ("shape", "data", "name", "datatype")
        if route
        else ("shape", "data", "name")[: 3 if len(doc["inputs"]) > 1 else 2]
    )
    key = rng.choice(keys) if how == 2 else None
    if key is None:
        return "null inputs", _dumps({"inputs": None})
    doc["inputs"][0][key] = None
    return f"null {key}", _dumps(doc)


def unicode(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    text = rng.choice(UNICODE) * rng.randint(1, 50)
    doc = valid_body(rng, columns, route)
    how = rng.randrange(3)
    if how == 0:
        return "a unicode string in a number cell", _dumps(_replace_cell(rng, doc, text))
    if "instances" in doc:
        row = doc["instances"][0]
        if isinstance(row, dict):  # a column renamed: the real one is missing
            del row[rng.choice(columns)]
            row[text] = 1.0
        else:
            row.append(text)
        return "a unicode column", _dumps(doc)
    doc["inputs"][0]["name"] = text
    if len(doc["inputs"]) == 1:  # one matrix, renamed: its width is made wrong too
        doc["inputs"][0]["shape"][1] += 1
    return "a unicode tensor name", _dumps(doc)


def deep_nesting(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    depth = rng.choice((50, 1_000, 10_000, 100_000))
    inner = "[" * depth + "1.0" + "]" * depth
    how = rng.randrange(3)
    if how == 0:
        return f"a {depth}-deep list as the body", inner.encode()
    if how == 1 or route == "v1":
        return f"a {depth}-deep cell", _with_literal(rng, valid_body(rng, columns, route or "v1"), inner)
    body = {"inputs": [{"name": "input-0", "shape": [1, len(columns)], "datatype": "FP64", "data": _MARK}]}
    return f"{depth}-deep tensor data", _dumps(body).replace(f'"{_MARK}"'.encode(), inner.encode())


def _shape_v1(rng: random.Random, columns: list[str]) -> tuple[str, Any]:
    width, rows = len(columns), _rows(rng, len(columns))
    how = rng.randrange(7)
    if how == 0:
        n = rng.choice([k for k in (0, 1, width - 1, width + 1, width * 2) if k != width])
        rows[rng.randrange(len(rows))] = [1.0] * n
        return f"a row of {n} values", {"instances": rows}
    if how == 1:
        return "no rows", {"instances": []}
    if how == 2:
        return "instances not a list", {"instances": rng.choice((3, "rows", {"a": 1}, True))}
    if how == 3:
        return "a row that is a number", {"instances": [*rows, rng.choice((1.5, "x", True))]}
    if how == 4:
        return "neither instances nor inputs", {rng.choice(("rows", "data", "instance", "Instances")): rows}
    if how == 5:
        return "the body is a list", rows
    return "a row nested one level too deep", {"instances": [[r] for r in rows]}


def _shape_v2(rng: random.Random, columns: list[str]) -> tuple[str, Any]:
    width, rows = len(columns), _rows(rng, len(columns))
    n, flat = len(rows), [v for r in rows for v in r]
    matrix = {"name": "input-0", "shape": [n, width], "datatype": "FP64", "data": flat}
    per_column = [{"name": c, "shape": [n], "datatype": "FP64", "data": [r[j] for r in rows]} for j, c in
                  enumerate(columns)]  # fmt: skip
    how = rng.randrange(10)
    if how == 0:
        w = rng.choice([k for k in (1, width - 1, width + 1, 2 * width) if k != width])
        return f"a matrix [N, {w}]", {"inputs": [{**matrix, "shape": [n, w], "data": [1.0] * (n * w)}]}
    if how == 1:
        return "data shorter than the shape", {"inputs": [{**matrix, "data": flat[:-1]}]}
    if how == 2:
        return "data longer than the shape", {"inputs": [{**matrix, "data": [*flat, 1.0]}]}
    if how == 3:
        bad: Any = rng.choice(([-1, width], [n, -width], ["1", width], [1.5, width], [True, width], "3", 3, {}, []))
        return f"shape {bad!r}", {"inputs": [{**matrix, "shape": bad}]}
    if how == 4:
        return "no shape", {"inputs": [{k: v for k, v in matrix.items() if k != "shape"}]}
    if how == 5:
        return "inputs not a non-empty list", {"inputs": rng.choice(([], 3, "x", {"name": "x"}, [1, 2]))}
    if how == 6:
        per_column[-1] = {**per_column[-1], "shape": [n + 1], "data": [1.0] * (n + 1)}
        return "columns of different lengths", {"inputs": per_column}
    if how == 7:
        return "a column missing", {"inputs": per_column[:-1] if width > 1 else [*per_column, per_column[0]]}
    if how == 8:
        huge = rng.choice((10**12, 2**63, 10**30))
        return f"shape [{huge}, {width}]", {"inputs": [{**matrix, "shape": [huge, width]}]}
    return "data not a list", {"inputs": [{**matrix, "data": rng.choice((1.0, "1,2,3", {"a": 1}))}]}


def shape(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes]:
    v1 = route == "v1" or (not route and rng.random() < 0.5)
    what, doc = _shape_v1(rng, columns) if v1 else _shape_v2(rng, columns)
    return what, _dumps(doc)


Maker = Callable[[random.Random, list[str], str], tuple[str, bytes]]
BODY_KINDS: dict[str, Maker] = {
    "malformed_json": malformed_json,
    "nan_inf": nan_inf,
    "shape": shape,
    "dtype": dtype,
    "null": null,
    "huge_number": huge_number,
    "unicode": unicode,
    "deep_nesting": deep_nesting,
}


# ---- the drift runtime: KServe payload-logger CloudEvents ----

# What each kind's refusal must mention (one of), as the drift runtime words its messages.
DRIFT_NAMES: dict[str, tuple[str, ...]] = {
    "malformed_json": ("invalid json", "not allowed"),
    "nan_inf": ("not allowed", "finite", "invalid json"),
    "huge_number": ("finite", "expected a number", "invalid json"),
    "shape": ("instances", "inputs", "shape", "data", "row", "json object"),
    "dtype": ("expected a number", "instances", "inputs"),
    "null": ("expected", "instances", "inputs", "json object"),
    "unicode": ("expected a number", "missing", "no tensor", "values", "shape", "inputs"),
    "deep_nesting": ("nested", "invalid json", "json object", "expected a number", "expected"),
    "content_type": ("content-type",),
    "ce_headers": ("ce-", "body.", "specversion", "type", "source", "id", "data"),
}


def ce_headers(rng: random.Random, ce_type: str = REQUEST_TYPE) -> dict[str, str]:
    """A KServe payload logger's binary-mode headers."""
    return {
        "ce-id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "ce-type": ce_type,
        "ce-source": "http://localhost:9081/",
        "ce-specversion": "1.0",
        "ce-inferenceservicename": "fraud",
        "ce-namespace": "team-a",
        "ce-component": "predictor",
        "ce-endpoint": "fraud-predictor",
        "content-type": "application/json",
    }


def _drift_envelope(rng: random.Random, columns: list[str]) -> tuple[str, bytes, dict[str, str]]:
    data = valid_body(rng, columns)
    headers = ce_headers(rng)
    how = rng.randrange(6)
    if how == 0:
        gone = rng.sample(["ce-id", "ce-type", "ce-source", "ce-specversion"], rng.randint(1, 4))
        return (
            f"binary mode without {', '.join(gone)}",
            _dumps(data),
            {k: v for k, v in headers.items() if k not in gone},
        )
    if how == 1:
        ce_type = rng.choice(("", "org.kubeflow.serving.inference.explain", "inference.request.x", "x" * 300, "日本"))
        return "a ce-type that is no inference event", _dumps(data), {**headers, "ce-type": ce_type}
    structured = {"content-type": "application/cloudevents+json"}
    doc: dict[str, Any] = {"specversion": "1.0", "type": REQUEST_TYPE, "id": "1", "source": "s", "data": data}
    if how == 2:
        gone = rng.sample(["specversion", "type", "id", "source"], rng.randint(1, 4))
        return (
            f"structured mode without {', '.join(gone)}",
            _dumps({k: v for k, v in doc.items() if k not in gone}),
            structured,
        )
    if how == 3:
        key = rng.choice(["specversion", "type", "id", "source"])
        return f"structured mode, {key} not a string", _dumps({**doc, key: rng.choice((1, None, [], {}))}), structured
    if how == 4:
        del doc["data"]
        how_b64 = rng.choice(("absent", "%%%", "bm90IGpzb24=", 5))
        if how_b64 != "absent":
            doc["data_base64"] = how_b64
        return f"structured mode, data_base64 {how_b64!r}", _dumps(doc), structured
    return "structured mode, the body a bare inference request", _dumps(data), structured


def drift_payloads(rng: random.Random, n: int, columns: list[str]) -> Iterator[Payload]:
    """`n` CloudEvents, each refused by a monitor whose versions take the float64 `columns`, kinds in turn."""
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        headers = ce_headers(rng)
        if kind == "content_type":
            mime = rng.choice(NON_JSON_TYPES)
            yield Payload(kind, f"Content-Type {mime}", _dumps(valid_body(rng, columns)), {**headers,
                          "content-type": mime}, DRIFT_NAMES[kind])  # fmt: skip
        elif kind == "ce_headers":
            what, body, h = _drift_envelope(rng, columns)
            yield Payload(kind, what, body, h, DRIFT_NAMES[kind])
        else:
            what, body = BODY_KINDS[kind](rng, columns, "")
            yield Payload(kind, what, body, headers, DRIFT_NAMES[kind])


# ---- the predictor: v1 and v2 inference requests ----

PREDICTOR_NAMES: dict[str, tuple[str, ...]] = {
    "malformed_json": ("json",),
    "nan_inf": ("json", "expected a number", "finite"),
    "huge_number": ("json", "expected a number", "number"),
    "shape": ("instances", "inputs", "shape", "data", "row", "json object", "column"),
    "dtype": ("expected a number", "datatype", "inputs", "instances"),
    "null": ("null", "instances", "inputs", "json object", "none", "shape", "data", "name", "datatype"),
    "unicode": ("expected a number", "column", "values", "shape", "inputs"),
    "deep_nesting": ("json", "nested", "expected a number", "shape", "data"),
    "content_type": ("json", "content-type", "inference-header-content-length"),
    "ce_headers": ("json", "cloudevent", "instances", "inputs"),
}


def _predictor_envelope(rng: random.Random, columns: list[str], route: str) -> tuple[str, bytes, dict[str, str]]:
    """A payload-logger-looking request sent to the predictor: CloudEvent headers around a wrong body."""
    what, body = rng.choice((malformed_json, shape, null))(rng, columns, route)
    headers = {k: v for k, v in ce_headers(rng).items() if rng.random() < 0.8 or k == "content-type"}
    return f"a binary CloudEvent with {what}", body, headers


def predictor_payloads(rng: random.Random, n: int, columns: list[str]) -> Iterator[Payload]:
    """`n` requests, half v1 and half v2, each refused by a predictor whose signature is the float64 `columns`."""
    for i in range(n):
        kind = KINDS[(i // 2) % len(KINDS)]
        route = ("v1", "v2")[i % 2]
        json_type = {"content-type": "application/json"}
        if kind == "content_type":
            mime = rng.choice(NON_JSON_TYPES)
            # A wrong Content-Type is forgiven when the body is a good v1 request (curl -d sends form
            # encoding): the body here is wrong as well, in a way a non-JSON client would write it.
            body = rng.choice((b"instances=1,2,3", b"<instances><row>1</row></instances>", b"1,2,3\n4,5,6\n",
                               b"\x89PNG\r\n\x1a\n", b""))  # fmt: skip
            yield Payload(kind, f"Content-Type {mime}, body {body[:12]!r}", body, {"content-type": mime},
                          PREDICTOR_NAMES[kind], route)  # fmt: skip
        elif kind == "ce_headers":
            what, body, h = _predictor_envelope(rng, columns, route)
            yield Payload(kind, what, body, h, PREDICTOR_NAMES[kind] + PREDICTOR_NAMES["shape"], route)
        else:
            what, body = BODY_KINDS[kind](rng, columns, route)
            yield Payload(kind, what, body, json_type, PREDICTOR_NAMES[kind], route)
