"""DuckDB (the duckdb package): what is its own. The shared behaviour runs in the cross-backend
tests; here are the URL forms, the in-memory database every thread of an alias shares,
the missing driver, the refused savepoint, the read-only sessions, sequences, foreign keys
without actions, and results that stay whole when statements interleave."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import duckdb
import pytest

import qplan
from qplan.backends import get
from testmodels import ALL, Author, Book, Tag

backend = get("duckdb")
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture
def duck(databases: Any) -> str:
    """``default`` on a DuckDB file with the test models' tables."""
    return databases(default="duckdb")[0]


@pytest.fixture
def memory() -> Iterator[str]:
    qplan.configure(databases={"default": "duckdb://:memory:"})
    qplan.create_tables(ALL)
    yield "default"
    qplan.connections.close_all()
    qplan.configure(databases={})


def in_thread(fn: Any) -> Any:
    """``fn()`` run in a new thread (its own qplan connections); its result or its error."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test's thread
            out["error"] = exc
        finally:
            qplan.connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


# --- settings ---------------------------------------------------------------------------------


def test_url_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    qplan.configure(databases={
        "rel": "duckdb:///rel.duckdb",
        "abs": f"duckdb:///{tmp_path / 'abs.duckdb'}",  # duckdb:////tmp/...: an absolute path
        "dict": {"ENGINE": "duckdb", "NAME": str(tmp_path / "dict.duckdb")},
        "mem": "duckdb://:memory:",
        "opts": "duckdb:///opts.duckdb?threads=1&read_only=1",
    })
    try:
        db = qplan.settings.database
        assert db("rel")["NAME"] == "rel.duckdb" and db("rel")["ENGINE"] == "duckdb"
        assert db("abs")["NAME"] == str(tmp_path / "abs.duckdb")
        assert db("mem")["NAME"] == ":memory:"
        assert db("opts")["OPTIONS"] == {"threads": "1"} and db("opts")["READ_ONLY"] is True
        for alias in ("rel", "abs", "dict", "mem"):
            qplan.create_tables([Author], using=alias)
            Author.objects.using(alias).create(name=alias)
            assert Author.objects.using(alias).get().name == alias
        assert (tmp_path / "rel.duckdb").exists() and (tmp_path / "dict.duckdb").exists()
        assert qplan.connections["opts"].fetchall(
            "SELECT current_setting('threads')") == [(1,)]  # OPTIONS are DuckDB settings
        assert "(duckdb rel.duckdb)" in qplan.connections["rel"].where()
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def test_an_unknown_option_is_a_configuration_error(tmp_path):
    qplan.configure(databases={"default": f"duckdb:///{tmp_path / 'x.duckdb'}?no_such_setting=1"})
    try:
        with pytest.raises(qplan.ConfigurationError, match="no_such_setting"):
            Author.objects.count()
    finally:
        qplan.configure(databases={})


def test_memory_is_one_database_for_every_thread_of_its_alias(memory):
    Author.objects.create(name="main")
    assert in_thread(lambda: Author.objects.get().name) == "main"
    in_thread(lambda: Author.objects.create(name="thread"))
    assert sorted(Author.objects.values_list("name", flat=True)) == ["main", "thread"]
    qplan.add_database("other", "duckdb://:memory:")  # another alias: another database
    with pytest.raises(qplan.ProgrammingError, match="qt_author"):
        Author.objects.using("other").count()


def test_removing_a_memory_alias_drops_its_database(memory):
    Author.objects.create(name="gone")
    qplan.remove_database("default")
    qplan.add_database("default", "duckdb://:memory:")
    with pytest.raises(qplan.ProgrammingError, match="qt_author"):
        Author.objects.count()
    qplan.create_tables([Author])
    assert Author.objects.count() == 0


def test_without_the_driver_qplan_imports_and_the_error_names_the_extra():
    script = """
import sys
sys.modules["duckdb"] = None  # as if the package were not installed: import duckdb fails
import qplan
from qplan.backends.duckdb import DuckDBBackend
from testmodels import Author
print(Author.objects.filter(name="a").compile("duckdb").sql)  # compiling needs no driver
qplan.configure(databases={"default": "duckdb://:memory:"})
try:
    Author.objects.count()
except qplan.ConfigurationError as exc:
    print(type(exc).__name__, isinstance(exc, ImportError), exc)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=TESTS, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sql, error = done.stdout.strip().splitlines()
    assert sql.startswith('SELECT "qt_author"."id"')
    assert error == ("MissingDriver True the duckdb backend needs the duckdb package: "
                     "pip install 'qplan[duckdb]'")


# --- transactions -------------------------------------------------------------------------------


def test_atomic_blocks_cannot_nest(duck):
    assert backend.SUPPORTS_SAVEPOINTS is False
    with pytest.raises(qplan.NotSupportedError, match="duckdb has no savepoints"):
        with qplan.atomic():
            Author.objects.create(name="outer")
            with qplan.atomic():
                pytest.fail("an inner block opened")
    assert Author.objects.count() == 0  # the outer block rolled back
    with qplan.atomic():  # and the connection goes on
        Author.objects.create(name="one block")
    assert Author.objects.get().name == "one block"


def test_bulk_create_inside_a_block_joins_it(duck):
    with qplan.atomic():
        Author.objects.bulk_create([Author(name="a"), Author(name="b")], batch_size=1)
        assert Author.objects.count() == 2
    assert Author.objects.count() == 2
    Tag.objects.create(code="t0")
    with pytest.raises(qplan.TransactionManagementError, match="rolled back"):
        with qplan.atomic():
            Author.objects.create(name="c")
            with pytest.raises(qplan.IntegrityError):  # t0 again, in its second batch
                Tag.objects.bulk_create([Tag(code="t1"), Tag(code="t0")], batch_size=1)
    assert Author.objects.count() == 2 and Tag.objects.count() == 1  # the block joined: all undone


def test_a_result_stays_whole_when_other_statements_run_on_the_connection(duck):
    Author.objects.bulk_create([Author(name=f"a{i}") for i in range(20)])
    seen = []
    for author in Author.objects.order_by("name").iterator(chunk_size=3):
        seen.append(author.name)
        assert Author.objects.filter(name=author.name).count() == 1  # the same connection
    assert seen == sorted(f"a{i}" for i in range(20))
    with qplan.atomic():  # a stream inside a block sees the block's own rows
        Author.objects.create(name="zz")
        assert [a.name for a in Author.objects.filter(name="zz").iterator()] == ["zz"]


# --- read-only aliases ----------------------------------------------------------------------------


def test_a_read_only_alias_of_the_same_file_refuses_writes_and_sees_new_rows(duck):
    name = qplan.settings.database("default")["NAME"]
    qplan.add_database("ro", f"duckdb:///{name}?read_only=1")
    Author.objects.create(name="kept")
    assert [a.name for a in Author.objects.using("ro")] == ["kept"]
    with pytest.raises(qplan.ReadOnlyError):
        Author.objects.using("ro").create(name="x")
    ro = qplan.connections["ro"]
    with pytest.raises(qplan.OperationalError, match="read-only"):  # raw SQL: the session
        ro.execute("DELETE FROM qt_author")
    with pytest.raises(qplan.TransactionManagementError, match="rolled back"):
        with qplan.atomic(using="ro"):  # a block's transaction is read-only too
            assert Author.objects.using("ro").count() == 1
            with pytest.raises(qplan.OperationalError, match="read-only"):
                ro.execute("UPDATE qt_author SET name = 'y'")
    Author.objects.create(name="later")  # no stale snapshot: every statement is a transaction
    assert Author.objects.using("ro").count() == 2
    assert sorted(Author.objects.values_list("name", flat=True)) == ["kept", "later"]


# --- DDL, sequences, foreign keys, values -----------------------------------------------------------


def test_ddl_numbers_auto_keys_with_a_sequence_of_their_own():
    create = backend.create_table(Book._meta)
    assert create[0] == 'CREATE SEQUENCE "qt_book_id_seq"'
    assert '"id" INTEGER PRIMARY KEY DEFAULT nextval(\'"qt_book_id_seq"\')' in create[1]
    assert 'FOREIGN KEY ("author_id") REFERENCES "qt_author" ("id")\n' in create[1]  # no action
    assert backend.drop_table(Book._meta, missing_ok=True) == [
        'DROP TABLE IF EXISTS "qt_book"', 'DROP SEQUENCE IF EXISTS "qt_book_id_seq"']
    assert backend.create_table(Tag._meta)[0].startswith('CREATE TABLE "qt_tag"')  # no sequence


def test_explicit_ids_move_the_sequence_forward_only(duck):
    Author.objects.bulk_create([Author(id=7, name="seven"), Author(id=3, name="three")])
    assert Author.objects.create(name="next").pk == 8
    Author.objects.create(id=5, name="five")
    assert Author.objects.create(name="after").pk == 9
    seq = qplan.connections["default"].fetchall(
        "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'qt_author_id_seq'")
    assert seq == [(9,)]


def test_a_referenced_row_cannot_be_deleted(duck):
    ann = Author.objects.create(name="ann")
    Book.objects.create(title="b", author=ann)
    with pytest.raises(qplan.IntegrityError):  # CASCADE is not DuckDB's: the row stays
        ann.delete()
    Book.objects.all().delete()
    assert ann.delete()[0] == 1


def test_errors_are_mapped_with_the_driver_error_chained(duck):
    Tag.objects.create(code="a")
    with pytest.raises(qplan.IntegrityError, match="'default' \\(duckdb ") as info:
        Tag.objects.create(code="a")
    assert isinstance(info.value.__cause__, duckdb.ConstraintException)
    with pytest.raises(qplan.ProgrammingError) as info:
        qplan.connections["default"].execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, duckdb.CatalogException)
    assert Tag.objects.count() == 1


def test_datetimes_are_naive_utc_timestamps(duck):
    plus1 = dt.timezone(dt.timedelta(hours=1))
    Book.objects.create(title="a", created=dt.datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=plus1))
    assert qplan.connections["default"].fetchall("SELECT created FROM qt_book") == \
        [(dt.datetime(2020, 1, 2, 2, 4, 5, 6),)]
    assert Book.objects.get().created == dt.datetime(2020, 1, 2, 2, 4, 5, 6, tzinfo=dt.timezone.utc)


def test_negative_zero_is_stored_as_zero_as_elsewhere(duck):
    Book.objects.create(title="z", rating=-0.0)
    assert str(Book.objects.values_list("rating", flat=True).get()) == "0.0"


def test_check_reports_the_library_version(duck):
    version, details = backend.probe(qplan.connections["default"])
    assert version == duckdb.__version__ and details.endswith(".duckdb")
