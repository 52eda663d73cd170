"""atomic(): commit, rollback, savepoints, the decorator form; writes that fail lose nothing."""

from __future__ import annotations

import pytest

import qplan
from conftest import assert_nesting_refused, savepoints
from testmodels import Author


def names():
    return sorted(Author.objects.values_list("name", flat=True))


def test_commit_and_rollback(db):
    with qplan.atomic():
        Author.objects.create(name="kept")
    with pytest.raises(RuntimeError):
        with qplan.atomic():
            Author.objects.create(name="lost")
            raise RuntimeError("boom")
    assert names() == ["kept"]


def test_nested_blocks_roll_back_to_their_savepoint(db):
    with qplan.atomic():
        Author.objects.create(name="outer")
        try:
            with qplan.atomic():
                Author.objects.create(name="inner")
                raise ValueError
        except ValueError:
            pass
        with qplan.atomic():
            Author.objects.create(name="inner2")
    assert names() == ["inner2", "outer"]


def test_an_error_in_an_inner_block_rolls_back_everything_when_it_escapes(db):
    with pytest.raises(KeyError):
        with qplan.atomic():
            Author.objects.create(name="a")
            with qplan.atomic():
                Author.objects.create(name="b")
                raise KeyError
    assert names() == []


def test_decorator_forms(db):
    @qplan.atomic
    def plain(fail):
        Author.objects.create(name="plain")
        if fail:
            raise ValueError

    @qplan.atomic(using="default")
    def with_alias():
        Author.objects.create(name="alias")

    with pytest.raises(ValueError):
        plain(True)
    plain(False)
    with_alias()
    assert names() == ["alias", "plain"]


def test_failing_statement_inside_a_transaction(db):
    Author.objects.create(name="first", email="dup@x")
    with pytest.raises(qplan.IntegrityError):
        with qplan.atomic():
            Author.objects.create(name="second")
            Author.objects.create(name="third", email="dup@x")
    assert names() == ["first"]
    Author.objects.create(name="after")  # the connection is still usable
    assert names() == ["after", "first"]


def test_bulk_create_failing_half_way_leaves_no_rows(db):
    authors = [Author(name=f"a{i}", email=f"{i}@x") for i in range(10)] + [Author(name="dup", email="3@x")]
    with pytest.raises(qplan.IntegrityError):
        Author.objects.bulk_create(authors, batch_size=4)
    assert Author.objects.count() == 0


def test_atomic_on_unknown_alias(db):
    with pytest.raises(qplan.ConfigurationError):
        with qplan.atomic(using="nope"):
            pass


def test_a_connection_closed_inside_a_block_is_a_clear_error_not_a_commit(db):
    with pytest.raises(qplan.TransactionManagementError, match="closed inside atomic"):
        with qplan.atomic():
            Author.objects.create(name="lost")
            qplan.connections["default"].close()
    assert names() == []
    with pytest.raises(ValueError):  # the block's own error is the one the caller sees
        with qplan.atomic():
            with qplan.atomic():
                qplan.connections["default"].close()
                raise ValueError
    Author.objects.create(name="after")
    assert names() == ["after"]


# --- doomed blocks: a failure inside a block never lets half of it commit --------------------------


def test_a_failure_caught_inside_a_block_dooms_it_on_every_backend(any_db):
    Author.objects.create(name="first", email="dup@x")
    with pytest.raises(qplan.TransactionManagementError, match="rolled back"):
        with qplan.atomic():
            Author.objects.create(name="a")
            with pytest.raises(qplan.IntegrityError):
                Author.objects.create(name="b", email="dup@x")
            with pytest.raises(qplan.TransactionManagementError, match="doomed"):
                Author.objects.create(name="c")
            with pytest.raises(qplan.TransactionManagementError, match="doomed"):
                Author.objects.count()
            refused = qplan.TransactionManagementError if savepoints() else qplan.NotSupportedError
            with pytest.raises(refused):
                with qplan.atomic():  # no savepoint either
                    pass
    assert names() == ["first"]
    Author.objects.create(name="after")  # the connection is fine afterwards
    assert names() == ["after", "first"]


def test_a_failure_leaving_an_inner_block_is_undone_by_its_savepoint(any_db):
    if not savepoints():
        return assert_nesting_refused()
    Author.objects.create(name="first", email="dup@x")
    with qplan.atomic():
        Author.objects.create(name="a")
        with pytest.raises(qplan.IntegrityError):
            with qplan.atomic():
                Author.objects.create(name="b")
                Author.objects.create(name="c", email="dup@x")
        Author.objects.create(name="d")  # the outer block goes on
    assert names() == ["a", "d", "first"]


def test_an_inner_block_that_catches_its_failure_rolls_back_to_its_savepoint_and_says_so(any_db):
    if not savepoints():
        return assert_nesting_refused()
    Author.objects.create(name="first", email="dup@x")
    with qplan.atomic():
        Author.objects.create(name="a")
        with pytest.raises(qplan.TransactionManagementError, match="savepoint"):
            with qplan.atomic():
                Author.objects.create(name="b")
                with pytest.raises(qplan.IntegrityError):
                    Author.objects.create(name="c", email="dup@x")
        Author.objects.create(name="d")
    assert names() == ["a", "d", "first"]


# How a server ends another session, by SQL dialect: (SQL, the driver connection's session id).
KILL_SESSION = {
    "postgres": ("SELECT pg_terminate_backend(%s)", lambda raw: raw.get_backend_pid()),
    "mysql": ("KILL %s", lambda raw: raw.thread_id()),
}


def _drop_connection(alias: str = "default") -> None:
    """Make the server (for a file database, the process) drop ``alias``'s connection."""
    conn = qplan.connections[alias]
    if conn.backend.FILE_DATABASE:
        conn.raw.close()
        return
    sql, session = KILL_SESSION[conn.backend.dialect]
    qplan.add_database("killer", dict(qplan.settings.database(alias)))
    try:
        qplan.connections["killer"].execute(sql, (session(conn.raw),))
    finally:
        qplan.remove_database("killer")


def test_a_connection_dropped_inside_a_block_never_commits_half_of_it(any_db):
    with pytest.raises(qplan.TransactionManagementError, match="no statement runs|rolled back"):
        with qplan.atomic():
            Author.objects.create(name="written")
            _drop_connection()
            with pytest.raises(qplan.DatabaseError):  # the caller catches the failure...
                Author.objects.create(name="next")
            with pytest.raises(qplan.TransactionManagementError):
                Author.objects.create(name="later")  # ...but nothing runs outside the block
    assert names() == []  # nothing of the block was committed on a new connection
    Author.objects.create(name="after")
    assert names() == ["after"]


def test_an_inner_block_losing_the_connection_dooms_the_outer_one(any_db):
    if not savepoints():
        return assert_nesting_refused()
    with pytest.raises(qplan.TransactionManagementError):
        with qplan.atomic():
            Author.objects.create(name="outer")
            try:
                with qplan.atomic():
                    Author.objects.create(name="inner")
                    _drop_connection()
                    Author.objects.create(name="fails")
            except qplan.DatabaseError:
                pass
            Author.objects.create(name="must not autocommit")
    assert names() == []


def test_a_statement_error_outside_any_block_leaves_no_doom_behind(any_db):
    Author.objects.create(name="first", email="dup@x")
    with pytest.raises(qplan.IntegrityError):
        Author.objects.create(name="second", email="dup@x")
    with qplan.atomic():
        Author.objects.create(name="third")
    assert names() == ["first", "third"]


def test_bugs_in_a_parameter_are_not_disguised_as_database_errors(db):
    class Bad:
        def __conform__(self, protocol):
            raise RuntimeError("a bug in an adapter")

    with pytest.raises(RuntimeError, match="a bug in an adapter"):
        qplan.connections["default"].execute("SELECT ?", (Bad(),))
    assert qplan.connections["default"].fetchall("SELECT 1") == [(1,)]
