"""Replicas seen from execution: read-your-writes positions and failover of reads.

After a write (or the commit of an ``atomic`` block) on a primary some router reads
around, ``record_write`` asks the primary its position (PostgreSQL: the WAL location;
MariaDB: the GTID position of every domain; Galera: the session's last written GTID)
and hands it to routing. Before a read, ``refresh`` asks the replicas the routers
need to know about how far they have replayed, and tells the routers; a replica that
cannot be reached is marked down. Routers then choose from that state alone.

When no replica has caught up yet, ``refresh`` gives the first one that can serve a
bounded chance, ``CATCH_UP_WAIT`` seconds at most: the backend's wait
(``MASTER_GTID_WAIT``) where it has one, else re-reading the position every
``POLL_INTERVAL``. A replica further behind leaves the read to the primary, and the
context's next reads do not wait for it again until the context writes again.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, Callable

from . import routing
from .connections import Connection, connections
from .errors import ConnectionFailure, DatabaseError, OperationalError
from .steps import CONN, FETCH, SLEEP, Steps, drive

CATCH_UP_WAIT = 0.05  # seconds one read may wait for a replica to catch up, at most
POLL_INTERVAL = 0.002  # seconds between two reads of a position, without a server-side wait

# replica -> the position this context last waited for in vain (replaced, never mutated)
_waited: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "qplan_waited", default={})


def record_write(conn: Connection) -> None:
    """Record this context's write on ``conn``: :func:`record_write_steps` on the blocking
    edge, called directly (every blocking write passes here: no generator to drive)."""
    if _untracked(conn):
        return
    sql = conn.backend.WRITE_POSITION_SQL
    try:
        rows = None if sql is None else conn.fetchall(sql, ())
    except DatabaseError:
        rows = None
    _remember(conn, rows)


def record_write_steps(conn: Any) -> Steps:
    """Record this context's write on ``conn`` (after the statement, or after COMMIT).

    The write is done by then: a position the server cannot give (a server without GTIDs,
    a connection lost just after COMMIT) is recorded as unknown, so routing reads from the
    primary for its ``lag_window``, and the caller sees no error.
    """
    if _untracked(conn):
        return
    sql = conn.backend.WRITE_POSITION_SQL
    try:
        rows = None if sql is None else (yield (FETCH, conn, sql, ()))
    except DatabaseError:
        rows = None
    _remember(conn, rows)


def _untracked(conn: Any) -> bool:
    """Whether a write on ``conn`` needs no position: inside ``atomic`` (its COMMIT
    records it), or no router reads around its alias."""
    return conn.in_atomic or not routing.tracks(conn.alias)


def _remember(conn: Any, rows: list | None) -> None:
    """Hand routing the position ``rows`` give (None: unknown)."""
    routing.remember_write(conn.alias, None if rows is None else rows[0][0])


def refresh(plan: Any) -> None:
    """:func:`refresh_steps` on the blocking edge: the positions are read by direct calls
    (the read after every write passes here); only a replica still behind drives
    :func:`_catch_up`'s steps."""
    reachable: list = []
    for router, replica, position in routing.positions_wanted(plan):
        try:
            conn = connections[replica]
            replayed = conn.fetchall(conn.backend.REPLAY_POSITION_SQL, ())[0][0]
        except ConnectionFailure:
            router.mark_down(replica)
            continue
        if router.observed(replica, replayed):
            return
        reachable.append((router, replica, position))
    wait = _wait_for(reachable)
    if wait is not None:
        _waited_in_vain(wait, drive(_catch_up(*wait)))


def refresh_steps(plan: Any) -> Steps:
    """Read the replay positions the routers of ``plan`` need, until one replica will do;
    when none will, wait for the first reachable one, ``CATCH_UP_WAIT`` at most."""
    reachable: list = []
    for router, replica, position in routing.positions_wanted(plan):
        try:
            replayed = yield from _replayed((yield (CONN, replica)))
        except ConnectionFailure:
            router.mark_down(replica)
            continue
        if router.observed(replica, replayed):
            return
        reachable.append((router, replica, position))
    wait = _wait_for(reachable)
    if wait is not None:
        _waited_in_vain(wait, (yield from _catch_up(*wait)))


def _wait_for(reachable: list) -> tuple | None:
    """``(router, replica, position)`` to give a chance to catch up when no replica will
    do: the first reachable one, unless this context already waited for it in vain at that
    position (or waiting is off)."""
    if not reachable or CATCH_UP_WAIT <= 0:
        return None
    wait = reachable[0]
    return None if _waited.get().get(wait[1]) == wait[2] else wait


def _waited_in_vain(wait: tuple, caught_up: bool) -> None:
    """Remember a replica that did not catch up with ``wait``'s position."""
    if not caught_up:
        _waited.set({**_waited.get(), wait[1]: wait[2]})


def _replayed(conn: Any) -> Steps:
    return (yield (FETCH, conn, conn.backend.REPLAY_POSITION_SQL, ()))[0][0]


def _catch_up(router: Any, replica: str, position: str) -> Steps:
    """Give ``replica`` up to ``CATCH_UP_WAIT`` seconds to replay ``position``, telling
    ``router`` what it then has; True when it caught up. A replica that fails is marked
    down."""
    conn = yield (CONN, replica)
    wait_sql = conn.backend.WAIT_POSITION_SQL
    deadline = time.monotonic() + CATCH_UP_WAIT
    try:
        if wait_sql is not None:  # one server-side wait, then the position it reached
            yield (FETCH, conn, wait_sql, (position, CATCH_UP_WAIT))
            return bool(router.observed(replica, (yield from _replayed(conn))))
        while time.monotonic() < deadline:
            yield (SLEEP, POLL_INTERVAL)
            if router.observed(replica, (yield from _replayed(conn))):
                return True
    except ConnectionFailure:
        router.mark_down(replica)
    except OperationalError:  # the wait itself failed (a timeout): the read goes elsewhere
        pass
    return False


def with_failover(plan: Any, alias: str, router: Any, attempt: Callable[[Any, Connection], Any],
                  write: bool) -> Any:
    """``attempt(plan, connection)`` on ``alias``, failing over as :func:`failover_steps`
    (the blocking edge calls ``attempt`` directly: no steps to drive on the common path)."""
    tried = {alias}
    while True:
        conn = connections[alias]
        try:
            return attempt(plan, conn)
        except ConnectionFailure as exc:
            alias = _failover_to(plan, alias, router, exc, write, conn, tried)


def failover_steps(plan: Any, alias: str, router: Any, attempt: Callable[[Any, Any], Steps],
                   write: bool) -> Steps:
    """``attempt(plan, connection)`` (steps) on ``alias``; a read whose server cannot be
    reached moves to the alias the router's ``failover`` names (never a write, never
    inside ``atomic``)."""
    tried = {alias}
    while True:
        conn = yield (CONN, alias)
        try:
            return (yield from attempt(plan, conn))
        except ConnectionFailure as exc:  # a dead server, never a query's own error
            alias = _failover_to(plan, alias, router, exc, write, conn, tried)


def _failover_to(plan: Any, alias: str, router: Any, exc: ConnectionFailure, write: bool,
                 conn: Any, tried: set) -> str:
    """The alias a read that found ``alias`` dead moves to (the router's ``failover``), or
    ``exc`` raised again: never for a write, inside ``atomic``, or to an alias tried."""
    failover = getattr(router, "failover", None)
    if write or failover is None or conn.in_atomic:
        raise exc
    nxt = failover(plan, alias, exc)
    if nxt is None or nxt in tried:
        raise exc
    tried.add(nxt)
    return nxt
