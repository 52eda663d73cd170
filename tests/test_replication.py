"""PrimaryReplica against the real PostgreSQL primary and streaming hot standby."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import psycopg2
import pytest

import qplan
from conftest import in_threads, raised, replicated
from qplan import PrimaryReplica, routing
from servers import PostgresCluster
from testmodels import Author

DB = "qplan_repl"


@pytest.fixture(scope="module")
def cluster(pg: PostgresCluster) -> PostgresCluster:
    pg.create_database(DB)
    return pg


def _settings(endpoint) -> dict:
    return {"ENGINE": "postgresql", "HOST": endpoint.host, "PORT": endpoint.port, "USER": endpoint.user,
            "PASSWORD": endpoint.password, "NAME": DB}


@pytest.fixture
def router(cluster: PostgresCluster) -> Iterator[PrimaryReplica]:
    with replicated({"primary": _settings(cluster.primary), "replica": _settings(cluster.replica)},
                    "primary", ["replica"], cluster.wait_replica_caught_up) as router:
        yield router


def replica_sql(cluster: PostgresCluster, sql: str) -> None:
    conn = psycopg2.connect(cluster.replica.with_name(DB).dsn)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def in_fresh_context(fn):
    """Run ``fn`` in a new thread: a context that made no writes."""
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def test_reads_go_to_the_replica_and_writes_to_the_primary(router, cluster):
    a = Author.objects.create(name="w")
    assert a._db == "primary"
    cluster.wait_replica_caught_up()
    routing.forget_writes()
    assert Author.objects.get(name="w")._db == "replica"
    with pytest.raises(qplan.DatabaseError, match="'replica'.*read-only"):
        Author.objects.using("replica").create(name="never")


def test_read_your_writes_while_the_replica_lags(router, cluster):
    replica_sql(cluster, "SELECT pg_wal_replay_pause()")
    try:
        Author.objects.create(name="fresh")
        # This context reads its write from the primary...
        assert Author.objects.get(name="fresh")._db == "primary"
        # ...while a context without the write still reads the lagging replica, which lacks it.
        assert in_fresh_context(lambda: Author.objects.filter(name="fresh").exists()) is False
        assert in_fresh_context(lambda: Author.objects.first()) is None
        # The token hands the write's position to a background job.
        token = routing.token()

        def job():
            with routing.reading_after(token):
                return Author.objects.get(name="fresh")._db

        assert in_fresh_context(job) == "primary"
    finally:
        replica_sql(cluster, "SELECT pg_wal_replay_resume()")
    cluster.wait_replica_caught_up()
    got = Author.objects.get(name="fresh")
    assert got._db == "replica"  # caught up: back to the replica


def test_count_and_page_read_from_one_replica_in_one_context(router):
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(5)])
    routing.forget_writes()
    time.sleep(0.05)
    plan = Author.objects.order_by("name")
    seen = {plan[:2].first()._db for _ in range(3)}
    assert seen == {"replica"}


def test_many_threads_read_their_own_writes(router):
    errors = []

    def worker(n: int) -> None:
        for i in range(10):
            name = f"t{n}-{i}"
            Author.objects.create(name=name)
            if Author.objects.filter(name=name).count() != 1:
                errors.append(name)

    errors += raised(in_threads(worker, 6))
    assert errors == []
    assert Author.objects.using("primary").count() == 60


def test_a_replica_that_dies_fails_over_and_comes_back(router, cluster):
    Author.objects.create(name="kept")
    cluster.wait_replica_caught_up()
    routing.forget_writes()
    assert Author.objects.get(name="kept")._db == "replica"
    cluster.stop_replica()
    try:
        for _ in range(3):  # no error reaches the caller
            assert Author.objects.get(name="kept")._db == "primary"
        assert router.is_down("replica")
    finally:
        cluster.start_replica()
    time.sleep(0.35)  # the back-off
    assert Author.objects.get(name="kept")._db == "replica"
    assert not router.is_down("replica")


def test_a_dead_primary_is_a_clear_error_and_recovers(router, cluster):
    Author.objects.create(name="before")
    cluster.wait_replica_caught_up()
    routing.forget_writes()
    cluster.stop_primary()
    try:
        with pytest.raises(qplan.OperationalError) as info:
            Author.objects.create(name="during")
        message = str(info.value)
        assert "'primary'" in message and str(cluster.primary.port) in message
        assert Author.objects.get(name="before")._db == "replica"  # reads go on
    finally:
        cluster.start_primary()
    Author.objects.create(name="after")  # the same process recovers
    cluster.wait_replica_caught_up(timeout=30)  # the standby streams again (it retries every 5 s)
    assert Author.objects.using("primary").filter(name__in=["before", "after"]).count() == 2
    assert Author.objects.using("replica").filter(name="during").count() == 0


def test_an_instance_read_from_the_standby_is_saved_and_deleted_on_the_primary(router, cluster):
    Author.objects.create(name="kept")
    cluster.wait_replica_caught_up()
    routing.forget_writes()
    read = Author.objects.get(name="kept")
    assert read._db == "replica"
    read.name = "renamed"
    read.save()  # today: "cannot execute UPDATE in a read-only transaction" on the standby
    assert read._db == "primary"
    assert Author.objects.using("primary").get(pk=read.pk).name == "renamed"
    read.delete()
    assert Author.objects.using("primary").count() == 0


def test_a_query_cancelled_on_the_standby_is_raised_not_failed_over(router, cluster):
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(2000)])
    cluster.wait_replica_caught_up()
    routing.forget_writes()
    slow = dict(qplan.settings.database("replica"), OPTIONS={"options": "-c statement_timeout=1"})
    qplan.add_database("replica", slow)
    plan = Author.objects.filter(name__icontains="9").order_by("-name", "email", "id")
    for _ in range(20):  # a 1 ms timeout: almost every run is cancelled
        try:
            list(plan)
        except qplan.OperationalError as exc:
            assert "statement timeout" in str(exc)
            assert not isinstance(exc, qplan.ConnectionFailure)
            break
    else:
        pytest.fail("the standby answered within 1 ms 20 times: the cancel was failed over")
    assert not router.is_down("replica")


def test_a_thousand_writes_read_back_at_once_are_never_stale(router, cluster):
    """Issue 11's loop on PostgreSQL: write through the router, read it back at once."""
    stale = on_replica = 0
    for i in range(1000):
        Author.objects.create(name=f"w{i}")
        got = Author.objects.filter(name=f"w{i}").first()
        if got is None:
            stale += 1
        elif got._db == "replica":
            on_replica += 1
    assert stale == 0
    assert on_replica >= 500  # the replica catches up within the bounded wait


def test_read_your_writes_on_the_blocking_path_drives_no_steps(router, cluster, monkeypatch):
    """After a write, the position is recorded and the replica's replay position read by
    direct driver calls (``record_write``, ``refresh``): no generator per write + read."""
    from qplan import execution, replication

    real = replication.drive

    def no_drive(gen, *args):  # only a replica still behind drives its catch-up wait
        assert gen.__name__ == "_catch_up", f"the blocking path drove {gen.__name__}"
        return real(gen, *args)

    monkeypatch.setattr(execution, "drive", no_drive)
    monkeypatch.setattr(replication, "drive", no_drive)
    cluster.wait_replica_caught_up()
    for i in range(20):
        Author.objects.filter(pk=-1).update(name="x")  # a write: its position is recorded
        assert routing.pending_writes()
        assert Author.objects.filter(name=f"none{i}").first() is None  # refresh, then read
