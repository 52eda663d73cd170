"""Issue 13's plan methods on every backend: none(), latest()/earliest(), alias() and
plan.db, contains(), explain(), only()/defer(); Django 5.2's meaning for each.

Statements are counted at ``Connection._statement``, the one place every statement passes.
"""

from __future__ import annotations

import json
import pickle

import pytest

import qplan
from qplan import Count, F, Max, Model, Sum, fields
from qplan.jsonplan import from_json
from qplan.shapecache import cache
from conftest import statements
from relmodels import Bio, Novel, Writer

DIALECTS = ("sqlite", "postgresql", "mysql", "duckdb")


class Event(Model):
    """A model with ``Meta.get_latest_by`` (latest()/earliest() without names)."""

    name = fields.CharField(max_length=20)
    day = fields.IntegerField()
    rank = fields.IntegerField(default=0)

    class Meta:
        db_table = "qm_event"
        get_latest_by = ("day", "-rank")


def fill() -> dict[str, Writer]:
    ann = Writer.objects.create(name="Ann", age=50)
    bob = Writer.objects.create(name="Bob", age=30, mentor=ann)
    cy = Writer.objects.create(name="Cy", age=20)
    for title, pages, writer in (("A1", 100, ann), ("A2", 150, ann), ("B1", 200, bob),
                                 ("C1", 300, cy)):
        Novel.objects.create(title=title, pages=pages, writer=writer)
    Bio.objects.create(writer=bob, text="bob's")
    return {"ann": ann, "bob": bob, "cy": cy}


def round_trips(plan: qplan.Plan) -> None:
    """Pickles small, loads through qplan.loads and from_json, re-targets, compiles offline."""
    data = pickle.dumps(plan)
    assert len(data) < 1200
    assert qplan.loads(qplan.dumps(plan)) == plan and pickle.loads(data) == plan
    assert from_json(plan.to_json()) == plan
    moved = plan.using("other")
    assert moved.db == "other" and moved.records == plan.records
    for dialect in DIALECTS:
        sql, _ = plan.compile(dialect)
        assert sql.startswith("SELECT")


# --- none() ------------------------------------------------------------------------------------


def test_none_answers_without_a_query(rel_db, monkeypatch):
    fill()
    empty = Novel.objects.filter(pages__gt=0).none()
    with statements(monkeypatch) as seen:
        assert list(empty) == [] and empty.count() == 0 and not empty.exists()
        assert list(empty.values("title")) == [] and list(empty.filter(title="A1")) == []
        assert empty.update(pages=1) == 0 and empty.delete() == (0, {})
        assert list(empty.iterator()) == [] and empty.first() is None
        with pytest.raises(Novel.DoesNotExist):
            empty.get()
    assert seen == []
    assert empty.aggregate(n=Count("id"), s=Sum("pages"), m=Max("title")) == \
        {"n": 0, "s": None, "m": None}
    assert Novel.objects.count() == 4  # the writes above wrote nothing
    assert empty.none() is empty and "1 = 0" in empty.compile()[0]
    round_trips(empty.order_by("title"))
    assert repr(empty).endswith(".filter(pages__gt=0).none()>")


# --- latest() / earliest() ---------------------------------------------------------------------


def test_latest_and_earliest(rel_db):
    fill()
    assert Novel.objects.latest("pages").title == "C1"
    assert Novel.objects.earliest("pages").title == "A1"
    assert Novel.objects.latest("-pages").title == "A1"
    assert Novel.objects.filter(writer__name="Ann").latest("pages").title == "A2"
    assert Novel.objects.earliest("writer__age", "pages").title == "C1"
    with pytest.raises(Novel.DoesNotExist):
        Novel.objects.filter(pages__gt=1000).latest("pages")
    with pytest.raises(Novel.DoesNotExist):
        Novel.objects.none().earliest("pages")
    with pytest.raises(qplan.PlanError, match="get_latest_by"):
        Novel.objects.latest()
    with pytest.raises(qplan.PlanError, match="slice"):
        Novel.objects.all()[:2].latest("pages")
    with pytest.raises(qplan.FieldError, match="did you mean 'pages'"):
        Novel.objects.latest("pagez")


def test_meta_get_latest_by(rel_db):
    qplan.drop_tables([Event], missing_ok=True)
    qplan.create_tables([Event])
    try:
        with pytest.raises(Event.DoesNotExist):
            Event.objects.latest()
        for name, day, rank in (("a", 1, 5), ("b", 3, 1), ("c", 3, 9), ("d", 2, 0)):
            Event.objects.create(name=name, day=day, rank=rank)
        assert Event.objects.latest().name == "b"  # day 3, then rank ascending reversed
        assert Event.objects.earliest().name == "a"
        assert Event.objects.latest("rank").name == "c"
    finally:
        qplan.drop_tables([Event], missing_ok=True)


def test_meta_get_latest_by_is_checked_at_the_class_statement():
    with pytest.raises(qplan.FieldError, match="did you mean 'day'"):
        class Bad(Model):
            day = fields.IntegerField()

            class Meta:
                db_table = "qm_bad"
                key = "tests.qm_bad_latest"
                get_latest_by = "dya"


# --- alias() and plan.db -----------------------------------------------------------------------


def test_alias_filters_and_orders_but_is_not_selected(rel_db):
    fill()
    plan = Novel.objects.alias(double=F("pages") * 2).filter(double__gt=350).order_by("-double")
    novels = list(plan)
    assert [n.title for n in novels] == ["C1", "B1"]
    assert "double" not in novels[0].__dict__
    assert list(plan.values("title")) == [{"title": "C1"}, {"title": "B1"}]
    assert list(plan.values_list("title", flat=True)) == ["C1", "B1"]
    assert plan.count() == 2
    with pytest.raises(qplan.FieldError, match="Cannot select the 'double' alias"):
        plan.values("double")
    promoted = plan.annotate(double=F("double"))
    assert [n.double for n in promoted] == [600, 400]
    busy = Writer.objects.alias(n=Count("novel")).filter(n__gte=2)
    assert [w.name for w in busy] == ["Ann"] and "n" not in list(busy)[0].__dict__
    assert list(busy.values_list("name", flat=True)) == ["Ann"]
    assert busy.count() == 1
    round_trips(plan)
    assert repr(plan).startswith("<Plan Novel.objects.alias(double=(F('pages') * 2))")
    with pytest.raises(qplan.FieldError, match="did you mean 'pages'"):
        Novel.objects.alias(x=F("pagez"))


def test_db_is_the_bound_alias_and_alias_is_a_method():
    plan = Novel.objects.filter(pages=1)
    assert plan.db is None and plan.using("replica").db == "replica"
    assert callable(plan.alias)
    # a payload written before alias() became a method holds the alias value: it loads
    old = pickle.dumps(plan.using("replica"))
    assert pickle.loads(old).db == "replica"


# --- contains() --------------------------------------------------------------------------------


def test_contains(rel_db, monkeypatch):
    people = fill()
    assert Writer.objects.filter(age__gte=30).contains(people["ann"])
    assert not Writer.objects.filter(age__gte=30).contains(people["cy"])
    assert not Writer.objects.contains(Novel.objects.first())  # another model: False (Django)
    with pytest.raises(qplan.PlanError, match="unsaved"):
        Writer.objects.contains(Writer(name="new"))
    with pytest.raises(TypeError, match="model instance"):
        Writer.objects.contains("Ann")
    with pytest.raises(TypeError, match="values"):
        Writer.objects.values("name").contains(people["ann"])
    with statements(monkeypatch) as seen:
        assert not Writer.objects.none().contains(people["ann"])
    assert seen == []


# --- explain() ---------------------------------------------------------------------------------


def test_explain_gives_the_database_plan(rel_db):
    fill()
    plan = Novel.objects.filter(pages__gt=120, writer__name="Ann").order_by("title")
    text = plan.explain()
    assert isinstance(text, str) and text.strip()
    facts = qplan.connections["default"].backend  # what it explains: its EXPLAIN_* flags
    assert "rel_novel" in text.lower()  # every backend's plan names the table it reads
    if "JSON" in facts.EXPLAIN_FORMATS:
        assert json.loads(plan.explain(format="json"))
    if "ANALYZE" in facts.EXPLAIN_OPTIONS:  # ran: the plan with what it measured
        assert plan.explain(analyze=True).strip() and plan.explain(analyze=True) != text
    with pytest.raises(qplan.PlanError, match="not a recognized format"):
        plan.explain(format="bogus; DROP TABLE rel_novel")
    with pytest.raises(qplan.PlanError, match="not a recognized format"):
        plan.explain(format=next(f for f in ("YAML", "TREE", "XML")
                                 if f not in facts.EXPLAIN_FORMATS))
    with pytest.raises(qplan.PlanError, match="Unknown options"):
        plan.explain(drop_table=True)
    assert Novel.objects.count() == 4


# --- only() / defer() --------------------------------------------------------------------------


def test_only_loads_those_fields_and_the_rest_on_access(rel_db, monkeypatch):
    fill()
    novels = list(Novel.objects.only("title").order_by("pages"))
    assert all(set(n.__dict__) >= {"id", "title"} for n in novels)
    assert "pages" not in novels[0].__dict__ and novels[0].get_deferred_fields() == {
        "pages", "writer_id", "editor_id"}
    with statements(monkeypatch) as seen:
        assert [n.pages for n in novels] == [100, 150, 200, 300]
        assert novels[0].pages == 100
    assert len(seen) == 4  # one query per instance, then loaded
    with statements(monkeypatch) as seen:
        assert novels[0].writer.name == "Ann"  # the deferred key, then the writer
    assert len(seen) == 2
    deferred = list(Novel.objects.defer("title", "pages").order_by("id"))
    assert deferred[0].get_deferred_fields() == {"title", "pages"}
    assert deferred[0].title == "A1"
    assert Novel.objects.defer("title").defer(None).first().get_deferred_fields() == set()
    # Django's folding: defer after only drops from the set, only after defer replaces it
    assert Novel.objects.only("title", "pages").defer("pages").first().get_deferred_fields() == {
        "pages", "writer_id", "editor_id"}
    assert Novel.objects.defer("title").only("title", "pages").first().get_deferred_fields() \
        == {"title", "writer_id", "editor_id"}
    assert Novel.objects.only("pk").first().get_deferred_fields() == {
        "title", "pages", "writer_id", "editor_id"}
    round_trips(Novel.objects.only("title").defer("pages").defer(None).only("writer_id"))


def test_loaded_fields_read_as_before(rel_db):
    """The model class never gets a descriptor (CPython's fast attribute path stays); only
    instances of a deferring plan are of a deferred subclass, equal to the model's."""
    fill()
    novel = Novel.objects.only("title").first()
    assert not {f.attname for f in Novel._meta.fields} & set(Novel.__dict__)
    assert type(novel) is not Novel and isinstance(novel, Novel)
    assert "title" not in type(novel).__dict__ and "pages" in type(novel).__dict__
    assert type(novel).__name__ == "Novel" and repr(novel) == f"<Novel: {novel.pk}>"
    full = Novel.objects.get(pk=novel.pk)
    assert novel == full and full == novel and hash(novel) == hash(full)
    assert type(Novel.objects.first()) is Novel
    again = pickle.loads(pickle.dumps(novel))
    assert again == novel and again.get_deferred_fields() == novel.get_deferred_fields()
    assert again.pages == 100 and again.title == "A1"


def test_save_of_a_deferred_instance_writes_only_loaded_fields(rel_db):
    fill()
    novel = Novel.objects.only("title").get(title="A1")
    Novel.objects.filter(title="A1").update(pages=999)  # changed behind its back
    novel.title = "A1 revised"
    novel.save()
    fresh = Novel.objects.get(pk=novel.pk)
    assert (fresh.title, fresh.pages) == ("A1 revised", 999)
    novel.refresh_from_db(fields=["pages"])
    assert novel.pages == 999
    with pytest.raises(ValueError, match="Relations"):
        novel.refresh_from_db(fields=["writer__name"])


def test_only_across_a_select_related_relation(rel_db, monkeypatch):
    fill()
    plan = Novel.objects.select_related("writer").only("title", "writer__name").order_by("pages")
    with statements(monkeypatch) as seen:
        novels = list(plan)
        assert [(n.title, n.writer.name) for n in novels] == [
            ("A1", "Ann"), ("A2", "Ann"), ("B1", "Bob"), ("C1", "Cy")]
    assert len(seen) == 1
    assert novels[0].writer.get_deferred_fields() == {"age", "mentor_id"}
    assert novels[0].writer.age == 50  # loads on access
    assert novels[0].writer.novel_set.count() == 2  # related managers work on deferred classes
    deferred = list(Novel.objects.select_related("writer").defer("writer__age").order_by("id"))
    assert deferred[0].writer.get_deferred_fields() == {"age"} and deferred[0].pages == 100
    with pytest.raises(qplan.FieldError, match="select_related"):
        list(Novel.objects.only("title", "writer__name"))
    with pytest.raises(qplan.FieldError, match="both deferred and traversed"):
        list(Novel.objects.select_related("writer").only("title"))
    with pytest.raises(qplan.FieldError, match="both deferred and traversed"):
        list(Novel.objects.select_related("writer").defer("writer"))
    round_trips(plan)


def test_only_and_defer_mistakes_are_caught_when_building():
    with pytest.raises(qplan.FieldError, match="did you mean 'title'"):
        Novel.objects.only("titel")
    with pytest.raises(qplan.FieldError, match="did you mean"):
        Novel.objects.defer("writer__nmae")
    with pytest.raises(qplan.FieldError, match="foreign keys"):
        Writer.objects.only("novel__title")
    with pytest.raises(qplan.PlanError, match="None"):
        Novel.objects.only(None)
    with pytest.raises(qplan.PlanError, match="after .values"):
        Novel.objects.values("title").only("title")
    with pytest.raises(qplan.FieldError):
        Novel.objects.only("genres")


def test_templates_are_shared_by_plans_differing_in_values():
    cache.clear()
    for pages in range(5):
        plans = [Novel.objects.filter(pages=pages).none(),
                 Novel.objects.alias(p=F("pages") + pages).filter(p__gt=pages),
                 Novel.objects.filter(pages=pages).only("title"),
                 Novel.objects.filter(pages=pages).select_for_update(nowait=True)]
        for plan in plans:
            plan.compile("postgresql")
    assert cache.misses == 4


def test_sharded_plans_refuse_what_their_merge_cannot_keep(databases):
    from qplan.sharding import Sharded

    databases(s0="sqlite", s1="sqlite")
    router = Sharded("id", ["s0", "s1"], models=[Writer])
    qplan.configure(routers=[router])
    try:
        qplan.create_tables([Writer], using="s0")
        qplan.create_tables([Writer], using="s1")
        with pytest.raises(qplan.NotSupportedError, match="alias"):
            list(Writer.objects.alias(a=F("age")).order_by("a"))
        with pytest.raises(qplan.NotSupportedError, match="only"):
            list(Writer.objects.only("name"))
        assert list(Writer.objects.none()) == []
        Writer.objects.create(id=1, name="one")
        Writer.objects.create(id=2, name="two")
        text = Writer.objects.filter(age__gte=0).explain()
        assert text.count("-- shard ") == 2 and "rel_writer" in text
    finally:
        qplan.configure(routers=[])
        qplan.drop_tables([Writer], using="s0", missing_ok=True)
        qplan.drop_tables([Writer], using="s1", missing_ok=True)
