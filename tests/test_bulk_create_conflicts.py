"""``bulk_create(ignore_conflicts=, update_conflicts=, update_fields=, unique_fields=)`` with
Django 5.2's meaning on every backend: the same rows afterwards, primary keys set where
Django sets them, misuse refused with a typed error before any query (``qplan.conflicts``)."""

from __future__ import annotations

import pickle

import pytest

import qplan
from qplan import FieldError, Model, PlanError, fields
from qplan.jsonplan import from_json
from qplan.payloads import dumps, loads
from relmodels import Novel
from test_sharding import Order, cluster  # noqa: F401 - the sharded cluster fixture
from testmodels import Author, Tag

VENDORS = ("sqlite", "postgresql", "mysql", "galera", "duckdb")


class Score(Model):
    """Unique together (player, game): a conflict target of two columns."""

    player = fields.CharField(max_length=20)
    game = fields.CharField(max_length=20)
    points = fields.IntegerField(default=0)
    note = fields.CharField(max_length=20, null=True)

    class Meta:
        db_table = "qc_score"
        unique_together = ("player", "game")


@pytest.fixture
def scores(any_db):
    qplan.drop_tables([Score], missing_ok=True)
    qplan.create_tables([Score])
    yield any_db
    qplan.drop_tables([Score], missing_ok=True)


def rows(model, *names):
    return sorted(model.objects.values_list(*names))


def returns_keys(vendor: str) -> bool:
    return qplan.backends.get(vendor).UPSERT_RETURNS_KEYS


# --- on every backend ---------------------------------------------------------------------


def test_ignore_conflicts_skips_clashing_rows_and_sets_no_keys(any_db):
    Author.objects.bulk_create([Author(name="ann", email="a@x"), Author(name="bob", email="b@x")])
    objs = Author.objects.bulk_create(
        [Author(name="ann2", email="a@x"), Author(name="cid", email="c@x")], ignore_conflicts=True)
    assert [o.pk for o in objs] == [None, None]  # Django: no keys when ignoring conflicts
    assert rows(Author, "name", "email") == [("ann", "a@x"), ("bob", "b@x"), ("cid", "c@x")]
    Tag.objects.bulk_create([Tag(code="t1", label="one")])
    Tag.objects.bulk_create([Tag(code="t1", label="new"), Tag(code="t2")], ignore_conflicts=True)
    assert rows(Tag, "code", "label") == [("t1", "one"), ("t2", None)]


def test_update_conflicts_on_a_unique_field(any_db):
    ann, bob = Author.objects.bulk_create([Author(name="ann", email="a@x"),
                                           Author(name="bob", email="b@x")])
    objs = Author.objects.bulk_create(
        [Author(name="ANN", email="a@x"), Author(name="cid", email="c@x")],
        update_conflicts=True, update_fields=["name"], unique_fields=["email"])
    assert rows(Author, "name", "email") == [("ANN", "a@x"), ("bob", "b@x"), ("cid", "c@x")]
    cid = Author.objects.get(email="c@x")
    if returns_keys(any_db):  # PostgreSQL, SQLite 3.35+: the updated row's key too
        assert [o.pk for o in objs] == [ann.pk, cid.pk]
    else:
        assert [o.pk for o in objs] == [None, None]
    assert all(not o._adding and o._db == "default" for o in objs)


def test_update_conflicts_on_the_primary_key_and_batches(any_db):
    Tag.objects.bulk_create([Tag(code=f"t{i}", label="old") for i in range(5)])
    new = [Tag(code=f"t{i}", label=f"new{i}") for i in range(3, 8)]
    Tag.objects.bulk_create(new, batch_size=2, update_conflicts=True, update_fields=["label"],
                            unique_fields=["pk"])
    assert rows(Tag, "code", "label") == [
        *[(f"t{i}", "old") for i in range(3)], *[(f"t{i}", f"new{i}") for i in range(3, 8)]]


def test_update_conflicts_on_a_unique_together_set(scores):
    Score.objects.bulk_create([Score(player="p", game="g1", points=1, note="keep"),
                               Score(player="p", game="g2", points=2, note="keep")])
    Score.objects.bulk_create(
        [Score(player="p", game="g2", points=20, note="lost"), Score(player="q", game="g1", points=3)],
        update_conflicts=True, update_fields=["points"], unique_fields=["game", "player"])
    assert rows(Score, "player", "game", "points", "note") == [
        ("p", "g1", 1, "keep"), ("p", "g2", 20, "keep"), ("q", "g1", 3, None)]


def test_a_conflict_target_is_required_where_the_database_names_one(any_db):
    Author.objects.create(name="ann", email="a@x")
    objs = [Author(name="ANN", email="a@x")]
    kwargs = dict(update_conflicts=True, update_fields=["name"])
    if qplan.backends.get(any_db).UPSERT_NEEDS_TARGET:
        with pytest.raises(PlanError, match="Unique fields that can trigger the upsert"):
            Author.objects.bulk_create(objs, **kwargs)
        with pytest.raises(PlanError, match="Unique fields"):
            Author.objects.bulk_create_plan(objs, **kwargs).execute()
        assert rows(Author, "name") == [("ann",)]
    else:  # MariaDB: any unique key conflicts
        Author.objects.bulk_create(objs, **kwargs)
        assert rows(Author, "name") == [("ANN",)]


def test_without_options_the_keys_are_set_as_before(any_db):
    objs = Author.objects.bulk_create([Author(name="a"), Author(name="b")])
    assert sorted(o.pk for o in objs) == sorted(Author.objects.values_list("pk", flat=True))


# --- misuse: typed errors at the call, before any query -------------------------------------


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(ignore_conflicts=True, update_conflicts=True), PlanError, "mutually exclusive"),
    (dict(update_conflicts=True, unique_fields=["email"]), PlanError, "must be provided"),
    (dict(update_conflicts=True, update_fields=["id"], unique_fields=["email"]), FieldError,
     "primary keys in update_fields"),
    (dict(update_conflicts=True, update_fields=["pk"], unique_fields=["email"]), FieldError,
     "primary keys in update_fields"),
    (dict(update_conflicts=True, update_fields=["nme"], unique_fields=["email"]), FieldError,
     "no field 'nme'.*name"),
    (dict(update_conflicts=True, update_fields=["name"], unique_fields=["emial"]), FieldError,
     "no field 'emial'.*email"),
    (dict(update_conflicts=True, update_fields=["email"], unique_fields=["name"]), FieldError,
     "not unique in Author"),
    (dict(update_conflicts=True, update_fields="name", unique_fields=["email"]), FieldError,
     "list of field names"),
    (dict(update_conflicts=True, update_fields=["name", "name"], unique_fields=["email"]),
     FieldError, "each field once"),
])
def test_misuse_is_refused_when_the_plan_is_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        Author.objects.bulk_create_plan([Author(name="a")], **kwargs)
    with pytest.raises(error, match=match):  # no database is configured: nothing ran
        Author.objects.bulk_create([Author(name="a")], **kwargs)


def test_many_to_many_fields_are_not_concrete():
    with pytest.raises(FieldError, match="concrete fields in update_fields"):
        Novel.objects.bulk_create_plan([], update_conflicts=True, update_fields=["genres"],
                                       unique_fields=["pk"])
    with pytest.raises(FieldError, match="concrete fields in unique_fields"):
        Novel.objects.bulk_create_plan([], update_conflicts=True, update_fields=["title"],
                                       unique_fields=["genres"])


def test_unique_sets_are_order_free():
    Score.objects.bulk_create_plan([], update_conflicts=True, update_fields=["points"],
                                   unique_fields=("game", "player"))
    with pytest.raises(FieldError, match="not unique"):
        Score.objects.bulk_create_plan([], update_conflicts=True, update_fields=["points"],
                                       unique_fields=["game"])


# --- the record -----------------------------------------------------------------------------


def test_the_record_carries_the_options_only_when_given():
    plain = Author.objects.bulk_create_plan([Author(name="a")])
    assert len(plain.records[-1]) == 3
    ignore = Author.objects.bulk_create_plan([Author(name="a")], ignore_conflicts=True,
                                             unique_fields=["email"])
    assert ignore.records[-1][3] == ("ignore",)
    update = Author.objects.bulk_create_plan(
        [Author(name="a", email="e")], update_conflicts=True, update_fields=["name"],
        unique_fields=["email"])
    assert update.records[-1][3] == ("update", ("name",), ("email",))
    for plan in (ignore, update):
        assert loads(dumps(plan)) == plan
        assert pickle.loads(pickle.dumps(plan)) == plan
        assert from_json(plan.to_json()) == plan
        assert plan.using("other").records == plan.records
        for vendor in VENDORS:
            sql = plan.compile(vendor).sql
            # a backend that names the conflict's unique key says ON CONFLICT (key); MariaDB
            # cannot: INSERT IGNORE / ON DUPLICATE KEY UPDATE, any unique key conflicts
            assert "ON CONFLICT" in sql if qplan.backends.get(vendor).UPSERT_NEEDS_TARGET \
                else ("IGNORE" in sql or "DUPLICATE" in sql)


def test_loaded_conflict_options_are_checked():
    from payloadkit import PlanLike
    from qplan import UnsafePayload
    from qplan.plan import FORMAT_VERSION

    good = Author.objects.bulk_create_plan([Author(name="a", email="e")], update_conflicts=True,
                                           update_fields=["name"], unique_fields=["email"])
    names, body = good.records[-1][1], good.records[-1][2]
    for option in [("update", ("id",), ("email",)), ("update", ("name",), ("name",)),
                   ("ignore", "x"), ("merge",), "ignore"]:
        records = (("insert", names, body, option),)
        with pytest.raises(UnsafePayload):
            loads(pickle.dumps(PlanLike(FORMAT_VERSION, "testmodels.Author", records, None)))


def test_identifiers_are_quoted_in_the_conflict_clause():
    plan = Score.objects.bulk_create_plan(
        [Score(player="p", game="g")], update_conflicts=True, update_fields=["points"],
        unique_fields=["player", "game"])
    assert 'ON CONFLICT("player", "game") DO UPDATE SET "points" = EXCLUDED."points"' \
        in plan.compile("postgresql").sql
    assert "ON DUPLICATE KEY UPDATE `points` = VALUES(`points`)" in plan.compile("mysql").sql


# --- sharding passes the options through -----------------------------------------------------


def test_sharded_bulk_create_passes_the_options(cluster):  # noqa: F811 - the fixture
    Order.objects.bulk_create([Order(id=i, tenant_id=i, customer="old") for i in range(1, 7)])
    Order.objects.bulk_create([Order(id=i, tenant_id=i, customer="ign") for i in range(4, 10)],
                              ignore_conflicts=True)
    assert sorted(Order.objects.values_list("id", "customer")) == [
        *[(i, "old") for i in range(1, 7)], *[(i, "ign") for i in range(7, 10)]]
    Order.objects.bulk_create([Order(id=i, tenant_id=i, customer="upd") for i in range(8, 12)],
                              update_conflicts=True, update_fields=["customer"],
                              unique_fields=["id"])
    assert sorted(Order.objects.values_list("id", "customer")) == [
        *[(i, "old") for i in range(1, 7)], (7, "ign"), *[(i, "upd") for i in range(8, 12)]]


def test_one_upsert_proposing_a_row_twice_is_refused_everywhere(any_db):
    """PostgreSQL refuses it, SQLite and MariaDB keep the last row, DuckDB the first: refused
    before any query, whatever the batch size."""
    Tag.objects.create(code="a", label="0")
    twice = [Tag(code="a", label="1"), Tag(code="b"), Tag(code="a", label="2")]
    with pytest.raises(PlanError, match="same code"):
        Tag.objects.bulk_create(twice, batch_size=1, update_conflicts=True,
                                update_fields=["label"], unique_fields=["code"])
    assert rows(Tag, "code", "label") == [("a", "0")]
    Author.objects.bulk_create([Author(name="x"), Author(name="y")], update_conflicts=True,
                               update_fields=["name"], unique_fields=["email"])  # NULLs
    Tag.objects.bulk_create([Tag(code="b", label="1"), Tag(code="b", label="2")],
                            ignore_conflicts=True)  # the first one wins everywhere
    assert rows(Tag, "code", "label") == [("a", "0"), ("b", "1")]
    assert Author.objects.count() == 2


def test_explicit_keys_move_the_sequence_and_unique_columns_update(any_db):
    Author.objects.bulk_create([Author(id=5, name="a", email="a@x")])
    Author.objects.bulk_create([Author(id=5, name="b"), Author(id=9, name="c")],
                               ignore_conflicts=True)
    new = Author.objects.create(name="new")
    assert new.pk > 9  # past the ids written (Galera steps its auto ids)
    Author.objects.bulk_create([Author(id=5, name="b", email="z@x")], update_conflicts=True,
                               update_fields=["email", "name"], unique_fields=["pk"])
    assert rows(Author, "id", "name", "email") == [
        (5, "b", "z@x"), (9, "c", None), (new.pk, "new", None)]
