"""Attack: POOL ``min_size`` refills against many aliases and dead or hung servers.

Real sockets stand in for servers that never answer (a listener that accepts nothing:
the driver waits for the greeting until READ_TIMEOUT) or refuse at once (accepts and
closes: counted). The real drivers connect to them; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any, Iterator

import pytest

import qplan
from conftest import superuser_sql
from qplan import aconnections, refills
from test_pool_idle import await_for, burst, clean, server, wait_for  # noqa: F401 - fixtures

PASSWORD = "pw-Sekr1t-9f3a"


class Listener:
    """A TCP listener on 127.0.0.1: ``silent`` accepts nothing (handshakes hang in its
    backlog); otherwise each connection is accepted, counted and closed at once."""

    def __init__(self, silent: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = None
        if not silent:
            self._thread = threading.Thread(target=self._serve, daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()


@pytest.fixture
def silent() -> Iterator[Listener]:
    listener = Listener(silent=True)
    yield listener
    listener.close()


@pytest.fixture
def refusing() -> Iterator[Listener]:
    listener = Listener(silent=False)
    yield listener
    listener.close()


def alias_settings(port: int, **pool: Any) -> dict[str, Any]:
    return {"ENGINE": "mysql", "HOST": "127.0.0.1", "PORT": port, "USER": "qplan",
            "PASSWORD": PASSWORD, "NAME": "qplan_attack", "CONNECT_TIMEOUT": 0.5,
            "READ_TIMEOUT": 0.5, "POOL": {"min_size": 2, "max_idle": None, "timeout": 5, **pool}}


def refill_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("qplan-pool-refill"))


def test_two_hundred_pools_refill_on_a_bounded_set_of_threads(silent):
    aliases = [f"a{i}" for i in range(200)]
    qplan.configure(databases={a: alias_settings(silent.port) for a in aliases})
    errors: list[BaseException] = []

    def lend(alias: str) -> None:
        try:
            qplan.connections[alias].fetchall("SELECT 1")
        except BaseException as exc:  # the hung server: a ConnectionFailure after READ_TIMEOUT
            errors.append(exc)

    threads = [threading.Thread(target=lend, args=(a,)) for a in aliases]
    for t in threads:
        t.start()
    most = 0
    while any(t.is_alive() for t in threads):
        most = max(most, refill_threads())
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert len(errors) == 200 and all(isinstance(e, qplan.ConnectionFailure) for e in errors)
    assert 1 <= most <= refills.MAX_THREADS
    assert not any(PASSWORD in str(e) for e in errors)
    qplan.configure(databases={})  # closed pools: the queued refills are dropped at once
    assert wait_for(lambda: refill_threads() == 0, 3.0)


def test_refill_against_a_dead_server_backs_off_and_logs_without_the_password(refusing, caplog):
    qplan.configure(databases={"dead": alias_settings(refusing.port)})
    caplog.set_level(logging.WARNING, logger="qplan.pools")
    lends = 20
    for _ in range(lends):
        with pytest.raises(qplan.ConnectionFailure) as info:
            qplan.connections["dead"].fetchall("SELECT 1")
        assert PASSWORD not in str(info.value)
        time.sleep(0.01)
    assert wait_for(lambda: refill_threads() == 0, 3.0)
    # each lend connects once itself; the refills back off after the first failure
    # instead of doubling every lend's connection attempts
    refilled = refusing.accepted - lends
    assert 1 <= refilled <= 3, refusing.accepted
    logged = [r for r in caplog.records if r.name == "qplan.pools"]
    assert 1 <= len(logged) <= 3
    for record in logged:
        text = record.getMessage()
        assert "'dead'" in text and "min_size" in text and PASSWORD not in text
        assert record.exc_info is None  # no traceback: the message is the mapped error


def test_refill_failure_against_a_live_server_with_a_wrong_password_is_logged_redacted(
        mysql_settings, caplog):
    caplog.set_level(logging.WARNING, logger="qplan.pools")
    qplan.configure(databases={"bad": {**mysql_settings, "PASSWORD": PASSWORD,
                                       "POOL": {"min_size": 2, "max_idle": None}}})
    with pytest.raises(qplan.ConnectionFailure) as info:
        qplan.connections["bad"].fetchall("SELECT 1")
    assert PASSWORD not in str(info.value)
    assert wait_for(lambda: any(r.name == "qplan.pools" for r in caplog.records), 5.0)
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)


def test_async_pool_against_a_dead_server_does_not_refill(refusing):
    """The async pools start a refill only after a lend's own connect succeeded: a server
    that never answered is asked once per lend, no more (a refill failing later, when the
    server died after, is logged and backs off as the blocking pools' do)."""
    qplan.configure(databases={"dead": alias_settings(refusing.port)})
    lends = 20

    async def main() -> None:
        conn = aconnections.connection("dead")
        for _ in range(lends):
            with pytest.raises(qplan.ConnectionFailure) as info:
                await conn.fetchall("SELECT 1")
            assert PASSWORD not in str(info.value)
        await asyncio.sleep(0.2)
        await aconnections.close_all()

    asyncio.run(main())
    assert refusing.accepted == lends


def test_async_pools_of_a_removed_alias_close_at_once(pg, postgresql_settings):
    """configure() without an alias closes its pools on every loop at once (they kept
    their idle connections, and their min_size, to the end of the loop)."""
    app = "qplan_attack_removed"
    qplan.configure(databases={"gone": {**postgresql_settings, "OPTIONS": {"application_name": app},
                                        "POOL": {"min_size": 2, "max_idle": None}}})

    def count() -> int:
        return superuser_sql(
            pg, f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'")[0][0]

    async def main() -> tuple:
        await aconnections.connection("gone").fetchall("SELECT 1")
        filled = await await_for(lambda: count() == 2, 5.0)
        qplan.configure(databases={})
        closed = await await_for(lambda: count() == 0, 5.0)
        return filled, closed

    assert asyncio.run(main()) == (True, True)



def test_reconfiguration_closes_old_pools_and_the_sweeper_serves_the_new_ones(server):  # noqa: F811
    """configure() replacing or removing an alias: the old pool's idle connections close at
    once, one lent across the change closes when it comes back (never idles in a pool no
    one reaches), and the one sweeper thread goes on trimming the new pools."""
    base, count = server
    qplan.configure(databases={"default": {**base, "POOL": {"max_idle": 0.3, "timeout": 10}}})
    burst(3)
    assert count() >= 3
    holding, done, failures = threading.Event(), threading.Event(), []

    def holder() -> None:
        try:
            with qplan.atomic():
                qplan.connections["default"].fetchall("SELECT 1")
                holding.set()
                done.wait(10)
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    old = qplan.pools._pools["default"][1]
    qplan.configure(databases={"default": {**base, "POOL": {"max_idle": 0.3, "timeout": 9}}})
    assert wait_for(lambda: count() == 1, 3.0)  # the lent one only
    done.set()
    thread.join(10)
    assert failures == [] and wait_for(lambda: count() == 0, 3.0)
    assert old.stats()["open"] == 0
    burst(3)  # the new pool: beyond min_size, trimmed by the sweeper thread again
    assert count() >= 3 and wait_for(lambda: count() == 0, 3.0)
    assert sum(t.name == "qplan-pool-sweeper" for t in threading.enumerate()) == 1
    qplan.configure(databases={})
    assert qplan.pools._pools == {}
