"""qplan.admission: a burst of awaited evaluations starts a few per loop turn, at most
MAX_IN_FLIGHT at once, in arrival order, and no cancelled task keeps or loses a place."""

import asyncio

import pytest

from qplan import admission
from qplan.admission import MAX_IN_FLIGHT, PER_TURN, Gate

from conftest import run_async
from testmodels import Author


class Turns:
    """Counts loop iterations: a callback that puts itself back once per turn."""

    def __init__(self) -> None:
        self.n, self.on = 0, True
        asyncio.get_running_loop().call_soon(self.tick)

    def tick(self) -> None:
        self.n += 1
        if self.on:
            asyncio.get_running_loop().call_soon(self.tick)


def test_a_burst_starts_a_few_per_turn_and_never_more_than_max_in_flight():
    async def main():
        gate, turns = Gate(MAX_IN_FLIGHT, PER_TURN), Turns()
        started: dict[int, int] = {}
        order, running, most = [], [0], [0]

        async def one(i: int) -> None:
            await gate.__aenter__()
            try:
                started[turns.n] = started.get(turns.n, 0) + 1
                order.append(i)
                running[0] += 1
                most[0] = max(most[0], running[0])
                for _ in range(10):  # work spanning more turns than a burst takes to fill up
                    await asyncio.sleep(0)
            finally:
                running[0] -= 1
                gate.leave()

        await asyncio.gather(*(one(i) for i in range(500)))
        turns.on = False
        return gate, started, order, most[0]

    gate, started, order, most = run_async(main())
    assert max(started.values()) <= 2 * PER_TURN  # granted in one turn + entered fresh in it
    assert most == MAX_IN_FLIGHT
    assert order == sorted(order)  # arrival order
    assert gate.free == MAX_IN_FLIGHT and not gate.waiters


@pytest.mark.parametrize("when", ["waiting", "granted"])
def test_a_cancelled_task_gives_its_place_on(when):
    async def main():
        gate = Gate(MAX_IN_FLIGHT, PER_TURN)
        holders = [gate.enter() for _ in range(MAX_IN_FLIGHT)]  # every place taken
        assert holders.count(None) == PER_TURN  # the rest wait for the next turns
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        while gate.waiters:
            await asyncio.sleep(0)
        victim = asyncio.ensure_future(gate.__aenter__())
        after = asyncio.ensure_future(gate.__aenter__())
        await asyncio.sleep(0)
        assert not victim.done() and len(gate.waiters) == 2
        if when == "waiting":
            victim.cancel()
            await asyncio.sleep(0)
            gate.leave()  # one place frees: it goes to the task behind the cancelled one
        else:
            granted = gate.waiters[0]
            gate.leave()  # the place goes to the victim, cancelled before it runs
            while not granted.done():
                await asyncio.sleep(0)
            assert not victim.done() and len(gate.waiters) == 1
            victim.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        assert victim.cancelled()
        assert after.done() and after.exception() is None  # it got in all the same
        for _ in range(MAX_IN_FLIGHT):  # everyone else leaves
            gate.leave()
        return gate

    gate = run_async(main())
    assert gate.free == MAX_IN_FLIGHT and not gate.waiters


def test_plans_awaited_in_a_burst_all_run_and_the_gate_ends_empty(databases):
    databases(default="sqlite")
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(10)])

    async def main():
        counts = await asyncio.gather(*(Author.objects.filter(name__gte=f"a{i % 10}").acount()
                                        for i in range(300)))
        return counts, admission.gate()

    counts, gate = run_async(main())
    assert counts == [10 - i % 10 for i in range(300)]
    assert gate.free == MAX_IN_FLIGHT and not gate.waiters
