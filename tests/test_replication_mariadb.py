"""PrimaryReplica against a real MariaDB primary and its GTID replica (tests/replicas.py):
read-your-writes from GTID positions, a delayed replica, a SIGKILLed replica, tokens."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Iterator

import pytest

import qplan
from conftest import replicated
from qplan import PrimaryReplica, replication, routing
from replicas import GtidPair
from testmodels import Author

DB = "qplan_repl_md"


@pytest.fixture(scope="module")
def pair(gtid_pair: GtidPair) -> GtidPair:
    gtid_pair.create_database(DB)
    return gtid_pair


@pytest.fixture
def router(pair: GtidPair) -> Iterator[PrimaryReplica]:
    with replicated({"primary": pair.primary.settings(DB), "replica": pair.replica.settings(DB)},
                    "primary", ["replica"], pair.wait_caught_up) as router:
        yield router


def in_fresh_context(fn: Callable[[], Any], timeout: float = 30) -> Any:
    """Run ``fn`` in a new thread (a context that made no writes); its result."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        finally:
            qplan.connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout)
    assert not t.is_alive() and out, "the fresh context did not finish"
    return out[0]


def write_then_read(n: int, prefix: str) -> tuple[int, dict[str, int]]:
    """``n`` x (create a row, read it back at once): (stale reads, reads per alias)."""
    stale, served = 0, {}
    for i in range(n):
        name = f"{prefix}{i}"
        Author.objects.create(name=name)
        got = Author.objects.filter(name=name).first()
        if got is None:
            stale += 1
        else:
            served[got._db] = served.get(got._db, 0) + 1
    return stale, served


def gtid_waits(pair: GtidPair) -> tuple[int, float]:
    """The replica's MASTER_GTID_WAIT calls so far and the seconds they waited in all
    (server status: counted by the server, whatever the load on the client)."""
    rows = dict(pair.replica.query("SHOW GLOBAL STATUS LIKE 'Master_gtid_wait%'"))
    return int(rows["Master_gtid_wait_count"]), int(rows["Master_gtid_wait_time"]) / 1e6


def test_gtid_positions_give_read_your_writes_from_the_replica(router, pair):
    # Right after its write, a read sees it, whichever server serves it. Which one does
    # depends on how fast the replica applies (a busy machine: more reads on the primary).
    stale, served = write_then_read(1000, "rw")
    assert stale == 0
    assert sum(served.values()) == 1000
    # Once the replica has applied the write, it serves the read: fails if reads after a
    # write stick to the primary (or positions are never compared).
    for i in range(20):
        Author.objects.create(name=f"applied{i}")
        pair.wait_caught_up()
        assert Author.objects.get(name=f"applied{i}")._db == "replica"


def test_a_delayed_replica_serves_no_stale_read(router, pair):
    # The replica applies each write 3 s after the primary: the assertions that it lacks a
    # write hold while less than 3 s pass between the write and the read (milliseconds).
    pair.attach(delay=3)
    try:
        Author.objects.create(name="old")
        pair.wait_caught_up()  # "old" is on the replica now; what follows is 3 s behind
        waits, waited = gtid_waits(pair)
        stale, served = write_then_read(20, "late")
        assert stale == 0 and served == {"primary": 20}
        # each read gave the replica one bounded chance to catch up (one server-side wait
        # of CATCH_UP_WAIT), no more: counted and timed by the server
        now_waits, now_waited = gtid_waits(pair)
        assert now_waits - waits == 20
        assert now_waited - waited < 20 * (replication.CATCH_UP_WAIT + 0.1)
        Author.objects.create(name="waited")
        assert Author.objects.get(name="waited")._db == "primary"
        # a context without these writes reads the delayed replica, which lacks them
        assert in_fresh_context(lambda: Author.objects.filter(name="waited").exists()) is False
        assert in_fresh_context(lambda: Author.objects.get(name="old")._db) == "replica"
        waits, _ = gtid_waits(pair)  # the replica had its chance: the next reads do not wait
        assert {Author.objects.get(name="waited")._db for _ in range(10)} == {"primary"}
        assert gtid_waits(pair)[0] == waits
        Author.objects.create(name="slow")
        time.sleep(2.1)  # the case: the read 2.1 s after the write (the delay counts
        assert Author.objects.get(name="slow").name == "slow"  # whole seconds: either may serve)
    finally:
        pair.attach(delay=0)
    pair.wait_caught_up()
    assert Author.objects.get(name="waited")._db == "replica"


def test_a_sigkilled_replica_fails_over_without_errors_and_comes_back(router, pair):
    Author.objects.create(name="kept")
    pair.wait_caught_up()
    routing.forget_writes()
    assert Author.objects.get(name="kept")._db == "replica"
    pair.replica.kill()
    try:
        for i in range(10):  # no error reaches the caller, writes and reads alike
            Author.objects.create(name=f"during{i}")
            assert Author.objects.get(name=f"during{i}")._db == "primary"
            assert Author.objects.filter(name="kept").count() == 1
        assert router.is_down("replica")
    finally:
        pair.replica.start()
    pair.wait_caught_up()  # it resumes from its GTID position
    time.sleep(0.35)  # the back-off
    assert Author.objects.get(name="during9")._db == "replica"
    assert not router.is_down("replica")


def test_tokens_carry_gtid_positions(router, pair):
    pair.replica.query("STOP SLAVE SQL_THREAD")  # nothing more is applied on the replica
    try:
        Author.objects.create(name="fresh")
        token = routing.token()
        position = json.loads(token)["primary"][0]
        assert qplan.backends.get("mysql").parse_position(position).seqs  # a GTID position

        def job() -> str:
            with routing.reading_after(token):
                return Author.objects.get(name="fresh")._db

        assert in_fresh_context(job) == "primary"
        assert in_fresh_context(lambda: Author.objects.filter(name="fresh").exists()) is False
    finally:
        pair.replica.query("START SLAVE SQL_THREAD")
    pair.wait_caught_up()
    assert in_fresh_context(job) == "replica"


@pytest.mark.parametrize("position", ["0-1", "0-1-x", "0-1-2,0-3-4", "a-b-c", "0-1-2;0-1-3",
                                      "-1-1-1", "0-1-99999999999999999999999", "٣-1-2",
                                      "0-1-2," * 700])
def test_a_malformed_gtid_in_a_token_is_refused(router, position):
    token = json.dumps({"primary": [position, 0.0]})
    with pytest.raises(qplan.ConfigurationError, match="replication position|token"):
        with routing.reading_after(token):
            pass


def test_every_domain_must_be_reached_and_routing_does_no_io(router, monkeypatch):
    """Routing decides from observed positions alone: a replica ahead in one domain and
    behind in another has not caught up."""
    def no_io(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("routing must not run SQL")

    routing.remember_write("primary", "0-1-50,7-2-3")
    monkeypatch.setattr(qplan.connections["replica"], "fetchall", no_io)
    plan = Author.objects.all()
    assert router.db_for_read(plan) == "primary"  # nothing observed yet
    assert router.observed("replica", "0-1-900,7-2-2") is False
    assert router.db_for_read(plan) == "primary"
    assert router.observed("replica", "0-1-900") is False  # domain 7 missing
    assert router.observed("replica", "0-1-50,7-5-3,9-1-1") is True
    assert router.db_for_read(plan) == "replica"


def test_check_shows_gtid_positions_and_lag(router, pair):
    Author.objects.create(name="x")
    pair.wait_caught_up()
    position = pair.position()
    _, primary = qplan.connections["primary"].backend.probe(qplan.connections["primary"])
    _, replica = qplan.connections["replica"].backend.probe(qplan.connections["replica"])
    assert primary.endswith(f"; primary, GTID {position}")
    assert replica.endswith(f"; replica, GTID {position}, lag 0 s")


def test_a_primary_that_cannot_give_its_position_falls_back_to_the_lag_window(router, pair,
                                                                             monkeypatch):
    """MySQL 8 has no @@gtid_binlog_pos: the write still succeeds, and reads wait out
    ``lag_window`` on the primary."""
    monkeypatch.setattr(qplan.backends.get("mysql"), "WRITE_POSITION_SQL",
                        "SELECT @@no_such_variable")
    router.lag_window = 30  # the read below comes well within it, even on a busy machine
    Author.objects.create(name="unknown position")
    assert json.loads(routing.token())["primary"][0] is None
    assert Author.objects.get(name="unknown position")._db == "primary"
    pair.wait_caught_up()
    router.lag_window = 0.3
    time.sleep(0.3)  # the window is over
    assert Author.objects.get(name="unknown position")._db == "replica"
