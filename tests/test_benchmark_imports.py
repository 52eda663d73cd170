"""The benchmark programs load outside pytest: every module imports, and the server
fixtures they borrow (tests/servers.py, by path) load with their own imports.

The peers of ``pip install -e '.[bench]'`` (Django...) are not in the test extra: a module
that imports one at its top (``benchmarks/apps.py``) is skipped where that peer is not
installed, so the suite passes from a fresh clone; any other import error fails."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# the top-level packages of pyproject.toml's "bench" extra
BENCH_PEERS = ("django", "sqlalchemy", "peewee", "greenlet", "asyncpg")


def test_the_benchmarks_and_their_servers_module_import_on_their_own():
    script = ("import pkgutil, importlib, importlib.util, benchmarks\n"
              "from benchmarks import servers_bench\n"
              "servers_bench.load_servers()\n"
              f"peers = {BENCH_PEERS!r}\n"
              "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
              "    if m.name != '__main__':\n"
              "        try:\n"
              "            importlib.import_module('benchmarks.' + m.name)\n"
              "        except ModuleNotFoundError as exc:\n"
              "            top = (exc.name or '').split('.')[0]\n"
              "            if top not in peers or importlib.util.find_spec(top) is not None:\n"
              "                raise\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
