"""Fuzzed v1 and v2 requests against `python -m slipway_predictor` as the pod runs it, on loopback: every wrong
request is a 4xx whose message names the problem, a 100 MB body is refused without being held in memory, slow
senders are cut off without holding up anyone else, and the server still predicts correctly afterwards.

Size: SLIPWAY_FUZZ_PAYLOADS (default 300; the full campaign by hand: SLIPWAY_FUZZ_PAYLOADS=10000).
Figures: printed as one JSON line per test (`pytest -s` shows them)."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from typing import Any

import numpy as np
import pytest

from tests.unit.fuzz_payloads import campaign_seed, campaign_size, predictor_payloads
from tests.unit.payload_client import Answer, memory_kib, send, send_large, trickle

from .conftest import Predictor, Serve, Trained, frame_rows

BODY_LIMIT = 4 << 20  # SLIPWAY_MAX_BODY_BYTES for these tests (the default is 16 MiB)
BODY_TIMEOUT = 5.0  # SLIPWAY_BODY_TIMEOUT_SECONDS for these tests (the default is 30)
HUNDRED_MB = 100 * 1024 * 1024
# What refusing a 100 MB body may cost the process at its peak: a few limit-sized buffers, nowhere near the body.
PEAK_BOUND_KIB = 32 * 1024


@pytest.fixture(scope="module")
def bc(serve_module: Serve, cancer: Trained) -> Predictor:
    env = {
        **cancer.env("cancer-v1"),
        "SLIPWAY_MAX_BODY_BYTES": str(BODY_LIMIT),
        "SLIPWAY_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
    }
    return serve_module("cancer", ["--model_dir", str(cancer.path.parent)], env)


ROUTES = {"v1": "/v1/models/cancer:predict", "v2": "/v2/models/cancer/infer"}


def report(name: str, figures: dict[str, Any]) -> None:
    print(json.dumps({"campaign": name, **figures}, sort_keys=True))


def predicts_correctly(bc: Predictor, cancer: Trained) -> None:
    rows = frame_rows(cancer.x, 3, start=7)
    expected = cancer.model.predict_proba(cancer.x.iloc[7:10])
    r = bc.v1({"instances": rows})
    assert r.status == 200, r.body
    np.testing.assert_allclose(r.body["probabilities"], expected, rtol=1e-12)
    m = bc.v2({"inputs": [{"name": "x", "shape": [3, 30], "datatype": "FP64", "data": rows}]})
    assert m.status == 200, m.body
    assert {o["name"]: o for o in m.body["outputs"]}["predictions"]["data"] == expected.argmax(axis=1).tolist()


def test_fuzzed_requests_are_refused_naming_the_problem(bc: Predictor, cancer: Trained) -> None:
    columns = [str(c) for c in cancer.x.columns]
    n = campaign_size()
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    bad: list[str] = []
    for p in predictor_payloads(random.Random(campaign_seed()), n, columns):
        answer = send(bc.port, "POST", ROUTES[p.route], p.body, p.headers)
        statuses[f"{p.route} {answer.status}"] += 1
        kinds[f"{p.route} {p.kind}"] += 1
        message = answer.message.lower()
        if not 400 <= answer.status < 500 or not any(word in message for word in p.names):
            bad.append(f"{p.route} {p.kind} ({p.what}): {answer.status} {answer.message[:300]!r}")
    report("predictor", {"payloads": n, "byKind": dict(kinds), "byStatus": dict(statuses)})
    assert not bad, f"{len(bad)} of {n} payloads not answered with a 4xx naming the problem:\n" + "\n".join(bad[:40])
    assert bc.proc.poll() is None
    predicts_correctly(bc, cancer)


def test_hundred_megabyte_bodies_are_refused_without_being_read(bc: Predictor, cancer: Trained) -> None:
    predicts_correctly(bc, cancer)
    before = memory_kib(bc.proc.pid)
    answers: dict[str, Answer] = {}
    for route, path in ROUTES.items():
        headers = {"content-type": "application/json"}
        answers[f"{route} content-length"] = send_large(bc.port, path, headers, HUNDRED_MB)
        answers[f"{route} chunked"] = send_large(bc.port, path, headers, HUNDRED_MB, chunked=True)
    # A client that sends all 100 MB whatever it is told: the server drops the rest, or hangs up.
    deaf = send_large(bc.port, ROUTES["v1"], {"content-type": "application/json"}, HUNDRED_MB, deaf=True)
    after = memory_kib(bc.proc.pid)
    report(
        "predictor-100MB",
        {"bodyLimitBytes": BODY_LIMIT, "rssKiB": {"before": before, "after": after},
         "answers": {k: [a.status, a.sent, a.closed] for k, a in {**answers, "deaf": deaf}.items()}},
    )  # fmt: skip
    for what, answer in answers.items():
        assert answer.status == 413, (what, answer)
        assert str(BODY_LIMIT) in answer.message, (what, answer)
        # Regression: left open, a connection whose body stopped after the 413 was held for ever.
        assert answer.closed, (what, answer)
    assert deaf.status == 413 or (deaf.status == 0 and deaf.closed), deaf
    # The peak (VmHWM) stays far below the body: it was never read whole.
    assert after["VmHWM"] - before["VmHWM"] < PEAK_BOUND_KIB, (before, after)
    assert bc.proc.poll() is None
    predicts_correctly(bc, cancer)


def test_slow_senders_are_cut_off_and_hold_up_nobody(bc: Predictor, cancer: Trained) -> None:
    results: dict[str, Answer] = {}
    done: list[str] = []

    def slow(name: str, path: str, stop_after: int | None) -> None:
        # 1 byte every 50 ms: 2,400 bytes take two minutes, far past the server's body timeout.
        results[name] = trickle(bc.port, path, {"content-type": "application/json"}, 2_400, 0.05, stop_after)
        done.append(name)

    threads = [
        threading.Thread(target=slow, args=("v1 trickle", ROUTES["v1"], None)),
        threading.Thread(target=slow, args=("v2 stalled", ROUTES["v2"], 3)),
    ]
    for t in threads:
        t.start()
    answered_meanwhile = 0
    while not done and answered_meanwhile < 5:
        predicts_correctly(bc, cancer)
        answered_meanwhile += 1 if not done else 0
    for t in threads:
        t.join()
    report(
        "predictor-slow", {k: {"status": a.status, "sentBytes": a.sent, "closed": a.closed} for k, a in results.items()}
    )
    assert answered_meanwhile, "no request was answered while the slow senders were connected"
    for name, answer in results.items():
        assert answer.status == 408, (name, answer)
        assert "seconds" in answer.message or " s " in answer.message, (name, answer)
        assert answer.closed, name
        assert answer.sent < 2_400, name
    assert bc.proc.poll() is None
    predicts_correctly(bc, cancer)
