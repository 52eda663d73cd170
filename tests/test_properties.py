"""Hypothesis properties of the plan algebra: determinism, pickling, compiled SQL after loading."""

from __future__ import annotations

import datetime as dt
import pickle

from hypothesis import given
from hypothesis import strategies as st

import qplan
from qplan import Avg, Count, F, Max, Min, Q, Sum
from testmodels import Book

DIALECTS = qplan.backends.names()
MARK = "\u2603zz"  # a value that must never appear in SQL text

texts = st.text(alphabet="ab%_!' \u2603z", max_size=6)
VALUES = {
    "title": texts,
    "pages": st.integers(-5, 500),
    "rating": st.one_of(st.none(), st.floats(-10, 10, allow_nan=False)),
    "price": st.decimals(-100, 100, places=2, allow_nan=False, allow_infinity=False),
    "is_active": st.booleans(),
    "published": st.dates(dt.date(2000, 1, 1), dt.date(2030, 1, 1)),
    "created": st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 1, 1), timezones=st.just(dt.timezone.utc)),
    "author__name": texts,
}
LOOKUPS = {
    "title": ["exact", "iexact", "contains", "icontains", "startswith", "istartswith", "endswith",
              "iendswith", "in", "gt", "lte", "isnull"],
    "pages": ["exact", "gt", "gte", "lt", "lte", "in", "range"],
    "rating": ["exact", "gt", "isnull"],
    "price": ["exact", "lt", "range"],
    "is_active": ["exact", "isnull"],
    "published": ["exact", "gte", "range", "isnull"],
    "created": ["lt", "gte"],
    "author__name": ["exact", "icontains", "isnull"],
}


@st.composite
def leaves(draw):
    field = draw(st.sampled_from(sorted(VALUES)))
    lookup = draw(st.sampled_from(LOOKUPS[field]))
    if lookup == "isnull":
        value = draw(st.booleans())
    elif lookup == "in":
        value = draw(st.lists(VALUES[field].filter(lambda v: v is not None), max_size=3))
    elif lookup == "range":
        value = tuple(sorted(draw(st.lists(VALUES[field].filter(lambda v: v is not None), min_size=2, max_size=2))))
    else:
        value = draw(VALUES[field])
        if value is None and lookup != "exact":
            lookup = "isnull"
            value = True
    return ("leaf", f"{field}__{lookup}", value)


conditions = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.tuples(st.just("and"), children, children),
        st.tuples(st.just("or"), children, children),
        st.tuples(st.just("not"), children),
    ),
    max_leaves=5,
)

ORDER = ["id", "-id", "title", "-title", "pages", "-rating", "author__name", "-published"]
AGGS = [Count, Sum, Avg, Min, Max]

steps = st.one_of(
    st.tuples(st.just("filter"), conditions),
    st.tuples(st.just("exclude"), conditions),
    st.tuples(st.just("order_by"), st.lists(st.sampled_from(ORDER), min_size=1, max_size=3)),
    st.tuples(st.just("slice"), st.integers(0, 20), st.one_of(st.none(), st.integers(0, 40))),
    st.tuples(st.just("annotate"), st.sampled_from(["pages", "price"]), st.integers(1, 9)),
)
endings = st.one_of(
    st.just(("rows",)),
    st.tuples(st.just("values"), st.lists(st.sampled_from(["title", "pages", "author__name"]), min_size=1,
                                           max_size=3, unique=True)),
    st.tuples(st.just("group"), st.sampled_from(["author", "is_active"]), st.integers(0, 4)),
    st.just(("distinct",)),
)
recipes = st.tuples(st.lists(steps, max_size=5), endings)


def to_q(node):
    tag = node[0]
    if tag == "leaf":
        return Q(**{node[1]: node[2]})
    if tag == "not":
        return ~to_q(node[1])
    a, b = to_q(node[1]), to_q(node[2])
    return a & b if tag == "and" else a | b


def build(recipe, plan=None):
    """A plan from a recipe; steps that are not allowed in that order are skipped."""
    body, ending = recipe
    plan = Book.objects if plan is None else plan
    sliced = False
    for step in body:
        op = step[0]
        if op in ("filter", "exclude", "order_by", "slice") and sliced:
            continue
        if op == "filter":
            plan = plan.filter(to_q(step[1]))
        elif op == "exclude":
            plan = plan.exclude(to_q(step[1]))
        elif op == "order_by":
            plan = plan.order_by(*step[1])
        elif op == "slice":
            start, stop = step[1], step[2]
            plan = plan[start:None if stop is None else start + stop]
            sliced = True
        elif op == "annotate":
            plan = plan.annotate(**{f"x{step[2]}": F(step[1]) * step[2]})
    if ending[0] == "values":
        plan = plan.values_list(*ending[1])
    elif ending[0] == "group" and not sliced:
        plan = plan.values(ending[1]).annotate(n=Count("id"), agg=AGGS[ending[2]]("pages"))
    elif ending[0] == "distinct":
        plan = plan.values("pages").distinct()
    return plan


def outcome(plan, dialect):
    """The compiled plan, or the error compiling it raised (some plans are refused on purpose)."""
    try:
        return plan.compile(dialect)
    except qplan.NotSupportedError as exc:
        return type(exc), str(exc)


@given(recipes)
def test_building_the_same_plan_twice_gives_equal_plans(recipe):
    a, b = build(recipe), build(recipe)
    assert a == b and hash(a) == hash(b)
    assert a.shape() == b.shape()


@given(recipes)
def test_the_fast_shapers_agree_with_the_generic_walk(recipe):
    from qplan import records as R

    plan = build(recipe)
    fast_values: list = []
    slow_values: list = []
    assert R.shape_of(plan.records, fast_values) == R.walk(plan.records, slow_values)
    assert fast_values == slow_values


@given(recipes)
def test_pickle_round_trip_and_compiled_sql_survive_loading(recipe):
    plan = build(recipe)
    for loaded in (pickle.loads(pickle.dumps(plan)), qplan.loads(qplan.dumps(plan))):
        assert loaded == plan and hash(loaded) == hash(plan)
        for dialect in DIALECTS:
            assert outcome(loaded, dialect) == outcome(plan, dialect)


@given(recipes, st.text(min_size=1, max_size=5))
def test_user_values_never_reach_the_sql_text(recipe, text):
    plan = build(recipe, Book.objects.filter(title=MARK + text, notes__contains=MARK))
    for dialect in DIALECTS:
        compiled = outcome(plan, dialect)
        if isinstance(compiled, tuple) and compiled[0] is qplan.NotSupportedError:
            continue
        sql, params = compiled
        assert MARK not in sql
        assert MARK + text in params


@given(recipes, st.text(max_size=4))
def test_a_retargeted_plan_differs_only_in_its_alias(recipe, alias):
    plan = build(recipe)
    moved = plan.using(alias or None)
    assert moved.records == plan.records and moved.shape() == plan.shape()
    assert moved.using(None) == plan


@given(recipes)
def test_plans_of_one_shape_share_one_template(recipe):
    plan = build(recipe)
    if not isinstance(outcome(plan, "postgresql"), qplan.Compiled):
        return
    sql, params = plan.compile("postgresql")
    assert sql.replace("%%", "").count("%s") == len(params)
    qmark_sql, qmark_params = plan.compile("sqlite")
    assert qmark_sql.count("?") == len(qmark_params) == len(params)
    again = build(recipe)
    hits = qplan.compile_cache.hits
    assert again.compile("postgresql") == (sql, params)
    assert qplan.compile_cache.hits == hits + 1
