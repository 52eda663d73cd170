"""atomic(): commit, rollback, savepoints, the decorator form; writes that fail lose nothing."""

from __future__ import annotations

import pytest

import qplan
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
