"""The plan as a value: immutability, equality, build-time errors, pickling, no I/O."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap

import pytest

import qplan
from qplan import Count, F, Q, Sum
from testmodels import Author, Book

HERE = os.path.dirname(__file__)

BENCH_QUERY = (lambda: Book.objects.filter(pages__gte=30, is_active=True)
               .exclude(title__startswith="a").order_by("-created", "id")[10:30])


def test_every_method_returns_a_new_plan_and_leaves_the_original_alone():
    root = Book.objects
    before = root.records
    derived = [
        root.filter(pages=1), root.exclude(pages=1), root.order_by("id"), root[1:2],
        root.values("title"), root.values_list("title"), root.distinct(), root.using("x"),
        root.annotate(n=Count("id")), root.update_plan(pages=1), root.delete_plan(),
    ]
    assert root.records == before == ()
    assert all(p is not root for p in derived)
    assert len(set(derived)) == len(derived)


def test_equal_plans_compare_and_hash_equal():
    a = Book.objects.filter(pages__gt=3, title="x").order_by("-id")[5:10]
    b = Book.objects.filter(title="x", pages__gt=3).order_by("-id")[5:10]
    assert a == b and hash(a) == hash(b)
    assert a != a.using("other")
    assert a != Book.objects.filter(pages__gt=4, title="x").order_by("-id")[5:10]
    assert {a: 1}[b] == 1
    assert BENCH_QUERY() == BENCH_QUERY()


def test_plans_hold_only_plain_values():
    plan = Book.objects.filter(
        Q(author=Author(id=3, name="x")) | Q(price__gte=2.5), created__lt=dt.datetime(2020, 1, 1),
        meta__isnull=False,
    ).annotate(t=F("pages") + 1)

    def walk(node):
        if isinstance(node, tuple):
            for child in node:
                walk(child)
        else:
            assert type(node) in (str, int, float, bool, decimal.Decimal, dt.datetime, bytes, type(None))

    walk(plan.records)
    assert plan.records[0][1][1][0][1][0][2] == ("=", 3)  # the author instance became its pk


def test_values_are_normalised_when_added():
    assert Book.objects.filter(price=2.5) == Book.objects.filter(price=decimal.Decimal("2.5"))
    assert Book.objects.filter(pages="7") == Book.objects.filter(pages=7)
    naive = Book.objects.filter(created=dt.datetime(2020, 1, 1))
    aware = Book.objects.filter(created=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
    assert naive == aware
    assert Book.objects.filter(title=None) == Book.objects.filter(title__isnull=True)


def test_copies_are_the_same_immutable_value():
    plan = Book.objects.filter(pages=1)
    assert copy.copy(plan) is plan and copy.deepcopy(plan) is plan
    with pytest.raises(AttributeError):
        plan.foo = 1  # slotted: no stray state


def test_public_view_for_routers():
    plan = Book.objects.filter(pages=1)
    assert plan.model is Book and plan.kind == "read" and plan.db is None
    assert plan.update_plan(pages=2).kind == "write"
    assert plan.using("x").db == "x"
    assert "Book.objects" in repr(plan)


def test_a_plan_is_not_a_result():
    with pytest.raises(TypeError, match="exists"):
        bool(Book.objects.all())


@pytest.mark.parametrize("build, message", [
    (lambda: Book.objects.filter(titel="x"), "Book has no field 'titel'; did you mean 'title'"),
    (lambda: Book.objects.filter(pages__gtee=1), "unknown lookup 'gtee'.*'gte'"),
    (lambda: Book.objects.filter(pages__contains=1), "lookup 'contains' is not supported for IntegerField"),
    (lambda: Book.objects.filter(author__nmae="x"), "Author has no field 'nmae'; did you mean 'name'"),
    (lambda: Book.objects.filter(title__name="x"), "unknown lookup 'name'"),
    (lambda: Book.objects.filter(pages="many"), "Book.pages: expected an integer, got str 'many'"),
    (lambda: Book.objects.filter(is_active="yes"), "Book.is_active: expected a bool"),
    (lambda: Book.objects.filter(created="not a date"), "Book.created: expected an ISO datetime"),
    (lambda: Book.objects.filter(pages__in=5), "'in' takes a list"),
    (lambda: Book.objects.filter(pages__range=(1,)), "'range' takes"),
    (lambda: Book.objects.filter(pages__gt=None), "None is only allowed"),
    (lambda: Book.objects.filter(pages__isnull="yes"), "isnull takes True or False"),
    (lambda: Book.objects.order_by("pagez"), "did you mean 'pages'"),
    (lambda: Book.objects.values("titl"), "did you mean 'title'"),
    (lambda: Book.objects.update_plan(nope=1), "Book has no field 'nope'"),
    (lambda: Book.objects.update_plan(title=None), "cannot be None"),
    (lambda: Book.objects.update_plan(title="x" * 201), "exceed max_length=200"),
    (lambda: Book.objects.annotate(n=Count("nope")), "Book has no field 'nope'"),
    (lambda: Book.objects.filter(meta__contains="x"), "not supported for JSONField"),
    (lambda: Book(titel="x"), "unknown field 'titel'; did you mean 'title'"),
])
def test_mistakes_fail_where_they_are_made(build, message):
    with pytest.raises(qplan.FieldError, match=message):
        build()


@pytest.mark.parametrize("build, message", [
    (lambda: Book.objects[-1:], "negative"),
    (lambda: Book.objects[:-1], "negative"),
    (lambda: Book.objects[::2], "step"),
    (lambda: Book.objects[-1], "negative"),
    (lambda: Book.objects["a":], "integers"),
    (lambda: Book.objects[1:5].filter(pages=1), "once a slice has been taken"),
    (lambda: Book.objects[1:5].order_by("id"), "once a slice has been taken"),
    (lambda: Book.objects[1:5].update_plan(pages=1), "once a slice has been taken"),
    (lambda: Book.objects.values_list("id", "title", flat=True), "exactly one field"),
    (lambda: Book.objects.delete_plan().filter(pages=1), "ends in delete"),
])
def test_bad_slices_and_misplaced_calls(build, message):
    with pytest.raises(qplan.PlanError, match=message):
        build()


def test_slices_compose():
    plan = Book.objects.order_by("id")
    assert plan[10:30][5:10] == plan[15:20]
    assert plan[10:][:5] == plan[10:15]
    assert plan[10:12][5:] == plan[12:12]


def test_pickle_round_trip_is_small_and_equal():
    plan = BENCH_QUERY().using("replica")
    data = pickle.dumps(plan)
    assert pickle.loads(data) == plan
    assert pickle.loads(data).db == "replica"
    assert len(data) < 400
    assert b"__dict__" not in data and b"Book" in data


def test_unknown_format_version_names_both_versions():
    from qplan.plan import _restore

    with pytest.raises(qplan.PlanError, match=r"version 99 .*reads version 1"):
        _restore(99, Book._meta.key, (), None)


def test_restricted_loader_refuses_foreign_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with pytest.raises(qplan.UnsafePayload, match="system"):
        qplan.loads(pickle.dumps(Evil()))
    assert not marker.exists()
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(pickle.dumps({"not": "a plan"}))
    with pytest.raises(qplan.UnsafePayload):
        qplan.loads(b"garbage")
    assert qplan.loads(pickle.dumps(BENCH_QUERY())) == BENCH_QUERY()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_connection_is_touched_while_building_pickling_and_compiling():
    port = _closed_port()
    qplan.configure(databases={"default": f"postgresql://u:p@127.0.0.1:{port}/nowhere"})
    try:
        plan = BENCH_QUERY().values_list("title", flat=True)
        loaded = qplan.loads(qplan.dumps(plan))
        assert pickle.loads(pickle.dumps(plan)) == loaded == plan
        sql, params = plan.compile()  # the alias's dialect: postgresql
        assert "%s" in sql and params == (30, "a%", 20, 10)
        for dialect in qplan.backends.names():
            assert loaded.compile(dialect) == plan.compile(dialect)
        assert qplan.connections["default"].raw is None  # nothing opened
        with pytest.raises(qplan.OperationalError) as info:
            list(plan)
        message = str(info.value)
        assert "'default'" in message and f"127.0.0.1:{port}" in message
        assert info.value.__cause__ is not None
    finally:
        qplan.configure(databases={})


def test_loaded_plan_runs_in_a_fresh_process_and_retargets(tmp_path):
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    qplan.configure(databases={"default": f"sqlite:///{a_db}", "b": f"sqlite:///{b_db}"})
    try:
        for alias, names in (("default", ["a1", "a2"]), ("b", ["b1", "b2", "b3"])):
            qplan.create_tables([Author], using=alias)
            Author.objects.using(alias).bulk_create([Author(name=n) for n in names])
    finally:
        qplan.connections.close_all()
        qplan.configure(databases={})
    plan = Author.objects.filter(name__endswith="2").values_list("name", flat=True)
    child = textwrap.dedent(f"""
        import json, sys
        import qplan, testmodels
        qplan.configure(databases={{"default": "sqlite:///{a_db}", "b": "sqlite:///{b_db}"}})
        plan = qplan.loads(sys.stdin.buffer.read())
        print(json.dumps([list(plan), list(plan.using("b")), plan.compile("mysql")[0]]))
    """)
    out = subprocess.run([sys.executable, "-c", child], input=qplan.dumps(plan), capture_output=True,
                         cwd=HERE, check=True, timeout=60).stdout
    on_a, on_b, mysql_sql = json.loads(out)
    assert on_a == ["a2"] and on_b == ["b2"]
    assert mysql_sql == plan.compile("mysql").sql


def test_write_plans_pickle_too():
    plan = Book.objects.filter(pages__lt=3).update_plan(pages=F("pages") + 1, title="x")
    assert pickle.loads(pickle.dumps(plan)) == plan
    assert qplan.loads(qplan.dumps(Book.objects.delete_plan())) == Book.objects.delete_plan()
    agg = Book.objects.values("author").annotate(s=Sum("pages"))
    assert pickle.loads(pickle.dumps(agg)) == agg


def test_repr_reads_like_the_code_that_built_the_plan():
    plan = BENCH_QUERY().using("replica")
    assert repr(plan) == ("<Plan Book.objects.filter(is_active=True, pages__gte=30)"
                          ".exclude(title__startswith='a').order_by('-created', 'id')[10:30]"
                          ".using('replica')>")
