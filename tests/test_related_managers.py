"""Related objects on instances, as Django 5.2's related managers: reverse foreign keys
(``writer.novel_set``), reverse one-to-one (``writer.bio``), many-to-many both ways
(``novel.genres``, ``genre.novel_set``, ``club.members``), their writes, the prefetch
contract (``instance.__dict__["_prefetched"]``), the through tables in ``create_tables``
and the cascade counts of ``delete()``; on every backend (``rel_db``)."""

from __future__ import annotations

import contextlib
import pickle
from typing import Any, Iterator

import pytest

import qplan
from qplan.connections import Connection
from relmodels import Bio, Club, Genre, Membership, Novel, NovelGenres, Review, Writer


@contextlib.contextmanager
def queries() -> Iterator[list]:
    """The SQL statements run inside the block."""
    seen: list = []
    execute, fetchall = Connection.execute, Connection.fetchall

    def counting_execute(self: Any, sql: str, params: tuple = ()) -> Any:
        seen.append(sql)
        return execute(self, sql, params)

    def counting_fetchall(self: Any, sql: str, params: tuple = ()) -> list:
        seen.append(sql)
        return fetchall(self, sql, params)

    Connection.execute, Connection.fetchall = counting_execute, counting_fetchall  # type: ignore
    try:
        yield seen
    finally:
        Connection.execute, Connection.fetchall = execute, fetchall  # type: ignore


def titles(plan: Any) -> list[str]:
    return sorted(n.title for n in plan)


@pytest.fixture
def world(rel_db: str) -> dict[str, Any]:
    ann = Writer.objects.create(name="Ann")
    bob = Writer.objects.create(name="Bob", mentor=ann)
    a1 = Novel.objects.create(title="A1", pages=10, writer=ann, editor=bob)
    a2 = Novel.objects.create(title="A2", pages=20, writer=ann)
    b1 = Novel.objects.create(title="B1", pages=30, writer=bob, editor=bob)
    return {"ann": ann, "bob": bob, "a1": a1, "a2": a2, "b1": b1, "vendor": rel_db}


# --- reverse foreign keys ------------------------------------------------------------------------


def test_reverse_fk_reads(world: dict) -> None:
    ann, bob, a1 = world["ann"], world["bob"], world["a1"]
    assert titles(ann.novel_set.all()) == ["A1", "A2"]
    assert ann.novel_set.count() == 2 and ann.novel_set.exists()
    assert titles(ann.novel_set.filter(pages__gt=15)) == ["A2"]
    assert titles(ann.novel_set.exclude(pages__gt=15)) == ["A1"]
    assert ann.novel_set.get(title="A1") == a1
    assert [n.title for n in ann.novel_set.order_by("-pages")] == ["A2", "A1"]
    assert ann.novel_set.all() == Novel.objects.filter(writer=ann.pk).using(ann._db)
    assert titles(bob.edited.all()) == ["A1", "B1"]
    assert [w.name for w in ann.mentees.all()] == ["Bob"]
    assert not bob.mentees.exists()
    Review.objects.create(novel=a1, stars=4)
    assert [r.stars for r in a1.reviews.all()] == [4]
    with pytest.raises(TypeError):
        iter(ann.novel_set)  # a manager is not iterable (Django)


def test_reverse_fk_writes(world: dict) -> None:
    ann, bob, b1 = world["ann"], world["bob"], world["b1"]
    n = ann.novel_set.create(title="A3", pages=5)
    assert n.writer_id == ann.pk and Novel.objects.get(pk=n.pk).writer_id == ann.pk
    ann.novel_set.add(b1)
    assert b1.writer_id == ann.pk and Novel.objects.get(pk=b1.pk).writer_id == ann.pk
    assert bob.novel_set.count() == 0
    ann.novel_set.remove(b1)
    assert Novel.objects.get(pk=b1.pk).writer_id is None
    with pytest.raises(Writer.DoesNotExist):  # Django: the remote model's DoesNotExist
        bob.novel_set.remove(world["a1"])  # not related to bob
    fresh = Novel(title="C1")
    ann.novel_set.add(fresh, bulk=False)  # saved by add
    assert fresh.pk is not None and fresh.writer_id == ann.pk
    with pytest.raises(ValueError):
        ann.novel_set.add(Novel(title="unsaved"))  # bulk=True needs saved objects
    with pytest.raises(TypeError):
        ann.novel_set.add(bob)
    ann.novel_set.set([world["a1"], b1])
    assert titles(ann.novel_set.all()) == ["A1", "B1"]
    ann.novel_set.set([b1], clear=True)
    assert titles(ann.novel_set.all()) == ["B1"]
    ann.novel_set.add(world["a1"])
    ann.novel_set.clear(bulk=False)  # each saved
    assert ann.novel_set.count() == 0 and Novel.objects.count() == 5
    obj, created = ann.novel_set.get_or_create(title="G", defaults={"pages": 7})
    assert created and obj.writer_id == ann.pk and obj.pages == 7
    assert ann.novel_set.get_or_create(title="G") == (obj, False)
    obj2, created = ann.novel_set.update_or_create(title="G", defaults={"pages": 8})
    assert not created and obj2.pk == obj.pk and Novel.objects.get(pk=obj.pk).pages == 8


def test_reverse_fk_not_null_has_no_remove_or_clear(world: dict) -> None:
    a1 = world["a1"]
    assert not hasattr(a1.reviews, "remove") and not hasattr(a1.reviews, "clear")
    assert hasattr(world["ann"].novel_set, "remove")
    a1.reviews.create(stars=3)
    a1.reviews.set([])  # Django: only adds when the foreign key is not nullable
    assert a1.reviews.count() == 1


def test_unsaved_instance_refused() -> None:
    with pytest.raises(ValueError, match="needs to have a value for field 'id'"):
        Writer(name="x").novel_set
    with pytest.raises(qplan.PlanError):
        Novel(title="x").genres


def test_class_level_descriptors() -> None:
    assert Novel.genres.through is NovelGenres
    assert Club.members.through is Membership
    assert Writer.clubs.through is Membership
    assert Writer.novel_set is not None and Novel.reviews is not None
    assert issubclass(Writer.bio.RelatedObjectDoesNotExist, Bio.DoesNotExist)
    assert issubclass(Writer.bio.RelatedObjectDoesNotExist, AttributeError)
    with pytest.raises(AttributeError):
        Writer.no_such_thing
    with pytest.raises(AttributeError):
        Writer(name="x").no_such_thing


def test_accessor_lands_on_a_model_declared_later() -> None:
    from qplan import Model, fields

    class Pointer(Model):
        to = fields.ForeignKey("LaterTarget", on_delete=fields.CASCADE)

        class Meta:
            db_table = "rel_pointer"

    class LaterTarget(Model):
        class Meta:
            db_table = "rel_later"

    assert LaterTarget.pointer_set.relation().target is Pointer._meta
    target = LaterTarget(id=3)
    assert target.pointer_set.all() == Pointer.objects.filter(to=3)
    assert "pointer_set" not in vars(target)  # fields stay plain instance attributes


# --- reverse one-to-one --------------------------------------------------------------------------


def test_reverse_one_to_one(world: dict) -> None:
    ann, bob = world["ann"], world["bob"]
    bio = Bio.objects.create(writer=ann, text="hi")
    ann = Writer.objects.get(pk=ann.pk)
    with queries() as seen:
        assert ann.bio == bio and ann.bio.text == "hi"
    assert len(seen) == 1  # cached after the first access
    assert ann.__dict__["_cache_bio"] == bio
    with pytest.raises(Writer.bio.RelatedObjectDoesNotExist):
        bob.bio
    with pytest.raises(Bio.DoesNotExist):
        bob.bio
    assert not hasattr(bob, "bio")  # an AttributeError too, as in Django
    other = Bio(text="new")
    bob.bio = other  # points the Bio at bob (unsaved), as Django's assignment does
    assert other.writer_id == bob.pk and bob.bio is other
    with pytest.raises(TypeError, match="novel_set.set"):
        bob.novel_set = []
    bob = Writer.objects.get(pk=bob.pk)
    bob.__dict__["_cache_bio"] = None  # select_related found none
    with queries() as seen, pytest.raises(AttributeError):
        bob.bio
    assert seen == []


# --- many-to-many --------------------------------------------------------------------------------


def test_m2m_both_ways(world: dict) -> None:
    a1, a2 = world["a1"], world["a2"]
    sf, fan, crime = (Genre.objects.create(name=n) for n in ("sf", "fantasy", "crime"))
    a1.genres.add(sf, fan.pk)
    a1.genres.add(sf)  # an existing pair is skipped
    assert NovelGenres.objects.count() == 2
    assert sorted(g.name for g in a1.genres.all()) == ["fantasy", "sf"]
    assert titles(sf.novel_set.all()) == ["A1"]
    sf.novel_set.add(a2)
    assert titles(sf.novel_set.all()) == ["A1", "A2"]
    assert sf.novel_set.filter(pages__gt=15).count() == 1
    a1.genres.remove(fan)
    assert [g.name for g in a1.genres.all()] == ["sf"]
    a1.genres.set([crime, sf])
    assert sorted(g.name for g in a1.genres.all()) == ["crime", "sf"]
    a1.genres.set([fan], clear=True)
    assert [g.name for g in a1.genres.all()] == ["fantasy"]
    new = a1.genres.create(name="horror")
    assert sorted(g.name for g in a1.genres.all()) == ["fantasy", "horror"] and new.pk
    a1.genres.clear()
    assert not a1.genres.exists() and Genre.objects.count() == 4
    got, created = a1.genres.get_or_create(name="western")
    assert created and [g.name for g in a1.genres.all()] == ["western"]
    assert a1.genres.get_or_create(name="western") == (got, False)
    with pytest.raises(qplan.IntegrityError):  # not linked, so created: name is unique
        a1.genres.get_or_create(name="sf")
    with pytest.raises(TypeError):
        a1.genres.add(world["ann"])


def test_m2m_explicit_through(world: dict) -> None:
    ann, bob = world["ann"], world["bob"]
    club = Club.objects.create(name="c")
    club.members.add(ann, through_defaults={"role": "chair"})
    club.members.add(bob)
    assert sorted(w.name for w in club.members.all()) == ["Ann", "Bob"]
    assert Membership.objects.get(writer=ann.pk).role == "chair"
    assert [c.name for c in bob.clubs.all()] == ["c"]
    bob.clubs.remove(club)
    assert [w.name for w in club.members.all()] == ["Ann"]
    other = bob.clubs.create(name="d", through_defaults={"role": "founder"})
    assert Membership.objects.get(club=other.pk).role == "founder"
    club.members.set([bob], through_defaults={"role": "x"})
    assert [(m.writer_id, m.role) for m in Membership.objects.filter(club=club.pk)] == [
        (bob.pk, "x")]


# --- the prefetch contract -----------------------------------------------------------------------


def test_prefetched_rows_answer_without_queries(world: dict) -> None:
    ann, a1, a2 = world["ann"], world["a1"], world["a2"]
    ann.__dict__["_prefetched"] = {"novel_set": [a1, a2]}
    plan = ann.novel_set.all()
    with queries() as seen:
        assert [n.title for n in plan] == ["A1", "A2"]
        assert len(list(plan)) == 2 and plan.count() == 2 and plan.exists()
        assert plan[1] == a2 and ann.novel_set.count() == 2
    assert seen == []
    assert plan == Novel.objects.filter(writer=ann.pk).using(ann._db)
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert type(pickle.loads(pickle.dumps(plan))) is qplan.Plan
    with queries() as seen:
        assert titles(plan.filter(pages__gt=15)) == ["A2"]  # chained: an ordinary plan
    assert len(seen) == 1
    sf = Genre.objects.create(name="sf")
    a1.__dict__["_prefetched"] = {"genres": [sf]}
    with queries() as seen:
        assert list(a1.genres.all()) == [sf] and not list(a2.genres.all())
    assert len(seen) == 1  # a2 has no prefetched rows: it queries


# --- schema and deletion -------------------------------------------------------------------------


def test_create_tables_adds_auto_through_models(rel_db: str) -> None:
    qplan.drop_tables([Novel, Review], missing_ok=True)  # the through table goes with Novel
    with pytest.raises(qplan.DatabaseError):
        NovelGenres.objects.count()
    qplan.create_tables([Novel, Review])
    assert NovelGenres.objects.count() == 0
    qplan.create_tables([Novel, NovelGenres], exist_ok=True)  # listed too: created once


def test_delete_counts_through_rows(world: dict) -> None:
    a1 = world["a1"]
    a1.genres.add(Genre.objects.create(name="sf"), Genre.objects.create(name="fantasy"))
    if not qplan.connections["default"].backend.ON_DELETE_IN_DATABASE:
        with pytest.raises(qplan.IntegrityError):  # DuckDB: no ON DELETE actions
            a1.delete()
        return
    assert a1.delete() == (3, {Novel._meta.label: 1, NovelGenres._meta.label: 2})
    assert NovelGenres.objects.count() == 0 and Genre.objects.count() == 2


# --- routing --------------------------------------------------------------------------------------


class WritesTo:
    """Sends writes of ``models`` to ``alias`` and remembers the hints it was given."""

    def __init__(self, alias: str, models: tuple, reads: str | None = None) -> None:
        self.alias, self.models, self.reads, self.hints = alias, models, reads, []

    def db_for_write(self, plan: Any, **hints: Any) -> str | None:
        self.hints.append((plan.model, hints.get("instance")))
        return self.alias if plan.model in self.models else None

    def db_for_read(self, plan: Any, **hints: Any) -> str | None:
        return self.reads if plan.model in self.models else None


@pytest.fixture
def two_aliases(tmp_path: Any) -> Iterator[None]:
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in ("default", "other")},
                    routers=[])
    for alias in ("default", "other"):
        qplan.create_tables([Writer, Genre, Novel], using=alias)
    yield
    qplan.connections.close_all()
    qplan.configure(databases={}, routers=[])


def test_reads_follow_the_instance_and_writes_the_routers(two_aliases: None) -> None:
    ann = Writer.objects.using("other").create(name="Ann")
    assert ann._db == "other"
    Novel.objects.using("other").create(title="there", writer=ann)
    assert [n.title for n in ann.novel_set.all()] == ["there"]  # the instance's alias
    router = WritesTo("other", (Novel, NovelGenres))
    qplan.configure(routers=[router])
    ann.novel_set.create(title="routed")
    assert (Novel, ann) in router.hints  # the instance is the hint
    assert Novel.objects.using("other").filter(title="routed").exists()
    assert not Novel.objects.using("default").exists()
    sf = Genre.objects.using("other").create(name="sf")
    novel = Novel.objects.using("other").get(title="routed")
    novel.genres.add(sf)
    assert (NovelGenres, novel) in router.hints
    assert NovelGenres.objects.using("other").count() == 1
    router.reads = "default"  # a router deciding reads: the plan is not bound
    assert ann.novel_set.all().db is None and not ann.novel_set.exists()
