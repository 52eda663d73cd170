"""Hung servers: CONNECT_TIMEOUT and READ_TIMEOUT against real servers frozen with SIGSTOP.

A frozen server still accepts TCP, so only a read timeout notices it. A read on a frozen
replica fails over within READ_TIMEOUT + 1 s without an error; a write on a frozen primary
raises ``ConnectionFailure`` and is not retried, which the server's side counts (no new
connection attempt: MariaDB's ``Connections``, the PostgreSQL port's accept queue); the
clock there only catches a hang. Every freeze is undone (SIGCONT) in a ``finally``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import qplan
from qplan import PrimaryReplica, routing, settings, watchdog
from servers import MariaDBServer, PostgresCluster, frozen, postgres_pids
from testmodels import Author

READ_TIMEOUT = 1.0
BOUND = READ_TIMEOUT + 1.0


def timed(fn: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    routing.forget_writes()
    qplan.connections.close_all()
    qplan.configure(databases={}, routers=[])


def with_timeouts(spec: dict[str, Any], read: float | None = READ_TIMEOUT) -> dict[str, Any]:
    return {**spec, "READ_TIMEOUT": read, "CONNECT_TIMEOUT": 2}


@pytest.fixture
def pg_pair(pg: PostgresCluster, postgresql_settings: dict[str, Any]) -> Iterator[PrimaryReplica]:
    """``primary`` and ``replica`` on the test cluster's primary and standby (READ_TIMEOUT 1 s)."""
    replica = {**postgresql_settings, "PORT": pg.replica.port}  # type: ignore[union-attr]
    router = PrimaryReplica("primary", ["replica"], backoff=30)
    qplan.configure(databases={"primary": with_timeouts(postgresql_settings),
                               "replica": with_timeouts(replica)}, routers=[router])
    qplan.drop_tables([Author], missing_ok=True)
    qplan.create_tables([Author])
    Author.objects.create(name="kept")
    pg.wait_replica_caught_up()
    routing.forget_writes()
    assert Author.objects.get(name="kept")._db == "replica"  # the replica's pool is warm
    yield router
    routing.forget_writes()
    qplan.connections.close_all()
    qplan.drop_tables([Author], missing_ok=True)


# --- settings ---------------------------------------------------------------------------------


def test_timeout_settings_defaults_urls_and_errors():
    spec = settings.normalise("x", "postgresql://u@h/d?connect_timeout=3&read_timeout=none")
    assert spec["CONNECT_TIMEOUT"] == 3.0 and spec["READ_TIMEOUT"] is None
    assert "connect_timeout" not in spec["OPTIONS"]
    spec = settings.normalise("x", {"ENGINE": "mysql", "NAME": "d"})
    assert (spec["CONNECT_TIMEOUT"], spec["READ_TIMEOUT"]) == (5.0, 30.0)
    for bad in (0, -1, "10", True):
        with pytest.raises(qplan.ConfigurationError, match="'x': READ_TIMEOUT must be a positive"):
            settings.normalise("x", {"ENGINE": "postgresql", "NAME": "d", "READ_TIMEOUT": bad})


def test_the_watchdog_fires_only_for_calls_still_running():
    fired: list[int] = []
    late = watchdog.arm(0.05, lambda: fired.append(1))
    early = watchdog.arm(0.05, lambda: fired.append(2))
    assert watchdog.disarm(early) is False
    deadline = time.monotonic() + 2
    while not late.fired and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watchdog.disarm(late) is True and fired == [1]


# --- PostgreSQL -------------------------------------------------------------------------------


def test_a_read_on_a_frozen_standby_fails_over_to_the_primary(pg, pg_pair):
    with frozen(postgres_pids(pg, "replica")):
        got, took = timed(lambda: Author.objects.get(name="kept"))
        assert got._db == "primary" and took < BOUND, took
        assert pg_pair.is_down("replica")
        got, took = timed(lambda: Author.objects.get(name="kept"))
        assert got._db == "primary" and took < 0.5  # marked down: no second wait


def queued_connections(port: int) -> int:
    """Connection attempts waiting in the accept queue of the server listening on ``port``
    (the kernel's count: ``rx_queue`` of a LISTEN socket in /proc/net/tcp). A frozen server
    accepts none, so every attempt made while it is frozen is still there."""
    queued = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                queued += int(fields[4].split(":")[1], 16)
    return queued


def test_a_write_on_a_frozen_primary_is_a_connection_failure_not_retried(pg, pg_pair):
    Author.objects.create(name="warm")  # an idle connection to the primary in its pool
    port = pg.primary.port
    with frozen(postgres_pids(pg, "primary")):
        started = time.monotonic()
        with pytest.raises(qplan.ConnectionFailure, match="(?s)'primary'.*READ_TIMEOUT=1.0"):
            Author.objects.create(name="during")
        took = time.monotonic() - started
        # Not retried: a retry reconnects (the lost connection's pool keeps no idle one), and
        # the frozen server's kernel queues that attempt, counted here while it is frozen
        # (by the server's side, not by a clock on a busy machine); a retry on a pooled
        # connection would run the INSERT twice once thawed (counted below).
        queued = queued_connections(port)
        with socket.create_connection((pg.primary.host, port), timeout=5):
            probe = queued_connections(port)  # the count sees an attempt that waits
    assert (queued, probe) == (0, 1)
    assert READ_TIMEOUT <= took < 5 * READ_TIMEOUT, took  # cut, not left hanging
    assert Author.objects.using("primary").filter(name="during").count() <= 1


def test_a_frozen_standby_inside_a_block_dooms_it(pg, pg_pair):
    with pytest.raises(qplan.TransactionManagementError, match="rolled back"):
        with qplan.atomic(using="replica"):
            Author.objects.using("replica").count()
            with frozen(postgres_pids(pg, "replica")):
                with pytest.raises(qplan.ConnectionFailure):
                    Author.objects.using("replica").count()
            with pytest.raises(qplan.TransactionManagementError, match="doomed"):
                Author.objects.using("replica").count()  # never on another connection


def test_a_server_statement_timeout_is_still_a_query_error(pg_pair):
    slow = dict(settings.database("replica"), OPTIONS={"options": "-c statement_timeout=1"})
    qplan.add_database("replica", slow)
    with pytest.raises(qplan.OperationalError, match="statement timeout") as info:
        qplan.connections["replica"].fetchall("SELECT pg_sleep(0.5)")
    assert not isinstance(info.value, qplan.ConnectionFailure)
    assert not pg_pair.is_down("replica")


def test_without_a_read_timeout_nothing_is_armed(postgresql_settings):
    qplan.configure(databases={"default": with_timeouts(postgresql_settings, read=None)})
    assert qplan.connections["default"]._guard is None
    assert qplan.connections["default"].fetchall("SELECT 1") == [(1,)]


# --- MariaDB ----------------------------------------------------------------------------------


@pytest.fixture
def mixed_pair(mariadb: MariaDBServer, postgresql_settings: dict[str, Any],
               mysql_settings: dict[str, Any]) -> Iterator[PrimaryReplica]:
    """``primary`` on PostgreSQL, ``replica`` on MariaDB (the suite has one MariaDB server):
    routing does not care which server stands behind an alias."""
    router = PrimaryReplica("primary", ["replica"], backoff=30)
    qplan.configure(databases={"primary": with_timeouts(postgresql_settings),
                               "replica": with_timeouts(mysql_settings)}, routers=[])
    for alias in ("primary", "replica"):
        qplan.drop_tables([Author], using=alias, missing_ok=True)
        qplan.create_tables([Author], using=alias)
    qplan.configure(routers=[router])
    assert Author.objects.count() == 0  # read on the replica: its pool is warm
    yield router
    qplan.connections.close_all()
    qplan.configure(routers=[])
    for alias in ("primary", "replica"):
        qplan.drop_tables([Author], using=alias, missing_ok=True)


def test_a_read_on_a_frozen_mariadb_replica_fails_over(mariadb, mixed_pair):
    Author.objects.create(name="on the primary")
    routing.forget_writes()
    assert mariadb.proc is not None
    with frozen([mariadb.proc.pid]):
        got, took = timed(lambda: list(Author.objects.values_list("name", flat=True)))
        assert got == ["on the primary"] and took < BOUND, took
        assert mixed_pair.is_down("replica")


def connection_attempts(server: MariaDBServer) -> int:
    """The server's ``Connections`` (every connection attempt so far, this one included),
    asked over TCP: accepted after any attempt already waiting in the same listen queue."""
    import pymysql

    conn = pymysql.connect(**server.connect_kwargs, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Connections'")
            return int(cur.fetchone()[1])
    finally:
        conn.close()


def test_a_write_on_a_frozen_mariadb_is_a_connection_failure_not_retried(mariadb,
                                                                         mysql_settings):
    qplan.configure(databases={"default": with_timeouts(mysql_settings)})
    qplan.connections["default"].fetchall("SELECT 1")  # warm
    assert mariadb.proc is not None
    attempts = connection_attempts(mariadb)
    with frozen([mariadb.proc.pid]):
        started = time.monotonic()
        with pytest.raises(qplan.ConnectionFailure, match="READ_TIMEOUT=1.0"):
            qplan.connections["default"].execute("DO 1")
        took = time.monotonic() - started
    # Not retried: a retry reconnects, and the frozen server's kernel queues that attempt;
    # thawed, the server counts it before the check's own (measured by the server, not by
    # a clock on a busy machine). The clock only shows the call was cut, not left hanging:
    # 1.0-1.1 s measured at load 8 on 2 cores; 3 x READ_TIMEOUT of headroom.
    assert connection_attempts(mariadb) == attempts + 1
    assert READ_TIMEOUT <= took < 3 * READ_TIMEOUT, took


@pytest.mark.parametrize("vendor", ["postgresql", "mysql"])
def test_no_timeouts_at_all_is_allowed(request, vendor):
    spec = request.getfixturevalue(f"{vendor}_settings")
    qplan.configure(databases={"default": {**spec, "CONNECT_TIMEOUT": None, "READ_TIMEOUT": None}})
    assert list(qplan.connections["default"].fetchall("SELECT 1")) == [(1,)]


def test_an_awaited_read_on_a_frozen_replica_fails_over_within_read_timeout(pg, pg_pair):
    """The async edge: READ_TIMEOUT is an asyncio timeout that cancels the driver call."""
    import asyncio

    from qplan import aconnections

    async def main() -> tuple[Any, float, Any]:
        try:
            assert (await Author.objects.aget(name="kept"))._db == "replica"  # a warm pool
            with frozen(postgres_pids(pg, "replica")):
                started = time.monotonic()
                got = await Author.objects.aget(name="kept")
                took = time.monotonic() - started
            return got._db, took, aconnections.stats("replica")
        finally:
            await aconnections.close_all()

    where, took, stats = asyncio.run(main())
    assert where == "primary" and took < BOUND, took
    assert pg_pair.is_down("replica") and stats["open"] == 0  # the cut connection was closed
