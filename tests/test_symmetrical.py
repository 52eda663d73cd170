"""Symmetrical many-to-many to self (Django 5.2's ``ManyToManyField("self")``): the
declaration defaults, no reverse side, the managers writing and removing both directions,
queries, prefetch, cascades and payloads over it; the same rows on every backend."""

from __future__ import annotations

import pickle
from typing import Any, Iterator

import pytest
from hypothesis import given, strategies as st

import qplan
from qplan import Count, Model, fields, routing, sharding
from qplan.relations import relations, reverse_accessors
from qplan.sharding import Sharded
from conftest import VENDORS, backend_settings
from symmmodels import ALL, Pal, Palship, Person, PersonFriends


@pytest.fixture(params=VENDORS)
def symm_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """``default`` on each backend in turn, with the ``symmmodels`` tables: the vendor."""
    qplan.configure(databases={"default": backend_settings(request, request.param)})
    qplan.drop_tables(ALL, missing_ok=True)
    qplan.create_tables(ALL)
    yield str(request.param)
    qplan.connections.close_all()
    try:
        qplan.drop_tables(ALL, missing_ok=True)
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})


def links() -> set[tuple[str, str]]:
    """Every through row as ``(from name, to name)``."""
    return {(r.from_person.name, r.to_person.name) for r in PersonFriends.objects.all()}


def names(plan: Any) -> list[str]:
    return sorted(p.name for p in plan)


def people(*names: str) -> list[Person]:
    return [Person.objects.create(name=n) for n in names]


# --- declarations (no database) --------------------------------------------------------------


def test_self_defaults_to_symmetrical_with_no_reverse_side():
    field = Person._meta.many_to_many[0]
    assert field.symmetrical is True
    rels = relations(Person._meta)
    assert set(rels) == {"friends"} and rels["friends"].kind == "m2m"
    assert "person_set" not in reverse_accessors(Person._meta)
    assert not hasattr(Person, "person_set")
    assert [f.column for f in PersonFriends._meta.fields] == [
        "id", "from_person_id", "to_person_id"]
    with pytest.raises(qplan.FieldError, match="friends"):
        Person.objects.filter(person__name="x")


def test_other_targets_default_to_one_way_and_refuse_symmetrical():
    from relmodels import Novel
    assert Novel._meta.many_to_many[0].symmetrical is False
    with pytest.raises(qplan.FieldError, match="symmetrical"):
        class Bad(Model):
            others = fields.ManyToManyField("Genre", symmetrical=True)

            class Meta:
                db_table = "symm_test_bad"


def test_a_self_relation_named_by_its_class_gets_from_and_to_keys():
    class Kin(Model):
        relatives = fields.ManyToManyField("Kin")  # one-way: symmetrical defaults for "self" only
        pals = fields.ManyToManyField("Kin", symmetrical=True)

        class Meta:
            db_table = "symm_test_kin"

    relatives, pals = Kin._meta.many_to_many
    assert (relatives.symmetrical, pals.symmetrical) == (False, True)
    for field in (relatives, pals):
        assert [f.name for f in field.through._meta.fields] == ["id", "from_kin", "to_kin"]
    assert {n: (r.kind, r.accessor) for n, r in relations(Kin._meta).items()} == {
        "relatives": ("m2m", "relatives"), "pals": ("m2m", "pals"),
        "kin": ("m2m_reverse", "kin_set")}


def test_related_name_is_ignored_on_a_symmetrical_relation():
    class Buddy(Model):
        buddies = fields.ManyToManyField("self", related_name="buddy_of")

        class Meta:
            db_table = "symm_test_buddy"

    assert set(relations(Buddy._meta)) == {"buddies"}
    assert not hasattr(Buddy, "buddy_of")


def test_symmetrical_false_keeps_the_one_way_relation():
    class Fan(Model):
        idols = fields.ManyToManyField("self", symmetrical=False)

        class Meta:
            db_table = "symm_test_fan"

    rels = relations(Fan._meta)
    assert (rels["idols"].kind, rels["fan"].kind, rels["fan"].accessor) == (
        "m2m", "m2m_reverse", "fan_set")


@pytest.mark.parametrize("dialect", qplan.backends.names())
def test_plans_over_it_load_retarget_and_compile(dialect):
    plan = (Person.objects.filter(friends__name="b").exclude(friends__friends__name="z")
            .annotate(n=Count("friends")).order_by("-n").prefetch_related("friends"))
    for loaded in (pickle.loads(pickle.dumps(plan)), qplan.loads(qplan.dumps(plan)),
                   qplan.from_json(plan.to_json())):
        assert loaded.records == plan.records
    assert plan.using("other").records == plan.records
    assert plan.compile(dialect).sql


# --- managers ----------------------------------------------------------------------------------


def test_add_links_both_ways_once(symm_db):
    a, b, c = people("a", "b", "c")
    a.friends.add(b)
    a.friends.add(b)  # the same pair again: nothing new
    b.friends.add(a)  # the mirror pair: already there
    assert links() == {("a", "b"), ("b", "a")} and PersonFriends.objects.count() == 2
    assert names(a.friends.all()) == ["b"] and names(b.friends.all()) == ["a"]
    a.friends.add(c.pk, a)  # a key, and itself: Django stores the self pair once
    assert PersonFriends.objects.count() == 5
    assert names(a.friends.all()) == ["a", "b", "c"] and names(c.friends.all()) == ["a"]


def test_add_of_the_same_person_twice_in_one_call_stores_each_pair_once(symm_db):
    a, b, c = people("a", "b", "c")
    a.friends.add(b, b.pk, c, b)
    assert links() == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    assert PersonFriends.objects.count() == 4


def test_remove_and_clear_unlink_both_ways(symm_db):
    a, b, c, d = people("a", "b", "c", "d")
    a.friends.add(b, c, a)
    b.friends.add(c)
    a.friends.remove(d)  # a pair that is not there: nothing happens
    a.friends.remove(b, a)
    assert links() == {("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")}
    c.friends.clear()
    assert links() == set()
    a.friends.add(b)
    b.friends.add(c)
    PersonFriends.objects.filter(from_person=a).delete()  # only the (b, a) row is left
    b.friends.remove(a)
    assert links() == {("b", "c"), ("c", "b")}


def test_set_replaces_a_mixed_set_both_ways(symm_db):
    a, b, c, d = people("a", "b", "c", "d")
    a.friends.add(b, c)
    c.friends.add(d)
    a.friends.set([c, d.pk])
    assert names(a.friends.all()) == ["c", "d"]
    assert names(b.friends.all()) == [] and names(d.friends.all()) == ["a", "c"]
    assert names(c.friends.all()) == ["a", "d"]
    a.friends.set([b], clear=True)
    assert links() == {("a", "b"), ("b", "a"), ("c", "d"), ("d", "c")}


def test_create_links_the_new_person_both_ways(symm_db):
    (a,) = people("a")
    b = a.friends.create(name="b")
    assert names(b.friends.all()) == ["a"] and names(a.friends.all()) == ["b"]
    c, made = b.friends.get_or_create(name="c")
    assert made and names(c.friends.all()) == ["b"]


def test_a_symmetrical_through_model_of_yours_gets_both_rows(symm_db):
    a, b, c = (Pal.objects.create(name=n) for n in "abc")
    a.pals.add(b, through_defaults={"since": 2020})
    a.pals.create(name="d", through_defaults={"since": 7})
    assert sorted((p.from_pal.name, p.to_pal.name, p.since) for p in Palship.objects.all()) == [
        ("a", "b", 2020), ("a", "d", 7), ("b", "a", 2020), ("d", "a", 7)]
    assert names(b.pals.all()) == ["a"]
    b.pals.set([c])
    assert names(a.pals.all()) == ["d"] and names(c.pals.all()) == ["b"]
    assert Palship.objects.count() == 4


# --- queries ----------------------------------------------------------------------------------


def test_queries_follow_it_both_ways(symm_db):
    a, b, c, d = people("a", "b", "c", "d")
    a.friends.add(b, c)
    b.friends.add(d)
    assert names(Person.objects.filter(friends__name="a")) == ["b", "c"]
    assert names(Person.objects.filter(friends=a)) == ["b", "c"]
    assert names(Person.objects.filter(friends__name="d")) == ["b"]
    assert names(Person.objects.exclude(friends__name="a")) == ["a", "d"]
    assert names(Person.objects.filter(friends__friends__name="d").distinct()) == ["a", "d"]
    counts = dict(Person.objects.annotate(n=Count("friends")).values_list("name", "n"))
    assert counts == {"a": 2, "b": 2, "c": 1, "d": 1}


def test_prefetch_related_both_ways(symm_db):
    a, b, c = people("a", "b", "c")
    a.friends.add(b, c)
    got = {p.name: names(p.friends.all())
           for p in Person.objects.prefetch_related("friends").order_by("name")}
    assert got == {"a": ["b", "c"], "b": ["a"], "c": ["a"]}
    nested = Person.objects.filter(name="b").prefetch_related("friends__friends").get()
    assert [names(f.friends.all()) for f in nested.friends.all()] == [["b", "c"]]


def test_a_sliced_prefetch_takes_each_persons_first_friends_both_ways(symm_db):
    a, b, c, d = people("a", "b", "c", "d")
    a.friends.add(b, c, d)
    b.friends.add(c)
    top = qplan.Prefetch("friends", queryset=Person.objects.order_by("-name")[:2])
    got = [(p.name, [f.name for f in p.friends.all()])
           for p in Person.objects.order_by("name").prefetch_related(top)]
    assert got == [("a", ["d", "c"]), ("b", ["c", "a"]), ("c", ["b", "a"]), ("d", ["a"])]


def test_delete_cascades_both_rows(symm_db):
    a, b, c = people("a", "b", "c")
    a.friends.add(b, c, a)
    b.friends.add(c)
    if not qplan.connections["default"].backend.ON_DELETE_IN_DATABASE:
        with pytest.raises(qplan.IntegrityError):  # DuckDB: no ON DELETE actions
            a.delete()
        return
    assert a.delete() == (6, {Person._meta.label: 1, PersonFriends._meta.label: 5})
    assert links() == {("b", "c"), ("c", "b")}
    assert Person.objects.filter(name__in=["b", "c"]).delete() == (
        4, {Person._meta.label: 2, PersonFriends._meta.label: 2})
    assert PersonFriends.objects.count() == 0


def test_sharding_still_refuses_a_join_to_the_unsharded_through_table(tmp_path):
    """Person sharded by name: its rows merge over the shards, but the auto through model has
    no ``name`` (not placed by the router), so a plan joining it is refused before a query."""
    qplan.configure(databases={n: f"sqlite:///{tmp_path / n}.db" for n in ("s0", "s1")},
                    routers=[Sharded("name", ["s0", "s1"])])
    try:
        for alias in ("s0", "s1"):
            qplan.create_tables(ALL, using=alias)
        Person.objects.bulk_create([Person(name=n) for n in "abcd"])
        assert Person.objects.count() == 4
        for build in (lambda: list(Person.objects.filter(friends__name="a")),
                      lambda: Person.objects.annotate(n=Count("friends")).count()):
            with pytest.raises(qplan.NotSupportedError, match="Person_friends is not"):
                build()
    finally:
        qplan.connections.close_all()
        sharding.shutdown()
        routing.forget_writes()
        qplan.configure(databases={}, routers=[])


@pytest.fixture
def symm_sqlite(sqlite_url: str) -> Iterator[list[Person]]:
    """Four people on a SQLite file (``default``)."""
    qplan.configure(databases={"default": sqlite_url})
    qplan.create_tables(ALL)
    yield people("a", "b", "c", "d")
    qplan.connections.close_all()
    qplan.configure(databases={})


ops = st.lists(st.tuples(st.sampled_from(["add", "remove", "set", "clear"]),
                         st.integers(0, 3), st.lists(st.integers(0, 3), max_size=4)),
               max_size=8)


@given(ops=ops)
def test_any_sequence_of_writes_keeps_both_directions(symm_sqlite, ops):
    """After any add/remove/set/clear sequence the through rows are exactly both directions
    of the pairs a set-of-pairs model holds, and each person lists its friends."""
    everyone = symm_sqlite
    PersonFriends.objects.all().delete()
    pairs: set[frozenset] = set()
    for op, i, js in ops:
        me, others = everyone[i], [everyone[j] for j in js]
        mine = {p for p in pairs if i in p}
        wanted = {frozenset((i, j)) for j in js}
        if op == "add":
            me.friends.add(*others)
            pairs |= wanted
        elif op == "remove":
            me.friends.remove(*others)
            pairs -= wanted
        elif op == "set":
            me.friends.set(others)
            pairs = (pairs - mine) | wanted
        else:
            me.friends.clear()
            pairs -= mine
    expected = {(min(p), max(p)) for p in pairs} | {(max(p), min(p)) for p in pairs}
    ids = {p.pk: n for n, p in enumerate(everyone)}
    assert {(ids[r.from_person_id], ids[r.to_person_id])
            for r in PersonFriends.objects.all()} == expected
    assert PersonFriends.objects.count() == len(expected)
    for n, person in enumerate(everyone):
        assert sorted(ids[f.pk] for f in person.friends.all()) == sorted(
            b for a, b in expected if a == n)
