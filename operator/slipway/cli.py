"""`python -m slipway` / `slipway`: run the operator against the current kubeconfig or in-cluster config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

import kopf

from slipway import __version__, heap
from slipway.config import Settings
from slipway.handlers import Runtime, register
from slipway.kube import Kube
from slipway.observability import UP, serve
from slipway.storage import S3

log = logging.getLogger("slipway")


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf builds every event's "essence" (a deep copy of the body) and diffs it with the last handled one, for
    change handlers (on.create, on.update). slipway has none (handlers.py: level-triggered event handlers), so
    nothing is kept or compared: a tenth of the operator's CPU at start-up with 10,000 objects."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: Settings, kopf_settings: kopf.OperatorSettings) -> None:
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.persistence.diffbase_storage = NoDiffBase()
    kopf_settings.watching.server_timeout = 300
    kopf_settings.peering.name = settings.peering_name or "slipway"
    kopf_settings.peering.standalone = not settings.peering
    kopf_settings.peering.mandatory = False
    kopf_settings.peering.clusterwide = not settings.namespaces
    kopf_settings.peering.priority = settings.priority
    kopf_settings.peering.lifetime = settings.peering_lifetime


async def ensure_peering(kube: Kube, settings: Settings) -> bool:
    """Create the peering object HA needs; without it (no CRD, no RBAC) run standalone rather than not at all."""
    try:
        if await kube.ensure_peering(settings.peering_name, settings.namespaces):
            return True
        log.warning("Kopf's peering CRDs are not installed: running standalone (no HA)")
    except Exception as e:  # noqa: BLE001 - any API failure here only costs HA, never the operator
        log.warning("cannot set up peering %r (%s): running standalone (no HA)", settings.peering_name, e)
    return False


async def run(settings: Settings, stop: asyncio.Event) -> None:
    registry = kopf.OperatorRegistry()
    kube = await Kube.connect()
    runtime = Runtime(kube, settings, S3())
    register(registry, runtime)

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # Kopf's own client, separate from ours: in-cluster ServiceAccount first, then kubeconfig.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(runtime.settings, settings)
        if runtime.settings.peering and not await ensure_peering(kube, runtime.settings):
            settings.peering.standalone = runtime.leadership.standalone = True

    ready, kopf_ready = asyncio.Event(), asyncio.Event()
    http = await serve(settings.http_host, settings.http_port, ready) if settings.http_port else None

    async def mark_ready() -> None:
        await kopf_ready.wait()
        ready.set()
        UP.set(1)

    marker = asyncio.create_task(mark_ready())
    poller = asyncio.create_task(runtime.watch_outside())
    heap.time_collections()
    freezer = asyncio.create_task(heap.freeze_after_startup(runtime.settled))
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not settings.namespaces,
            namespaces=list(settings.namespaces),
            ready_flag=kopf_ready,
            stop_flag=stop,
        )
    finally:
        marker.cancel()
        freezer.cancel()
        poller.cancel()
        UP.set(0)
        await runtime.requeue.close()
        if runtime.drift is not None:
            await runtime.drift.close()
        await runtime.prometheus.close()
        await kube.close()
        if http is not None:
            await http.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slipway", description=__doc__)
    parser.add_argument("--version", action="version", version=f"slipway {__version__}")
    parser.parse_args(argv)
    settings = Settings.from_env()
    try:
        settings.validate()
    except ValueError as e:
        print(f"slipway: {e}", file=sys.stderr)
        return 2
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(settings.log_level)
    # Kopf logs "Handler ... succeeded." for every watch event at INFO: at idle with thousands of objects that is
    # all the log says. slipway logs what it decides itself; Kopf's per-object lines stay for DEBUG.
    if settings.log_level != "DEBUG":
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    log.info(
        "slipway %s starting (namespaces: %s; shard: %s; peering: %s)",
        __version__,
        ", ".join(settings.namespaces) or "all",
        settings.shard or "default",
        settings.peering_name or "none, standalone",
    )

    async def main_async() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop)

    asyncio.run(main_async())
    return 0
