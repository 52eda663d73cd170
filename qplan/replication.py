"""Replicas seen from execution: read-your-writes positions and failover of reads.

After a write (or the commit of an ``atomic`` block) on a primary some router reads
around, ``record_write`` asks the primary its position (PostgreSQL: the WAL location)
and hands it to routing. Before a read, ``refresh`` asks the replicas the routers
need to know about how far they have replayed, and tells the routers; a replica that
cannot be reached is marked down. Routers then choose from that state alone.
"""

from __future__ import annotations

from typing import Any, Callable

from . import routing
from .connections import Connection, connections
from .errors import ConnectionFailure


def record_write(conn: Connection) -> None:
    """Record this context's write on ``conn`` (after the statement, or after COMMIT)."""
    if conn.in_atomic or not routing.tracks(conn.alias):
        return
    sql = conn.backend.WRITE_POSITION_SQL
    position = None if sql is None else conn.fetchall(sql)[0][0]
    routing.remember_write(conn.alias, position)


def refresh(plan: Any) -> None:
    """Read the replay positions the routers of ``plan`` need, until one replica will do."""
    for router, replica, _ in routing.positions_wanted(plan):
        conn = connections[replica]
        try:
            replayed = conn.fetchall(conn.backend.REPLAY_POSITION_SQL)[0][0]
        except ConnectionFailure:
            router.mark_down(replica)
            continue
        if router.observed(replica, replayed):
            return


def with_failover(plan: Any, alias: str, router: Any, attempt: Callable[[Any, Connection], Any],
                  write: bool) -> Any:
    """``attempt(plan, connection)`` on ``alias``; a read whose server cannot be reached moves
    to the alias the router's ``failover`` names (never a write, never inside ``atomic``)."""
    tried = {alias}
    while True:
        conn = connections[alias]
        try:
            return attempt(plan, conn)
        except ConnectionFailure as exc:  # a dead server, never a query's own error
            failover = getattr(router, "failover", None)
            if write or failover is None or conn.in_atomic:
                raise
            nxt = failover(plan, alias, exc)
            if nxt is None or nxt in tried:
                raise
            tried.add(nxt)
            alias = nxt
