"""Per-object serialisation, delayed re-reconciles and the line of keys waiting for a slot, the way
controller-runtime requeues.

Only timing lives here, never state: after a restart the initial listing reconciles every object
again, and everything a decision needs is read back from the API.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Generic, TypeVar

KT = TypeVar("KT", bound=Hashable)
V = TypeVar("V")


class Requeuer:
    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def lock(self, key: Hashable) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def schedule(self, key: Hashable, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        """Run `action` after `delay` seconds, unless the key already has a timer that fires sooner: one timer per
        key, the earliest wins. A pass that ends asking for its resync in an hour must not push back a wake that
        came in while it ran (what it waits for changed after it read it); a burst of wakes runs once."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and timer.when() <= when:
            return
        self.cancel(key)
        # In an empty context: a timer captures the context it is set in, and one set in a Kopf handler holds
        # Kopf's whole cause (the raw body, its patch, loggers) until it fires; an object's resync timer is
        # always pending (N = 4,000: 60 MB of the operator's memory).
        self._timers[key] = loop.call_later(delay, self._start, key, action, context=contextvars.Context())

    def cancel(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def forget(self, key: Hashable) -> None:
        self.cancel(key)
        self._locks.pop(key, None)

    def _start(self, key: Hashable, action: Callable[[], Awaitable[None]]) -> None:
        self._timers.pop(key, None)
        task = asyncio.ensure_future(action())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for key in list(self._timers):
            self.cancel(key)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Line(Generic[KT, V]):
    """Keys waiting for a slot, each once (a workqueue's set of dirty keys): served by rank, lowest first, then in
    order of arrival. A key added again keeps its place and its first value."""

    def __init__(self) -> None:
        self._ranks: dict[int, dict[KT, V]] = {}
        self._rank_of: dict[KT, int] = {}

    def add(self, key: KT, rank: int, value: V) -> None:
        if key not in self._rank_of:
            self._rank_of[key] = rank
            self._ranks.setdefault(rank, {})[key] = value

    def discard(self, key: KT) -> None:
        rank = self._rank_of.pop(key, None)
        if rank is not None:
            del self._ranks[rank][key]

    def take(self) -> tuple[KT, V]:
        """The first key in line and its value, out of the line (IndexError when empty)."""
        for rank in sorted(self._ranks):
            if waiting := self._ranks[rank]:
                key = next(iter(waiting))
                del self._rank_of[key]
                return key, waiting.pop(key)
        raise IndexError("the line is empty")

    def __iter__(self) -> Iterator[KT]:
        return (key for rank in sorted(self._ranks) for key in self._ranks[rank])

    def __len__(self) -> int:
        return len(self._rank_of)
