"""The operator's heap with thousands of objects: Python's cyclic collector timed, and the bodies that start-up
leaves behind kept out of its full collections.

A full collection walks every container object the process holds: with 10,000 objects in the watch cache that is
hundreds of thousands of dicts and lists, and every reconcile in flight waits while it runs. What start-up leaves
alive (the cache, Kopf's per-object memories, imported modules) lives as long as the objects do and is freed by
reference counting when they change or go; nothing in it is a cycle waiting to be collected. So once every object
has had its first pass, a last full collection and `gc.freeze()` move it to the permanent generation, which
collections skip (the CPython documentation's advice for long-lived heaps, as Instagram's servers do). A body
replaced later is still freed by its reference count; only a cycle built before the freeze and dropped after it
would stay, which is the bounded price.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from slipway.observability import GC_PAUSES

log = logging.getLogger(__name__)

SETTLE_CHECK_SECONDS = 30.0
_started: list[float] = []


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started:
        GC_PAUSES.labels(str(info.get("generation", ""))).observe(time.perf_counter() - _started.pop())


def time_collections() -> None:
    """slipway_gc_pause_seconds{generation}, from gc.callbacks (once per process)."""
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)


async def freeze_after_startup(settled: Callable[[], bool], check_seconds: float = SETTLE_CHECK_SECONDS) -> None:
    """Once `settled()` (every object passed over once, none waiting for a slot) holds at two checks in a row:
    collect, then freeze what is left. Once per process."""
    streak = 0
    while streak < 2:
        await asyncio.sleep(check_seconds)
        streak = streak + 1 if settled() else 0
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("start-up done: %d objects moved out of the collector's reach in %.2fs", gc.get_freeze_count(),
             time.perf_counter() - started)  # fmt: skip
