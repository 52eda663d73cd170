"""PrimaryReplica over a real 3-node Galera cluster (tests/replicas.py): read-your-writes from
Galera's GTIDs, certification conflicts as SerializationFailure, a SIGKILLed node."""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pymysql
import pytest

import qplan
from conftest import replicated
from qplan import PrimaryReplica, routing
from replicas import GaleraCluster
from testmodels import Author

DB = "qplan_galera"
NODES = ("g1", "g2", "g3")


@pytest.fixture(scope="module")
def cluster(galera: GaleraCluster) -> GaleraCluster:
    galera.create_database(DB)
    return galera


@pytest.fixture
def router(cluster: GaleraCluster) -> Iterator[PrimaryReplica]:
    # DDL on g1 replicates in total order
    with replicated({alias: node.settings(DB) for alias, node in zip(NODES, cluster.nodes)},
                    "g1", ["g2", "g3"]) as router:
        yield router


def raw(node, **kwargs) -> pymysql.connections.Connection:
    return pymysql.connect(host=node.host, port=node.port, user=node.user,
                           password=node.password, database=DB, autocommit=True,
                           connect_timeout=5, read_timeout=30, **kwargs)


def test_galera_gtids_give_read_your_writes_mostly_from_the_other_nodes(router):
    stale, served = 0, {}
    for i in range(1000):
        name = f"rw{i}"
        Author.objects.create(name=name)
        got = Author.objects.filter(name=name).first()
        if got is None:
            stale += 1
        else:
            served[got._db] = served.get(got._db, 0) + 1
    assert stale == 0
    assert served.get("g2", 0) + served.get("g3", 0) > 500, served


def test_a_context_reads_its_writes_in_other_threads_through_a_token(router):
    Author.objects.create(name="fresh")
    token = routing.token()
    out: list[str] = []

    def job() -> None:
        try:
            with routing.reading_after(token):
                out.append(Author.objects.get(name="fresh").name)
        finally:
            qplan.connections.close_all()

    t = threading.Thread(target=job)
    t.start()
    t.join(30)
    assert out == ["fresh"]


def test_a_certification_conflict_is_a_serialization_failure_never_retried(router, cluster):
    author = Author.objects.create(name="base")
    other = raw(cluster.nodes[1])
    try:
        with pytest.raises(qplan.SerializationFailure) as info:
            with qplan.atomic():  # on g1, the write alias
                Author.objects.filter(pk=author.pk).update(name="from g1")
                # g2 commits a conflicting write first: g1's transaction loses certification
                with other.cursor() as cur:
                    cur.execute("UPDATE qt_author SET name = 'from g2' WHERE id = %s",
                                (author.pk,))
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:  # the next statement (or COMMIT) sees it
                    Author.objects.filter(pk=author.pk).exists()
                    time.sleep(0.01)
        assert isinstance(info.value, qplan.OperationalError)
        assert "1213" in str(info.value) or "Deadlock" in str(info.value)
        assert isinstance(info.value.__cause__, pymysql.err.OperationalError)
    finally:
        other.close()
    # nothing of g1's transaction was committed, and it was not retried
    assert Author.objects.using("g1").get(pk=author.pk).name == "from g2"
    assert Author.objects.using("g1").count() == 1


def test_a_sigkilled_node_fails_over_without_errors(router, cluster):
    Author.objects.create(name="kept")
    routing.forget_writes()
    readers = {Author.objects.get(name="kept")._db for _ in range(4)}
    assert readers <= {"g2", "g3"}
    victim = readers.pop()
    index = NODES.index(victim)
    cluster.nodes[index].kill()
    try:
        errors = 0
        for i in range(20):
            try:
                got = Author.objects.get(name="kept")
                assert got._db != victim
            except qplan.Error:
                errors += 1
        assert errors == 0
        assert router.is_down(victim)
    finally:
        cluster.nodes[index].restart()
    time.sleep(0.35)  # the back-off
    Author.objects.create(name="after")
    assert Author.objects.filter(name="after").count() == 1


def test_check_shows_each_node_state_gtid_and_queue(router, cluster):
    Author.objects.create(name="x")
    for alias in NODES:
        conn = qplan.connections[alias]
        _, details = conn.backend.probe(conn)
        assert "; galera node Synced (Primary), cluster size 3, GTID 1-" in details
        assert details.endswith("write sets queued")
