"""Throwaway replicated MariaDB servers for the replication tests (recipes: servers.md §7).

* :class:`GtidPair`: a MariaDB primary and an asynchronous GTID replica
  (``MASTER_USE_GTID=slave_pos``), about 1.3 s to start.
* :class:`GaleraCluster`: a 3-node MariaDB Galera cluster, about 10-15 s to start (two
  rsync state transfers); as root the nodes run as the ``mysql`` user (rsync SST fails as
  root).

Both are built from :class:`servers.MariaDBServer` (its folder, watchdog and cleanup),
listen on free loopback ports and are stopped by ``close()``; the ``atexit`` hook and the
per-server watchdog processes of ``servers`` are the backstops.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from servers import (HOST, Endpoint, MariaDBServer, ServerUnavailable, _is_root, _run, _tail,
                     close_all, free_port, start_all)

__all__ = ["GaleraCluster", "GaleraNode", "GtidPair", "ReplicatedMariaDB"]

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
REPL_USER, REPL_PASSWORD = "repl", "replpw"


class ReplicatedMariaDB(MariaDBServer):
    """A MariaDB server with root SQL that returns rows (``query``) and a crash switch."""

    def query(self, sql: str, timeout: float = 60) -> list[list[str]]:
        """Run ``sql`` as root over the private socket; the rows of its last result as text."""
        done = _run([self._bin["mariadb"], "--no-defaults", f"--socket={self.socket_path}",
                     "-uroot", "-N", "-B", "-e", sql], timeout=timeout)
        return [line.split("\t") for line in done.stdout.splitlines()]

    def kill(self) -> None:
        """SIGKILL the server (a crash); ``start()`` brings it back on the same data."""
        self.stop(kill=True)

    def settings(self, name: str) -> dict[str, Any]:
        """qplan settings for database ``name`` on this server as ``app``."""
        return {"ENGINE": "mysql", "HOST": self.host, "PORT": self.port, "USER": self.user,
                "PASSWORD": self.password, "NAME": name,
                "OPTIONS": {"init_command": "SET SESSION lock_wait_timeout = 20,"
                                            " innodb_lock_wait_timeout = 20"}}


# ---------------------------------------------------------------------------------------------
# primary + GTID replica

_BINLOG = ("--log-bin=mysql-bin", "--binlog-format=ROW")


class GtidPair:
    """A MariaDB primary (server-id 1, binlog) and a GTID replica of it (server-id 2,
    ``read_only``, no binlog of its own, so its local provisioning never enters the
    replicated GTID stream)."""

    def __init__(self) -> None:
        self.primary = ReplicatedMariaDB([*_BINLOG, "--server-id=1", "--gtid-strict-mode=1"])
        self.replica = ReplicatedMariaDB(["--server-id=2", "--read-only=1",
                                          "--relay-log=relay-bin"])

    def start(self) -> GtidPair:
        """Start both servers concurrently, then replicate; raise the first error."""
        for error in start_all(self.primary, self.replica):
            if error is not None:
                self.close()
                raise error
        try:
            self.primary.query(
                f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'{HOST}' IDENTIFIED BY '{REPL_PASSWORD}';"
                f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'{HOST}'")
            self.attach()
            self.wait_caught_up()
        except BaseException:
            self.close()
            raise
        return self

    def attach(self, delay: int = 0) -> None:
        """(Re)point the replica at the primary, ``delay`` seconds behind it (MASTER_DELAY)."""
        self.replica.query(
            "STOP SLAVE; "
            f"CHANGE MASTER TO MASTER_HOST='{HOST}', MASTER_PORT={self.primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            f"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_DELAY={int(delay)}; "
            "START SLAVE")

    def position(self) -> str:
        """The primary's GTID position (every domain)."""
        rows = self.primary.query("SELECT @@gtid_binlog_pos")
        return rows[0][0] if rows else ""

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Wait until the replica has applied everything the primary has written so far."""
        pos = self.position()
        if not pos:
            return
        got = self.replica.query(f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})",
                                 timeout=timeout + 10)
        if got[0][0] != "0":
            status = self.replica.query("SHOW SLAVE STATUS\\G")
            raise TimeoutError(f"replica not at {pos} after {timeout}s: {status}\n"
                               f"{_tail(self.replica.base / 'error.log')}")

    def create_database(self, name: str) -> None:
        """Create ``name`` on the primary (replicated) and grant ``app`` on both servers."""
        self.primary.create_database(name)
        self.wait_caught_up()
        self.replica.create_database(name)  # IF NOT EXISTS: only the grant is new
        # SHOW SLAVE STATUS (``qplan check``'s lag) needs SLAVE MONITOR
        self.replica.query(f"GRANT SLAVE MONITOR ON *.* TO '{self.replica.user}'@'{HOST}'")

    def close(self) -> None:
        """Stop both servers and remove their folders."""
        close_all(self.replica, self.primary)

    def folders(self) -> list[Path]:
        """The servers' folders (while they exist)."""
        return [s.base for s in (self.primary, self.replica) if s.base is not None]


# ---------------------------------------------------------------------------------------------
# Galera


def _galera_user() -> str | None:
    """The OS user the nodes run as: ``mysql`` as root (rsync SST refuses root), else None."""
    if not _is_root():
        return None
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        raise ServerUnavailable("Galera nodes run as the 'mysql' user: install mariadb-server")
    return "mysql"


class GaleraNode(ReplicatedMariaDB):
    """One node of a :class:`GaleraCluster` (``index`` 1..3); node 1 bootstraps."""

    def __init__(self, cluster: GaleraCluster, index: int) -> None:
        super().__init__()
        self.cluster, self.index = cluster, index
        self.gcomm_port, self.ist_port, self.sst_port = free_port(), free_port(), free_port()
        self.bootstrap = index == 1  # only its first launch: later it rejoins the others
        self._launches = 0
        self._provisioned = index != 1  # joiners get users and databases by state transfer

    def _create(self) -> None:
        if not os.path.exists(GALERA_PROVIDER):
            raise ServerUnavailable(f"Galera provider {GALERA_PROVIDER} not found: install galera-4")
        user = _galera_user()
        self._find_binaries()
        base = self._register(f"qplan-galera{self.index}-",
                              [("mysqld.pid", "mariadbd", int(signal.SIGKILL)),
                               ("data/rsync_sst.pid", "rsync", int(signal.SIGKILL))])
        base.chmod(0o755)
        if user:
            shutil.chown(base, user, user)
        root_opts = (["--user=mysql", "--auth-root-authentication-method=socket"] if user
                     else ["--auth-root-authentication-method=normal"])
        _run([self._bin["mariadb-install-db"], "--no-defaults", f"--datadir={base / 'data'}",
              *root_opts, "--skip-test-db", "--skip-name-resolve", f"--tmpdir={base}"], cwd=base)

    def _command(self) -> list[str]:
        cmd = super()._command()
        user = _galera_user()
        cmd = [c for c in cmd if c != "--user=root"] + ([f"--user={user}"] if user else [])
        addresses = ",".join(f"{HOST}:{n.gcomm_port}" for n in self.cluster.nodes)
        options = ";".join([
            f"gmcast.listen_addr=tcp://{HOST}:{self.gcomm_port}",
            f"ist.recv_addr={HOST}:{self.ist_port}", "gcache.size=64M",
            # a killed node is evicted after 5 s instead of 15 s, so it can rejoin sooner
            "evs.suspect_timeout=PT3S", "evs.inactive_timeout=PT5S"])
        cmd += [
            "--wsrep-on=ON", f"--wsrep-provider={GALERA_PROVIDER}",
            f"--wsrep-cluster-name={self.cluster.name}",
            f"--wsrep-cluster-address=gcomm://{addresses}",
            f"--wsrep-node-name=node{self.index}",
            f"--wsrep-node-address={HOST}:{self.gcomm_port}",
            f"--wsrep-node-incoming-address={HOST}:{self.port}",
            f"--wsrep-sst-receive-address={HOST}:{self.sst_port}", "--wsrep-sst-method=rsync",
            f"--wsrep-provider-options={options}",
            # Galera GTIDs in MariaDB's form (domain-server-seqno), the same on every node
            "--wsrep-gtid-mode=ON", "--wsrep-gtid-domain-id=1", "--log-bin=mysql-bin",
            "--log-slave-updates=ON", f"--gtid-domain-id={10 + self.index}",
            "--binlog-format=ROW", "--innodb-autoinc-lock-mode=2",
            f"--server-id={100 + self.index}",
        ]
        if self.bootstrap and self._launches == 0:
            cmd.append("--wsrep-new-cluster")
        return cmd

    def _launch(self, timeout: float = 90) -> None:
        try:
            super()._launch(timeout)
        finally:
            self._launches += 1
        self.wait_synced(timeout)

    def wait_synced(self, timeout: float = 90) -> None:
        """Wait until this node is Synced with the cluster."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):
                rows = self.query("SHOW STATUS LIKE 'wsrep_local_state_comment'")
                if rows and rows[0][1] == "Synced":
                    return
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"Galera node {self.index} exited while joining\n"
                                   f"{_tail(self.base / 'error.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Galera node {self.index} not Synced after {timeout}s\n"
                                   f"{_tail(self.base / 'error.log')}")
            time.sleep(0.05)

    def restart(self) -> None:
        """Start this (stopped or killed) node again: it rejoins the running cluster (IST
        or SST), also node 1."""
        self.start()

    def settings(self, name: str) -> dict[str, Any]:
        return {**super().settings(name), "ENGINE": "galera"}


class GaleraCluster:
    """Three Galera nodes on loopback; ``nodes[0]`` bootstraps, the others join it."""

    def __init__(self, name: str = "qplan") -> None:
        self.name = name
        self.nodes: list[GaleraNode] = []
        self.nodes.extend(GaleraNode(self, i) for i in (1, 2, 3))

    JOIN_ATTEMPTS = 2  # a joiner that times out on a loaded machine is started once more

    def start(self) -> GaleraCluster:
        """Bootstrap node 1, then join nodes 2 and 3 (concurrently; Galera queues the SSTs)."""
        try:
            self.nodes[0].start()
            for error in start_all(*(GaleraJoin(n, self.JOIN_ATTEMPTS) for n in self.nodes[1:])):
                if error is not None:
                    raise error
        except BaseException:
            self.close()
            raise
        return self

    def create_database(self, name: str) -> None:
        """Create ``name`` and grant ``app`` on it (DDL replicates to every node)."""
        self.nodes[0].create_database(name)

    def endpoints(self) -> list[Endpoint]:
        """Each node's ``appdb`` as an :class:`Endpoint`, node 1 first."""
        return [n.endpoint for n in self.nodes]

    def close(self) -> None:
        """Stop every node and remove their folders."""
        close_all(*reversed(self.nodes))

    def folders(self) -> list[Path]:
        """The nodes' folders (while they exist)."""
        return [n.base for n in self.nodes if n.base is not None]



class GaleraJoin:
    """Join one node, retrying a failed join (``start_all`` runs these concurrently)."""

    def __init__(self, node: GaleraNode, attempts: int) -> None:
        self.node, self.attempts = node, attempts

    def start(self) -> None:
        for attempt in range(self.attempts):
            try:
                self.node.start()
                return
            except RuntimeError:
                if attempt + 1 == self.attempts:
                    raise

    def close(self) -> None:
        self.node.close()
