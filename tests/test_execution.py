"""Every plan method, run on a real SQLite database."""

from __future__ import annotations

import datetime as dt
import decimal
import threading

import pytest

import qplan
from qplan import Avg, Count, F, Max, Min, Q, Sum
from testmodels import Author, Book, Tag

UTC = dt.timezone.utc
D = decimal.Decimal


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann", email="ann@x.org")
    bob = Author.objects.create(name="bob")
    rows = [
        ("Alpha", ann, 100, 4.5, "10.50", True, dt.date(2020, 1, 1), {"tags": ["a"]}),
        ("beta", ann, 250, None, "20.00", True, dt.date(2021, 6, 1), None),
        ("Gamma 50%", bob, 50, 3.0, "5.25", False, None, {"n": 1}),
        ("delta_x", None, 400, 5.0, "99.99", True, dt.date(2019, 3, 3), []),
        ("epsilon", bob, 250, 2.0, "0.01", False, dt.date(2022, 2, 2), None),
    ]
    books = [
        Book(title=t, author=a, pages=p, rating=r, price=D(pr), is_active=act, published=pub,
             created=dt.datetime(2024, 1, i + 1, 12, tzinfo=UTC), meta=m)
        for i, (t, a, p, r, pr, act, pub, m) in enumerate(rows)
    ]
    Book.objects.bulk_create(books)
    return {"ann": ann, "bob": bob, "books": books}


def titles(plan) -> list[str]:
    return [b.title for b in plan]


def test_create_returns_saved_instance_with_pk(db):
    a = Author.objects.create(name="Zed")
    assert a.pk is not None and a._db == "default"
    assert Author.objects.get(pk=a.pk).name == "Zed"


def test_bulk_create_sets_primary_keys_in_order(library):
    pks = [b.pk for b in library["books"]]
    assert pks == sorted(pks) and len(set(pks)) == 5
    assert [Book.objects.get(pk=pk).title for pk in pks] == [b.title for b in library["books"]]


def test_round_trip_of_every_field_type(library):
    b = Book.objects.get(title="Alpha")
    assert b.price == D("10.50") and isinstance(b.price, D)
    assert b.is_active is True
    assert b.published == dt.date(2020, 1, 1)
    assert b.created == dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert b.meta == {"tags": ["a"]}
    assert b.rating == 4.5
    b.cover = b"\x00\xffbytes"
    b.save()
    assert Book.objects.get(pk=b.pk).cover == b"\x00\xffbytes"


@pytest.mark.parametrize("lookup, expected", [
    ({"title": "beta"}, ["beta"]),
    ({"title": "Beta"}, []),
    ({"title__iexact": "BETA"}, ["beta"]),
    ({"title__contains": "a"}, ["Alpha", "beta", "Gamma 50%", "delta_x"]),
    ({"title__contains": "A"}, ["Alpha"]),
    ({"title__icontains": "A"}, ["Alpha", "beta", "Gamma 50%", "delta_x"]),
    ({"title__contains": "%"}, ["Gamma 50%"]),
    ({"title__contains": "_"}, ["delta_x"]),
    ({"title__startswith": "a"}, []),
    ({"title__istartswith": "a"}, ["Alpha"]),
    ({"title__endswith": "ta"}, ["beta"]),
    ({"title__endswith": "TA"}, []),
    ({"title__iendswith": "HA"}, ["Alpha"]),
    ({"pages__in": [50, 400]}, ["Gamma 50%", "delta_x"]),
    ({"pages__in": []}, []),
    ({"pages__gt": 250}, ["delta_x"]),
    ({"pages__gte": 250}, ["beta", "delta_x", "epsilon"]),
    ({"pages__lt": 100}, ["Gamma 50%"]),
    ({"pages__lte": 100}, ["Alpha", "Gamma 50%"]),
    ({"pages__range": (100, 250)}, ["Alpha", "beta", "epsilon"]),
    ({"rating__isnull": True}, ["beta"]),
    ({"rating": None}, ["beta"]),
    ({"published__isnull": False, "is_active": False}, ["epsilon"]),
    ({"is_active": True}, ["Alpha", "beta", "delta_x"]),
    ({"price__gt": D("10")}, ["Alpha", "beta", "delta_x"]),
    ({"created__gte": dt.datetime(2024, 1, 4, 12, tzinfo=UTC)}, ["delta_x", "epsilon"]),
    ({"published__lt": dt.date(2020, 6, 1)}, ["Alpha", "delta_x"]),
    ({"author__name": "bob"}, ["Gamma 50%", "epsilon"]),
    ({"author__name__startswith": "A"}, ["Alpha", "beta"]),
    ({"author__isnull": True}, ["delta_x"]),
    ({"author__email__isnull": True}, ["Gamma 50%", "delta_x", "epsilon"]),
])
def test_lookups(library, lookup, expected):
    assert titles(Book.objects.filter(**lookup).order_by("id")) == expected


def test_foreign_key_by_instance_and_by_id(library):
    ann = library["ann"]
    by_obj = Book.objects.filter(author=ann).order_by("id")
    assert titles(by_obj) == ["Alpha", "beta"]
    assert titles(Book.objects.filter(author_id=ann.pk).order_by("id")) == titles(by_obj)
    assert titles(Book.objects.filter(author__id=ann.pk).order_by("id")) == titles(by_obj)
    assert by_obj == Book.objects.filter(author_id=ann.pk).order_by("id")
    book = Book.objects.get(title="Alpha")
    assert book.author_id == ann.pk and book.author.name == "Ann"


def test_exclude_keeps_rows_where_a_nullable_column_is_null(library):
    # SQL's NOT (rating > 3) drops NULL ratings; a plan's exclude() keeps them, as Django does.
    assert titles(Book.objects.exclude(rating__gt=3).order_by("id")) == ["beta", "Gamma 50%", "epsilon"]
    assert titles(Book.objects.exclude(author__name="bob").order_by("id")) == ["Alpha", "beta", "delta_x"]


def test_q_objects(library):
    q = (Q(pages__lt=100) | Q(title__startswith="b")) & ~Q(is_active=False)
    assert titles(Book.objects.filter(q).order_by("id")) == ["beta"]
    assert titles(Book.objects.filter(~Q(pages=250)).order_by("id")) == ["Alpha", "Gamma 50%", "delta_x"]
    assert titles(Book.objects.exclude(Q(pages=250) | Q(pages=50)).order_by("id")) == ["Alpha", "delta_x"]


def test_f_expressions(library):
    assert titles(Book.objects.filter(pages__gt=F("rating") * 50).order_by("id")) == ["delta_x", "epsilon"]
    assert Book.objects.filter(title="Alpha").update(pages=F("pages") * 2 + 1) == 1
    assert Book.objects.get(title="Alpha").pages == 201
    values = Book.objects.filter(title="beta").annotate(half=F("pages") / 2).values_list("half", flat=True)
    assert list(values) == [125]


def test_order_by_and_reverse(library):
    assert titles(Book.objects.order_by("-pages", "title")) == ["delta_x", "beta", "epsilon", "Alpha", "Gamma 50%"]
    assert titles(Book.objects.order_by("author__name", "id")) == ["delta_x", "Alpha", "beta", "Gamma 50%", "epsilon"]
    assert titles(Book.objects.order_by("id").reverse()) == ["epsilon", "delta_x", "Gamma 50%", "beta", "Alpha"]
    # NULLs sort first ascending and last descending.
    assert titles(Book.objects.order_by("rating", "id"))[0] == "beta"
    assert titles(Book.objects.order_by("-rating", "id"))[-1] == "beta"


def test_slicing_and_indexing(library):
    plan = Book.objects.order_by("id")
    assert titles(plan[1:3]) == ["beta", "Gamma 50%"]
    assert titles(plan[3:]) == ["delta_x", "epsilon"]
    assert titles(plan[:2]) == ["Alpha", "beta"]
    assert titles(plan[1:4][1:2]) == ["Gamma 50%"]
    assert plan[2].title == "Gamma 50%"
    with pytest.raises(IndexError):
        plan[10]
    assert titles(plan[10:20]) == []


def test_values_and_values_list(library):
    plan = Book.objects.filter(author__name="Ann").order_by("id")
    assert list(plan.values("title", "author__name")) == [
        {"title": "Alpha", "author__name": "Ann"}, {"title": "beta", "author__name": "Ann"}]
    assert list(plan.values_list("title", "pages")) == [("Alpha", 100), ("beta", 250)]
    assert list(plan.values_list("title", flat=True)) == ["Alpha", "beta"]
    row = list(plan.values_list("title", "pages", named=True))[0]
    assert (row.title, row.pages) == ("Alpha", 100)
    assert list(plan.values("author")) == [{"author": library["ann"].pk}] * 2
    assert set(list(plan.values())[0]) >= {"id", "title", "author_id", "price"}


def test_distinct(library):
    assert sorted(Book.objects.values_list("pages", flat=True).distinct()) == [50, 100, 250, 400]
    assert Book.objects.values("pages").distinct().count() == 4


def test_aggregate(library):
    result = Book.objects.aggregate(Sum("pages"), Avg("pages"), Min("title"), Max("price"), n=Count("*"))
    assert result == {"pages__sum": 1050, "pages__avg": 210.0, "title__min": "Alpha",
                      "price__max": D("99.99"), "n": 5}
    assert Book.objects.filter(pages__gt=1000).aggregate(s=Sum("pages"), c=Count("id")) == {"s": None, "c": 0}
    assert Book.objects.aggregate(d=Count("pages", distinct=True)) == {"d": 4}
    assert Book.objects.order_by("id")[:2].aggregate(s=Sum("pages")) == {"s": 350}
    assert Book.objects.aggregate(s=Sum("price")) == {"s": D("135.75")}


def test_annotate_with_group_by(library):
    rows = Book.objects.values("author__name").annotate(n=Count("id"), total=Sum("pages")).order_by("author__name")
    assert list(rows) == [
        {"author__name": None, "n": 1, "total": 400},
        {"author__name": "Ann", "n": 2, "total": 350},
        {"author__name": "bob", "n": 2, "total": 300},
    ]
    with pytest.raises(qplan.FieldError, match="clashes with a field"):
        Book.objects.annotate(pages=Sum("pages"))
    big = Book.objects.values("author").annotate(n=Count("id")).filter(n__gt=1)
    assert sorted(r["author"] for r in big) == sorted([library["ann"].pk, library["bob"].pk])
    with_total = Book.objects.annotate(double=F("pages") * 2).filter(double__gt=600)
    assert [(b.title, b.double) for b in with_total] == [("delta_x", 800)]


def test_count_exists_first_last(library):
    assert Book.objects.count() == 5
    assert Book.objects.filter(is_active=True).count() == 3
    assert Book.objects.order_by("id")[1:3].count() == 2
    assert Book.objects.filter(title="nope").exists() is False
    assert Book.objects.exists() is True
    assert Book.objects.first().title == "Alpha"
    assert Book.objects.last().title == "epsilon"
    assert Book.objects.order_by("-pages", "id").first().title == "delta_x"
    assert Book.objects.filter(title="nope").first() is None


def test_get_errors(library):
    with pytest.raises(Book.DoesNotExist) as info:
        Book.objects.get(title="nope")
    assert isinstance(info.value, qplan.ObjectDoesNotExist)
    with pytest.raises(Book.MultipleObjectsReturned, match="returned 2"):
        Book.objects.get(pages=250)
    assert not issubclass(Author.DoesNotExist, Book.DoesNotExist)


def test_iterator_streams_in_chunks(library):
    assert [b.title for b in Book.objects.order_by("id").iterator(chunk_size=2)] == titles(Book.objects.order_by("id"))
    assert list(Book.objects.order_by("id").values_list("pages", flat=True).iterator(chunk_size=1)) == [100, 250, 50, 400, 250]


def test_update_and_delete_return_counts(library):
    assert Book.objects.filter(pages=250).update(is_active=False, notes="x") == 2
    assert Book.objects.filter(is_active=False).count() == 3
    assert Book.objects.filter(author__name="bob").update(pages=1) == 2  # through a join
    assert sorted(Book.objects.filter(pages=1).values_list("title", flat=True)) == ["Gamma 50%", "epsilon"]
    assert Book.objects.filter(author__name="Ann").delete() == (2, {"testmodels.Book": 2})
    assert Book.objects.count() == 3
    assert Book.objects.filter(pk=-1).delete() == (0, {})  # as Django returns it


def test_write_plans_are_held_and_executed_later(library):
    update = Book.objects.filter(pages=250).update_plan(pages=251)
    delete = Book.objects.filter(pages__lt=60).delete_plan()
    assert update.kind == "write" and delete.kind == "write"
    assert Book.objects.filter(pages=251).count() == 0  # nothing ran yet
    assert update.execute() == 2
    assert delete.execute(using="default") == 1
    assert Book.objects.count() == 4
    insert = Author.objects.create_plan(name="Held")
    assert Author.objects.filter(name="Held").count() == 0
    (pk,) = insert.execute()
    assert Author.objects.get(pk=pk).name == "Held"


def test_instance_save_and_delete(library):
    b = Book(title="new", pages=3)
    assert b.pk is None
    b.save()
    assert b.pk is not None
    b.pages = 4
    b.save()
    assert Book.objects.get(pk=b.pk).pages == 4
    assert Book.objects.count() == 6
    assert b.delete() == (1, {"testmodels.Book": 1})
    assert Book.objects.count() == 5


def test_explicit_primary_key_model(db):
    Tag.objects.create(code="py", label="Python")
    Tag.objects.bulk_create([Tag(code="sql"), Tag(code="db", label="Databases")])
    assert sorted(Tag.objects.values_list("code", flat=True)) == ["db", "py", "sql"]
    t = Tag.objects.get(pk="sql")
    t.label = "SQL"
    t.save()
    assert Tag.objects.get(code="sql").label == "SQL"
    assert Tag.objects.count() == 3


def test_integrity_errors_are_mapped_and_chained(library):
    with pytest.raises(qplan.IntegrityError) as info:
        Author.objects.create(name="dup", email="ann@x.org")
    assert "default" in str(info.value)
    assert info.value.__cause__ is not None and type(info.value.__cause__).__module__ == "sqlite3"
    with pytest.raises(qplan.IntegrityError):  # SQLite enforces foreign keys
        Book.objects.create(title="orphan", author_id=10_000)


def test_cascading_delete_through_foreign_key(library):
    # Django counts the rows the cascade deletes too
    assert library["ann"].delete() == (3, {"testmodels.Author": 1, "testmodels.Book": 2})
    assert Book.objects.filter(title__in=["Alpha", "beta"]).count() == 0


def test_using_retargets_between_sqlite_aliases(tmp_path):
    qplan.configure(databases={"default": f"sqlite:///{tmp_path / 'a.db'}",
                               "other": f"sqlite:///{tmp_path / 'b.db'}"})
    try:
        qplan.create_tables([Author])
        qplan.create_tables([Author], using="other")
        Author.objects.create(name="on default")
        Author.objects.using("other").create(name="on other")
        plan = Author.objects.values_list("name", flat=True)
        assert list(plan) == ["on default"]
        assert list(plan.using("other")) == ["on other"]
        assert list(qplan.loads(qplan.dumps(plan)).using("other")) == ["on other"]
        a = Author.objects.using("other").get(name="on other")
        a.name = "renamed"
        a.save()  # saves where it was loaded from
        assert list(plan.using("other")) == ["renamed"]
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def test_meta_using_sets_a_models_default_alias(tmp_path):
    class Pinned(qplan.Model):
        name = qplan.fields.CharField(max_length=10)

        class Meta:
            using = "pinned"
            key = "tests.test_execution.Pinned"

    qplan.configure(databases={"default": "sqlite://:memory:",
                               "pinned": f"sqlite:///{tmp_path / 'p.db'}"})
    try:
        qplan.create_tables([Pinned])
        Pinned.objects.create(name="x")
        assert Pinned.objects.count() == 1
        assert Pinned.objects.compile()[0].startswith("SELECT")
        with pytest.raises(qplan.OperationalError):  # not on default
            Pinned.objects.using("default").count()
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def test_connections_are_per_thread(db):
    mine = qplan.connections["default"]
    seen = []
    t = threading.Thread(target=lambda: seen.append(qplan.connections["default"]))
    t.start()
    t.join()
    assert seen[0] is not mine
    assert qplan.connections["default"] is mine
    assert qplan.connection.alias == "default"


def test_memory_database_is_shared_by_threads():
    qplan.configure(databases={"default": "sqlite://:memory:"})
    try:
        qplan.create_tables([Author])
        Author.objects.create(name="main")
        names = []
        t = threading.Thread(target=lambda: names.extend(Author.objects.values_list("name", flat=True)))
        t.start()
        t.join()
        assert names == ["main"]
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def test_drop_tables(db):
    qplan.drop_tables(all_models())
    with pytest.raises(qplan.OperationalError, match="no such table"):
        Author.objects.count()
    qplan.drop_tables(all_models(), missing_ok=True)
    qplan.create_tables(all_models())
    qplan.create_tables(all_models(), exist_ok=True)
    assert Author.objects.count() == 0


def all_models():
    import testmodels

    return testmodels.ALL


def test_one_evaluation_resolves_its_alias_once(tmp_path):
    """A router asked twice may answer differently; one evaluation must not mix databases."""
    class Flip:
        calls = 0

        def db_for_read(self, plan, **hints):
            Flip.calls += 1
            return ("a", "b")[Flip.calls % 2]

    qplan.configure(databases={"a": f"sqlite:///{tmp_path / 'a.db'}", "b": f"sqlite:///{tmp_path / 'b.db'}"},
                    routers=[Flip()])
    try:
        for alias in ("a", "b"):
            qplan.create_tables([Author], using=alias)
            Author.objects.using(alias).bulk_create([Author(name=f"{alias}{i}") for i in range(3)])
        for _ in range(4):
            names = [a.name for a in Author.objects.all()]
            assert len({n[0] for n in names}) == 1 and len(names) == 3
            got = Author.objects.get(name__endswith="1")
            assert got._db == got.name[0]
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={}, routers=[])


# --- save() and delete() as Django does them -----------------------------------------------------


def test_save_with_a_primary_key_updates_then_inserts(any_db):
    a = Author.objects.create(name="a")
    Author(id=a.pk, name="renamed").save()  # an existing key: UPDATE, no IntegrityError
    assert Author.objects.get(pk=a.pk).name == "renamed" and Author.objects.count() == 1
    new = Author(id=a.pk + 100, name="explicit")
    new.save()  # no row matched: INSERT with that key
    assert Author.objects.get(pk=a.pk + 100).name == "explicit" and not new._adding
    Tag.objects.create(code="py", label="Python")
    Tag(code="py", label="Py").save()  # a natural key: the same rule
    assert list(Tag.objects.values_list("code", "label")) == [("py", "Py")]


def test_force_insert_force_update_and_update_fields(any_db):
    a = Author.objects.create(name="a", email="a@x")
    with pytest.raises(qplan.IntegrityError):
        Author(id=a.pk, name="dup").save(force_insert=True)
    with pytest.raises(qplan.DatabaseError, match="forced update did not affect any rows"):
        Author(id=a.pk + 50, name="ghost").save(force_update=True)
    with pytest.raises(qplan.PlanError, match="cannot force both"):
        a.save(force_insert=True, force_update=True)
    a.name, a.email = "new name", "new@x"
    a.save(update_fields=["name"])  # only name is written
    assert Author.objects.values_list("name", "email").get(pk=a.pk) == ("new name", "a@x")
    a.save(update_fields=[])  # Django: nothing at all
    with pytest.raises(qplan.FieldError, match="no field 'nmae'"):
        a.save(update_fields=["nmae"])
    with pytest.raises(qplan.DatabaseError, match="update_fields did not affect any rows"):
        Author(id=a.pk + 60, name="ghost").save(update_fields=["name"])
    assert Author.objects.count() == 1


def test_delete_returns_djangos_counts_with_cascades(any_db):
    ann, bob = Author.objects.create(name="ann"), Author.objects.create(name="bob")
    Book.objects.bulk_create([Book(title="a1", author=ann), Book(title="a2", author=ann),
                              Book(title="b1", author=bob), Book(title="none")])
    if not qplan.connections["default"].backend.ON_DELETE_IN_DATABASE:
        with pytest.raises(qplan.IntegrityError):  # no cascade: a referenced row stays
            ann.delete()
        Book.objects.exclude(title="none").delete()
        assert Author.objects.delete() == (2, {"testmodels.Author": 2})
        return
    assert Author.objects.filter(name="ann").delete() == (
        3, {"testmodels.Author": 1, "testmodels.Book": 2})
    assert bob.delete() == (2, {"testmodels.Author": 1, "testmodels.Book": 1})
    assert Book.objects.delete() == (1, {"testmodels.Book": 1})
    assert Author.objects.delete() == (0, {})


def _no_drive(*args, **kwargs):
    raise AssertionError("the blocking path drove a step generator")


def test_blocking_statements_run_without_driving_steps(library, monkeypatch):
    """The hot path: a blocking read, count, exists, get, update or INSERT calls the
    driver directly (``Engine.run``); driving the core's generator cost 1-2 µs a query."""
    from qplan import execution, replication

    monkeypatch.setattr(execution, "drive", _no_drive)
    monkeypatch.setattr(replication, "drive", _no_drive)
    plan = Author.objects.order_by("name")
    assert [a.name for a in plan] == titles_of(plan)
    assert plan.count() == len(list(plan.values_list("id", flat=True))) and plan.exists()
    first = plan.values_list("name", flat=True)[0]
    assert Author.objects.get(name=first).name == first
    assert Author.objects.filter(name=first).update(name=first) == 1
    assert len(Author.objects.bulk_create_plan([Author(name="direct")]).execute()) == 1


def titles_of(plan) -> list[str]:
    return [row[0] for row in plan.values_list("name")]
