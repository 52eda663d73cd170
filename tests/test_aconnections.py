"""qplan.aconnections: per-loop pools that go away with their loop."""

import asyncio
import gc
import weakref

from conftest import run_async
from testmodels import Author


def test_a_finished_event_loop_and_its_pool_are_freed(databases):
    # Connects queued behind each other (a burst on an empty pool) once tied the pool to
    # its loop through an asyncio.Lock, and the pools are kept per loop in a dictionary
    # keyed weakly by the loop: every asyncio.run() that bursted stayed in memory for good.
    databases(default="sqlite")
    Author.objects.create(name="a")
    loops = []

    async def burst() -> list[int]:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        return await asyncio.gather(*(Author.objects.acount() for _ in range(30)))

    for _ in range(3):
        assert run_async(burst()) == [1] * 30
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
