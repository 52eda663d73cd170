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


def test_asyncio_run_closes_the_pools_it_opened(tmp_path):
    # aiosqlite runs each connection in a thread of its own, which holds the loop (its last
    # future) until the connection is closed: a script that awaited plans under asyncio.run()
    # without closing the pools never exited. The pools now close when the loop ends.
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = f"""
import asyncio, sys, threading
sys.path[:0] = [{root!r}, {os.path.join(root, "tests")!r}]
import qplan
from testmodels import Author
qplan.configure(databases={{"default": {{"ENGINE": "sqlite", "NAME": {str(tmp_path / "a.db")!r}}}}})
qplan.create_tables([Author])
Author.objects.create(name="a")
async def main():
    counts = await asyncio.gather(*(Author.objects.acount() for _ in range(5)))
    async with qplan.aatomic():
        await Author.objects.acreate(name="b")
    return counts
for _ in range(3):
    assert asyncio.run(main())[0] >= 1
workers = [t for t in threading.enumerate() if t.name.endswith("(_connection_worker_thread)")]
for t in workers:  # told to stop (close() awaited): each ends just after answering that
    t.join(5)
print(sum(t.is_alive() for t in workers))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"  # no driver thread left: the process exits
    assert "Exception ignored" not in done.stderr and "Warning" not in done.stderr
