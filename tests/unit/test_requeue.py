"""Requeuer: one timer per object, the earliest wins, so a wake is never pushed back by a later resync."""

from __future__ import annotations

import asyncio

from slipway.requeue import Requeuer


def test_a_later_schedule_does_not_push_back_an_earlier_wake() -> None:
    async def scenario() -> list[str]:
        requeue, ran = Requeuer(), []

        async def note(what: str) -> None:
            ran.append(what)

        requeue.schedule("k", 0.05, lambda: note("wake"))  # something the object waits for changed
        requeue.schedule("k", 3600, lambda: note("resync"))  # the pass that was running ends: resync in an hour
        await asyncio.sleep(0.2)
        await requeue.close()
        return ran

    assert asyncio.run(scenario()) == ["wake"]


def test_an_earlier_schedule_replaces_a_later_one_and_a_burst_runs_once() -> None:
    async def scenario() -> list[str]:
        requeue, ran = Requeuer(), []

        async def note(what: str) -> None:
            ran.append(what)

        requeue.schedule("k", 3600, lambda: note("resync"))
        for i in range(5):
            requeue.schedule("k", 0.05 + i * 0.001, lambda i=i: note(f"wake{i}"))
        await asyncio.sleep(0.2)
        await requeue.close()
        return ran

    assert asyncio.run(scenario()) == ["wake0"]


def test_cancel_spends_the_pending_timer() -> None:
    async def scenario() -> list[str]:
        requeue, ran = Requeuer(), []

        async def note(what: str) -> None:
            ran.append(what)

        requeue.schedule("k", 0.05, lambda: note("wake"))
        requeue.cancel("k")  # a pass started: it reads everything afresh
        requeue.schedule("k", 0.1, lambda: note("after"))
        await asyncio.sleep(0.25)
        await requeue.close()
        return ran

    assert asyncio.run(scenario()) == ["after"]


async def test_a_timer_does_not_keep_the_context_it_was_set_in() -> None:
    """A Kopf handler's context holds its cause (the raw body and more); a resync timer set there kept it alive
    for an hour, for every object."""
    import contextvars
    import gc
    import weakref

    held: contextvars.ContextVar[object] = contextvars.ContextVar("held")

    class Cause:
        pass

    requeue, seen = Requeuer(), []

    async def action() -> None:
        seen.append(held.get(None))

    def in_handler() -> weakref.ref[Cause]:
        cause = Cause()
        held.set(cause)
        requeue.schedule("k", 0.01, action)
        return weakref.ref(cause)

    ref = contextvars.copy_context().run(in_handler)
    gc.collect()
    assert ref() is None  # not kept by the pending timer
    await asyncio.sleep(0.05)
    assert seen == [None]
    await requeue.close()
