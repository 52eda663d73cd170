"""The replicated test servers (tests/replicas.py): replication works, and nothing outlives close()."""

from __future__ import annotations

import os

import pymysql

from replicas import GaleraCluster, GtidPair


def test_a_gtid_pair_replicates_and_close_leaves_nothing_behind() -> None:
    pair = GtidPair().start()  # a private pair (not the session one): closed here
    bases = [pair.primary.base, pair.replica.base]
    pids = [pair.primary.proc.pid, pair.replica.proc.pid]
    try:
        pair.create_database("probe")
        conn = pymysql.connect(**{**pair.primary.connect_kwargs, "database": "probe"},
                               autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id int PRIMARY KEY)")
            cur.execute("INSERT INTO t VALUES (1)")
        conn.close()
        pair.wait_caught_up(timeout=10)
        assert pair.replica.query("SELECT id FROM probe.t") == [["1"]]
        assert pair.replica.query("SELECT @@read_only") == [["1"]]
    finally:
        pair.close()
    assert not any(os.path.exists(b) for b in bases)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)


def test_a_galera_cluster_has_three_synced_nodes(galera: GaleraCluster) -> None:
    for node in galera.nodes:
        status = dict(node.query("SHOW STATUS WHERE Variable_name IN"
                                 " ('wsrep_cluster_size', 'wsrep_local_state_comment')"))
        assert status == {"wsrep_cluster_size": "3", "wsrep_local_state_comment": "Synced"}
    assert len({n.port for n in galera.nodes}) == 3
