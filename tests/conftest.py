"""Shared fixtures: hypothesis profiles, the opt-in slow flag, SQLite databases, and the
throwaway PostgreSQL (primary + hot standby) and MariaDB servers (tests/servers.py), the
MariaDB GTID pair and Galera cluster (tests/replicas.py), each started once per session on
first use and stopped at its end."""

from __future__ import annotations

import contextlib
import itertools
import threading
import os
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, settings

import qplan
import relmodels
import testmodels
from processes import using_folder
from replicas import GaleraCluster, GtidPair
from servers import MariaDBServer, PostgresCluster, ServerUnavailable, close_all, start_all

# With QPLAN_REQUIRE_SERVERS=1 (scripts/test, CI) a server that cannot start is an error,
# never a skip: a machine without the servers must not pass the backend tests silently.
REQUIRE_SERVERS = os.environ.get("QPLAN_REQUIRE_SERVERS") == "1"

# Bounded by default (the whole suite must stay well under 15 minutes on 2 cores);
# QPLAN_HYPOTHESIS=thorough for exploratory runs.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("QPLAN_HYPOTHESIS", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run slow exploratory tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'default.db'}"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[str]:
    """``default`` as a fresh SQLite file holding the test models' tables."""
    qplan.configure(databases={"default": sqlite_url})
    qplan.create_tables(testmodels.ALL)
    yield "default"
    qplan.connections.close_all()
    qplan.configure(databases={})


# --- database servers -------------------------------------------------------------------------


def assert_nothing_left(folders: list[Any]) -> None:
    """After a teardown: no process may still use a server's folder (its cwd or arguments
    name it). An interrupted Galera state transfer once left its donor script running."""
    left = [p for folder in folders for p in using_folder(folder)]
    assert not left, f"processes outlived the servers' teardown: {left}"


@pytest.fixture(scope="session")
def _servers() -> Iterator[dict[str, tuple[Any, BaseException | None]]]:
    pg, md = PostgresCluster(replica=True), MariaDBServer()
    try:
        pg_error, md_error = start_all(pg, md)  # concurrently
        yield {"pg": (pg, pg_error), "mariadb": (md, md_error)}
    finally:
        folders = [s.base for s in (pg, md) if s.base is not None]
        close_all(pg, md)
        assert_nothing_left(folders)


def _ready(entry: tuple[Any, BaseException | None]) -> Any:
    server, error = entry
    if isinstance(error, ServerUnavailable) and not REQUIRE_SERVERS:
        pytest.skip(str(error))
    if error is not None:
        raise error
    return server


@pytest.fixture(scope="session")
def pg(_servers: dict[str, tuple[Any, BaseException | None]]) -> PostgresCluster:
    server: PostgresCluster = _ready(_servers["pg"])
    return server


@pytest.fixture(scope="session")
def mariadb(_servers: dict[str, tuple[Any, BaseException | None]]) -> MariaDBServer:
    server: MariaDBServer = _ready(_servers["mariadb"])
    return server


@pytest.fixture(scope="session")
def postgresql_settings(pg: PostgresCluster) -> dict[str, Any]:
    """qplan settings for a database of the qplan tests on the PostgreSQL primary."""
    pg.create_database("qplan_tests")
    # A test that leaks a transaction fails the next DROP instead of hanging it. Set on the
    # database, not as a startup ``options`` parameter, which pgbouncer refuses.
    superuser_sql(pg, "ALTER DATABASE qplan_tests SET lock_timeout = '20s'")
    e = pg.primary
    return {"ENGINE": "postgresql", "HOST": e.host, "PORT": e.port, "USER": e.user,
            "PASSWORD": e.password, "NAME": "qplan_tests"}


def superuser_sql(pg: PostgresCluster, sql: str, which: str = "primary") -> list:
    """Run one statement as the PostgreSQL superuser; its rows (or [])."""
    import psycopg2

    conn = psycopg2.connect(pg.superuser_dsn(which), connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


# The time zone of the database behind pgbouncer: not UTC, so the cross-backend tests run
# through it show that no result depends on a session setting (none survives a
# transaction-mode pooler).
PGBOUNCER_TIME_ZONE = "Asia/Kathmandu"


@pytest.fixture(scope="session")
def pgbouncer_settings(pg: PostgresCluster) -> Iterator[dict[str, Any]]:
    """qplan settings for a database of the PostgreSQL primary reached through pgbouncer in
    transaction pooling mode (started here, stopped at the session's end)."""
    from pgbouncer import PgBouncer

    pg.create_database("qplan_bouncer")
    superuser_sql(pg, "ALTER DATABASE qplan_bouncer SET lock_timeout = '20s'")
    superuser_sql(pg, f"ALTER DATABASE qplan_bouncer SET timezone = '{PGBOUNCER_TIME_ZONE}'")
    try:
        bouncer = PgBouncer(pg.primary.with_name("qplan_bouncer")).start()
    except ServerUnavailable as exc:
        if REQUIRE_SERVERS:
            raise
        pytest.skip(str(exc))
    try:
        e = bouncer.endpoint
        yield {"ENGINE": "postgresql", "HOST": e.host, "PORT": e.port, "USER": e.user,
               "PASSWORD": e.password, "NAME": e.name}
    finally:
        folder = bouncer.base
        bouncer.close()
        assert_nothing_left([folder])


@pytest.fixture(scope="session")
def mysql_settings(mariadb: MariaDBServer) -> dict[str, Any]:
    """qplan settings for a database of the qplan tests on MariaDB."""
    mariadb.create_database("qplan_tests")
    return {"ENGINE": "mysql", "HOST": mariadb.host, "PORT": mariadb.port,
            "USER": mariadb.user, "PASSWORD": mariadb.password, "NAME": "qplan_tests",
            "OPTIONS": {"init_command": "SET SESSION lock_wait_timeout = 20,"
                                        " innodb_lock_wait_timeout = 20"}}


def _started(server: Any) -> Iterator[Any]:
    """Start a replicated server set (tests/replicas.py), yield it, always close it."""
    try:
        server.start()
    except ServerUnavailable as exc:
        if REQUIRE_SERVERS:
            raise
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        folders = server.folders()
        server.close()
        assert_nothing_left(folders)


@pytest.fixture(scope="session")
def gtid_pair() -> Iterator[GtidPair]:
    """A MariaDB primary and its GTID replica, started on first use."""
    yield from _started(GtidPair())


@pytest.fixture(scope="session")
def galera() -> Iterator[GaleraCluster]:
    """A 3-node Galera cluster, started on first use (about 10-15 s)."""
    yield from _started(GaleraCluster())


@pytest.fixture(scope="session")
def galera_server(galera: GaleraCluster) -> Any:
    """The Galera node ``galera_settings`` points at (node 1)."""
    return galera.nodes[0]


@pytest.fixture(scope="session")
def mysql_server(mariadb: MariaDBServer) -> MariaDBServer:
    """The server ``mysql_settings`` points at."""
    return mariadb


@pytest.fixture(scope="session")
def galera_settings(galera: GaleraCluster) -> dict[str, Any]:
    """qplan settings for a database of the qplan tests on Galera node 1."""
    galera.create_database("qplan_tests")
    return galera.nodes[0].settings("qplan_tests")


_sqlite_files = itertools.count()


# Every registered backend is tested: a file database gets a temporary file, a server
# database the session fixture ``<name>_settings`` (which starts its server).
VENDORS = qplan.backends.names()


def backend_settings(request: pytest.FixtureRequest, vendor: str) -> dict[str, Any]:
    """Settings of a test database of ``vendor`` (a backend, or another target with a
    ``<name>_settings`` fixture, such as ``pgbouncer``); starts the servers on first use."""
    if vendor in VENDORS and qplan.backends.get(vendor).FILE_DATABASE:
        tmp = request.getfixturevalue("tmp_path")
        return {"ENGINE": vendor, "NAME": str(tmp / f"db{next(_sqlite_files)}.{vendor}")}
    return dict(request.getfixturevalue(f"{vendor}_settings"))


@pytest.fixture
def databases(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``databases(alias=vendor, ...)``: configure aliases holding fresh test-model tables.

    Tables are dropped (and connections closed) when the test ends; the servers stay up.
    """
    configured: list[str] = []

    def setup(**aliases: str) -> list[str]:
        specs = {alias: backend_settings(request, vendor) for alias, vendor in aliases.items()}
        qplan.configure(databases=specs)
        configured[:] = list(specs)
        for alias in specs:
            qplan.drop_tables(testmodels.ALL, using=alias, missing_ok=True)
            qplan.create_tables(testmodels.ALL, using=alias)
        return list(specs)

    yield setup
    qplan.connections.close_all()
    try:
        for alias in configured:
            qplan.drop_tables(testmodels.ALL, using=alias, missing_ok=True)
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


@pytest.fixture(params=VENDORS)
def any_db(request: pytest.FixtureRequest, databases: Any) -> str:
    """``default`` on each backend in turn (the same test runs on all three): the vendor."""
    databases(default=request.param)
    return str(request.param)


@pytest.fixture(params=VENDORS)
def rel_db(request: pytest.FixtureRequest, databases: Any) -> Iterator[str]:
    """``default`` on each backend in turn, with the relation models' tables too
    (``tests/relmodels.py``): the vendor."""
    databases(default=request.param)
    qplan.drop_tables(relmodels.ALL, missing_ok=True)
    qplan.create_tables(relmodels.ALL)
    yield str(request.param)
    qplan.connections.close_all()
    qplan.drop_tables(relmodels.ALL, missing_ok=True)


@pytest.fixture
def pg_db(databases: Any) -> str:
    """``default`` on the PostgreSQL primary, with the test-model tables."""
    return databases(default="postgresql")[0]


# The MariaDB family: every backend speaking MariaDB's SQL (mysql, galera).
MARIADB_FAMILY = [v for v in VENDORS if qplan.backends.get(v).dialect == "mysql"]


@pytest.fixture(params=MARIADB_FAMILY)
def mysql_db(request: pytest.FixtureRequest, databases: Any) -> str:
    """``default`` on each MariaDB-family server in turn (MariaDB, a Galera node), with the
    test-model tables."""
    return databases(default=request.param)[0]


@pytest.fixture
def mysql_db_server(request: pytest.FixtureRequest, mysql_db: str) -> Any:
    """The server behind ``mysql_db`` (``<vendor>_server``): stop, kill and start it."""
    return request.getfixturevalue(f"{request.node.callspec.params['mysql_db']}_server")


# --- backends without savepoints ---------------------------------------------------------------


def savepoints(alias: str = "default") -> bool:
    """Whether ``alias``'s database nests atomic() blocks (the backend's SUPPORTS_SAVEPOINTS):
    the tests that nest blocks expect the refusal where it does not."""
    return bool(qplan.connections[alias].backend.SUPPORTS_SAVEPOINTS)


def assert_nesting_refused(alias: str = "default") -> None:
    """On a database without savepoints an inner atomic() block raises NotSupportedError
    naming the database, and the outer block (the exception leaves it) rolls back."""
    backend = qplan.connections[alias].backend
    with pytest.raises(qplan.NotSupportedError, match=f"{backend.name} has no savepoints"):
        with qplan.atomic(using=alias):
            testmodels.Author.objects.using(alias).create(name="outer")
            with qplan.atomic(using=alias):
                pytest.fail("an inner block opened without a savepoint")
    assert not testmodels.Author.objects.using(alias).filter(name="outer").exists()


@contextlib.contextmanager
def replicated(databases: dict[str, Any], primary: str, replicas: list[str],
               caught_up: Any = lambda: None) -> Iterator[qplan.PrimaryReplica]:
    """A ``PrimaryReplica`` over ``databases`` with fresh test tables (made on the primary,
    replicated), and everything dropped and closed afterwards."""
    router = qplan.PrimaryReplica(primary, replicas, backoff=0.3)
    qplan.configure(databases=databases, routers=[router])
    tables = [testmodels.Author, testmodels.Book]
    qplan.drop_tables(tables, missing_ok=True)
    qplan.create_tables(tables)  # on the primary: the write alias
    caught_up()
    qplan.routing.forget_writes()
    try:
        yield router
    finally:
        qplan.routing.forget_writes()
        qplan.connections.close_all()
        qplan.drop_tables(tables, missing_ok=True)
        qplan.connections.close_all()
        qplan.configure(databases={}, routers=[])


def in_threads(work: Any, n: int, timeout: float = 60.0) -> list:
    """``work(i)`` for i in range(n), in n threads at once, each closing its connections when
    done: what each returned, or the exception it raised. A thread still running after
    ``timeout`` fails the test."""
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as exc:  # returned to the test, which asserts on it
            results[i] = exc
        finally:
            qplan.connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), f"a thread ran longer than {timeout} s"
    return results


def raised(results: list) -> list[str]:
    """The exceptions among ``in_threads`` results, as text."""
    return [repr(r) for r in results if isinstance(r, BaseException)]


@contextlib.contextmanager
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The SQL of every statement run inside the block (counted at
    ``Connection._statement``, the one place every blocking statement passes)."""
    from qplan.connections import Connection

    seen: list[str] = []
    real = Connection._statement

    def counted(self: Any, sql: str, params: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(sql)
        return real(self, sql, params, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(Connection, "_statement", counted)
        yield seen


@contextlib.contextmanager
def rolled_back(aliases: Any) -> Iterator[None]:
    """``atomic()`` on every alias of ``aliases``, all rolled back on leaving: rows a test
    (or one hypothesis example) writes inside are gone after it."""

    class Rollback(Exception):
        pass

    with contextlib.suppress(Rollback), contextlib.ExitStack() as stack:
        for alias in aliases:
            stack.enter_context(qplan.atomic(using=alias))
        yield
        raise Rollback


def run_async(coro: Any) -> Any:
    """Run ``coro`` on a new event loop, then close the async pools it opened (they belong to
    that loop)."""
    import asyncio

    from qplan import aconnections

    async def main() -> Any:
        try:
            return await coro
        finally:
            await aconnections.close_all()

    return asyncio.run(main())
