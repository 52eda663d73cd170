"""The benchmark programs load outside pytest: every module imports, and the server
fixtures they borrow (tests/servers.py, by path) load with their own imports."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_benchmarks_and_their_servers_module_import_on_their_own():
    script = ("import pkgutil, importlib, benchmarks\n"
              "from benchmarks import servers_bench\n"
              "servers_bench.load_servers()\n"
              "for m in pkgutil.iter_modules(benchmarks.__path__):\n"
              "    if m.name != '__main__':\n"
              "        importlib.import_module('benchmarks.' + m.name)\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
