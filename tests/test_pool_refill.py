"""POOL ``min_size``: a pool whose connections were lost is back at ``min_size`` after its
next use, the blocking pools and the async ones (qplan.pools, qplan.aconnections).

The server-side backends of the pool are killed (``pg_terminate_backend``) and counted in
``pg_stat_activity`` by the alias's ``application_name``. Waits are bounded polls.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

import qplan
from conftest import superuser_sql
from qplan import aconnections, pools
from servers import PostgresCluster
from test_pool_idle import await_for, clean, wait_for  # noqa: F401 - clean: autouse fixture

APP = "qplan_refill_test"
MIN_SIZE = 3


@pytest.fixture
def count(pg: PostgresCluster, postgresql_settings: dict[str, Any]) -> Callable[[], int]:
    """Configures ``default`` (POOL min_size MIN_SIZE, no trimming); counts its server
    connections."""
    qplan.configure(databases={"default": {
        **postgresql_settings, "OPTIONS": {"application_name": APP},
        "POOL": {"min_size": MIN_SIZE, "max_idle": None, "timeout": 10}}})
    return lambda: superuser_sql(
        pg, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'")[0][0]


def kill_all(pg: PostgresCluster) -> None:
    superuser_sql(pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      f"WHERE application_name = '{APP}'")


def backend_pid() -> int:
    return qplan.connections["default"].fetchall("SELECT pg_backend_pid()")[0][0]


def test_a_blocking_pool_that_lost_its_connections_refills_on_next_use(pg, count):
    backend_pid()
    assert wait_for(lambda: count() == MIN_SIZE, 5.0)  # filled from first use on
    kill_all(pg)
    assert wait_for(lambda: count() == 0, 5.0)
    backend_pid()  # meets a dead connection: it and the idle ones are closed, one reopened
    assert wait_for(lambda: count() == MIN_SIZE, 5.0)  # the rest in the background
    assert pools.stats("default") == {"in_use": 0, "open": MIN_SIZE, "max_size": 20}
    pids = {backend_pid() for _ in range(5)}  # the refilled ones serve; no more are opened
    assert count() == MIN_SIZE and len(pids) == 1


def test_an_async_pool_that_lost_its_connections_refills_on_next_use(pg, count):
    async def pid() -> int:
        return (await aconnections.connection("default").fetchall("SELECT pg_backend_pid()"))[0][0]

    async def main() -> tuple:
        await pid()
        filled = await await_for(lambda: count() == MIN_SIZE, 5.0)
        kill_all(pg)
        gone = await await_for(lambda: count() == 0, 5.0)
        failed = 0
        while True:  # the async edge neither retries nor drops the idle ones with a lost one
            try:
                await pid()
                break
            except qplan.ConnectionFailure:
                failed += 1
                assert failed <= MIN_SIZE
        refilled = await await_for(lambda: aconnections.stats("default")["open"] == MIN_SIZE
                                   and count() == MIN_SIZE, 5.0)
        stats = aconnections.stats("default")
        pids = {await pid() for _ in range(5)}
        again = count()
        pool = aconnections.connection("default").pool
        await aconnections.close_all()
        return filled, gone, refilled, stats, pids, again, pool._refill

    filled, gone, refilled, stats, pids, again, task = asyncio.run(main())
    assert filled and gone and refilled
    assert stats == {"open": MIN_SIZE, "idle": MIN_SIZE, "max_size": 20}
    assert again == MIN_SIZE and len(pids) == 1 and task is None
    assert wait_for(lambda: count() == 0, 5.0)
