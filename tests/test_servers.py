"""The throwaway PostgreSQL primary/standby and MariaDB servers of tests/servers.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pymysql
import pytest

from servers import Endpoint, MariaDBServer, PostgresCluster

# The session-scoped ``pg`` and ``mariadb`` fixtures live in conftest.py.


@contextlib.contextmanager
def pg_cursor(endpoint: Endpoint | None) -> Iterator[Any]:
    """Autocommit cursor as app."""
    assert endpoint is not None
    conn = psycopg2.connect(endpoint.dsn, connect_timeout=5)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


def scalar(cur: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    cur.execute(sql, params)
    return cur.fetchone()[0]


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_pg_urls(pg: PostgresCluster) -> None:
    assert pg.primary.url == f"postgresql://app:apppw@127.0.0.1:{pg.primary.port}/appdb"
    assert pg.replica is not None and pg.replica.port != pg.primary.port
    assert pg.url == pg.primary.url
    assert "user=postgres password=superpw" in pg.superuser_dsn("replica")


def test_primary_accepts_writes(pg: PostgresCluster) -> None:
    with pg_cursor(pg.primary) as cur:
        assert scalar(cur, "SELECT current_user") == "app"
        assert scalar(cur, "SELECT current_database()") == "appdb"
        assert scalar(cur, "SELECT pg_is_in_recovery()") is False
        cur.execute("CREATE TABLE writes (id serial PRIMARY KEY, v text)")
        cur.execute("INSERT INTO writes (v) VALUES ('a'), ('b')")
        assert scalar(cur, "SELECT count(*) FROM writes") == 2


def test_replica_is_hot_standby(pg: PostgresCluster) -> None:
    with pg_cursor(pg.replica) as cur:
        assert scalar(cur, "SELECT pg_is_in_recovery()") is True
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
            cur.execute("CREATE TABLE nope (id int)")
    conn = psycopg2.connect(pg.superuser_dsn("primary"), connect_timeout=5)
    try:
        with conn.cursor() as cur:  # app would see state as NULL: needs pg_read_all_stats
            cur.execute("SELECT application_name, state FROM pg_stat_replication")
            assert cur.fetchall() == [("replica1", "streaming")]
    finally:
        conn.close()


def test_row_inserted_on_primary_reaches_replica(pg: PostgresCluster) -> None:
    with pg_cursor(pg.primary) as p, pg_cursor(pg.replica) as r:
        p.execute("CREATE TABLE repl (id int PRIMARY KEY)")
        p.execute("INSERT INTO repl VALUES (42)")
        pg.wait_replica_caught_up(timeout=5)
        assert scalar(r, "SELECT id FROM repl") == 42


def test_paused_replay_hides_new_rows_until_resumed(pg: PostgresCluster) -> None:
    with pg_cursor(pg.primary) as p, pg_cursor(pg.replica) as r:
        p.execute("CREATE TABLE paused (id int)")
        pg.wait_replica_caught_up(timeout=5)
        r.execute("SELECT pg_wal_replay_pause()")  # as app, thanks to the grant
        try:
            p.execute("INSERT INTO paused VALUES (1)")
            with pytest.raises(TimeoutError, match="bytes behind"):
                pg.wait_replica_caught_up(timeout=0.3)
            assert scalar(r, "SELECT pg_is_wal_replay_paused()") is True
            assert scalar(r, "SELECT count(*) FROM paused") == 0
        finally:
            r.execute("SELECT pg_wal_replay_resume()")
        pg.wait_replica_caught_up(timeout=5)
        assert scalar(r, "SELECT count(*) FROM paused") == 1


def test_stop_and_start_replica(pg: PostgresCluster) -> None:
    assert pg.replica is not None
    pg.stop_replica()
    try:
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(pg.replica.dsn, connect_timeout=2)
        with pg_cursor(pg.primary) as p:
            p.execute("CREATE TABLE while_down (id int)")
            p.execute("INSERT INTO while_down VALUES (7)")
    finally:
        pg.start_replica()
    pg.wait_replica_caught_up(timeout=10)
    with pg_cursor(pg.replica) as r:
        assert scalar(r, "SELECT id FROM while_down") == 7


def test_pg_create_database(pg: PostgresCluster) -> None:
    url = pg.create_database("shard_1")
    assert url == f"postgresql://app:apppw@127.0.0.1:{pg.primary.port}/shard_1"
    with pg_cursor(pg.primary.with_name("shard_1")) as cur:
        cur.execute("CREATE TABLE t (id int)")
        assert scalar(cur, "SELECT current_database()") == "shard_1"
    with pytest.raises(ValueError):
        pg.create_database("bad; name")


# --- MariaDB -------------------------------------------------------------------------------------


def md_connect(md: MariaDBServer, **kwargs: Any) -> Any:
    return pymysql.connect(**{**md.connect_kwargs, "autocommit": True, **kwargs})


def test_mariadb_connects_as_app(mariadb: MariaDBServer) -> None:
    assert mariadb.url == f"mysql://app:apppw@127.0.0.1:{mariadb.port}/appdb"
    conn = md_connect(mariadb)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), CURRENT_USER(), DATABASE(), @@character_set_database")
            version, user, db, charset = cur.fetchone()
    finally:
        conn.close()
    assert "MariaDB" in version
    assert (user, db, charset) == ("app@127.0.0.1", "appdb", "utf8mb4")


def test_mariadb_create_database(mariadb: MariaDBServer) -> None:
    url = mariadb.create_database("shard_1")
    assert url.endswith(f":{mariadb.port}/shard_1")
    conn = md_connect(mariadb, database="shard_1")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int)")
    finally:
        conn.close()


@pytest.mark.parametrize("kill", [False, True], ids=["clean-stop", "crash"])
def test_mariadb_restart_keeps_data(mariadb: MariaDBServer, kill: bool) -> None:
    table = f"kept_{int(kill)}"
    conn = md_connect(mariadb)
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id int PRIMARY KEY) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {table} VALUES (1), (2)")
    conn.close()
    started = time.monotonic()
    mariadb.stop(kill=kill)
    with pytest.raises(pymysql.err.OperationalError):
        md_connect(mariadb, connect_timeout=2)
    mariadb.start()
    assert time.monotonic() - started < 10
    conn = md_connect(mariadb)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM {table} ORDER BY id")
            assert cur.fetchall() == ((1,), (2,))
    finally:
        conn.close()
