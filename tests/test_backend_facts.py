"""Every fact about a database lives in its backend module (``backends/``): no qplan module
compares a dialect or backend name to a database's name, or keys a table by one.

An AST scan of qplan/ (not a text grep: docstrings, comments and ``compile("sqlite")``
calls are fine). It reports ``x == "postgres"``, ``x in ("mysql", "duckdb")``, ``match``
cases on a name, ``.startswith("postgres")`` and dict literals keyed by a database name
(``{"sqlite": ..., "postgres": ...}``); the compiler asks its backend's hooks instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

QPLAN = Path(__file__).resolve().parent.parent / "qplan"
NAMES = frozenset({"postgres", "postgresql", "mysql", "sqlite", "sqlite3", "duckdb", "mariadb",
                   "galera"})

# "path:function" -> why naming a database is the point there (settings/CLI parsing of an
# ENGINE). Empty today; an entry that no longer matches anything fails the guard.
ALLOWED: dict[str, str] = {}


def _names_in(node: ast.AST) -> list[str]:
    """The database names ``node`` is, or holds as a literal tuple/list/set element."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value] if node.value.lower() in NAMES else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [n for e in node.elts for n in _names_in(e)]
    return []


def scan(source: str) -> list[tuple[int, str, str]]:
    """``(line, enclosing function, what)`` of every database-name fact in ``source``."""
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            where = f"{where}.{node.name}" if where else node.name
        hits: list[str] = []
        if isinstance(node, ast.Compare):
            hits = [n for part in (node.left, *node.comparators) for n in _names_in(part)]
        elif isinstance(node, ast.Dict):
            hits = [n for k in node.keys if k is not None for n in _names_in(k)]
        elif isinstance(node, ast.MatchValue):
            hits = _names_in(node.value)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")):
            hits = [n for a in node.args for n in _names_in(a)]
        if hits:
            found.append((node.lineno, where, f"{type(node).__name__} on {', '.join(hits)}"))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(source), "")
    return found


def _modules() -> list[Path]:
    return sorted(QPLAN.rglob("*.py"))


def test_no_qplan_module_names_a_database_in_a_comparison():
    offenders, used = [], set()
    for path in _modules():
        rel = path.relative_to(QPLAN.parent).as_posix()
        for line, where, what in scan(path.read_text(encoding="utf-8")):
            key = f"{rel}:{where}"
            if key in ALLOWED:
                used.add(key)
            else:
                offenders.append(f"{rel}:{line} ({where or 'module'}): {what}")
    assert not offenders, ("database facts belong in backends/ (a Backend attribute or hook):\n"
                           + "\n".join(offenders))
    assert used == set(ALLOWED), f"stale allow-list entries: {sorted(set(ALLOWED) - used)}"


def test_the_scan_covers_every_qplan_module():
    rels = {p.relative_to(QPLAN).as_posix() for p in _modules()}
    assert {"funcsql.py", "explaining.py", "methodsql.py", "sharding/__init__.py"} <= rels


@pytest.mark.parametrize("source", [
    'if backend.dialect == "postgres": pass',
    'ok = "mysql" != b.backend.dialect',
    'ok = dialect in ("postgres", "duckdb")',
    'ok = name not in {"SQLite"}',
    'TABLE = {"sqlite": 1, "postgres": 2}',
    'def f(d):\n    match d:\n        case "galera":\n            pass',
    'ok = engine.startswith("mariadb")',
])
def test_the_scan_finds_a_database_fact(source):
    assert scan(source)


@pytest.mark.parametrize("source", [
    '"""Works on SQLite, PostgreSQL and sqlite."""',
    'plan.compile("sqlite")',
    'x = compiled["sqlite"]',  # a result keyed by what the caller asked for
    'ok = backend.SELECT_FOR_UPDATE and kind == "int"',
    'msg = f"not supported on {backend.dialect}"',
])
def test_the_scan_leaves_other_uses_alone(source):
    assert scan(source) == []


def test_the_scan_names_the_enclosing_function():
    source = "class C:\n    def lock(self, d):\n        return d == 'postgres'\n"
    assert scan(source) == [(3, "C.lock", "Compare on postgres")]
