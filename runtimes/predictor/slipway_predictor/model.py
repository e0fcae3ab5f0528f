"""The kserve Model: validate the request, run the backend off the event loop, shape the response.

Responses (the classification fields only for classifiers; `probabilities`/`scores` only when the model gives
probabilities, `scores` only for binary classifiers):

v1  {"predictions": [<class or value>, ...], "classes": [<label>, ...], "probabilities": [[p, ...], ...],
     "scores": [<probability of classes[1]>, ...], "model_name": "...", "model_version": "<ModelVersion>"}
v2  outputs `predictions` [N] (the class, INT64/FP64/BOOL/BYTES like the labels; FP64 values for regression),
    `probabilities` [N, C] FP64 (columns in class order; parameters.classes holds the labels as JSON) and
    `scores` [N] FP64; `model_version` is the ModelVersion.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import numpy as np
import orjson
from kserve import Model  # type: ignore[import-untyped]
from kserve.errors import InferenceError, InvalidInput  # type: ignore[import-untyped]
from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferRequest  # type: ignore[import-untyped]
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # type: ignore[import-untyped]

from slipway_predictor.backends import CLASSIFICATION, Backend, Prediction
from slipway_predictor.metrics import PredictorMetrics
from slipway_predictor.schema import V2_OF_DTYPE, Schema


class SlipwayModel(Model):  # type: ignore[misc]
    def __init__(self, name: str, version: str, backend: Backend, schema: Schema, metrics: PredictorMetrics) -> None:
        super().__init__(name)
        self.version, self.backend, self.schema, self.metrics = version, backend, schema, metrics

    def load(self) -> bool:
        # The artifact is loaded (and checked) before the server starts: a model that cannot load must keep
        # the pod from ever becoming ready, not report a failure per request.
        self.ready = True
        return True

    async def predict(
        self, payload: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        if isinstance(payload, ModelInferRequest):  # gRPC, off by default: the v2 checks and response
            payload = InferRequest.from_grpc(payload)
        if isinstance(payload, InferRequest):
            frame = self.schema.from_v2(payload.inputs)
        elif isinstance(payload, bytes):
            # kserve hands v1 bodies without a JSON content type over undecoded (curl -d sends form encoding);
            # a tabular model only ever takes JSON, so read them as JSON.
            frame = self.schema.from_v1(_json(payload))
        else:
            frame = self.schema.from_v1(payload)
        # A model's predict is CPU work (or, for SlowModel, a sleep): run it on the server's thread pool so
        # health checks, /metrics and other requests are still answered meanwhile.
        prediction = await asyncio.get_running_loop().run_in_executor(None, self._run, frame)
        scores = prediction.scores
        if scores is not None:
            self.metrics.observe_scores(scores)
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, prediction)
        return self._v1_response(prediction)

    def _run(self, frame: Any) -> Prediction:
        try:
            return self.backend.predict(frame)
        except InvalidInput:
            raise
        except Exception as e:
            # The request passed the signature check, so this is the model's fault: a 500 with a short reason
            # (kserve logs the traceback).
            raise InferenceError(f"the model failed: {type(e).__name__}: {e}") from e

    def _v1_response(self, p: Prediction) -> dict[str, Any]:
        body: dict[str, Any] = {"predictions": p.predictions}
        if p.task == CLASSIFICATION:
            body["classes"] = p.classes
            if p.probabilities is not None:
                body["probabilities"] = p.probabilities.tolist()
                if p.probabilities.shape[1] == 2 and p.scores is not None:
                    body["scores"] = p.scores.tolist()
        body["model_name"], body["model_version"] = self.name, self.version
        return body

    def _v2_response(self, request: InferRequest, p: Prediction) -> InferResponse:
        n = len(p.predictions)
        outputs = [InferOutput("predictions", [n], _v2_datatype(p.predictions), p.predictions)]
        if p.probabilities is not None:
            probs = p.probabilities
            params = {"classes": json.dumps(p.classes)}
            outputs.append(InferOutput("probabilities", list(probs.shape), "FP64", probs.ravel().tolist(), params))
            if probs.shape[1] == 2 and p.scores is not None:
                outputs.append(InferOutput("scores", [n], "FP64", p.scores.tolist()))
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            model_version=self.version,
            infer_outputs=outputs,
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": c.name, "datatype": V2_OF_DTYPE.get(c.dtype, "BYTES"), "shape": [-1]} for c in self.schema.columns
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self.backend.task != CLASSIFICATION:
            return [{"name": "predictions", "datatype": "FP64", "shape": [-1]}]
        classes = self.backend.classes or []
        return [
            {"name": "predictions", "datatype": _v2_datatype(classes), "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(classes)]},
            {"name": "scores", "datatype": "FP64", "shape": [-1]},
        ]


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInput(f"the body is not valid JSON: {e}") from None


def _v2_datatype(values: list[Any]) -> str:
    kind = np.asarray(values).dtype.kind
    return {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}.get(kind, "BYTES")
