"""The operator's heap with thousands of objects: Python's cyclic collector timed, and the bodies that start-up
leaves behind kept out of its full collections.

A full collection walks every container object the process holds: with 10,000 objects in the watch cache that is
hundreds of thousands of dicts and lists, and every reconcile in flight waits while it runs. What start-up leaves
alive (the cache, Kopf's per-object memories, imported modules) lives as long as the objects do and is freed by
reference counting when they change or go; nothing in it is a cycle waiting to be collected. So `gc.freeze()` moves
it to the permanent generation, which collections skip (the CPython documentation's advice for long-lived heaps,
as Instagram's servers do): during start-up right after each full collection, when what is tracked is what is
alive (with 10,000 objects there are some thirty of them, each walking the whole heap again: 14 s of 104 s of CPU
before this), and once more when every object has had its first pass. A body replaced later is still freed by its
reference count; only a cycle alive at a freeze and dropped after it would stay, which is the bounded price: start-up
freezes a few dozen times, then never again.
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
FREEZE_TICK_SECONDS = 1.0
_started: list[float] = []
# Set by a full collection during start-up: the next tick of freeze_after_startup freezes (a collector callback
# may run in any thread, and mid-collection; the freeze waits for the event loop).
_full_collection_done: list[bool] = [False]


def _timed(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[:] = [time.perf_counter()]
    elif _started:
        generation = info.get("generation")
        GC_PAUSES.labels(str(generation)).observe(time.perf_counter() - _started.pop())
        if generation == 2:
            _full_collection_done[0] = True


def time_collections() -> None:
    """slipway_gc_pause_seconds{generation}, from gc.callbacks (once per process)."""
    if _timed not in gc.callbacks:
        gc.callbacks.append(_timed)


async def freeze_after_startup(
    settled: Callable[[], bool], check_seconds: float = SETTLE_CHECK_SECONDS, tick: float = FREEZE_TICK_SECONDS
) -> None:
    """Until `settled()` (every object passed over once, none waiting for a slot) holds at two checks in a row:
    freeze after each full collection. Then collect and freeze once more, and stop. Once per process."""
    loop = asyncio.get_running_loop()
    streak, due, freezes = 0, loop.time() + check_seconds, 0
    _full_collection_done[0] = False
    while streak < 2:
        await asyncio.sleep(tick)
        if _full_collection_done[0]:
            _full_collection_done[0] = False
            gc.freeze()
            freezes += 1
        if loop.time() >= due:
            due += check_seconds
            streak = streak + 1 if settled() else 0
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.info("start-up done: %d objects moved out of the collector's reach (%d freezes after full collections "
             "before) in %.2fs", gc.get_freeze_count(), freezes, time.perf_counter() - started)  # fmt: skip
