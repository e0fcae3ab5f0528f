"""A stand-in predictor: the predictor runtime's HTTP surface with no model behind it.

For the gateway's tests and for trying the gateway before runtimes/predictor exists. Takes
the runtime's command line (`--model_name N --http_port P [--storage_uri U]`; others are
ignored) and serves, for model N only:

- `POST /v1/models/N:predict` -> `{"predictions": [<row sum>...], "model_version": V}`
- `POST /v2/models/N/infer` -> an Open Inference Protocol answer with `model_version: V`
- `GET /v1/models/N`, `/v2/models/N`, `/v2/models/N/ready`, `/v2/health/live|ready`
- `GET /metrics`: `slipway_predictor_requests_total{model,version,outcome}`

V is $SLIPWAY_MODEL_VERSION. $STANDIN_STARTUP_SECONDS delays listening (a model loading),
$STANDIN_FAIL makes it exit 1 at start with that message in the termination log.

    python hack/localkserve/standin.py --model_name m --http_port 8080
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COUNTS: dict[str, int] = {"ok": 0, "client_error": 0, "server_error": 0}
LOCK = threading.Lock()


def predictions(payload: Any) -> list[float]:
    rows = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(rows, list):
        raise ValueError("instances must be a list")
    return [float(sum(r)) if isinstance(r, list) else float(r) for r in rows]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40ms delayed-ACK wait
    model = ""
    version = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _count(self, code: int) -> None:
        outcome = "ok" if code < 400 else "client_error" if code < 500 else "server_error"
        with LOCK:
            COUNTS[outcome] += 1

    def do_GET(self) -> None:
        m = self.model
        if self.path == "/metrics":
            self._send(200, metrics(m, self.version), "text/plain; version=0.0.4")
        elif self.path in ("/v2/health/live", "/v2/health/ready", f"/v2/models/{m}/ready"):
            self._send(200, {"live": True, "ready": True})
        elif self.path in (f"/v1/models/{m}", f"/v2/models/{m}"):
            self._send(200, {"name": m, "ready": True, "versions": [self.version]})
        else:
            self._send(404, {"error": f"model {self.path} not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code, answer = self._predict(body)
        self._count(code)
        self._send(code, answer)

    def _predict(self, body: bytes) -> tuple[int, Any]:
        m = self.model
        try:
            payload = json.loads(body or b"{}")
            if self.path == f"/v1/models/{m}:predict":
                return 200, {"predictions": predictions(payload), "model_version": self.version}
            if self.path == f"/v2/models/{m}/infer":
                rows = [i.get("data") for i in payload.get("inputs") or []]
                out = predictions({"instances": rows})
                tensor = {"name": "output-0", "shape": [len(out)], "datatype": "FP64", "data": out}
                return 200, {"model_name": m, "model_version": self.version, "outputs": [tensor]}
        except (ValueError, TypeError, AttributeError) as err:
            return 400, {"error": str(err)}
        return 404, {"error": f"model {self.path} not found"}


def metrics(model: str, version: str) -> str:
    lines = ["# TYPE slipway_predictor_requests_total counter"]
    with LOCK:
        for outcome, n in COUNTS.items():
            labels = f'model="{model}",version="{version}",outcome="{outcome}"'
            lines.append(f"slipway_predictor_requests_total{{{labels}}} {n}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="standin")
    p.add_argument("--model_name", required=True)
    p.add_argument("--http_port", type=int, default=8080)
    p.add_argument("--storage_uri", default="")
    # All addresses, as a model server listens: in its pod that is the pod IP and 127.0.0.1.
    p.add_argument("--http_host", default="0.0.0.0")
    args, _ = p.parse_known_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.model_name):
        print(f"bad model name {args.model_name!r}", file=sys.stderr)
        return 2
    failure = os.environ.get("STANDIN_FAIL")
    if failure:
        with open(os.environ.get("SLIPWAY_TERMINATION_LOG", os.devnull), "w") as f:
            f.write(failure)
        print(failure, file=sys.stderr)
        return 1
    time.sleep(float(os.environ.get("STANDIN_STARTUP_SECONDS") or 0))
    Handler.model, Handler.version = args.model_name, os.environ.get("SLIPWAY_MODEL_VERSION", "")
    server = ThreadingHTTPServer((args.http_host, args.http_port), Handler)
    server.daemon_threads = True
    print(f"stand-in predictor {args.model_name} ({Handler.version}) on port {args.http_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
