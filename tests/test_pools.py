"""Bounded connection pools per alias (qplan.pools) against the real PostgreSQL and MariaDB.

The stress test counts server connections in ``pg_stat_activity`` for a role of its own
whose ``CONNECTION LIMIT`` plays the part of a low ``max_connections``: a connection over
the pools' total would fail with "too many connections".
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

import qplan
from conftest import superuser_sql
from qplan import PrimaryReplica, pools, settings
from servers import PostgresCluster
from testmodels import ALL, Author

ROLE, DB = "qplan_stress", "qplan_pools"
ALIASES = ("a1", "a2", "a3", "a4")
MAX_SIZE = 3  # per alias: the role's CONNECTION LIMIT is len(ALIASES) * MAX_SIZE


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    yield
    qplan.connections.close_all()
    qplan.configure(databases={}, routers=[])


@pytest.fixture(scope="module")
def stress_db(pg: PostgresCluster) -> dict[str, Any]:
    """A database owned by a role that may hold at most ``4 * MAX_SIZE`` connections."""
    limit = len(ALIASES) * MAX_SIZE
    superuser_sql(pg, f"CREATE ROLE {ROLE} LOGIN PASSWORD 'stresspw' CONNECTION LIMIT {limit}")
    superuser_sql(pg, f"CREATE DATABASE {DB} OWNER {ROLE}")
    e = pg.primary
    return {"ENGINE": "postgresql", "HOST": e.host, "PORT": e.port, "USER": ROLE,
            "PASSWORD": "stresspw", "NAME": DB}


def server_connections(pg: PostgresCluster) -> int:
    return superuser_sql(pg, f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{ROLE}'")[0][0]


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pooled(base: dict[str, Any], **pool: Any) -> dict[str, Any]:
    return {**base, "POOL": {"max_size": MAX_SIZE, "timeout": 10, **pool}}


# --- settings -------------------------------------------------------------------------------


def test_server_aliases_are_pooled_by_default_and_sqlite_is_not():
    pg = settings.normalise("x", "postgresql://u@h/d")
    assert dict(pg["POOL"]) == {"max_size": 20, "min_size": 0, "timeout": 30.0, "max_lifetime": 3600.0,
                                 "max_idle": 600.0}
    assert settings.normalise("x", {"ENGINE": "mysql", "NAME": "d"})["POOL"]["max_size"] == 20
    assert settings.normalise("x", "sqlite:///a.db")["POOL"] is None
    assert settings.normalise("x", {"ENGINE": "postgresql", "NAME": "d", "POOL": None})["POOL"] is None


def test_pool_settings_from_urls_and_dicts():
    url = settings.normalise("x", "postgresql://u@h/d?pool_max_size=5&pool_timeout=2.5&sslmode=disable")
    assert url["POOL"]["max_size"] == 5 and url["POOL"]["timeout"] == 2.5
    assert dict(url["OPTIONS"]) == {"sslmode": "disable"}
    spec = settings.normalise("x", {"ENGINE": "mysql", "NAME": "d", "POOL": {"min_size": 2}})
    assert spec["POOL"]["min_size"] == 2 and spec["POOL"]["max_size"] == 20
    again = settings.normalise("x", dict(spec))  # normalised settings are valid settings
    assert again == spec


@pytest.mark.parametrize("pool, message", [
    ({"max_size": 0}, r"'x': POOL\['max_size'\] must be a whole number"),
    ({"max_size": 2.5}, r"POOL\['max_size'\]"),
    ({"min_size": 5, "max_size": 2}, r"'x': POOL\['min_size'\] \(5\) is larger"),
    ({"timeout": -1}, r"'x': POOL\['timeout'\] must be a positive number"),
    ({"max_lifetme": 3}, r"unknown key POOL\['max_lifetme'\]; did you mean 'max_lifetime'"),
    ("big", "POOL must be a dict"),
])
def test_bad_pool_settings_name_the_alias_and_key(pool, message):
    with pytest.raises(qplan.ConfigurationError, match=message):
        qplan.configure(databases={"x": {"ENGINE": "postgresql", "NAME": "d", "POOL": pool}})


def test_bad_pool_values_in_urls():
    with pytest.raises(qplan.ConfigurationError, match="'x': pool_max_size='many'"):
        qplan.configure(databases={"x": "mysql://u@h/d?pool_max_size=many"})


# --- borrowing and giving back ----------------------------------------------------------------


def backend_pid(alias: str = "default") -> int:
    return qplan.connections[alias].fetchall("SELECT pg_backend_pid()")[0][0]


def test_statements_borrow_and_atomic_blocks_hold(pg_db):
    conn = qplan.connections["default"]
    Author.objects.create(name="a")
    assert conn.raw is None  # given back after the statement
    assert pools.stats("default") == {"in_use": 0, "open": 1, "max_size": 20}
    with qplan.atomic():
        first = backend_pid()
        Author.objects.create(name="b")
        assert conn.raw is not None and pools.stats("default")["in_use"] == 1
        assert backend_pid() == first  # every statement of the block on one connection
    assert conn.raw is None and pools.stats("default")["in_use"] == 0


def test_a_stream_holds_its_connection_while_it_streams(pg_db):
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(10)])
    rows = Author.objects.order_by("id").iterator(chunk_size=3)
    next(rows)
    assert pools.stats("default")["in_use"] == 1
    assert len(list(rows)) == 9
    assert pools.stats("default")["in_use"] == 0


def test_a_full_pool_times_out_naming_the_alias_and_fails_nothing_over(pg_settings_pair):
    qplan.configure(databases=pg_settings_pair(max_size=1, timeout=0.3),
                    routers=[router := PrimaryReplica("primary", ["replica"], backoff=30)])
    qplan.drop_tables([Author], using="primary", missing_ok=True)
    qplan.create_tables([Author], using="primary")  # the same database as the replica alias
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with qplan.atomic(using="replica"):
            Author.objects.using("replica").count()
            held.set()
            release.wait(10)
        qplan.connections.close_all()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(qplan.PoolTimeout, match=r"'replica'.*within 0.3 s") as info:
            Author.objects.count()  # routed to the replica, whose pool is full
        assert 0.25 < time.monotonic() - started < 2
        assert isinstance(info.value, qplan.OperationalError)
        assert not isinstance(info.value, qplan.ConnectionFailure)
        assert not router.is_down("replica")  # a busy pool is not a dead server
    finally:
        release.set()
        thread.join(10)
    assert Author.objects.count() == 0  # free again
    qplan.drop_tables([Author], using="primary")


@pytest.fixture
def pg_settings_pair(postgresql_settings):
    """``primary`` and ``replica`` aliases (both on the test database), pools as given."""
    def make(**pool: Any) -> dict[str, Any]:
        return {alias: {**postgresql_settings, "POOL": pool} for alias in ("primary", "replica")}

    return make


def test_a_broken_connection_is_discarded_not_lent_again(pg, pg_db):
    first = backend_pid()
    superuser_sql(pg, f"SELECT pg_terminate_backend({first})")
    assert wait_for(lambda: not superuser_sql(
        pg, f"SELECT 1 FROM pg_stat_activity WHERE pid = {first}"))
    assert backend_pid() != first  # the dead one was noticed, dropped, and a new one opened
    assert pools.stats("default") == {"in_use": 0, "open": 1, "max_size": 20}
    with qplan.atomic():
        Author.objects.create(name="after")
    assert Author.objects.count() == 1


def test_min_size_and_max_lifetime(postgresql_settings):
    qplan.configure(databases={"default": {**postgresql_settings,
                                           "POOL": {"min_size": 2, "max_lifetime": 0.2}}})
    first = backend_pid()
    assert wait_for(lambda: pools.stats("default")["open"] == 2)  # filled from first use on
    time.sleep(0.3)
    assert backend_pid() != first  # too old: closed, a new one opened


def test_a_borrower_waits_for_its_own_connect_only(postgresql_settings):
    """The refill opens the others on its own thread; a closed pool takes none of them."""
    import psycopg2

    s = postgresql_settings
    openers: list[str] = []

    def opener() -> Any:
        openers.append(threading.current_thread().name)
        return psycopg2.connect(host=s["HOST"], port=s["PORT"], user=s["USER"],
                                password=s["PASSWORD"], dbname=s["NAME"], connect_timeout=10)

    pool = pools.Pool("test", {"max_size": 5, "min_size": 3, "timeout": 5, "max_lifetime": None},
                      opener)
    slot = pool.acquire()
    assert openers.count(threading.current_thread().name) == 1
    assert wait_for(lambda: pool.stats()["open"] == 3 and len(openers) == 3 and len(pool._idle) == 2)
    assert sorted(openers) == ["MainThread", "qplan-pool-refill", "qplan-pool-refill"]
    pool.release(slot)
    pool.close()
    assert pool.stats()["open"] == 0 and pool._idle == []
    late = pool.acquire()  # a closed pool still lends (its borrowers finish), never refills
    assert pool.stats()["open"] == 1 and len(openers) == 4
    pool.release(late)


def test_raw_access_keeps_the_connection_until_close(pg_db):
    conn = qplan.connections["default"]
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    assert backend_pid() == pid and pools.stats("default")["in_use"] == 1
    conn.close()
    assert pools.stats("default")["in_use"] == 0


# --- many threads, few server connections -------------------------------------------------------


THREADS, STATEMENTS = 40, 15


def run_stress(base: dict[str, Any], server_count: Any) -> None:
    """THREADS threads x STATEMENTS statements over four pooled aliases on one database:
    no error, never more server connections than the pools' total, all returned after."""
    qplan.configure(databases={alias: pooled(base) for alias in ALIASES})
    for alias in ALIASES:
        qplan.drop_tables(ALL, using=alias, missing_ok=True)
    qplan.create_tables(ALL, using="a1")  # the four aliases share one database
    errors: list[str] = []
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], server_count())

    def worker(n: int) -> None:
        try:
            for i in range(STATEMENTS):
                alias = ALIASES[(n + i) % len(ALIASES)]
                if i % 5 == 0:
                    with qplan.atomic(using=alias):
                        Author.objects.using(alias).create(name=f"{n}-{i}")
                        Author.objects.using(alias).filter(name=f"{n}-{i}").count()
                else:
                    Author.objects.using(alias).filter(name__startswith=str(n)).count()
        except Exception as exc:  # counted below
            errors.append(repr(exc))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    watcher.join(10)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    limit = len(ALIASES) * MAX_SIZE
    assert 0 < peak[0] <= limit
    stats = [pools.stats(alias) for alias in ALIASES]
    assert all(s["in_use"] == 0 for s in stats)  # all returned after the threads end
    assert server_count() == sum(s["open"] for s in stats) <= limit
    assert Author.objects.using("a2").count() == THREADS * STATEMENTS // 5
    qplan.drop_tables(ALL, using="a1")
    qplan.configure(databases={})  # closes the pools
    assert wait_for(lambda: server_count() == 0)


def test_many_threads_on_four_aliases_stay_within_the_pools(pg, stress_db):
    run_stress(stress_db, lambda: server_connections(pg))


@pytest.fixture(scope="module")
def mariadb_stress_db(mariadb: Any) -> dict[str, Any]:
    """A MariaDB database and a user that may hold at most ``4 * MAX_SIZE`` connections."""
    limit = len(ALIASES) * MAX_SIZE
    mariadb.create_database(DB)
    mariadb.superuser_sql(
        f"CREATE USER IF NOT EXISTS '{ROLE}'@'{mariadb.host}' IDENTIFIED BY 'stresspw' "
        f"WITH MAX_USER_CONNECTIONS {limit}; GRANT ALL ON `{DB}`.* TO '{ROLE}'@'{mariadb.host}'")
    return {"ENGINE": "mysql", "HOST": mariadb.host, "PORT": mariadb.port, "USER": ROLE,
            "PASSWORD": "stresspw", "NAME": DB}


def test_many_threads_on_four_mariadb_aliases_stay_within_the_pools(mariadb, mariadb_stress_db):
    def count() -> int:
        rows = mariadb.superuser_sql(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{ROLE}'")
        return int(rows[-1])

    run_stress(mariadb_stress_db, count)


def test_shard_fan_out_borrows_from_the_same_pools(pg, stress_db):
    """Fan-out from many threads: the shard workers keep no connection after the work."""
    qplan.configure(databases={alias: pooled(stress_db) for alias in ALIASES},
                    routers=[qplan.Sharded("pages", {a: a for a in ALIASES}, by="range",
                                           bounds=[10, 20, 30], models=["testmodels.Book"])])
    qplan.drop_tables(ALL, using="a1", missing_ok=True)
    qplan.create_tables(ALL, using="a1")
    from testmodels import Book

    errors: list[str] = []

    def worker() -> None:
        try:
            for _ in range(5):
                Book.objects.count()
        except Exception as exc:  # counted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    stats = [pools.stats(alias) for alias in ALIASES]
    assert all(s["in_use"] == 0 for s in stats)
    assert server_connections(pg) <= len(ALIASES) * MAX_SIZE
    qplan.drop_tables(ALL, using="a1")


def test_configure_reset_and_remove_database_close_the_pools(pg, stress_db):
    qplan.configure(databases={alias: pooled(stress_db) for alias in ALIASES})
    for alias in ALIASES:
        qplan.connections[alias].fetchall("SELECT 1")
    assert wait_for(lambda: server_connections(pg) == 4)
    qplan.remove_database("a1")
    assert wait_for(lambda: server_connections(pg) == 3) and pools.stats("a1") is None
    qplan.add_database("a2", pooled(stress_db, max_size=2))  # replaced: the old pool closes
    assert wait_for(lambda: server_connections(pg) == 2)
    qplan.reset()
    assert wait_for(lambda: server_connections(pg) == 0)


def test_mariadb_aliases_are_pooled_too(mysql_db):
    with qplan.atomic():
        Author.objects.create(name="m")
    Author.objects.count()
    assert pools.stats("default") == {"in_use": 0, "open": 1, "max_size": 20}


def test_a_connection_left_inside_a_transaction_is_not_lent_again(pg_db):
    pid = backend_pid()
    qplan.connections["default"].execute("BEGIN")  # raw SQL outside atomic(): never lent on
    assert backend_pid() != pid
    assert pools.stats("default") == {"in_use": 0, "open": 1, "max_size": 20}
