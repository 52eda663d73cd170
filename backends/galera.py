"""MariaDB Galera Cluster nodes through PyMySQL: the MariaDB backend plus Galera's facts.

A registered backend of its own (ENGINE ``galera``), not detection on connect: one backend
instance serves every alias of its ENGINE, and routing asks the backend, without I/O, how
positions are read and compared; an alias says what it points at, as ``postgresql`` does.

- Read-your-writes from Galera's own GTIDs (``wsrep_gtid_mode=ON``): after a write the
  session's ``WSREP_LAST_WRITTEN_GTID()``; a node has it once its
  ``WSREP_LAST_SEEN_GTID()`` (the last GTID it committed) has reached it; execution re-reads
  it for a few milliseconds before sending the read to the primary. Reads never need
  ``wsrep_sync_wait``.
- A certification conflict is error 1213 (``qplan.SerializationFailure``), as in MariaDB.
- A node outside the primary component answers 1047 ("WSREP has not yet prepared node for
  application use"): it cannot serve, like a dead server, so its reads fail over.
- Auto-increment values step by the cluster size (``wsrep_auto_increment_control``): ids
  are unique, not consecutive (``DENSE_AUTO_IDS``).
"""

from __future__ import annotations

from typing import Any

from .mysql import MySQLBackend, _GONE

# 1047 ER_UNKNOWN_COM_ERROR: the node is not in the primary component (or still joining).
_NOT_READY = 1047


class GaleraBackend(MySQLBackend):
    name = "galera"
    SPELLINGS = ("mariadb_galera",)
    DENSE_AUTO_IDS = False  # ids step by auto_increment_increment (the cluster size)

    # A single GTID in MariaDB's form (domain-server-seqno); CAST: the functions return bytes.
    WRITE_POSITION_SQL = "SELECT CAST(WSREP_LAST_WRITTEN_GTID() AS CHAR)"
    REPLAY_POSITION_SQL = "SELECT CAST(WSREP_LAST_SEEN_GTID() AS CHAR)"
    # WSREP_SYNC_WAIT_UPTO_GTID waits whole seconds and fails with 1205 when it times out:
    # execution polls REPLAY_POSITION_SQL instead (a node applies within milliseconds).
    WAIT_POSITION_SQL = None

    GONE = frozenset({*_GONE, _NOT_READY})

    def probe_details(self, conn: Any) -> str:
        """The node's state, cluster size, last committed GTID and apply queue."""
        status = dict(conn.fetchall(
            "SHOW STATUS WHERE Variable_name IN ('wsrep_local_state_comment',"
            " 'wsrep_cluster_size', 'wsrep_local_recv_queue', 'wsrep_cluster_status')"))
        seen = conn.fetchall(self.REPLAY_POSITION_SQL)[0][0]
        return (f"; galera node {status.get('wsrep_local_state_comment', '?')}"
                f" ({status.get('wsrep_cluster_status', '?')}), cluster size"
                f" {status.get('wsrep_cluster_size', '?')}, GTID {seen}, lag"
                f" {status.get('wsrep_local_recv_queue', '?')} write sets queued")


backend = GaleraBackend()
