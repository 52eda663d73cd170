"""The ``qplan`` command line, run as a subprocess: sql, inspect, check, migrate, settings."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import qplan
from testmodels import Author, Book, Tag

TESTS = Path(__file__).resolve().parent
KEY = "cli signing key"
COMMANDS = ("demo", "sql", "inspect", "check", "migrate")


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m qplan ARGS`` with tests/ importable (for testmodels) and no inherited settings."""
    environ = {k: v for k, v in os.environ.items() if k != "QPLAN_SETTINGS"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    done = subprocess.run([sys.executable, "-m", "qplan", *args], cwd=cwd, env=environ,
                          input=input, capture_output=True, timeout=timeout)
    done.out = done.stdout.decode()  # type: ignore[attr-defined]
    done.err = done.stderr.decode()  # type: ignore[attr-defined]
    return done


def one_line_error(done: Any) -> str:
    assert done.returncode == 1, (done.out, done.err)
    assert "Traceback" not in done.err
    lines = done.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qplan: error: "), done.err
    return lines[0]


def write_settings(folder: Path, databases: dict[str, Any], name: str = "cli_settings",
                   key: str | None = KEY, routers: str = "[]") -> Path:
    path = folder / f"{name}.py"
    path.write_text(
        f"DATABASES = {databases!r}\n"
        f"MODELS = ['testmodels']\n"
        f"ROUTERS = {routers}\n"
        f"SIGNING_KEY = {key!r}\n")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder with a settings module (two SQLite aliases) and payload files."""
    write_settings(tmp_path, {"default": f"sqlite:///{tmp_path / 'app.db'}",
                              "other": f"sqlite:///{tmp_path / 'other.db'}"})
    plan = (Book.objects.filter(pages__gte=30, author__name__icontains="le")
            .exclude(title__startswith="x").order_by("-pages")[5:15])
    (tmp_path / "plan.qplan").write_bytes(qplan.dumps(plan, key=KEY))
    (tmp_path / "unsigned.qplan").write_bytes(qplan.dumps(plan, key=None))
    (tmp_path / "plain.pickle").write_bytes(pickle.dumps(plan))
    (tmp_path / "plan.json").write_text(plan.to_json(KEY))
    (tmp_path / "other.qplan").write_bytes(qplan.dumps(Author.objects.using("other").values("name"), key=KEY))
    return tmp_path


# --- help -----------------------------------------------------------------------------------------


def test_help_for_every_command() -> None:
    done = run("--help")
    assert done.returncode == 0
    for command in COMMANDS:
        assert command in done.out
        sub = run(command, "--help")
        assert sub.returncode == 0 and f"usage: qplan {command}" in sub.out, sub.err
    bare = run()
    assert bare.returncode == 2 and "COMMAND" in bare.out


def test_console_script() -> None:
    script = shutil.which("qplan")
    if script is None:
        pytest.skip("the qplan console script is not on PATH (pip install -e .)")
    done = subprocess.run([script, "sql", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "--dialect" in done.stdout


def test_usage_error() -> None:
    done = run("sql")
    assert done.returncode == 2 and "PAYLOAD" in done.stderr.decode()
    done = run("sql", "x", "--dialect", "oracle")
    assert done.returncode == 2


# --- sql ------------------------------------------------------------------------------------------


def test_sql_for_a_dialect(project: Path) -> None:
    done = run("--settings", "cli_settings", "sql", "plan.qplan", "--dialect", "postgresql",
               cwd=project)
    assert done.returncode == 0, done.err
    sql, params = done.out.strip().splitlines()
    assert sql.startswith("SELECT") and "%s" in sql and '"qt_book"' in sql and "ORDER BY" in sql and "DESC LIMIT %s OFFSET %s" in sql
    assert params == "-- params: ('%le%', 30, 'x%', 10, 5)"


def test_sql_default_dialect_is_the_routed_alias_engine_and_all(project: Path) -> None:
    done = run("sql", "plan.qplan", "--settings", "cli_settings.py", cwd=project)
    assert done.returncode == 0, done.err
    assert done.out.count("SELECT") == 1 and "?" in done.out  # default routes to sqlite
    done = run("sql", "plan.qplan", "--dialect", "all", "--settings", "cli_settings", cwd=project)
    assert [line for line in done.out.splitlines() if line.startswith("-- ") and "params" not in line] \
        == [f"-- {name}" for name in qplan.backends.names()]
    assert "`qt_book`" in done.out


def test_sql_every_payload_form_and_stdin(project: Path) -> None:
    outputs = set()
    for name in ("plan.qplan", "plan.json"):
        done = run("--settings", "cli_settings", "sql", name, "--dialect", "mysql", cwd=project)
        assert done.returncode == 0, done.err
        outputs.add(done.out)
    done = run("--settings", "cli_settings", "sql", "-", "--dialect", "mysql", cwd=project,
               input=(project / "plan.qplan").read_bytes())
    outputs.add(done.out)
    assert len(outputs) == 1
    done = run("--settings", "cli_settings", "sql", "plan.qplan", "--json", "--dialect", "all",
               cwd=project)
    out = json.loads(done.out)
    assert set(out) == set(qplan.backends.names()) and out["sqlite"]["params"][1] == 30


def test_sql_refuses_what_loads_refuses(project: Path) -> None:
    # unsigned payloads while a key is set; signed ones without a key
    assert "not signed" in one_line_error(run("--settings", "cli_settings", "sql", "unsigned.qplan", cwd=project))
    assert "bare pickle" in one_line_error(run("--settings", "cli_settings", "sql", "plain.pickle", cwd=project))
    write_settings(project, {}, name="nokey", key=None)
    assert "SIGNING_KEY" in one_line_error(run("--settings", "nokey", "sql", "plan.qplan", cwd=project))
    done = run("--settings", "nokey", "sql", "plain.pickle", "--dialect", "sqlite", cwd=project)
    assert done.returncode == 0 and "SELECT" in done.out
    data = bytearray((project / "plan.qplan").read_bytes())
    data[-5] ^= 1
    (project / "tampered.qplan").write_bytes(bytes(data))
    assert "signature does not match" in one_line_error(
        run("--settings", "cli_settings", "sql", "tampered.qplan", cwd=project))
    assert "cannot read payload" in one_line_error(
        run("--settings", "cli_settings", "sql", "missing.qplan", cwd=project))


def test_sql_unknown_model_says_to_list_its_module(project: Path) -> None:
    (project / "bare.py").write_text(f"DATABASES = {{}}\nSIGNING_KEY = {KEY!r}\n")
    line = one_line_error(run("--settings", "bare", "sql", "plan.qplan", cwd=project))
    assert "'testmodels.Book'" in line and "MODELS" in line


# --- inspect --------------------------------------------------------------------------------------


def fields(out: str) -> dict[str, str]:
    result = {}
    for line in out.splitlines():
        if line[:1].strip():
            name, _, value = line.partition(" ")
            result[name] = value.strip()
    return result


def test_inspect_signed_payload(project: Path) -> None:
    done = run("--settings", "cli_settings", "inspect", "plan.qplan", cwd=project)
    assert done.returncode == 0, done.err
    info = fields(done.out)
    assert info["signature"] == "valid (HMAC-SHA256)"
    assert info["format"].startswith("version 1")
    assert info["model"] == "testmodels.Book (table qt_book)"
    assert info["routing"].startswith("default (sqlite; a read")
    assert "signed envelope" in info["payload"]
    assert "1. filter(author__name__icontains='le', pages__gte=30)" in done.out
    assert "4. [5:15]" in done.out


def test_inspect_routing_follows_using_and_routers(project: Path) -> None:
    done = run("--settings", "cli_settings", "inspect", "other.qplan", cwd=project)
    assert fields(done.out)["routing"].startswith("other (sqlite; a read, set by using()")
    write_settings(project, {"default": "sqlite:///a.db", "replica": "sqlite:///b.db"},
                   name="routed", routers="[__import__('qplan.routing').routing.PrimaryReplica("
                                          "'default', ['replica'])]")
    done = run("--settings", "routed", "inspect", "plan.qplan", cwd=project)
    assert done.returncode == 0, done.err
    assert fields(done.out)["routing"].startswith("replica (sqlite; a read, chosen by PrimaryReplica")
    assert not (project / "a.db").exists() and not (project / "b.db").exists()  # no connection


def test_inspect_states(project: Path) -> None:
    write_settings(project, {}, name="nokey", key=None)
    done = run("--settings", "nokey", "inspect", "plan.qplan", cwd=project)
    assert done.returncode == 0
    assert fields(done.out)["signature"].startswith("present, not checked")
    done = run("--settings", "cli_settings", "inspect", "plain.pickle", cwd=project)
    assert "bare pickle" in done.out and "refused while a signing key is set" in done.out
    done = run("--settings", "cli_settings", "inspect", "-", "--json", cwd=project,
               input=(project / "plan.json").read_bytes())
    info = json.loads(done.out)
    assert info["verified"] is True and info["format_version"] == 1 and "JSON" in info["payload"]
    assert info["commands"][2] == "order_by('-pages')"
    write_settings(project, {}, name="otherkey", key="another key")
    done = run("--settings", "otherkey", "inspect", "plan.qplan", cwd=project)
    assert done.returncode == 1 and fields(done.out)["signature"].startswith("INVALID")


def test_inspect_shows_a_plan_whose_model_is_missing(project: Path) -> None:
    (project / "bare.py").write_text(f"SIGNING_KEY = {KEY!r}\n")
    done = run("--settings", "bare", "inspect", "plan.qplan", cwd=project)
    assert done.returncode == 1
    info = fields(done.out)
    assert info["model"] == "testmodels.Book" and "MODELS" in info["problem"]
    assert "2. exclude(title__startswith='x')" in done.out
    (project / "junk.bin").write_bytes(b"\x80\x04junk")
    one_line_error(run("--settings", "bare", "inspect", "junk.bin", cwd=project))


# --- settings sources -----------------------------------------------------------------------------


def test_settings_from_environment_and_toml(project: Path) -> None:
    done = run("sql", "plan.qplan", cwd=project, env={"QPLAN_SETTINGS": "cli_settings"})
    assert done.returncode == 0, done.err
    toml_dir = project / "conf"
    toml_dir.mkdir()
    (toml_dir / "qplan.toml").write_text(
        'models = ["testmodels"]\nsigning_key_env = "CLI_TEST_KEY"\n'
        '[databases]\ndefault = "sqlite:///rel.db"\n'
        'other = { ENGINE = "postgresql", NAME = "x", HOST = "127.0.0.1", PORT = 1 }\n')
    done = run("sql", str(project / "plan.qplan"), cwd=toml_dir, env={"CLI_TEST_KEY": KEY})
    assert done.returncode == 0, done.err
    assert "?" in done.out  # routed to default, a sqlite alias
    # a relative SQLite path in a TOML file is relative to that file
    done = run("migrate", "--settings", str(toml_dir / "qplan.toml"), cwd=project,
               env={"CLI_TEST_KEY": KEY})
    assert done.returncode == 0, done.err
    assert (toml_dir / "rel.db").exists()
    line = one_line_error(run("check", cwd=toml_dir))
    assert "CLI_TEST_KEY" in line


@pytest.mark.parametrize("text, message", [
    ("x = [", "not valid TOML"),
    ('colour = "blue"\n', "unknown setting 'colour'"),
    ('models = ["no_such_module_here"]\n', "no_such_module_here"),
    ('[databases]\ndefault = "oracle://x"\n', "unknown ENGINE"),
])
def test_bad_toml_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "qplan.toml").write_text(text)
    assert message in one_line_error(run("check", cwd=tmp_path))


def test_bad_settings_module_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("DATABASES = {\n")
    assert "SyntaxError" in one_line_error(run("check", "--settings", "broken.py", cwd=tmp_path))
    assert "nosuch" in one_line_error(run("check", "--settings", "nosuch", cwd=tmp_path))
    done = run("check", "--settings", "broken.py", "--traceback", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" in done.err


# --- check and migrate on SQLite ------------------------------------------------------------------


def test_migrate_then_check_sqlite(project: Path) -> None:
    done = run("check", "--settings", "cli_settings", cwd=project)
    assert done.returncode == 1 and "does not exist" in done.out
    assert not (project / "app.db").exists()  # check never creates a database file
    done = run("migrate", "--settings", "cli_settings", "--dry-run", cwd=project)
    assert done.returncode == 0 and done.out.count("would create") == 4
    assert not (project / "app.db").exists()
    done = run("migrate", "--settings", "cli_settings", cwd=project)
    assert done.returncode == 0, done.err
    assert "[1/3] testmodels.Author -> default (qt_author) ... ok" in done.out
    assert "created (or found) 3 tables" in done.out
    tables = {r[0] for r in sqlite3.connect(project / "app.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"qt_author", "qt_book", "qt_tag"} <= tables
    assert not (project / "other.db").exists()
    assert run("migrate", "--settings", "cli_settings", cwd=project).returncode == 0  # idempotent
    done = run("migrate", "--settings", "cli_settings", "--database", "other", cwd=project)
    assert done.returncode == 0 and "-> other" in done.out and (project / "other.db").exists()
    done = run("check", "--settings", "cli_settings", cwd=project)
    assert done.returncode == 0, done.out
    assert "2 of 2 aliases answered" in done.out and sqlite3.sqlite_version in done.out
    assert "--database" in run("migrate", "--help").out
    assert "'nope'" in one_line_error(run("migrate", "--settings", "cli_settings", "--database",
                                          "nope", cwd=project))


def test_migrate_respects_allow_migrate(project: Path) -> None:
    (project / "routers.py").write_text(
        "class OnlyAuthors:\n"
        "    def allow_migrate(self, alias, model):\n"
        "        return model.__name__ == 'Author'\n")
    write_settings(project, {"default": f"sqlite:///{project / 'r.db'}"}, name="restricted",
                   routers="['routers.OnlyAuthors']")
    done = run("migrate", "--settings", "restricted", cwd=project)
    assert done.returncode == 0, done.err
    assert done.out.count("skipped, the routers do not allow it") == 2
    assert "created (or found) 1 table, skipped 2" in done.out


def test_check_json_and_no_aliases(tmp_path: Path) -> None:
    write_settings(tmp_path, {"mem": "sqlite://:memory:"})
    done = run("check", "--settings", "cli_settings", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.err
    (probe,) = json.loads(done.out)
    assert probe["alias"] == "mem" and probe["ok"] and probe["version"] == sqlite3.sqlite_version
    write_settings(tmp_path, {}, name="empty")
    assert "no databases configured" in one_line_error(run("check", "--settings", "empty", cwd=tmp_path))


def test_check_unreachable_server_is_a_failed_row(tmp_path: Path) -> None:
    from servers import free_port

    port = free_port()
    write_settings(tmp_path, {"down": f"postgresql://u:p@127.0.0.1:{port}/x",
                              "mysql_down": f"mysql://u:p@127.0.0.1:{port}/x",
                              "ok": "sqlite://:memory:"})
    done = run("check", "--settings", "cli_settings", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.err
    rows = {line.split()[0]: line for line in done.out.splitlines()}
    assert "FAILED" in rows["down"] and "ConnectionFailure" in rows["down"]
    assert "FAILED" in rows["mysql_down"] and " ok " in rows["ok"]
    assert "1 of 3 aliases answered" in done.out


# --- against the test servers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_urls(pg: Any, mariadb: Any) -> dict[str, str]:
    """Fresh databases for the command-line tests on the PostgreSQL primary and MariaDB."""
    return {
        "default": pg.create_database("qplan_cli"),
        "standby": pg.replica.with_name("qplan_cli").url,
        "maria": mariadb.create_database("qplan_cli"),
    }


def test_check_servers(tmp_path: Path, server_urls: dict[str, str], pg: Any) -> None:
    pg.wait_replica_caught_up()
    write_settings(tmp_path, server_urls)
    done = run("check", "--settings", "cli_settings", cwd=tmp_path)
    assert done.returncode == 0, done.out + done.err
    rows = {line.split()[0]: line for line in done.out.splitlines()}
    assert "ok" in rows["default"] and "primary" in rows["default"] and " 15." in rows["default"]
    assert "standby, replay lag" in rows["standby"]
    assert "MariaDB" in rows["maria"]
    assert "3 of 3 aliases answered" in done.out


def test_migrate_servers(tmp_path: Path, server_urls: dict[str, str]) -> None:
    settings = {"default": server_urls["default"], "maria": server_urls["maria"]}
    write_settings(tmp_path, settings)
    for alias in ("default", "maria"):
        done = run("migrate", "--settings", "cli_settings", "--database", alias, cwd=tmp_path)
        assert done.returncode == 0, done.out + done.err
        assert f"-> {alias} (qt_book) ... ok" in done.out
    qplan.configure(databases=settings)
    try:
        for alias in ("default", "maria"):
            Author.objects.using(alias).create(name="x")
            assert Author.objects.using(alias).count() == 1
        plan = Author.objects.filter(name="x").values_list("name", flat=True)
        (tmp_path / "p.qplan").write_bytes(qplan.dumps(plan, key=KEY))
        done = run("sql", "p.qplan", "--settings", "cli_settings", cwd=tmp_path)
        assert "%s" in done.out  # default is PostgreSQL here
    finally:
        for alias in ("default", "maria"):
            qplan.drop_tables([Author, Book, Tag], using=alias, missing_ok=True)
        qplan.connections.close_all()
        qplan.configure(databases={})
