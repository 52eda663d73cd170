"""``get_or_create`` and ``update_or_create`` as Django 5.2 runs them, on every backend,
including a create lost to a concurrent one (two threads, a unique field)."""

from __future__ import annotations

import threading

import pytest

import qplan
from conftest import in_threads
from qplan import upserts
from testmodels import Author, Book


def test_get_or_create_returns_the_existing_row(any_db):
    ann = Author.objects.create(name="ann", email="ann@x")
    obj, created = Author.objects.get_or_create(email="ann@x", defaults={"name": "other"})
    assert (obj, created, obj.name) == (ann, False, "ann")
    assert Author.objects.count() == 1


def test_get_or_create_creates_from_lookups_and_defaults(any_db):
    obj, created = Author.objects.get_or_create(
        name="bob", email__isnull=True, defaults={"email": lambda: "bob@x"})
    assert created and obj.pk is not None and obj._db == "default"
    assert Author.objects.get(pk=obj.pk).email == "bob@x"  # the callable was called
    assert Author.objects.get_or_create(name="bob") == (obj, False)


def test_get_or_create_refuses_unknown_fields_before_writing(any_db):
    with pytest.raises(qplan.FieldError, match="Invalid field name.*'nope'"):
        Author.objects.get_or_create(name="x", defaults={"nope": 1})
    assert Author.objects.count() == 0


def test_get_or_create_on_a_filtered_plan_and_multiple_rows(any_db):
    Author.objects.bulk_create([Author(name="a"), Author(name="a")])
    with pytest.raises(Author.MultipleObjectsReturned):
        Author.objects.get_or_create(name="a")
    obj, created = Author.objects.filter(name="a").get_or_create(email="a@x", name="b")
    assert created and obj.name == "b"


def test_an_integrity_error_that_no_row_explains_is_raised(any_db):
    Author.objects.create(name="ann", email="e@x")
    with pytest.raises(qplan.IntegrityError):  # not found by name, refused by the email
        Author.objects.get_or_create(name="zed", defaults={"email": "e@x"})
    assert Author.objects.count() == 1


def test_update_or_create_updates_or_creates(any_db):
    obj, created = Author.objects.update_or_create(email="u@x", defaults={"name": "one"})
    assert created and obj.name == "one"
    again, created = Author.objects.update_or_create(email="u@x", defaults={"name": "two"})
    assert (again, created) == (obj, False)
    assert Author.objects.get(pk=obj.pk).name == "two"
    third, created = Author.objects.update_or_create(
        email="v@x", defaults={"name": "upd"}, create_defaults={"name": "new"})
    assert created and third.name == "new"
    Author.objects.update_or_create(email="v@x", defaults={"name": "upd"},
                                    create_defaults={"name": "new"})
    assert Author.objects.get(email="v@x").name == "upd"


def test_update_or_create_refuses_unknown_fields(any_db):
    with pytest.raises(qplan.FieldError, match="'nope'"):
        Author.objects.update_or_create(email="u@x", defaults={"nope": 1})
    assert Author.objects.count() == 0


def _race(monkeypatch, call) -> list:
    """Run ``call`` in two threads whose reads both miss before either creates: the real
    race, made certain by a barrier between the read and the create."""
    barrier = threading.Barrier(2, timeout=20)
    real = upserts.create_params

    def after_the_read(plan, defaults, lookups):
        if lookups and not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()
        return real(plan, defaults, lookups)

    local = threading.local()
    monkeypatch.setattr(upserts, "create_params", after_the_read)
    return in_threads(call, 2)


def test_get_or_create_race_returns_the_winners_row(any_db, monkeypatch):
    results = _race(monkeypatch, lambda i: Author.objects.get_or_create(
        email="race@x", defaults={"name": f"t{i}"}))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0].pk == results[1][0].pk
    assert Author.objects.filter(email="race@x").count() == 1


def test_update_or_create_race_creates_once_and_updates(any_db, monkeypatch):
    results = _race(monkeypatch, lambda i: Author.objects.update_or_create(
        email="race@x", defaults={"name": f"t{i}"}))
    assert not any(isinstance(r, BaseException) for r in results), results
    assert sorted(created for _, created in results) == [False, True]
    loser = next(obj for obj, created in results if not created)
    assert Author.objects.get(email="race@x").name == loser.name


def test_duckdb_races_find_the_winners_row_even_before_its_commit_shows(databases,
                                                                         monkeypatch):
    """DuckDB's writers do not wait for each other: the loser may get ``Duplicate key``
    while the winner's commit is not yet visible (about one race in 30). get_or_create
    re-reads for the backend's CONFLICT_VISIBLE_WITHIN; without that, some of these 60
    races raise IntegrityError (each run: a 1 - 0.97**60 = 84% chance to show it)."""
    databases(default="duckdb")
    for n in range(60):
        with monkeypatch.context() as patch:
            results = _race(patch, lambda i: Author.objects.get_or_create(
                email=f"race{n}@x", defaults={"name": f"t{i}"}))
        assert not any(isinstance(r, BaseException) for r in results), (n, results)
        assert sorted(created for _, created in results) == [False, True]


def test_get_or_create_inside_atomic_commits_with_the_block(any_db):
    with qplan.atomic():
        obj, created = Author.objects.get_or_create(name="in", email="in@x")
    assert created and Author.objects.get(pk=obj.pk).email == "in@x"
    with pytest.raises(RuntimeError):
        with qplan.atomic():
            Author.objects.update_or_create(email="in@x", defaults={"name": "gone"})
            raise RuntimeError
    assert Author.objects.get(pk=obj.pk).name == "in"


def test_get_or_create_follows_using(any_db):
    book, created = Book.objects.using("default").get_or_create(title="t", pages=3)
    assert created and book._db == "default" and book.pages == 3
