"""A throwaway pgbouncer (transaction pooling) in front of a test PostgreSQL server.

:class:`PgBouncer` writes its configuration to a temporary folder (files 0600, owned by
``postgres`` when we are root: pgbouncer refuses to run as root), listens on a free
loopback port, and lets ``app``/``apppw`` through with SCRAM to every database of the
target server. It runs in a process group of its own; ``close()`` stops that group with
SIGINT (SIGKILL if it lingers) and removes the folder.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from processes import stop_groups
from servers import HOST, Endpoint, ServerUnavailable, free_port

PACKAGE = "pgbouncer"
RUN_AS = "postgres"


def _find_binary() -> str:
    path = shutil.which("pgbouncer", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"]))
    if path is None:
        raise ServerUnavailable(f"pgbouncer not found: install it with "
                                f"`apt-get install -y --no-install-recommends {PACKAGE}`")
    return path


class PgBouncer:
    """pgbouncer in ``transaction`` mode forwarding to ``target`` (a PostgreSQL endpoint)."""

    def __init__(self, target: Endpoint, pool_size: int = 4) -> None:
        self.target = target
        self.pool_size = pool_size
        self.port = free_port()
        self.base: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> Endpoint:
        """The target's database and role, reached through pgbouncer."""
        return Endpoint("postgresql", HOST, self.port, self.target.user, self.target.password,
                        self.target.name)

    def start(self, timeout: float = 10) -> PgBouncer:
        """Write the configuration, start pgbouncer and wait until its port accepts."""
        binary = _find_binary()
        root = os.geteuid() == 0
        if root:
            try:
                pwd.getpwnam(RUN_AS)
            except KeyError:
                raise ServerUnavailable(f"pgbouncer needs the system user {RUN_AS!r} when run "
                                        f"as root (install postgresql-15)") from None
        self.base = Path(tempfile.mkdtemp(prefix="qplan-pgb-"))
        ini, users, log = self.base / "pgbouncer.ini", self.base / "userlist.txt", \
            self.base / "pgbouncer.log"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.target.host} port={self.target.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {users}\n"
            f"logfile = {log}\npidfile = {self.base / 'pgbouncer.pid'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            "max_client_conn = 2000\n")
        users.write_text(f'"{self.target.user}" "{self.target.password}"\n')
        for path in (self.base, ini, users):
            path.chmod(0o700 if path.is_dir() else 0o600)
            if root:
                shutil.chown(path, RUN_AS, RUN_AS)
        self.proc = subprocess.Popen([binary, str(ini)], cwd=self.base, user=RUN_AS if root else None,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                text = log.read_text(errors="replace") if log.exists() else "(no log)"
                self.close()
                raise RuntimeError(f"pgbouncer exited while starting:\n{text[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.2):
                return self
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"pgbouncer did not listen on {HOST}:{self.port} in {timeout} s")
            time.sleep(0.01)

    def close(self, timeout: float = 10) -> None:
        """SIGINT (safe shutdown) to its process group, SIGKILL if it lingers ``timeout``
        seconds; remove the folder."""
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:  # not reaped yet: its pid (the group's) is still ours
                stop_groups([proc.pid], signal.SIGINT, grace=timeout)
            proc.wait()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

