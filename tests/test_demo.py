"""``qplan demo``: the README's first command runs anywhere, quickly, and shows what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "qplan", "demo", *args], capture_output=True,
                          text=True, timeout=120, env=environ, cwd=tempfile.gettempdir())


def test_demo() -> None:
    started = time.perf_counter()
    done = run_demo(env={"QPLAN_SETTINGS": "not.a.module"})  # the demo needs no settings
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    lines = out.splitlines()
    assert len(lines) <= 60 and max(map(len, lines)) <= 100, "short and readable"
    assert elapsed < 20

    # two SQLite files in a temporary folder, removed afterwards
    folder = re.search(r"Two SQLite databases in (\S+): default \(6 books\), archive \(5 books\)", out)
    assert folder and not Path(folder.group(1)).exists()

    # each plan's SQL in the three dialects
    assert out.count("Plan 1  Book.objects.filter(pages__gte=250)") == 1
    assert "Plan 2  Book.objects.values('author__name').annotate(books=Count('id'))" in out
    for dialect, marker in [("sqlite", "?"), ("postgresql", "%s"), ("mysql", "`demo_book`")]:
        blocks = [line for line in lines if line.startswith(f"  {dialect} ")]
        assert len(blocks) == 2, dialect
        assert marker in blocks[0] or marker in out
    assert "NULLS LAST" in out  # PostgreSQL's explicit NULL order

    # pickled, loaded in another process, run on both aliases
    assert re.search(r"qplan\.dumps\(plan, key=key\): \d+ and \d+ bytes", out)
    child = re.search(r"A child process \(pid (\d+)\) loads them with qplan.loads", out)
    assert child and int(child.group(1)) != os.getpid()
    assert "  Plan 1  default  Parable of the Sower (1993); Kindred (1979); Dune (1965)" in out
    assert "          archive  Foundation (1951); I, Robot (1950); Frankenstein (1818)" in out
    assert "  Plan 2  default  Ursula K. Le Guin 3; Octavia E. Butler 2; Frank Herbert 1" in out

    # and what the loader refuses
    assert "one bit changed             UnsafePayload: payload signature does not match" in out
    assert re.search(r"a pickle calling os.system  UnsafePayload: payload refers to \w+\.system", out)
    assert "echo this never runs" not in out and "this never runs" not in done.stderr


def test_demo_help() -> None:
    done = run_demo("--help")
    assert done.returncode == 0 and "usage: qplan demo" in done.stdout
