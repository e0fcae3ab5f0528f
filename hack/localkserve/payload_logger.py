"""KServe's payload logger, as the agent sidecar of a predictor pod runs it (Serverless mode:
in Standard mode KServe's controller injects the real agent).

When a predictor spec has `logger: {url, mode}`, every request served by its revision is sent on as a
CloudEvent in binary mode (ce-* headers, the inference body as the event's data) to `url`: the request
for mode `all` and `request`, the response for `all` and `response`, both with the same ce-id. Sending
is asynchronous and never slows or fails the inference call: a bounded queue drained by a few worker
threads; when the sink is slow and the queue is full, events are dropped and counted, as the agent's
worker pool drops them.
"""

from __future__ import annotations

import http.client
import logging
import queue
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger("localkserve.logger")

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
MODES = ("all", "request", "response")


@dataclass(frozen=True)
class Sink:
    url: str
    mode: str = "all"

    def wants(self, kind: str) -> bool:
        return self.mode == "all" or self.mode == kind


@dataclass(frozen=True)
class Origin:
    """Where an event comes from: the extensions KServe's agent sets."""

    namespace: str
    isvc: str
    endpoint: str  # the predictor's name
    source: str  # the pod's address, as a URI


@dataclass(frozen=True)
class Event:
    sink: Sink
    id: str
    type: str
    origin: Origin
    body: bytes
    content_type: str

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": self.content_type or "application/json",
            "ce-specversion": "1.0",
            "ce-id": self.id,
            "ce-type": self.type,
            "ce-source": self.origin.source,
            "ce-inferenceservicename": self.origin.isvc,
            "ce-namespace": self.origin.namespace,
            "ce-component": "predictor",
            "ce-endpoint": self.origin.endpoint,
        }


class PayloadLogger:
    def __init__(self, workers: int = 4, capacity: int = 10000, timeout: float = 5.0) -> None:
        self.queue: queue.Queue[Event | None] = queue.Queue(capacity)
        self.timeout, self.dropped, self.failed, self.sent = timeout, 0, 0, 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True, name=f"logger-{i}") for i in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, sink: Sink, kind: str, event_id: str, origin: Origin, body: bytes, content_type: str) -> None:
        """Queue one event of `kind` (request|response); a request and its response share `event_id`."""
        if not sink.wants(kind):
            return
        event = Event(sink, event_id, REQUEST_TYPE if kind == "request" else RESPONSE_TYPE, origin, body, content_type)
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _run(self) -> None:
        while (event := self.queue.get()) is not None:
            try:
                status = self._send(event)
            except (OSError, http.client.HTTPException) as err:
                status, why = 0, str(err)
            else:
                why = f"HTTP {status}"
            with self._lock:
                if 200 <= status < 300:
                    self.sent += 1
                else:
                    self.failed += 1
            if not 200 <= status < 300:
                log.debug("payload logger: %s to %s: %s", event.type, event.sink.url, why)

    def _send(self, event: Event) -> int:
        url = urlsplit(event.sink.url)
        conn_type = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = conn_type(url.hostname or "localhost", url.port, timeout=self.timeout)
        try:
            conn.request("POST", url.path or "/", body=event.body, headers=event.headers())
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()

    def stop(self) -> None:
        for _ in self._threads:
            self.queue.put(None)
