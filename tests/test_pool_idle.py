"""POOL ``max_idle``: a pool gives back the connections it no longer needs (qplan.sweeper).

After a burst opens several connections and the service goes quiet, the server's own count
of them (``pg_stat_activity``, MariaDB's process list) drops to ``min_size`` without any
further call into the pool: the blocking pools' sweeper thread and the async pools' loop
timer do it. A lent connection is never closed. Waits are bounded polls (a loaded machine).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any, Callable, Iterator

import pytest

import qplan
from conftest import superuser_sql
from qplan import aconnections, apools, pools, sweeper

APP = "qplan_idle_test"  # PostgreSQL: this module's connections by application_name
MARIADB_DB = "qplan_idle"  # MariaDB: by the database they use
BURST = 4


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    qplan.connections.close_all()
    qplan.configure(databases={}, routers=[])


@pytest.fixture(params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> tuple[dict[str, Any], Callable[[], int]]:
    """Settings of an alias on each server, and how many connections it holds there."""
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg")
        base = {**request.getfixturevalue("postgresql_settings"),
                "OPTIONS": {"application_name": APP}}
        return base, lambda: superuser_sql(
            pg, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{APP}'")[0][0]
    mariadb = request.getfixturevalue("mariadb")
    mariadb.create_database(MARIADB_DB)
    base = {**request.getfixturevalue("mysql_settings"), "NAME": MARIADB_DB}
    return base, lambda: int(mariadb.superuser_sql(
        f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{MARIADB_DB}'")[0])


def wait_for(predicate: Callable[[], bool], timeout: float = 2.5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.03)
    return True


def rows(result: Any) -> list[tuple]:
    return [tuple(row) for row in result]


def configure(base: dict[str, Any], **pool: Any) -> None:
    qplan.configure(databases={"default": {**base, "POOL": {"timeout": 10, **pool}}})


def burst(n: int, alias: str = "default") -> None:
    """``n`` threads hold a connection of ``alias`` at once, then give it back."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with qplan.atomic(using=alias):
                qplan.connections[alias].fetchall("SELECT 1")
                barrier.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "soon", True, float("inf")])
def test_bad_max_idle_names_the_alias_and_key(value):
    with pytest.raises(qplan.ConfigurationError,
                       match=r"database 'x': POOL\['max_idle'\] must be a positive number"):
        qplan.configure(databases={"x": {"ENGINE": "postgresql", "NAME": "d",
                                         "POOL": {"max_idle": value}}})


def test_max_idle_defaults_to_ten_minutes_and_comes_from_urls():
    assert qplan.settings.normalise("x", "postgresql://u@h/d")["POOL"]["max_idle"] == 600.0
    url = qplan.settings.normalise("x", "mysql://u@h/d?pool_max_idle=none")
    assert url["POOL"]["max_idle"] is None
    assert qplan.settings.normalise("x", "mysql://u@h/d?pool_max_idle=2.5")["POOL"]["max_idle"] == 2.5
    with pytest.raises(qplan.ConfigurationError, match=r"'x': pool_max_idle='x'"):
        qplan.settings.normalise("x", "mysql://u@h/d?pool_max_idle=x")


# --- the blocking edge -------------------------------------------------------------------------


def test_a_quiet_pool_closes_its_idle_connections_down_to_min_size(server):
    base, count = server
    configure(base, max_size=BURST + 1, min_size=1, max_idle=0.3)
    burst(BURST)
    assert count() >= BURST and pools.stats("default")["open"] >= BURST
    assert wait_for(lambda: count() == 1)  # no call into the pool meanwhile: its thread did it
    assert pools.stats("default") == {"in_use": 0, "open": 1, "max_size": BURST + 1}
    assert rows(qplan.connections["default"].fetchall("SELECT 2")) == [(2,)]


def test_without_max_idle_nothing_is_closed(pg, postgresql_settings):
    base = {**postgresql_settings, "OPTIONS": {"application_name": APP}}
    configure(base, max_size=3, max_idle=None)
    burst(3)
    time.sleep(0.4)
    assert pools.stats("default")["open"] == 3


def test_a_lent_connection_is_never_closed_by_trimming(server):
    base, count = server
    configure(base, max_size=BURST + 1, max_idle=0.2)
    conn = qplan.connections["default"]
    conn.execute("DROP TABLE IF EXISTS idle_probe")
    conn.execute("CREATE TABLE idle_probe (x INTEGER)")
    holding, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def holder() -> None:
        try:
            with qplan.atomic():
                qplan.connections["default"].execute("INSERT INTO idle_probe VALUES (1)")
                holding.set()
                done.wait(10)  # idle for the pool's sweeps, but lent
                qplan.connections["default"].execute("INSERT INTO idle_probe VALUES (2)")
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert holding.wait(10)
        burst(BURST - 1)  # the rest of the pool: idle beyond min_size, trimmed
        assert wait_for(lambda: count() == 1)  # the lent one alone is left
        for _ in range(3):  # lazy sweeps on lending too
            time.sleep(0.15)
            conn.fetchall("SELECT 1")
    finally:
        done.set()
        thread.join(10)
    assert failures == []
    assert sorted(rows(conn.fetchall("SELECT x FROM idle_probe"))) == [(1,), (2,)]  # committed
    conn.execute("DROP TABLE idle_probe")


def test_every_pool_shares_one_sweeper_thread(pg, postgresql_settings):
    base = {**postgresql_settings, "OPTIONS": {"application_name": APP}}
    qplan.configure(databases={alias: {**base, "POOL": {"max_size": 3, "max_idle": 0.2}}
                               for alias in ("a", "b", "c")})
    for alias in ("a", "b", "c"):
        burst(3, alias)
    sweepers = [t for t in threading.enumerate() if t.name == "qplan-pool-sweeper"]
    assert len(sweepers) == 1  # one thread for every pool, not one per pool
    assert wait_for(lambda: all(pools.stats(a)["open"] == 0 for a in ("a", "b", "c")))


def test_a_busy_pool_trims_lazily_without_the_thread(pg, postgresql_settings, monkeypatch):
    monkeypatch.setattr(sweeper, "schedule", lambda pool, when: None)  # no thread's help
    configure({**postgresql_settings, "OPTIONS": {"application_name": APP}},
              max_size=BURST, max_idle=0.2)
    burst(BURST)
    # Kept busy by one thread at a time, the pool needs one connection (lent last in, first
    # out): the others are closed by its own lending and taking back.
    deadline = time.monotonic() + 2.5
    while pools.stats("default")["open"] > 1 and time.monotonic() < deadline:
        qplan.connections["default"].fetchall("SELECT 1")
        time.sleep(0.01)
    assert pools.stats("default")["open"] == 1


# --- the async edge ----------------------------------------------------------------------------


async def aburst(n: int) -> None:
    """``n`` tasks hold a connection at once (each in an ``aatomic()`` block), then give it
    back."""
    barrier = asyncio.Barrier(n)

    async def hold() -> None:
        async with qplan.aatomic():
            await aconnections.connection("default").fetchall("SELECT 1")
            await barrier.wait()

    await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(n))), 10)


async def await_for(predicate: Callable[[], bool], timeout: float = 2.5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.03)
    return True


def run_quietly(coro: Any, caplog: Any) -> Any:
    """``asyncio.run(coro)``; fails on what asyncio logs (a task destroyed while pending)."""
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        result = asyncio.run(coro)
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    return result


def test_a_quiet_async_pool_closes_its_idle_connections(server, caplog):
    base, count = server
    configure(base, max_size=BURST + 1, min_size=1, max_idle=0.3)

    async def main() -> Any:
        await aburst(BURST)
        opened = count()
        trimmed = await await_for(lambda: count() == 1)  # the loop's timer, no pool call
        stats = aconnections.stats("default")
        got = rows(await aconnections.connection("default").fetchall("SELECT 2"))
        pool = aconnections.connection("default").pool
        await aconnections.close_all()
        timer = pool._timer
        return opened, trimmed, stats, got, timer, asyncio.all_tasks()

    opened, trimmed, stats, got, timer, tasks = run_quietly(main(), caplog)
    assert opened >= BURST and trimmed
    assert stats["open"] == 1 and got == [(2,)]
    assert timer is None and len(tasks) == 1  # close_all() left no timer and no task behind
    assert wait_for(lambda: count() == 0)


def test_an_async_connection_lent_in_a_block_is_never_trimmed(server, caplog):
    base, count = server
    configure(base, max_size=BURST + 1, max_idle=0.2)
    conn = qplan.connections["default"]
    conn.execute("DROP TABLE IF EXISTS idle_probe")
    conn.execute("CREATE TABLE idle_probe (x INTEGER)")
    qplan.connections.close_all()

    async def holder(holding: asyncio.Event, done: asyncio.Event) -> None:
        aconn = aconnections.connection("default")
        async with qplan.aatomic():
            await aconn.execute("INSERT INTO idle_probe VALUES (1)")
            holding.set()
            await done.wait()  # idle for the pool's sweeps, but lent
            await aconn.execute("INSERT INTO idle_probe VALUES (2)")

    async def main() -> Any:
        holding, done = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(holder(holding, done))
        await asyncio.wait_for(holding.wait(), 10)
        await aburst(BURST - 1)
        lone = await await_for(lambda: count() == 1)  # the others trimmed, not this one
        await asyncio.sleep(0.3)
        done.set()
        await asyncio.wait_for(task, 10)
        await aconnections.close_all()
        return lone

    assert run_quietly(main(), caplog)
    assert sorted(rows(conn.fetchall("SELECT x FROM idle_probe"))) == [(1,), (2,)]
    conn.execute("DROP TABLE idle_probe")


def test_async_sqlite_pools_trim_too(tmp_path, monkeypatch, caplog):
    # File databases have no POOL setting; their async pools (aiosqlite: a thread per
    # connection) use apools.DEFAULT_POOL.
    monkeypatch.setitem(apools.DEFAULT_POOL, "max_idle", 0.2)
    qplan.configure(databases={"default": {"ENGINE": "sqlite", "NAME": str(tmp_path / "a.db")}})
    threads = threading.active_count()

    async def main() -> Any:
        await aburst(BURST)
        opened = aconnections.stats("default")["open"]
        trimmed = await await_for(lambda: aconnections.stats("default")["open"] == 0)
        got = rows(await aconnections.connection("default").fetchall("SELECT 3"))
        await aconnections.close_all()
        return opened, trimmed, got

    opened, trimmed, got = run_quietly(main(), caplog)
    assert opened == BURST and trimmed and got == [(3,)]
    assert wait_for(lambda: threading.active_count() <= threads)  # their threads ended
