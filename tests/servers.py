"""Throwaway database servers for the test suite.

* :class:`PostgresCluster`: a PostgreSQL 15 primary plus (optionally) a streaming hot standby.
* :class:`MariaDBServer`: a MariaDB 10.11 server.

Both live in a temporary folder, listen on free loopback ports and use the Debian binaries.
As root, the PostgreSQL server binaries run as the ``postgres`` user (``runuser``), because
PostgreSQL refuses root. Every server runs in a process group of its own, and stopping it
kills the whole group (tests/processes.py), helpers included (a Galera state transfer's
script). Servers are stopped and their folders removed by ``close()`` (the context managers
call it); an ``atexit`` hook and a small watchdog process (which acts when the test process
dies, even by SIGKILL) are the backstops.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import processes
from processes import live_members, signal_groups, stop_groups, stop_tree

__all__ = [
    "Endpoint",
    "MariaDBServer",
    "PostgresCluster",
    "ServerUnavailable",
    "close_all",
    "free_port",
    "frozen",
    "postgres_pids",
    "running_servers",
    "start_all",
]

HOST = "127.0.0.1"
PG_PACKAGE = "postgresql-15"
PG_BINDIR = "/usr/lib/postgresql/15/bin"
MARIADB_PACKAGE = "mariadb-server"
_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServerUnavailable(RuntimeError):
    """The server binaries (or the system user they need) are not installed."""


# ---------------------------------------------------------------------------------------------
# small helpers


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect to one database."""

    scheme: str
    host: str
    port: int
    user: str
    password: str
    name: str

    @property
    def url(self) -> str:
        """``scheme://user:password@host:port/name``."""
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        return f"{self.scheme}://{auth}@{self.host}:{self.port}/{self.name}"

    @property
    def dsn(self) -> str:
        """libpq keyword/value string (PostgreSQL)."""
        return (f"host={self.host} port={self.port} user={self.user} "
                f"password={self.password} dbname={self.name}")

    def with_name(self, name: str) -> Endpoint:
        """The same server, another database."""
        return replace(self, name=name)


_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never the same one twice in this process)."""
    with _ports_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port: int = s.getsockname()[1]
            if port not in _ports_given:
                _ports_given.add(port)
                return port


def _is_root() -> bool:
    return os.geteuid() == 0


def _check_ident(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    return f"--- last lines of {path} ---\n" + "\n".join(text[-lines:])


def _scratch_root() -> str:
    """Where the server folders go.

    ``$QPLAN_SERVER_TMPDIR`` if set; else /dev/shm when it is a tmpfs with 1 GiB free (initdb
    and pg_basebackup run ~3x faster there than on the disk); else the temp dir, or /tmp if
    that path is long (unix socket paths are limited to ~107 bytes).
    """
    root = os.environ.get("QPLAN_SERVER_TMPDIR")
    if root:
        return root
    with contextlib.suppress(OSError):
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK | os.X_OK):
            return "/dev/shm"
    root = tempfile.gettempdir()
    return root if len(root) <= 40 else "/tmp"


def _mkdtemp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_scratch_root()))


def _live_pid(pidfile: Path, comm: str) -> int | None:
    """The PID in ``pidfile`` if that process is alive (not a zombie) and named ``comm``."""
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/comm") as f:
            name = f.read().strip()
    except (OSError, ValueError, IndexError):
        return None
    return pid if state not in "ZX" and name == comm else None


def _run(cmd: Sequence[str], *, cwd: Path | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command in a process group of its own; raise RuntimeError with its output when
    it fails. A command that times out is killed with its whole group."""
    with subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except BaseException as exc:
            stop_groups([child.pid], signal.SIGKILL)
            child.communicate()
            if isinstance(exc, subprocess.TimeoutExpired):
                raise RuntimeError(f"timed out after {timeout}s: {' '.join(cmd)}") from exc
            raise
    proc = subprocess.CompletedProcess(list(cmd), child.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc


# ---------------------------------------------------------------------------------------------
# backstops: atexit for a normal exit, a watchdog process for a killed test process

_live: set[Any] = set()
_live_lock = threading.Lock()


class _Watchdog:
    """A tiny child process that cleans up if this process dies without closing the servers."""

    def __init__(self, kill: list[tuple[str, str, int]], remove: list[str]) -> None:
        spec = json.dumps({"kill": kill, "remove": remove})
        # processes.py run as a script (stdlib only): see its ``watchdog``
        self.proc = subprocess.Popen([sys.executable, "-I", "-S", processes.__file__, spec],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)

    def cancel(self) -> None:
        """Stop the watchdog without letting it act."""
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdin:
            self.proc.stdin.close()


class _Managed:
    """Context-manager plumbing and the registry behind the atexit backstop."""

    base: Path | None = None
    _watchdog: _Watchdog | None = None
    _groups: set[int]  # the process groups this server's launches made (set by _register)

    def start(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _shutdown(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _register(self, prefix: str, kill: list[tuple[str, str, int]]) -> Path:
        self.base = _mkdtemp(prefix)
        self._groups = set()
        with _live_lock:
            _live.add(self)
        kill = [(str(self.base / rel), comm, sig) for rel, comm, sig in kill]
        self._watchdog = _Watchdog(kill, [str(self.base)])
        return self.base

    def _add_group(self, pgid: int) -> None:
        """Remember a process group a launch made (forgetting the emptied ones)."""
        self._groups = {g for g in self._groups if live_members([g])} | {pgid}

    def close(self) -> None:
        """Stop the server(s) whatever their state and remove the folder."""
        try:
            self._shutdown()
        finally:
            # what the shutdown left of any launch: helpers orphaned by an earlier kill
            if self.base is not None:
                stop_groups(self._groups, signal.SIGKILL, folder=self.base)
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)
                self.base = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            with _live_lock:
                _live.discard(self)

    def __enter__(self) -> Any:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def close_all(*servers: _Managed) -> None:
    """Close the given servers (default: every live one), ignoring errors."""
    with _live_lock:
        targets = list(servers or _live)
    for server in targets:
        with contextlib.suppress(Exception):
            server.close()


atexit.register(close_all)


def start_all(*servers: _Managed) -> list[BaseException | None]:
    """Start the servers concurrently, one thread each.

    Returns each server's start error (or None); a server that failed is closed.
    """
    errors: list[BaseException | None] = [None] * len(servers)

    def run(i: int) -> None:
        try:
            servers[i].start()
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            errors[i] = exc
            with contextlib.suppress(Exception):
                servers[i].close()

    threads = [threading.Thread(target=run, args=(i,), name=f"start-{type(s).__name__}")
               for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # e.g. Ctrl-C: let the starts finish, so that close() can stop them
        for t in threads:
            t.join()
        raise
    return errors


@contextlib.contextmanager
def running_servers(replica: bool = True) -> Iterator[tuple[PostgresCluster, MariaDBServer]]:
    """Start PostgreSQL and MariaDB concurrently; raise the first start error; always close."""
    pg, md = PostgresCluster(replica=replica), MariaDBServer()
    try:
        for error in start_all(pg, md):
            if error is not None:
                raise error
        yield pg, md
    finally:
        close_all(pg, md)


# ---------------------------------------------------------------------------------------------
# PostgreSQL


class PostgresCluster(_Managed):
    """A PostgreSQL primary and, with ``replica=True``, a streaming hot standby (slot replica1).

    ``primary`` / ``replica`` are :class:`Endpoint` records for the ``app`` role (password
    ``apppw``) and the ``appdb`` database. ``app`` may call pg_wal_replay_pause()/resume() and
    pg_is_wal_replay_paused() (granted in template1, so every database has it). The superuser
    is ``postgres``/``superpw`` (see :meth:`superuser_dsn`).
    """

    SUPERUSER = "postgres"
    SUPERUSER_PASSWORD = "superpw"
    REPL_USER = "repl"
    REPL_PASSWORD = "replpw"
    _SERVER_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres")

    def __init__(self, replica: bool = True, *, bindir: str | None = None) -> None:
        self.bindir = Path(bindir or os.environ.get("QPLAN_PG_BINDIR") or PG_BINDIR)
        self.primary = Endpoint("postgresql", HOST, free_port(), "app", "apppw", "appdb")
        self.replica: Endpoint | None = (
            replace(self.primary, port=free_port()) if replica else None)

    # -- public API ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """URL of ``appdb`` on the primary as ``app``."""
        return self.primary.url

    def superuser_dsn(self, which: str = "primary", dbname: str | None = None) -> str:
        """libpq DSN for the superuser on ``"primary"`` or ``"replica"``."""
        endpoint = self._endpoint(which)
        return replace(endpoint, user=self.SUPERUSER, password=self.SUPERUSER_PASSWORD,
                       name=dbname or endpoint.name).dsn

    def start(self) -> PostgresCluster:
        """Create (first call) and start the primary and the replica."""
        try:
            if self.base is None:
                self._create()
            else:
                self.start_primary()
                if self.replica is not None:
                    self.start_replica()
        except BaseException:
            self._shutdown()
            raise
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop replica and primary (data kept; ``start()`` brings them back)."""
        if self.base is None:
            return
        for which in ("replica", "primary"):
            self._ctl_stop(which, mode)

    def start_primary(self) -> None:
        """Start the (stopped) primary; returns once a running replica streams from it again."""
        self._ctl_start("primary")

    def stop_primary(self, mode: str = "fast") -> None:
        """Stop the primary (``mode``: smart, fast or immediate)."""
        self._ctl_stop("primary", mode)

    def start_replica(self) -> None:
        """Start the (stopped) replica; returns once it streams from slot replica1 again
        (if the primary is up)."""
        self._endpoint("replica")
        self._ctl_start("replica")

    def stop_replica(self, mode: str = "fast") -> None:
        """Stop the replica (``mode``: smart, fast or immediate)."""
        self._endpoint("replica")
        self._ctl_stop("replica", mode)

    def wait_replica_caught_up(self, timeout: float = 10.0) -> None:
        """Wait until the replica has replayed everything written on the primary so far."""
        lsn = self._query("primary", "SELECT pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        with contextlib.closing(self._admin_connect("replica")) as conn, conn.cursor() as cur:
            while True:
                cur.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn,"
                            " pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn())", (lsn, lsn))
                done, behind = cur.fetchone()
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"replica still {behind} bytes behind {lsn} after {timeout}s")
                time.sleep(0.002)

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by ``app`` on the primary; return its URL."""
        name = _check_ident(name)
        self._query("primary", f'CREATE DATABASE "{name}" OWNER "{self.primary.user}"')
        return self.primary.with_name(name).url

    # -- internals ----------------------------------------------------------------------------

    def _endpoint(self, which: str) -> Endpoint:
        endpoint = {"primary": self.primary, "replica": self.replica}.get(which)
        if endpoint is None:
            raise ValueError(f"no {which!r} server in this cluster")
        return endpoint

    def _check_installed(self) -> None:
        for name in self._SERVER_BINARIES:
            if not os.access(self.bindir / name, os.X_OK):
                raise ServerUnavailable(
                    f"PostgreSQL server binary {self.bindir / name} not found: install it with "
                    f"`apt-get install -y --no-install-recommends {PG_PACKAGE}` "
                    "(or set QPLAN_PG_BINDIR)")
        if _is_root():
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise ServerUnavailable(
                    "running as root needs the system user 'postgres' (PostgreSQL refuses root): "
                    f"install {PG_PACKAGE} or run `useradd --system --home-dir /nonexistent "
                    "--shell /usr/sbin/nologin postgres`") from None

    def _pg(self, tool: str, *args: str, timeout: float = 120) -> None:
        """Run a PostgreSQL server-side tool, as ``postgres`` when we are root."""
        cmd = [str(self.bindir / tool), *args]
        if _is_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        _run(cmd, cwd=self.base, timeout=timeout)

    def _own(self, path: Path) -> None:
        if _is_root():
            shutil.chown(path, "postgres", "postgres")

    def _datadir(self, which: str) -> Path:
        assert self.base is not None, "cluster not started"
        return self.base / which

    def _pid(self, which: str) -> int | None:
        """PID of the running postmaster of ``which``, if any."""
        return _live_pid(self._datadir(which) / "postmaster.pid", "postgres")

    def _ctl_start(self, which: str) -> None:
        if self._pid(which) is not None:
            return
        log = self._datadir(which).with_suffix(".log")
        try:
            self._pg("pg_ctl", "-D", str(self._datadir(which)), "-l", str(log), "-w", "-t", "60",
                     "start")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{_tail(log)}") from None
        pid = self._pid(which)
        if pid is not None:  # pg_ctl makes the postmaster a session (and group) leader
            self._add_group(os.getpgid(pid))
        other = "primary" if which == "replica" else "replica"
        if self.replica is not None and self._pid(other) is not None:
            self._wait_streaming()  # either way round, hand the cluster back streaming

    def _wait_streaming(self, timeout: float = 30) -> None:
        """Wait until the primary reports the replica as streaming (a few ms after start)."""
        deadline = time.monotonic() + timeout
        while (self._query("primary", "SELECT state FROM pg_stat_replication"
                           " WHERE application_name = 'replica1'") or [None])[0] != "streaming":
            if time.monotonic() > deadline:
                log = self._datadir("replica").with_suffix(".log")
                raise RuntimeError(f"replica not streaming after {timeout}s\n{_tail(log)}")
            time.sleep(0.005)

    def _ctl_stop(self, which: str, mode: str) -> None:
        if self._pid(which) is not None:
            self._pg("pg_ctl", "-D", str(self._datadir(which)), "-m", mode, "-w", "-t", "60",
                     "stop")

    def _shutdown(self) -> None:
        # Immediate shutdown (SIGQUIT) straight from the pid files: the data is thrown away, and
        # this also stops a postmaster whose pg_ctl start was interrupted. Each backend leads a
        # process group of its own: the postmaster's whole tree is signalled, SIGKILL after 10 s.
        if self.base is not None:
            for which in ("replica", "primary"):
                pid = self._pid(which)
                if pid is not None:
                    stop_tree(pid, signal.SIGQUIT, grace=10)

    def _admin_connect(self, which: str, dbname: str = "postgres") -> Any:
        """Superuser connection over the private unix socket (trust auth), autocommit."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.base), port=self._endpoint(which).port,
                                user=self.SUPERUSER, dbname=dbname, connect_timeout=10)
        conn.autocommit = True
        return conn

    def _query(self, which: str, *statements: str, dbname: str = "postgres") -> Any:
        """Run statements as superuser; return the last one's first row (or None)."""
        with contextlib.closing(self._admin_connect(which, dbname)) as conn, conn.cursor() as cur:
            for sql in statements:
                cur.execute(sql)
            return cur.fetchone() if cur.description else None

    def _append_conf(self, which: str, settings: dict[str, Any]) -> None:
        lines = [f"{key} = '{value}'" for key, value in settings.items()]
        with open(self._datadir(which) / "postgresql.conf", "a") as f:
            f.write("\n# qplan test server\n" + "\n".join(lines) + "\n")

    def _create(self) -> None:
        self._check_installed()
        base = self._register("qplan-pg-", [
            ("primary/postmaster.pid", "postgres", int(signal.SIGQUIT)),
            ("replica/postmaster.pid", "postgres", int(signal.SIGQUIT)),
        ])
        base.chmod(0o700)
        self._own(base)
        pwfile = base / "pwfile"
        pwfile.write_text(self.SUPERUSER_PASSWORD + "\n")
        self._own(pwfile)
        self._pg("initdb", "-D", str(base / "primary"), "-U", self.SUPERUSER,
                 f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
                 "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        self._append_conf("primary", {
            "listen_addresses": HOST, "port": self.primary.port,
            "unix_socket_directories": base, "fsync": "off", "full_page_writes": "off",
            "wal_level": "replica", "max_wal_senders": 5, "wal_keep_size": "64MB",
            "hot_standby": "on",
        })
        self._ctl_start("primary")
        self._create_roles()
        if self.replica is not None:
            self._create_replica()

    def _create_roles(self) -> None:
        app, db = self.primary.user, self.primary.name
        self._query("primary",
                    f"CREATE ROLE \"{app}\" LOGIN PASSWORD '{self.primary.password}'",
                    f"CREATE ROLE \"{self.REPL_USER}\" LOGIN REPLICATION"
                    f" PASSWORD '{self.REPL_PASSWORD}'")
        # In template1, so that appdb and every create_database() copy inherit the grant.
        self._query("primary", "GRANT EXECUTE ON FUNCTION pg_wal_replay_pause(),"
                    f" pg_wal_replay_resume(), pg_is_wal_replay_paused() TO \"{app}\"",
                    dbname="template1")
        self._query("primary", f'CREATE DATABASE "{db}" OWNER "{app}"')

    def _create_replica(self) -> None:
        assert self.base is not None and self.replica is not None
        conninfo = (f"host={HOST} port={self.primary.port} user={self.REPL_USER} "
                    f"password={self.REPL_PASSWORD} application_name=replica1")
        self._pg("pg_basebackup", "-D", str(self.base / "replica"), "-R", "-X", "stream",
                 "-c", "fast", "-C", "-S", "replica1", "-d", conninfo)
        self._append_conf("replica", {
            "port": self.replica.port, "unix_socket_directories": self.base,
            "hot_standby": "on", "hot_standby_feedback": "on",
            "wal_receiver_status_interval": "1s",
            "wal_retrieve_retry_interval": "100ms",  # reconnect fast after a primary restart
        })
        self._ctl_start("replica")


# ---------------------------------------------------------------------------------------------
# MariaDB


class MariaDBServer(_Managed):
    """A MariaDB server with database ``appdb`` (utf8mb4) and user ``app``/``apppw``.

    ``stop()`` shuts it down cleanly (``stop(kill=True)`` simulates a crash); ``start()`` again
    reuses the same data folder and port.
    """

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        self.extra_args = tuple(extra_args)  # more mariadbd options (replication, Galera)
        self.host = HOST
        self.port = free_port()
        self.user = "app"
        self.password = "apppw"
        self.name = "appdb"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bin: dict[str, str] = {}
        self._provisioned = False

    @property
    def endpoint(self) -> Endpoint:
        """This server's ``appdb`` as an :class:`Endpoint`."""
        return Endpoint("mysql", self.host, self.port, self.user, self.password, self.name)

    @property
    def url(self) -> str:
        """``mysql://app:apppw@127.0.0.1:PORT/appdb``."""
        return self.endpoint.url

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect``."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "database": self.name}

    @property
    def socket_path(self) -> Path:
        """The private unix socket (root may log in there without a password)."""
        assert self.base is not None, "server not started"
        return self.base / "mysqld.sock"

    def start(self) -> MariaDBServer:
        """Create the data folder (first call) and start mariadbd; wait until it answers."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        try:
            if self.base is None:
                self._create()
            self._launch()
            if not self._provisioned:
                self._sql(self._db_sql(self.name))
                self._provisioned = True
        except BaseException:
            self._shutdown()
            raise
        return self

    def stop(self, kill: bool = False, timeout: float = 60) -> None:
        """SIGTERM (or SIGKILL with ``kill=True``) mariadbd's process group and wait until
        mariadbd has exited; then SIGKILL whatever is left of its group (helpers such as a
        Galera state transfer's script, which would outlive it as orphans)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                signal_groups([proc.pid], signal.SIGKILL if kill else signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    raise RuntimeError(
                        f"mariadbd did not stop within {timeout}s; killed it") from None
        finally:
            if self.base is not None:
                stop_groups([proc.pid], signal.SIGKILL, folder=self.base)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (utf8mb4), grant ``app`` all on it; return its URL."""
        self._sql(self._db_sql(_check_ident(name)))
        return self.endpoint.with_name(name).url

    # -- internals ----------------------------------------------------------------------------

    def _db_sql(self, name: str) -> str:
        users = ", ".join(f"'{self.user}'@'{h}'" for h in (HOST, "localhost"))
        creates = "".join(f"CREATE USER IF NOT EXISTS '{self.user}'@'{h}'"
                          f" IDENTIFIED BY '{self.password}';" for h in (HOST, "localhost"))
        return (f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"
                f" COLLATE utf8mb4_unicode_ci;{creates}"
                f"GRANT ALL PRIVILEGES ON `{name}`.* TO {users};")

    def _sql(self, sql: str) -> None:
        self.superuser_sql(sql)

    def superuser_sql(self, sql: str) -> list[str]:
        """Run statements as root through the private socket; the output's lines (no headers)."""
        proc = _run([self._bin["mariadb"], "--no-defaults", f"--socket={self.socket_path}",
                     "-uroot", "-N", "-B", "-e", sql], timeout=60)
        return proc.stdout.splitlines()

    def _find_binaries(self) -> None:
        for name in ("mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb"):
            path = shutil.which(name, path=_SBIN_PATH)
            if path is None:
                raise ServerUnavailable(
                    f"MariaDB binary {name!r} not found: install it with "
                    f"`apt-get install -y --no-install-recommends {MARIADB_PACKAGE}`")
            self._bin[name] = path

    def _create(self) -> None:
        self._find_binaries()
        base = self._register("qplan-md-", [("mysqld.pid", "mariadbd", int(signal.SIGKILL))])
        root_opts = (["--user=root", "--auth-root-authentication-method=socket"] if _is_root()
                     else ["--auth-root-authentication-method=normal"])
        _run([self._bin["mariadb-install-db"], "--no-defaults", f"--datadir={base / 'data'}",
              *root_opts, "--skip-test-db", "--skip-name-resolve", f"--tmpdir={base}"], cwd=base)

    def _command(self) -> list[str]:
        """The mariadbd command line (``extra_args`` last)."""
        assert self.base is not None
        base = self.base
        return [self._bin["mariadbd"], "--no-defaults", *(["--user=root"] if _is_root() else []),
                f"--datadir={base / 'data'}", f"--bind-address={self.host}", f"--port={self.port}",
                f"--socket={self.socket_path}", f"--pid-file={base / 'mysqld.pid'}",
                f"--log-error={base / 'error.log'}", f"--tmpdir={base}", "--skip-name-resolve",
                "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
                # 2 = write the log at each commit, no fsync: survives a crash of mariadbd itself
                "--innodb-flush-log-at-trx-commit=2", "--innodb-buffer-pool-size=64M",
                *self.extra_args]

    def _launch(self, timeout: float = 60) -> None:
        assert self.base is not None
        base, log = self.base, self.base / "error.log"
        self.proc = subprocess.Popen(self._command(), cwd=base, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self._add_group(self.proc.pid)  # a session, hence a group, of its own
        ping = [self._bin["mariadb-admin"], "--no-defaults", f"--socket={self.socket_path}",
                "-uroot", "--connect-timeout=2", "ping"]
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                raise RuntimeError(f"mariadbd exited with code {code} while starting\n{_tail(log)}")
            if subprocess.run(ping, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not answer within {timeout}s\n{_tail(log)}")
            time.sleep(0.02)

    def _shutdown(self) -> None:
        # The data is about to be discarded (or start failed): no need for a clean shutdown.
        with contextlib.suppress(Exception):
            self.stop(kill=True)


# ---------------------------------------------------------------------------------------------
# freezing servers (SIGSTOP), for tests and benchmarks of hung servers


def process_children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
    return found


def postgres_pids(pg: PostgresCluster, which: str) -> list[int]:
    """The postmaster of ``which`` and its children (each session is a process of its own)."""
    assert pg.base is not None
    pid = int((Path(pg.base) / which / "postmaster.pid").read_text().split("\n", 1)[0])
    return [pid, *process_children(pid)]


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """SIGSTOP ``pids`` for the block; SIGCONT them whatever happens."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
