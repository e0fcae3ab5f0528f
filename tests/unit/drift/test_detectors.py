"""The statistics: the runtime's results are alibi-detect's own, false alarms stay near pValue, and a modest
shift is found."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from alibi_detect.cd import ChiSquareDrift, KSDrift, LSDDDrift, MMDDrift, TabularDrift
from slipway_drift.config import Column, DetectorConfig, parse_monitor
from slipway_drift.detect import SEED, Detector, Reference, corrected_p

from tests.unit.drift.conftest import Drift, columns, monitor_body, normal, v2_matrix, version

NAMES = columns(5)


def seeded() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)


async def run_window(drift: Drift, reference: pd.DataFrame, window: list[list[Any]], sig: dict[str, Any],
                     upload: Callable[[pd.DataFrame], str], **detector: Any) -> dict[str, Any]:  # fmt: skip
    v = {"role": "stable", "referenceUri": upload(reference), "signature": sig}
    status, doc = await drift.put(monitor_body({"v1": v}, windowSize=len(window), **detector))
    assert status == 200, doc
    await drift.loaded()
    assert (await drift.event({"instances": window}))[0] == 202
    (result,) = await drift.results(1)
    return result


def sig_of(names: list[str], dtype: str = "float64") -> dict[str, Any]:
    return {"inputs": [{"name": n, "dtype": dtype} for n in names]}


def assert_univariate(result: dict[str, Any], out: dict[str, Any], correction: str) -> None:
    p = np.asarray(out["data"]["p_val"], dtype=np.float64)
    assert result["drift"] is bool(out["data"]["is_drift"])
    assert result["featurePValues"] == dict(zip(result["featurePValues"], p.tolist(), strict=True))
    assert result["pValue"] == pytest.approx(corrected_p(p, correction))
    assert result["distance"] == pytest.approx(float(out["data"]["distance"][int(np.argmin(p))]))
    assert result["threshold"] == pytest.approx(float(np.max(out["data"]["threshold"])))


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
async def test_ks_equals_alibi(drift: Drift, upload: Callable[[pd.DataFrame], str], correction: str) -> None:
    ref = normal(300, 5, seed=1)
    x = normal(200, 5, seed=2, shift=0.3).to_numpy()
    result = await run_window(drift, ref, x.tolist(), sig_of(NAMES), upload, method="ks", correction=correction)
    out = KSDrift(ref.to_numpy(), p_val=0.05, correction=correction).predict(x)
    assert_univariate(result, out, correction)
    assert result["drift"] is True and result["samples"] == 200


async def test_chisquare_equals_alibi(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame(rng.integers(0, 4, size=(300, 5)), columns=NAMES)
    x = rng.integers(0, 5, size=(200, 5))  # category 4 never seen in the reference
    result = await run_window(drift, ref, x.tolist(), sig_of(NAMES, "int64"), upload, method="chisquare")
    out = ChiSquareDrift(ref.to_numpy().astype(np.float64), p_val=0.05).predict(x.astype(np.float64))
    assert_univariate(result, out, "bonferroni")


async def test_tabular_equals_alibi(drift: Drift, upload: Callable[[pd.DataFrame], str]) -> None:
    rng = np.random.default_rng(4)
    colours = np.array(["red", "green", "blue"])
    ref = pd.DataFrame({"a": rng.normal(size=300), "colour": colours[rng.integers(0, 3, 300)],
                        "ok": rng.integers(0, 2, 300).astype(bool)})  # fmt: skip
    live_colours = np.array(["red", "green", "blue", "purple"])
    x = pd.DataFrame({"a": rng.normal(size=200) + 0.2, "colour": live_colours[rng.integers(0, 4, 200)],
                      "ok": rng.integers(0, 2, 200).astype(bool)})  # fmt: skip
    sig = {"inputs": [{"name": "a", "dtype": "float64"}, {"name": "colour", "dtype": "string"},
                      {"name": "ok", "dtype": "bool"}]}  # fmt: skip
    result = await run_window(drift, ref, x.values.tolist(), sig, upload, method="tabular")
    # The runtime's encoding, done by hand: reference categories sorted, an unseen one gets the next code.
    codes = {"blue": 0, "green": 1, "red": 2, "purple": 3}

    def matrix(f: pd.DataFrame) -> np.ndarray:
        return np.column_stack([f["a"], f["colour"].map(codes), f["ok"].astype(float)]).astype(np.float64)

    out = TabularDrift(matrix(ref), p_val=0.05, categories_per_feature={1: None, 2: None}).predict(matrix(x))
    assert_univariate(result, out, "bonferroni")
    assert list(result["featurePValues"]) == ["a", "colour", "ok"]


@pytest.mark.parametrize("method", ["mmd", "lsdd"])
async def test_multivariate_equals_alibi(drift: Drift, upload: Callable[[pd.DataFrame], str], method: str) -> None:
    ref = normal(300, 5, seed=5)
    x = normal(200, 5, seed=6, shift=0.25).to_numpy()
    # numpy asked for: TensorFlow is not installed, PyTorch runs it and GET says so.
    result = await run_window(drift, ref, x.tolist(), sig_of(NAMES), upload, method=method, backend="numpy")
    assert (await drift.get())["backendUsed"] == "pytorch"
    cls = MMDDrift if method == "mmd" else LSDDDrift
    seeded()
    cd = cls(ref.to_numpy().astype(np.float32), backend="pytorch", p_val=0.05, n_permutations=100)
    seeded()
    out = cd.predict(x.astype(np.float32))
    assert result["drift"] is bool(out["data"]["is_drift"])
    assert result["pValue"] == pytest.approx(float(out["data"]["p_val"]))
    assert result["distance"] == pytest.approx(float(out["data"]["distance"]))
    assert result["threshold"] == pytest.approx(float(out["data"]["threshold"]))
    assert result["featurePValues"] == {}


def test_false_positive_rate_ks() -> None:
    """200 windows of 1,000 x 20 from the reference's own distribution: drift in about pValue of them."""
    config = parse_monitor(monitor_body({"v": version("s3://b/k", columns(20))}, windowSize=1000)).detector
    rng = np.random.default_rng(7)
    cols = tuple(Column(n, "float64") for n in columns(20))
    ref = Reference.from_columns(cols, {n: rng.normal(size=2000) for n in columns(20)})
    detector = Detector(config, ref)
    drifts = [detector.run(rng.normal(size=(1000, 20)).tolist())["drift"] for _ in range(200)]
    assert sum(drifts) / 200 <= 0.08


@pytest.mark.parametrize("method", ["ks", "mmd"])
async def test_half_sigma_shift_detected(drift: Drift, upload: Callable[[pd.DataFrame], str], method: str) -> None:
    names = columns(20)
    v = version(upload(normal(1000, 20, seed=8)), names)
    assert (await drift.put(monitor_body({"v1": v}, method=method, windowSize=1000)))[0] == 200
    await drift.loaded()
    # One window without drift, then one where feature f0 moved by half a standard deviation.
    for seed, shift in ((9, 0.0), (10, 0.5)):
        assert (await drift.event(v2_matrix(normal(1000, 20, seed=seed, shift=shift).to_numpy())))[0] == 202
    calm, drifted = await drift.results(2)
    assert calm["drift"] is False and drifted["drift"] is True
    if method == "ks":
        assert min(drifted["featurePValues"], key=drifted["featurePValues"].get) == "f0"


def test_corrections() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert corrected_p(p, "bonferroni") == pytest.approx(0.04)
    # Benjamini-Hochberg: sorted 0.01, 0.03, 0.04, 0.5 → 0.04, 0.06, 0.0533, 0.5; monotone from the top.
    assert corrected_p(p, "fdr") == pytest.approx(0.04)
    assert corrected_p(np.array([0.9, 0.8]), "bonferroni") == 1.0


def test_detector_config_backend() -> None:
    assert DetectorConfig("mmd", 0.05, "bonferroni", 10, (), "numpy").backend_used == "pytorch"
    assert DetectorConfig("ks", 0.05, "bonferroni", 10, (), "numpy").backend_used == "numpy"
