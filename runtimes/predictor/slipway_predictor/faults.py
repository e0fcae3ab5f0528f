"""Estimators that misbehave on purpose, for tests and the demo: a "bad version" that is an ordinary artifact.

They wrap a fitted scikit-learn model and are pickled like one (they live in this package, which the predictor
image has, so the predictor unpickles them like any other joblib artifact):

- FlakyModel(base, fail_fraction, seed) raises FaultInjected for a fixed share of input rows, chosen by hashing
  each row with the seed: the same row always fails or always succeeds, and over many distinct rows about
  `fail_fraction` of them fail. A batch fails if any of its rows does.
- SlowModel(base, delay_seconds) answers like `base`, `delay_seconds` later (per call).

Make one from a trainer artifact (local paths or s3:// URIs; prints the new artifact's uri, sha256 and size
as JSON, ready for a ModelVersion's spec.artifact):

    python -m slipway_predictor.faults flaky --fail-fraction 0.3 --seed 1 SRC DST
    python -m slipway_predictor.faults slow --delay-seconds 0.5 SRC DST
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator  # type: ignore[import-untyped]
from sklearn.utils.metaestimators import available_if  # type: ignore[import-untyped]

# The trainer's joblib settings (no timestamps): the CLI run twice on the same artifact writes the same bytes.
PICKLE_PROTOCOL = 5
COMPRESS = ("zlib", 3)


class FaultInjected(RuntimeError):
    """Raised by FlakyModel: the model failing, as opposed to the request being wrong."""


def _base_has(method: str) -> Any:
    return lambda self: hasattr(self.base, method)


class _Wrapper(BaseEstimator):  # type: ignore[misc]
    """Delegates to `base`: its fitted attributes, tags and methods, so scikit-learn and the predictor treat the
    wrapper as the model it wraps."""

    base: Any

    def fit(self, X: Any, y: Any = None, **kwargs: Any) -> _Wrapper:
        self.base.fit(X, y, **kwargs)
        return self

    def __sklearn_tags__(self) -> Any:
        return self.base.__sklearn_tags__()

    def __sklearn_is_fitted__(self) -> bool:
        from sklearn.exceptions import NotFittedError  # type: ignore[import-untyped]
        from sklearn.utils.validation import check_is_fitted  # type: ignore[import-untyped]

        try:
            check_is_fitted(self.base)
        except NotFittedError:
            return False
        return True

    @property
    def classes_(self) -> Any:
        return self.base.classes_

    @property
    def feature_names_in_(self) -> Any:
        return self.base.feature_names_in_

    @property
    def n_features_in_(self) -> Any:
        return self.base.n_features_in_

    def _before(self, X: Any) -> None:
        """The fault, before the base model answers."""

    def predict(self, X: Any) -> Any:
        self._before(X)
        return self.base.predict(X)

    # available_if: hasattr(wrapper, "predict_proba") answers like the base model's, as the predictor asks.
    @available_if(_base_has("predict_proba"))  # type: ignore[untyped-decorator]
    def predict_proba(self, X: Any) -> Any:
        self._before(X)
        return self.base.predict_proba(X)

    @available_if(_base_has("decision_function"))  # type: ignore[untyped-decorator]
    def decision_function(self, X: Any) -> Any:
        self._before(X)
        return self.base.decision_function(X)


class FlakyModel(_Wrapper):
    def __init__(self, base: Any, fail_fraction: float = 0.5, seed: int = 0) -> None:
        self.base, self.fail_fraction, self.seed = base, fail_fraction, seed

    def failing_rows(self, X: Any) -> np.ndarray[Any, Any]:
        """Which rows fail: a row's hash (with the seed) as a number in [0, 1) below fail_fraction."""
        rows = _rows(X)
        salt = str(self.seed).encode()
        draws = [int.from_bytes(hashlib.blake2b(salt + row, digest_size=8).digest(), "big") / 2**64 for row in rows]
        return np.asarray(draws) < self.fail_fraction

    def _before(self, X: Any) -> None:
        bad = np.flatnonzero(self.failing_rows(X))
        if bad.size:
            raise FaultInjected(f"injected fault on {bad.size} of {len(X)} rows (FlakyModel, {self.fail_fraction:.0%})")


class SlowModel(_Wrapper):
    def __init__(self, base: Any, delay_seconds: float = 1.0) -> None:
        self.base, self.delay_seconds = base, delay_seconds

    def _before(self, X: Any) -> None:
        time.sleep(self.delay_seconds)


def _rows(X: Any) -> list[bytes]:
    """Each row's values as bytes that do not depend on how they came (DataFrame or array, int or float)."""
    values = X.to_numpy() if hasattr(X, "to_numpy") else np.asarray(X)
    try:
        numeric = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):  # string columns
        return [repr(tuple(row)).encode() for row in values.tolist()]
    return [row.tobytes() for row in np.ascontiguousarray(numeric.reshape(len(numeric), -1))]


def make_faulty(base: Any, kind: str, **params: Any) -> _Wrapper:
    if kind == "flaky":
        return FlakyModel(base, **params)
    if kind == "slow":
        return SlowModel(base, **params)
    raise ValueError(f"unknown fault {kind!r}: flaky or slow")


def write_faulty(src: str, dst: str, kind: str, **params: Any) -> dict[str, Any]:
    """Read a joblib artifact (path or s3:// URI), wrap it, write the wrapper the way the trainer writes models."""
    import joblib  # type: ignore[import-untyped]

    from slipway_predictor import artifact

    with tempfile.TemporaryDirectory(prefix="slipway-faults-") as tmp:
        local = artifact.download(src, Path(tmp) / "in", "sklearn") if src.startswith("s3://") else Path(src)
        if local.suffix in (".pt", ".pth"):
            raise ValueError(f"{src} is TorchScript; only scikit-learn (joblib) artifacts can be wrapped")
        out = Path(tmp) / "model.joblib" if dst.startswith("s3://") else Path(dst)
        joblib.dump(make_faulty(joblib.load(local), kind, **params), out, compress=COMPRESS, protocol=PICKLE_PROTOCOL)
        sha256, size = artifact.sha256_of(out), out.stat().st_size
        if dst.startswith("s3://"):
            bucket, key = artifact.split_s3_uri(dst)
            artifact.make_client().upload_file(str(out), bucket, key)
    return {"uri": dst, "sha256": sha256, "sizeBytes": size, "format": "joblib"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m slipway_predictor.faults", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    flaky = sub.add_parser("flaky", help="fail on a fraction of the input rows")
    flaky.add_argument("--fail-fraction", type=float, required=True)
    flaky.add_argument("--seed", type=int, default=0)
    slow = sub.add_parser("slow", help="answer after a delay")
    slow.add_argument("--delay-seconds", type=float, required=True)
    for p in (flaky, slow):
        p.add_argument("src", help="the model.joblib to wrap: a path or s3://bucket/key")
        p.add_argument("dst", help="where to write the faulty variant: a path or s3://bucket/key")
    args = parser.parse_args(argv)
    params = (
        {"fail_fraction": args.fail_fraction, "seed": args.seed}
        if args.kind == "flaky"
        else {"delay_seconds": args.delay_seconds}
    )
    print(json.dumps(write_faulty(args.src, args.dst, args.kind, **params)))
    return 0


if __name__ == "__main__":
    # Run as `python -m slipway_predictor.faults`, this file is `__main__`, and pickle would record its classes
    # as __main__.FlakyModel, which no predictor can import: use the module under its real name.
    from slipway_predictor.faults import main as _main

    sys.exit(_main())
