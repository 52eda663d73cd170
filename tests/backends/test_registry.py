"""The backend registry: registration, spellings, entry points; and what a backend may import."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import qplan
from qplan import backends
from qplan.backends.sqlite import SQLiteBackend

BACKENDS_DIR = Path(backends.__file__).parent


def test_builtin_backends_and_their_spellings():
    assert backends.names()[:3] == ("sqlite", "postgresql", "mysql")
    assert backends.canonical("postgres") == "postgresql"
    assert backends.canonical("MariaDB") == "mysql"
    assert backends.get("sqlite3") is backends.get("sqlite")
    with pytest.raises(qplan.ConfigurationError, match="unknown dialect 'oracle'"):
        backends.get("oracle")


def test_a_registered_backend_is_a_database_like_any_other(tmp_path):
    class Flat(SQLiteBackend):
        SPELLINGS = ("flatfile",)

    try:
        backends.register("flat", Flat)
        assert "flat" in backends.names()
        qplan.configure(databases={"default": f"flatfile:///{tmp_path / 'f.db'}"})
        assert qplan.settings.database("default")["ENGINE"] == "flat"
        from testmodels import Author

        qplan.create_tables([Author])
        Author.objects.create(name="a")
        assert Author.objects.get().name == "a"
        assert qplan.connections["default"].vendor == "flat"
    finally:
        qplan.reset()
        backends._backends.pop("flat", None)
        backends._spellings.pop("flat", None)
        backends._spellings.pop("flatfile", None)


def test_registering_something_that_is_not_a_backend_is_refused():
    with pytest.raises(qplan.ConfigurationError, match="not a qplan Backend"):
        backends.register("nothing", object())
    with pytest.raises(qplan.ConfigurationError, match="identifier"):
        backends.register("no good", SQLiteBackend)


@pytest.mark.parametrize("path", sorted(BACKENDS_DIR.glob("*.py")), ids=lambda p: p.name)
def test_a_backend_imports_nothing_of_qplan_but_errors(path):
    # import-linter cannot see qplan.backends (it lives in backends/), so this checks it.
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("qplan"):
                assert node.module in ("qplan", "qplan.errors"), f"{path.name}: {node.module}"
                if node.module == "qplan":
                    assert [a.name for a in node.names] == ["errors"], path.name
