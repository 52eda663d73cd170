"""Awaited plans on replicated servers: PostgreSQL primary + hot standby, MariaDB primary +
GTID replica. Read-your-writes follows the task across awaits, a killed replica fails
over, a lost connection rolls ``aatomic`` back (each test runs its coroutine with
``asyncio.run``)."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Iterator

import psycopg2
import pytest

import qplan
from conftest import replicated, run_async as run
from qplan import aconnections, routing
from testmodels import Author

PG_DB, MD_DB = "qplan_arepl", "qplan_arepl_md"


def fresh(coro: Any) -> Any:
    """``coro`` as a task in an empty context: one that wrote nothing."""
    return asyncio.get_running_loop().create_task(coro, context=contextvars.Context())


def _pg(endpoint: Any) -> dict:
    return {"ENGINE": "postgresql", "HOST": endpoint.host, "PORT": endpoint.port,
            "USER": endpoint.user, "PASSWORD": endpoint.password, "NAME": PG_DB}


_created: set[str] = set()


@pytest.fixture(params=["postgresql", "mariadb"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any, Any]]:
    """(vendor, pause/resume/kill helpers, router) on a primary and its replica."""
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg")
        if "pg" not in _created:
            pg.create_database(PG_DB)
            _created.add("pg")

        def replica_sql(sql: str) -> None:
            conn = psycopg2.connect(pg.replica.with_name(PG_DB).dsn)
            conn.autocommit = True
            try:
                conn.cursor().execute(sql)
            finally:
                conn.close()

        helpers = {"pause": lambda: replica_sql("SELECT pg_wal_replay_pause()"),
                   "resume": lambda: replica_sql("SELECT pg_wal_replay_resume()"),
                   "kill": pg.stop_replica, "start": pg.start_replica,
                   "caught_up": pg.wait_replica_caught_up}
        dbs = {"primary": _pg(pg.primary), "replica": _pg(pg.replica)}
    else:
        pair = request.getfixturevalue("gtid_pair")
        if "md" not in _created:
            pair.create_database(MD_DB)
            _created.add("md")
        helpers = {"pause": lambda: pair.replica.query("STOP SLAVE SQL_THREAD"),
                   "resume": lambda: pair.replica.query("START SLAVE SQL_THREAD"),
                   "kill": pair.replica.kill, "start": pair.replica.start,
                   "caught_up": pair.wait_caught_up}
        dbs = {"primary": pair.primary.settings(MD_DB), "replica": pair.replica.settings(MD_DB)}
    with replicated(dbs, "primary", ["replica"], helpers["caught_up"]) as router:
        yield request.param, helpers, router


def test_read_your_writes_across_awaits(setup: Any) -> None:
    vendor, h, router = setup
    h["pause"]()
    try:
        async def main() -> Any:
            await Author.objects.acreate(name="fresh")
            await asyncio.sleep(0)
            mine = (await Author.objects.aget(name="fresh"))._db
            theirs = await fresh(Author.objects.filter(name="fresh").aexists())
            return mine, theirs

        assert run(main()) == ("primary", False)
    finally:
        h["resume"]()
    h["caught_up"]()
    routing.forget_writes()
    assert run(Author.objects.aget(name="fresh"))._db == "replica"

    async def in_block() -> str:
        async with qplan.aatomic():  # the router's write alias; its reads stay there
            return (await Author.objects.aget(name="fresh"))._db

    assert run(in_block()) == "primary"


def test_a_killed_replica_fails_over(setup: Any) -> None:
    vendor, h, router = setup
    Author.objects.create(name="kept")
    h["caught_up"]()
    routing.forget_writes()
    assert run(Author.objects.aget(name="kept"))._db == "replica"
    h["kill"]()
    try:
        async def main() -> list:
            return [(await Author.objects.aget(name="kept"))._db for _ in range(3)]

        assert run(main()) == ["primary"] * 3
        assert router.is_down("replica")
    finally:
        h["start"]()


def test_aatomic_rolls_back_on_error_and_on_a_lost_connection(setup: Any) -> None:
    vendor, h, router = setup
    kill = ("SELECT pg_terminate_backend(pg_backend_pid())" if vendor == "postgresql"
            else "KILL CONNECTION_ID()")

    async def main() -> None:
        with pytest.raises(KeyError):
            async with qplan.aatomic():
                await Author.objects.acreate(name="no1")
                raise KeyError
        with pytest.raises((qplan.ConnectionFailure, qplan.TransactionManagementError)):
            async with qplan.aatomic():
                await Author.objects.acreate(name="no2")
                conn = aconnections.connection("primary")
                try:
                    await conn.fetchall(kill)
                except qplan.DatabaseError:
                    pass
                await Author.objects.acreate(name="no3")
        assert await Author.objects.using("primary").acount() == 0
        await Author.objects.acreate(name="after")  # the pool is healthy

    run(main())
    assert list(Author.objects.using("primary").values_list("name", flat=True)) == ["after"]
