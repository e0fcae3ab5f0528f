"""Prometheus metrics and the /healthz, /readyz, /metrics endpoint."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

RECONCILES = Counter("slipway_reconcile_total", "Reconcile passes by kind and outcome.", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram(
    "slipway_reconcile_duration_seconds",
    "Time of one reconcile pass (observe, decide, write).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_PATCHES = Counter("slipway_status_patches_total", "Status patches sent, by kind.", ["kind"])
SHARD = Gauge("slipway_shard_info", "1, labelled with the shard this operator is (its SLIPWAY_SHARD).", ["shard"])
OBJECTS = Gauge(
    "slipway_objects",
    "Objects the watch delivered, by kind: this shard's (owned=true, reconciled here) or other shards' (skipped).",
    ["kind", "owned"],
)
UNRECONCILED = Gauge(
    "slipway_objects_unreconciled",
    "This shard's objects the watch delivered that have had no reconcile pass since the operator started, by "
    "kind: start-up progress, 0 once every object was looked at.",
    ["kind"],
)
WAITING = Gauge(
    "slipway_objects_waiting",
    "Objects whose pass waits for a free slot (SLIPWAY_MAX_CONCURRENT_RECONCILES), each counted once: the backlog.",
)
GC_PAUSES = Histogram(
    "slipway_gc_pause_seconds",
    "Collections of Python's cyclic garbage collector, by generation: each one stops every reconcile in flight.",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
UP = Gauge("slipway_operator_ready", "1 once the operator watches its resources.")
CANARY_WEIGHT = Gauge("slipway_rollout_canary_weight", "Percent of traffic on the canary.", ["namespace", "rollout"])
VERDICTS = Counter("slipway_rollout_verdicts_total", "Canary analysis verdicts.", ["namespace", "rollout", "verdict"])
ROLLBACKS = Counter("slipway_rollout_rollbacks_total", "Canaries rolled back or aborted.", ["namespace", "rollout"])


def app(ready: asyncio.Event) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready.is_set() else web.Response(status=503, text="starting")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    application = web.Application()
    application.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics)])
    return application


async def serve(host: str, port: int, ready: asyncio.Event) -> web.AppRunner:
    runner = web.AppRunner(app(ready), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("serving /healthz, /readyz and /metrics on %s:%d", host, port)
    return runner
