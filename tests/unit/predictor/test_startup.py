"""What keeps the predictor from serving: an altered artifact, a signature that does not fit, bad configuration."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import joblib
import pytest
from slipway_predictor import server
from slipway_predictor.config import Settings, StartupError

from .conftest import Serve, Trained


def test_checksum_mismatch_refuses_to_start(serve: Serve, cancer: Trained, tmp_path: Path) -> None:
    env = {**cancer.env(), "SLIPWAY_ARTIFACT_SHA256": "0" * 64}
    refusal = f"refusing to serve model.joblib: its sha256 is {cancer.sha256} but SLIPWAY_ARTIFACT_SHA256 is {'0' * 64}"
    # The refusal comes from prepare(), which main() runs before it makes the ModelServer: no server ever exists.
    with pytest.raises(StartupError, match=re.escape(refusal)):
        _prepare(tmp_path, env, "--model_dir", str(cancer.path.parent))
    p = serve("cancer", ["--model_dir", str(cancer.path.parent)], env, ready=False)
    assert p.wait_exit() == 1
    assert refusal in p.output()
    # The reason is also the container's termination message.
    assert "refusing to serve model.joblib" in p.termination.read_text()


def _prepare(tmp_path: Path, env: dict[str, str], *args: str) -> Any:
    parsed = server.build_parser().parse_args(["--model_name", "m", *args])
    return server.prepare(parsed, env, tmp_path / "work")


def test_prepare_loads_a_verified_artifact(cancer: Trained, tmp_path: Path) -> None:
    settings, backend = _prepare(tmp_path, cancer.env("v7"), "--model_dir", str(cancer.path.parent))
    assert settings.model_version == "v7" and backend.task == "classification" and backend.classes == [0, 1]
    # Without SLIPWAY_ARTIFACT_SHA256 it serves (unverified, with a warning) and finds the framework itself.
    env = {k: v for k, v in cancer.env().items() if k not in ("SLIPWAY_ARTIFACT_SHA256", "SLIPWAY_FRAMEWORK")}
    _, backend = _prepare(tmp_path, env, "--model_dir", str(cancer.path))
    assert backend.task == "classification"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"SLIPWAY_SIGNATURE": "{"}, "SLIPWAY_SIGNATURE is not JSON"),
        ({"SLIPWAY_SIGNATURE": '{"inputs": []}'}, 'non-empty list "inputs"'),
        ({"SLIPWAY_SIGNATURE": '{"inputs": [{"name": "a", "dtype": "float16"}]}'}, "inputs[0] ('a'): dtype must be"),
        (
            {"SLIPWAY_SIGNATURE": '{"inputs": [{"name": "a", "dtype": "bool"}, {"name": "a", "dtype": "bool"}]}'},
            "more than once: a",
        ),
        ({"SLIPWAY_FRAMEWORK": "xgboost"}, "SLIPWAY_FRAMEWORK must be one of sklearn, pytorch"),
        ({"SLIPWAY_ARTIFACT_SHA256": "abc"}, "must be 64 hex digits"),
        ({"SLIPWAY_CLASSES": "[1]"}, "at least two class labels"),
        ({"SLIPWAY_SCORE_BUCKETS": "1,0.5"}, "increasing"),
        ({"SLIPWAY_MAX_BODY_BYTES": "1.5"}, "SLIPWAY_MAX_BODY_BYTES must be a positive integer"),
        ({"SLIPWAY_MAX_BODY_BYTES": "0"}, "SLIPWAY_MAX_BODY_BYTES must be a positive integer"),
        ({"SLIPWAY_BODY_TIMEOUT_SECONDS": "nan"}, "SLIPWAY_BODY_TIMEOUT_SECONDS must be a positive number"),
        ({"SLIPWAY_BODY_TIMEOUT_SECONDS": "-1"}, "SLIPWAY_BODY_TIMEOUT_SECONDS must be a positive number"),
    ],
)
def test_bad_configuration(change: dict[str, str], message: str, cancer: Trained, tmp_path: Path) -> None:
    with pytest.raises(StartupError) as err:
        _prepare(tmp_path, {**cancer.env(), **change}, "--model_dir", str(cancer.path.parent))
    assert message in str(err.value)


def test_signature_must_match_the_model(cancer: Trained, tmp_path: Path) -> None:
    inputs = cancer.signature["inputs"]
    swapped = [inputs[1], inputs[0], *inputs[2:]]
    for signature, message in [
        (swapped, "column 0 is 'mean texture' in the signature but 'mean radius' in the model"),
        (inputs[:-1], "column 29 is nothing in the signature but 'worst fractal dimension' in the model (29 columns"),
    ]:
        env = {**cancer.env(), "SLIPWAY_SIGNATURE": json.dumps({"inputs": signature})}
        with pytest.raises(StartupError, match="SLIPWAY_SIGNATURE") as err:
            _prepare(tmp_path, env, "--model_dir", str(cancer.path.parent))
        assert message in str(err.value)


def test_without_a_signature_the_models_own_column_names_are_used(cancer: Trained, tmp_path: Path) -> None:
    env = {**cancer.env(), "SLIPWAY_SIGNATURE": ""}
    _, backend = _prepare(tmp_path, env, "--model_dir", str(cancer.path.parent))
    assert [(c.name, c.dtype) for c in backend.signature] == [(str(c), "float64") for c in cancer.x.columns]
    # A model fitted on a bare array has no names to go by.
    from sklearn.tree import DecisionTreeClassifier

    d = tmp_path / "unnamed"
    d.mkdir()
    joblib.dump(
        DecisionTreeClassifier(max_depth=1).fit(cancer.x.to_numpy(), cancer.model.predict(cancer.x)), d / "model.joblib"
    )
    with pytest.raises(StartupError, match="SLIPWAY_SIGNATURE is required: the model was not fitted on named columns"):
        _prepare(tmp_path, {**env, "SLIPWAY_ARTIFACT_SHA256": ""}, "--model_dir", str(d))


def test_model_directory_must_hold_one_model(cancer: Trained, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StartupError, match="model files found: none"):
        _prepare(tmp_path, cancer.env(), "--model_dir", str(empty))
    with pytest.raises(StartupError, match="does not exist"):
        _prepare(tmp_path, cancer.env(), "--model_dir", str(tmp_path / "nowhere"))
    two = tmp_path / "two"
    two.mkdir()
    shutil.copy(cancer.path, two / "a.joblib")
    shutil.copy(cancer.path, two / "b.pkl")
    with pytest.raises(StartupError, match=r"model files found: a.joblib, b.pkl"):
        _prepare(tmp_path, cancer.env(), "--model_dir", str(two))
    shutil.copy(cancer.path, two / "model.joblib")  # the trainer's name wins
    assert _prepare(tmp_path, cancer.env(), "--model_dir", str(two))[1].task == "classification"


def test_an_artifact_that_is_not_a_model(cancer: Trained, tmp_path: Path) -> None:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "model.joblib").write_bytes(b"not a pickle")
    env = {**cancer.env(), "SLIPWAY_ARTIFACT_SHA256": ""}
    with pytest.raises(StartupError, match=r"cannot load model\.joblib with joblib"):
        _prepare(tmp_path, env, "--model_dir", str(d))
    joblib.dump({"a": 1}, d / "model.joblib")
    with pytest.raises(StartupError, match="has no predict"):
        _prepare(tmp_path, env, "--model_dir", str(d))
    (d / "model.joblib").unlink()
    (d / "model.pt").write_bytes(b"not torchscript")
    with pytest.raises(StartupError, match=r"model\.pt is not a TorchScript model"):
        _prepare(tmp_path, {**env, "SLIPWAY_FRAMEWORK": "pytorch"}, "--model_dir", str(d))


def test_one_worker_only(tmp_path: Path) -> None:
    assert server.main(["--model_name", "m", "--model_dir", str(tmp_path), "--workers", "2"]) == 2


def test_settings_defaults() -> None:
    s = Settings.from_env({"SLIPWAY_SIGNATURE": '{"inputs": [{"name": "a", "dtype": "string"}], "target": "y"}'})
    assert (s.model_version, s.framework, s.sha256, s.classes, s.score_buckets) == ("unknown", None, None, None, None)
    assert s.signature is not None and [(c.name, c.dtype, c.numeric) for c in s.signature] == [("a", "string", False)]
    assert Settings.from_env({}).signature is None
