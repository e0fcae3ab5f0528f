"""The HTTP service: monitors configured by the operator, CloudEvents from KServe, results and metrics out."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from slipway_drift import detect
from slipway_drift.config import ConfigError, check_name, parse_monitor
from slipway_drift.events import RESPONSE, EventError, extract_rows, loads, parse_cloudevent
from slipway_drift.metrics import Metrics
from slipway_drift.monitor import Monitor, Pools
from slipway_drift.store import MonitorStore

log = logging.getLogger("slipway_drift")
DEFAULT_MAX_BODY = 1 << 20
# A payload logger sends a body in one go; one that trickles it (or stops mid-body) must not hold a connection,
# and the memory of a part-read body, for ever.
DEFAULT_BODY_TIMEOUT = 30.0
STATUS = {
    "malformed": 400,
    "unsupported_type": 400,
    "unknown_monitor": 404,
    "unknown_version": 404,
    "too_slow": 408,
    "too_large": 413,
}


class Service:
    def __init__(
        self,
        state_dir: Path,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        retry_seconds: float = 30.0,
        warm_up: bool = True,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
    ) -> None:
        self.state_dir, self.max_body_bytes, self.retry_seconds = state_dir, max_body_bytes, retry_seconds
        self.body_timeout = body_timeout
        self.warm_up = warm_up
        self.metrics = Metrics()
        self.pools = Pools(ThreadPoolExecutor(4, "drift-io"), ThreadPoolExecutor(2, "drift-detect"))
        self.monitors: dict[tuple[str, str], Monitor] = {}
        self.ready = False

    def store(self, ns: str, name: str) -> MonitorStore:
        return MonitorStore(self.state_dir / "monitors" / ns / name)

    async def load(self) -> None:
        """Monitors from the state directory, as they were when the process stopped."""
        for ns, name, root in MonitorStore.monitors(self.state_dir):
            store = MonitorStore(root)
            try:
                config = parse_monitor(store.read_config())
            except (ConfigError, ValueError, OSError) as e:
                log.error("skipping stored monitor %s/%s: unreadable config: %s", ns, name, e)
                continue
            mon = Monitor(ns, name, config, store, self.metrics, self.pools)
            mon.load()
            mon.start()
            self.monitors[(ns, name)] = mon
        log.info("loaded %d monitor(s) from %s", len(self.monitors), self.state_dir)
        self.ready = True

    async def close(self) -> None:
        for mon in self.monitors.values():
            await mon.stop()
        self.pools.io.shutdown(wait=False, cancel_futures=True)
        self.pools.detect.shutdown(wait=False, cancel_futures=True)

    # monitors
    async def put_monitor(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        try:
            check_name(ns, "namespace")
            check_name(name, "name")
            config = parse_monitor(loads(await request.read()))
        except (ConfigError, EventError) as e:
            return _error(400, str(e))
        mon = self.monitors.get((ns, name))
        if mon is None:
            store = self.store(ns, name)
            store.create()
            store.write_config(config.document)
            mon = Monitor(ns, name, config, store, self.metrics, self.pools)
            mon.load()
            mon.start()
            self.monitors[(ns, name)] = mon
            log.info(
                "monitor %s/%s created (%s, %d version(s))", ns, name, config.detector.method, len(config.versions)
            )
        elif config.document != mon.config.document:
            mon.store.write_config(config.document)
            mon.apply(config)
            log.info("monitor %s/%s reconfigured", ns, name)
        else:
            mon.retry_references()
        return web.json_response(mon.document())

    async def get_monitor(self, request: web.Request) -> web.Response:
        mon = self.monitors.get((request.match_info["namespace"], request.match_info["name"]))
        return _error(404, "no such monitor") if mon is None else web.json_response(mon.document())

    async def delete_monitor(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        mon = self.monitors.pop(key, None)
        if mon is None:
            return _error(404, "no such monitor")
        await mon.stop()
        mon.store.destroy()
        self.metrics.forget(*key)
        log.info("monitor %s/%s deleted", *key)
        return web.Response(status=204)

    async def list_monitors(self, _: web.Request) -> web.Response:
        monitors = sorted(self.monitors.items())
        return web.json_response([{"namespace": ns, "name": name, "summary": mon.summary()}
                                  for (ns, name), mon in monitors])  # fmt: skip

    # events
    async def post_event(self, request: web.Request) -> web.Response:
        ns, name, version = (request.match_info[k] for k in ("namespace", "name", "version"))
        mon = self.monitors.get((ns, name))
        try:
            if mon is None:
                raise EventError("unknown_monitor", "no such monitor")
            vs = mon.versions.get(version)
            if vs is None:
                raise EventError("unknown_version", "version not configured in this monitor")
            body = await self._read_body(request)
            kind, data = parse_cloudevent(request.headers, request.content_type, body)
            if kind == RESPONSE:
                self.metrics.ignored.inc()
                return web.json_response({"accepted": 0, "ignored": True}, status=202)
            rows = extract_rows(data, vs.config.inputs, vs.columns)
        except EventError as e:
            self.metrics.rejected.labels(e.reason).inc()
            if mon is not None:
                mon.rejected[e.reason] += 1
            # One line, never the payload: the messages name places, not values.
            log.warning("event rejected: %s %s/%s/%s: %s", e.reason, ns, name, version, e)
            response = _error(STATUS[e.reason], str(e), reason=e.reason)
            if e.reason == "too_slow":
                response.force_close()  # the rest of that body is not worth waiting for on this connection
            return response
        mon.ingest(version, rows)
        return web.json_response({"accepted": len(rows)}, status=202)

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, at most `max_body_bytes` of it (a longer one is refused as soon as it is known to be), within
        `body_timeout` seconds: what is held for one request is bounded in size and in time."""
        limit = self.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise EventError("too_large", f"body: over {limit} bytes (--max-body-bytes)")
        buf = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.content.iter_chunked(1 << 16):
                    buf += chunk
                    if len(buf) > limit:
                        raise EventError("too_large", f"body: over {limit} bytes (--max-body-bytes)")
        except TimeoutError:
            raise EventError(
                "too_slow", f"body: not received within {self.body_timeout:g} s (--body-timeout-seconds)"
            ) from None
        return bytes(buf)

    # health
    async def healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok") if self.ready else web.Response(status=503, text="loading state")

    async def metrics_view(self, _: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            for mon in self.monitors.values():
                mon.retry_references()


def _error(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def make_app(service: Service) -> web.Application:
    app = web.Application(client_max_size=max(service.max_body_bytes, DEFAULT_MAX_BODY))
    base = "/v1/monitors/{namespace}/{name}"
    app.router.add_put(base, service.put_monitor)
    app.router.add_get(base, service.get_monitor)
    app.router.add_delete(base, service.delete_monitor)
    app.router.add_get("/v1/monitors", service.list_monitors)
    app.router.add_post("/v1/events/{namespace}/{name}/{version}", service.post_event)
    app.router.add_get("/healthz", service.healthz)
    app.router.add_get("/readyz", service.readyz)
    app.router.add_get("/metrics", service.metrics_view)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await service.load()
        loop = asyncio.get_running_loop()
        # alibi-detect takes seconds to import: do it now, off the loop, not when the first window fills.
        warm = loop.run_in_executor(service.pools.detect, detect.warm_up) if service.warm_up else None
        retry = loop.create_task(service._retry_loop())
        yield
        retry.cancel()
        if warm is not None:
            warm.cancel()
        await service.close()

    app.cleanup_ctx.append(lifecycle)
    return app


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slipway-drift", description=__doc__)
    p.add_argument("--port", type=int, default=int(os.environ.get("SLIPWAY_DRIFT_PORT", "8080")))
    p.add_argument("--host", default=os.environ.get("SLIPWAY_DRIFT_HOST", "0.0.0.0"))
    p.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("SLIPWAY_DRIFT_STATE_DIR", "/var/lib/slipway-drift"))
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=int(os.environ.get("SLIPWAY_DRIFT_MAX_BODY_BYTES", DEFAULT_MAX_BODY)),
        help="events with a larger body are refused (413) as soon as that is known, without reading the rest",
    )
    p.add_argument(
        "--body-timeout-seconds",
        type=float,
        default=float(os.environ.get("SLIPWAY_DRIFT_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT)),
        help="an event whose body has not all arrived this long after its headers is refused (408)",
    )
    p.add_argument(
        "--retry-seconds",
        type=float,
        default=float(os.environ.get("SLIPWAY_DRIFT_RETRY_SECONDS", "30")),
        help="how often references that failed to load are tried again",
    )
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="import alibi-detect when the first window fills, not at start (benchmarks of ingestion alone)",
    )
    p.add_argument("--log-level", default=os.environ.get("SLIPWAY_DRIFT_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    service = Service(args.state_dir, args.max_body_bytes, args.retry_seconds, args.warm_up, args.body_timeout_seconds)
    # No access log: at thousands of events per second it would drown everything else.
    web.run_app(make_app(service), host=args.host, port=args.port, access_log=None, print=None)
    return 0
