"""The predictor's Prometheus metrics, and the HTTP hooks that keep them and turn bad requests into 400s.

kserve 0.18's REST server answers `GET /metrics` with prometheus_client's default REGISTRY (next to its own
request_*_seconds histograms), so the metrics are registered there and show up on the same port as the
inference endpoints: the one the ServingRuntime's prometheus.kserve.io/port annotation names.

Requests are counted by an ASGI middleware on the predict/infer routes rather than inside the model: a body
that is not JSON, or a v2 body that fails kserve's own schema, is refused before the model is called, and is
still a client error to count. The outcome follows the status code: 2xx ok, 4xx client_error, 5xx (or an
exception that becomes one) server_error.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

OUTCOMES = ("ok", "client_error", "server_error")
# Tabular models answer in about a millisecond; a slow model or an overloaded pod in seconds. The canary's
# latency test (slipway.stats.latency_test) resolves a quantile to its buckets, never finer: the E24 series
# (about 10 % apart, 24 a decade, 1 ms to 10 s) lets it prove a canary within 1.5x of stable (adjacent bounds
# at most 1.16x apart) where 1-2.5-5 steps could not.
E24 = (1.0, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4, 2.7, 3.0, 3.3, 3.6, 3.9, 4.3, 4.7, 5.1, 5.6, 6.2, 6.8, 7.5,
       8.2, 9.1)  # fmt: skip
DURATION_BUCKETS = (*(round(m * 10.0**e, 6) for e in range(-3, 1) for m in E24), 10.0)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05, 0.10, ..., 1.0
# Regression outputs have no natural scale: 1-5 steps from 0.1 to 1e5 (SLIPWAY_SCORE_BUCKETS sets others). No
# negative bounds: prometheus_client leaves out a histogram's _sum when it has any, and the mean prediction
# (_sum / _count) matters more than where negative values fall (they count in the le="0.0" bucket).
VALUE_BUCKETS = (0.0, *(m * 10.0**e for e in range(-1, 5) for m in (1, 5)), 1e5)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def outcome_of(status: int) -> str:
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


class PredictorMetrics:
    def __init__(
        self,
        model: str,
        version: str,
        score_buckets: tuple[float, ...],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.model, self.version = model, version
        labels = ("model", "version")
        self.requests = Counter(
            "slipway_predictor_requests",
            "Inference requests by outcome: ok, client_error (4xx: the request was refused), server_error (5xx)",
            (*labels, "outcome"),
            registry=registry,
        )
        self.duration = Histogram(
            "slipway_predictor_request_duration_seconds",
            "Time to answer an inference request, from its first byte to the response",
            labels,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.score = Histogram(
            "slipway_predictor_prediction_score",
            "Per row: the positive-class probability (binary), the predicted class's probability (multiclass) "
            "or the predicted value (regression)",
            labels,
            buckets=score_buckets,
            registry=registry,
        )
        # Every series exists from the start, at zero: a rate() over a series that appears only with its first
        # error misses that error.
        for outcome in OUTCOMES:
            self.requests.labels(model, version, outcome)
        self._duration = self.duration.labels(model, version)
        self._score = self.score.labels(model, version)
        name = re.escape(model)
        self._routes = re.compile(rf"^/v1/models/{name}:predict$|^/v2/models/{name}/infer$")

    def is_inference(self, path: str) -> bool:
        return self._routes.match(path) is not None

    def observe_request(self, status: int, seconds: float) -> None:
        self.requests.labels(self.model, self.version, outcome_of(status)).inc()
        self._duration.observe(seconds)

    def observe_scores(self, scores: Any) -> None:
        for s in scores:
            # A NaN (a model gone wrong) would make the histogram's _sum NaN for the life of the process.
            if math.isfinite(s):
                self._score.observe(float(s))


class RequestMetricsMiddleware:
    """Times and counts every request to this model's predict/infer routes by the status it is answered with."""

    def __init__(self, app: ASGIApp, metrics: PredictorMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.metrics.is_inference(scope["path"]):
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            # Unhandled here means Starlette's outermost handler turns it into a 500 after this middleware.
            status = status or HTTPStatus.INTERNAL_SERVER_ERROR
            raise
        finally:
            # No status at all: the client went away (cancellation) before an answer; that is nobody's error.
            if status is not None:
                self.metrics.observe_request(status, time.perf_counter() - start)


async def request_validation_handler(_: Any, exc: Any) -> Any:
    """FastAPI answers a v2 body that fails kserve's InferenceRequest schema with 422; the contract (and
    kserve's own InvalidInput) says 400, with the fields at fault named."""
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=HTTPStatus.BAD_REQUEST, content={"error": describe_validation_errors(exc.errors())})


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """`inputs[0].shape: Field required` rather than pydantic's `('body', 'InferenceRequest', 'inputs', 0, ...)`.
    The body is typed InferenceRequest | bytes; the bytes alternative's complaint only adds noise."""
    problems = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "InferenceRequest")]
        if loc[:1] == ["bytes"]:
            continue
        if err.get("type") == "json_invalid":
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
            continue
        if not loc:  # the body itself: empty, or JSON but not an object
            empty = err.get("type") == "missing"
            problems.append(
                'the body is empty: expected a JSON object with "inputs"'
                if empty
                else 'the body must be a JSON object with "inputs" (a v2 inference request)'
            )
            continue
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        problems.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(dict.fromkeys(problems)) or "the body is not a v2 inference request"


def install(app: Any, metrics: PredictorMetrics) -> None:
    """Hook the metrics and the 400 handler into kserve's FastAPI app; before the server starts (Starlette
    refuses new middleware once it has)."""
    from fastapi.exceptions import RequestValidationError

    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
