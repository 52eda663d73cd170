"""PrimaryReplica over a real 3-node Galera cluster (tests/replicas.py): read-your-writes from
Galera's GTIDs, certification conflicts as SerializationFailure, a SIGKILLed node."""

from __future__ import annotations

import json
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


def wait_applied(cluster: GaleraCluster, timeout: int = 20) -> None:
    """Wait until g2 and g3 have applied this context's last write on g1 (Galera's own
    bounded wait; error 1205 when a node is not there after ``timeout`` seconds)."""
    position = json.loads(routing.token())["g1"][0]
    for node in cluster.nodes[1:]:
        conn = raw(node)  # read_timeout 30 s: more than the wait
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT WSREP_SYNC_WAIT_UPTO_GTID(%s, %s)", (position, timeout))
        finally:
            conn.close()


def test_galera_gtids_give_read_your_writes_from_the_other_nodes(router, cluster):
    # Right after its write, a read sees it, whichever node serves it. Which one does
    # depends on how fast g2/g3 apply (a busy machine: more reads on g1), so not asserted.
    stale = 0
    for i in range(1000):
        name = f"rw{i}"
        Author.objects.create(name=name)
        stale += Author.objects.filter(name=name).first() is None
    assert stale == 0
    # Once the others have applied the write, they serve the read, never g1: fails if
    # reads after a write stick to the writer (or positions are never compared).
    for i in range(20):
        Author.objects.create(name=f"applied{i}")
        wait_applied(cluster)
        assert Author.objects.get(name=f"applied{i}")._db in ("g2", "g3")


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
    wait_applied(cluster)  # else a read without the write's position may miss "kept"
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
