"""Read-your-writes I/O, done by execution for the routers: routers decide, this module reads.

After a write (or the commit of an ``atomic`` block) on a primary some router reads
around, ``record_write`` asks the primary its position (PostgreSQL: the WAL location)
and hands it to routing. Before a read, ``refresh`` asks the replicas the routers
need to know about how far they have replayed, and tells the routers; a replica that
cannot be reached is marked down. Routers then choose from that state alone.
"""

from __future__ import annotations

from typing import Any

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
