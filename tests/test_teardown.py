"""Teardown of the throwaway servers (tests/servers.py, tests/replicas.py): nothing survives.

Every server runs in a process group of its own and a stop kills the whole group, so that
helpers die with their server: a Galera state transfer's ``wsrep_sst_rsync`` script and its
rsync daemon once outlived a node killed at teardown. Each test checks by scanning /proc for
any process whose working directory or arguments name the server's folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from conftest import assert_nothing_left
from processes import using_folder
from replicas import GaleraCluster
from servers import MariaDBServer


class MariaDBWithHelper(MariaDBServer):
    """mariadbd launched by a shell that first starts a helper which it orphans at once:
    like a Galera node's ``wsrep_sst_rsync`` once its mariadbd is killed, the helper lives
    on in mariadbd's process group, reparented, its working directory in the folder."""

    def _command(self) -> list[str]:
        return ["sh", "-c", '(sleep 600 &); exec "$@"', "sh", *super()._command()]


def helpers(folder: Any) -> list[str]:
    return [p for p in using_folder(folder) if p.split(": ", 1)[1].startswith("sleep")]


def test_a_killed_or_closed_server_leaves_no_process_behind() -> None:
    """Fails when a stop signals mariadbd alone: the orphaned helper survives it."""
    server = MariaDBWithHelper()
    with server:
        base = server.base
        assert base is not None and len(helpers(base)) == 1  # running, orphaned
        server.stop(kill=True)  # a crash: the helper goes with its group
        assert helpers(base) == []
        server.start()
        assert len(helpers(base)) == 1
    assert using_folder(base) == []  # close(): mariadbd and the helper, all gone
    assert not base.exists()


def test_a_state_transfer_interrupted_by_the_teardown_leaves_nothing() -> None:
    """A two-node Galera cluster closed while node 2 joins by rsync SST: the donor's and
    the joiner's transfer scripts (and rsync) must die with the nodes. Fails when a node's
    stop kills mariadbd alone: the scripts run on as orphans."""
    cluster = GaleraCluster(name="qplan_teardown")
    del cluster.nodes[2:]
    joining = threading.Thread(target=lambda: _quietly(cluster.nodes[1].start))
    try:
        cluster.nodes[0].start()
        joining.start()
        deadline = time.monotonic() + 60
        while not any("wsrep_sst_rsync" in p
                      for f in cluster.folders() for p in using_folder(f)):
            assert time.monotonic() < deadline, "no state transfer began within 60 s"
            assert joining.is_alive(), "node 2 joined (or failed) without a state transfer"
            time.sleep(0.01)
        folders = cluster.folders()
    finally:
        cluster.close()
        joining.join(120)
    assert not joining.is_alive()
    assert_nothing_left(folders)


_ORPHANING_PROCESS = """
import sys, time
from test_teardown import MariaDBWithHelper
server = MariaDBWithHelper().start()
print(server.base, flush=True)
time.sleep(600)
"""


def test_the_watchdog_cleans_up_after_a_killed_test_process() -> None:
    """A test process SIGKILLed with a server running (its helper too): the server's
    watchdog kills them all and removes the folder. Fails when the watchdog stops
    mariadbd alone (the orphaned helper survives) or not at all."""
    child = subprocess.Popen([sys.executable, "-c", _ORPHANING_PROCESS],
                             cwd=Path(__file__).parent, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        assert child.stdout is not None
        base = Path(child.stdout.readline().strip())
        assert base.name.startswith("qplan-md-") and len(helpers(base)) == 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    deadline = time.monotonic() + 60
    while using_folder(base) or base.exists():
        assert time.monotonic() < deadline, f"left after 60 s: {using_folder(base)}"
        time.sleep(0.05)


def _quietly(start: Any) -> None:
    with contextlib.suppress(Exception):  # the join is cut short by the close: expected
        start()
