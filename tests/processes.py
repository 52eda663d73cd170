"""Process groups of the throwaway servers, and who still uses a server's folder.

Every server the suite starts (mariadbd, a PostgreSQL postmaster, pgbouncer) runs in a
session and process group of its own, so that stopping it can reach its helpers too: a
Galera node's ``wsrep_sst_rsync`` script and its rsync daemon are children of mariadbd in
mariadbd's group, and outlive a SIGKILLed mariadbd as orphans (reparented, same group) unless
the whole group is killed. PostgreSQL makes each backend a group leader of its own, so a
postmaster is stopped as a tree: its group and the group of each descendant.

:func:`stop_groups` sends a signal to groups, waits (bounded) until no live member is left,
then SIGKILLs what remains. :func:`using_folder` scans /proc for processes whose working
directory or arguments refer to a folder: the check, after a teardown, that nothing of a
server survived. Run as a script, this module is the servers' watchdog (:func:`watchdog`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["descendants", "group_of", "live_members", "signal_groups", "stop_groups",
           "stop_tree", "using_folder", "watchdog"]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, pgid)`` of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def group_of(pid: int) -> int | None:
    """The process group of ``pid`` (None when it is gone or a zombie)."""
    st = _stat(pid)
    return None if st is None or st[0] in "ZX" else st[2]


def live_members(pgids: Iterable[int]) -> list[int]:
    """The live (not zombie) processes in any of the groups ``pgids``."""
    wanted = set(pgids)
    out = []
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[0] not in "ZX" and st[2] in wanted:
            out.append(pid)
    return out


def descendants(root: int) -> list[int]:
    """The live descendants of ``root`` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        st = _stat(pid)
        if st is not None and st[0] not in "ZX":
            children.setdefault(st[1], []).append(pid)
    out, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def signal_groups(pgids: Iterable[int], sig: int) -> None:
    """Send ``sig`` to each group of ``pgids`` (gone ones ignored)."""
    mine = os.getpgrp()
    for pgid in pgids:
        if pgid <= 1 or pgid == mine:  # never our own group (the test run) nor init's
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def stop_groups(pgids: Iterable[int], sig: int = signal.SIGTERM, grace: float = 10.0,
                bound: float = 10.0, folder: str | Path | None = None) -> list[int]:
    """Send ``sig`` to each group of ``pgids``; after ``grace`` seconds SIGKILL the groups
    that still have live members, and wait up to ``bound`` more. Returns the pids still
    alive then (normally none).

    Only groups with a live member are signalled, and with ``folder`` only groups with a
    member using that folder: pids are reused (pid_max may be 32768), so a group that
    emptied earlier may be another program's by now.
    """
    wanted = {g for g in pgids if g > 1 and g != os.getpgrp()}
    mine = set(_pids_using(folder)) if folder is not None and wanted else None
    groups = {g for g in wanted
              if (members := live_members([g])) and (mine is None or mine & set(members))}
    if not groups:
        return []
    signal_groups(groups, sig)
    for signum, wait in ((signal.SIGKILL, grace), (None, bound)):
        deadline = time.monotonic() + wait
        while live_members(groups):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        else:
            return []
        if signum is not None:
            signal_groups(groups, signum)
    return live_members(groups)


def stop_tree(root: int, sig: int = signal.SIGTERM, grace: float = 10.0,
              extra_groups: Iterable[int] = ()) -> list[int]:
    """:func:`stop_groups` on the group of ``root``, of each of its descendants (collected
    before any signal, so that none is missed once orphaned) and ``extra_groups``."""
    groups = set(extra_groups)
    for pid in (root, *descendants(root)):
        pgid = group_of(pid)
        if pgid is not None:
            groups.add(pgid)
    return stop_groups(groups, sig, grace)


def using_folder(folder: str | Path) -> list[str]:
    """Live processes (other than this one) whose cwd is in ``folder`` or whose arguments
    name it: ``"pid: args"`` for each."""
    return [f"{pid}: {args}" for pid, args in _using(folder)]


def _pids_using(folder: str | Path) -> list[int]:
    return [pid for pid, _ in _using(folder)]


def _using(folder: str | Path) -> list[tuple[int, str]]:
    root = os.path.realpath(folder)
    me = os.getpid()
    found = []
    for pid in _pids():
        st = _stat(pid)
        if pid == me or st is None or st[0] in "ZX":
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        cwd = ""
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
        if cwd == root or cwd.startswith(root + os.sep) or any(root in a for a in args):
            found.append((pid, " ".join(a for a in args if a)[:300]))
    return found


def watchdog(spec_text: str) -> None:
    """The watchdog process of a server (tests/servers.py starts one per server, in a session
    of its own). It reads stdin until EOF: a normal ``close()`` kills it first, so EOF means
    the test process died. Then it signals the server processes named by ``spec["kill"]``
    (``[pidfile, comm, signal]``: the group, when the process leads one), SIGKILLs whatever
    still uses the ``spec["remove"]`` folders (helpers, PostgreSQL's backends) and removes
    the folders."""
    spec = json.loads(spec_text)
    for s in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    sys.stdin.buffer.read()
    pids = []
    for pidfile, comm, sig in spec["kill"]:
        try:
            with open(pidfile) as f:
                pid = int(f.readline())
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != comm:
                    continue
            if group_of(pid) == pid:
                signal_groups([pid], sig)
            else:
                os.kill(pid, sig)
            pids.append(pid)
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 20
    while any(group_of(p) is not None for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(50):
        left = [pid for folder in spec["remove"] for pid in _pids_using(folder)]
        if not left:
            break
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for _ in range(5):  # a helper killed just now may have been writing
        for folder in spec["remove"]:
            shutil.rmtree(folder, ignore_errors=True)
        if not any(os.path.exists(folder) for folder in spec["remove"]):
            break
        time.sleep(1)


if __name__ == "__main__":
    watchdog(sys.argv[1])
