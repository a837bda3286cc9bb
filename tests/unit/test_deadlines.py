"""environment/deadlines: many invocation deadlines on one loop timer."""

from __future__ import annotations

import asyncio

from lambdalet.environment import deadlines
from lambdalet.environment.deadlines import Deadlines


def test_deadlines_fire_in_order_once_and_cancelled_ones_never():
    async def scenario() -> list[str]:
        loop = asyncio.get_running_loop()
        d = Deadlines(loop)
        fired: list[str] = []
        now = loop.time()
        d.call_at(now + 0.03, lambda: fired.append("c"))
        d.call_at(now + 0.01, lambda: fired.append("a"))
        d.call_at(now + 0.02, lambda: fired.append("b")).cancel()
        d.call_at(now - 1, lambda: fired.append("past"))  # already due: fires on the next tick or so
        await asyncio.sleep(0.06)
        assert d.pending == 0 and d.cancelled == 0
        return fired

    assert asyncio.run(scenario()) == ["past", "a", "c"]


def test_a_deadline_armed_from_a_firing_one_is_kept():
    async def scenario() -> list[int]:
        loop = asyncio.get_running_loop()
        d = Deadlines(loop)
        fired: list[int] = []

        def again() -> None:
            fired.append(len(fired))
            if len(fired) < 3:
                d.call_at(loop.time() + 0.005, again)

        d.call_at(loop.time(), again)
        await asyncio.sleep(0.1)
        return fired

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_cancelled_deadlines_do_not_pile_up():
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        d = Deadlines(loop)
        for _ in range(20_000):  # 900 s timeouts, each cancelled at once (a warm invoke's)
            d.call_at(loop.time() + 900, lambda: None).cancel()
        assert d.pending <= 2 * 1024 + 2
        live = d.call_at(loop.time() + 0.01, lambda: fired.append(1))
        fired: list[int] = []
        await asyncio.sleep(0.05)
        assert fired == [1] and live.callback is None

    asyncio.run(scenario())


def test_each_loop_gets_its_own():
    async def get() -> Deadlines:
        return deadlines.for_loop(asyncio.get_running_loop())

    assert asyncio.run(get()) is not asyncio.run(get())
