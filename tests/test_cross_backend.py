"""One plan, one meaning: the same behaviour on every registered backend.

The first half runs each behavioural test on every backend through the parametrised
``any_db`` fixture. The second half is differential: hypothesis generates rows and plans
and every backend must return what SQLite returns (see the README's "One meaning on every
database" for the rules these tests pin down).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import qplan
from conftest import VENDORS, assert_nesting_refused, rolled_back, savepoints
from qplan import Avg, Count, F, Max, Min, Q, Sum
from testmodels import Author, Book, Tag

D = decimal.Decimal
UTC = dt.timezone.utc


def vendor_of(alias: str = "default") -> str:
    return qplan.connections[alias].vendor


# --- values in, values out -------------------------------------------------------------------


def test_every_field_type_round_trips(any_db):
    eastern = dt.timezone(dt.timedelta(hours=-5))
    author = Author.objects.create(name="Zoë 😀", email=None)
    Book.objects.create(
        title="Ünïcode ✓", author=author, pages=7, rating=0.1, price=D("12.5"), is_active=False,
        published=dt.date(1999, 12, 31), created=dt.datetime(2020, 5, 17, 3, 4, 5, 123456, eastern),
        cover=b"\x00\xffbin", meta={"b": [1, 2.5, None, True], "a": {"z": "é"}}, notes="x" * 5000)
    Book.objects.create(title="naive", created=dt.datetime(2021, 1, 1, 12, 0), meta=[1, "two"])
    first, second = Book.objects.order_by("id")
    assert first.title == "Ünïcode ✓" and first.notes == "x" * 5000
    assert first.is_active is False and type(first.is_active) is bool
    assert second.is_active is True
    assert first.price == D("12.50") and str(first.price) == "12.50"
    assert str(second.price) == "0.00"
    assert first.rating == 0.1
    assert first.published == dt.date(1999, 12, 31)
    assert first.created == dt.datetime(2020, 5, 17, 8, 4, 5, 123456, UTC)
    assert first.created.utcoffset() == dt.timedelta(0)
    assert second.created == dt.datetime(2021, 1, 1, 12, 0, tzinfo=UTC)  # naive means UTC
    assert first.cover == b"\x00\xffbin" and type(first.cover) is bytes
    assert first.meta == {"a": {"z": "é"}, "b": [1, 2.5, None, True]}
    assert second.meta == [1, "two"] and second.cover is None and second.rating is None
    assert Author.objects.get().name == "Zoë 😀"
    row = Book.objects.filter(pk=first.pk).values("is_active", "price", "author__name").get()
    assert row == {"is_active": False, "price": D("12.50"), "author__name": "Zoë 😀"}
    assert type(row["is_active"]) is bool


def test_datetime_filters_compare_instants(any_db):
    plus2 = dt.timezone(dt.timedelta(hours=2))
    Book.objects.create(title="a", created=dt.datetime(2020, 1, 1, 12, 0, tzinfo=UTC))
    assert Book.objects.filter(created=dt.datetime(2020, 1, 1, 14, 0, tzinfo=plus2)).count() == 1
    assert Book.objects.filter(created__gt=dt.datetime(2020, 1, 1, 13, 0, tzinfo=plus2)).count() == 1
    assert Book.objects.filter(created__lt=dt.datetime(2020, 1, 1, 11, 59, 59)).count() == 0


def test_min_and_max_of_booleans_are_booleans_sum_and_avg_numbers(any_db):
    Book.objects.bulk_create([Book(title="a", is_active=True), Book(title="b", is_active=False)])
    got = Book.objects.aggregate(lo=Min("is_active"), hi=Max("is_active"), n=Sum("is_active"),
                                 avg=Avg("is_active"))
    assert got == {"lo": False, "hi": True, "n": 1, "avg": 0.5}
    assert type(got["lo"]) is bool and type(got["hi"]) is bool
    assert type(got["n"]) is int and type(got["avg"]) is float  # Django: the count of True


# --- text ------------------------------------------------------------------------------------

WORDS = ["apple", "Apple", "APPLE", "apple ", "b", "B", "_", "%", " a", "é", "É", "z", "Ω", "ω",
         "😀", "ǅ", "a%b", "a_b", "a!b", "a\\b", "ﬁ", "ß", "ΣΑΣ", "σας"]


@pytest.fixture
def words(any_db):
    Author.objects.bulk_create([Author(name=w) for w in WORDS])
    return WORDS


def names(plan) -> list[str]:
    return sorted(plan.values_list("name", flat=True))


def test_text_orders_by_code_point(words):
    assert list(Author.objects.order_by("name").values_list("name", flat=True)) == sorted(words)
    assert list(Author.objects.order_by("-name").values_list("name", flat=True)) == \
        sorted(words, reverse=True)
    assert Author.objects.aggregate(lo=Min("name"), hi=Max("name")) == \
        {"lo": min(words), "hi": max(words)}
    assert names(Author.objects.filter(name__gt="Z")) == sorted(w for w in words if w > "Z")
    assert names(Author.objects.filter(name__range=("B", "b"))) == \
        sorted(w for w in words if "B" <= w <= "b")


def test_exact_and_pattern_lookups_are_case_sensitive(words):
    assert names(Author.objects.filter(name="apple")) == ["apple"]  # not "apple " nor "Apple"
    assert names(Author.objects.filter(name__in=["É", "b"])) == ["b", "É"]
    assert names(Author.objects.filter(name__contains="PP")) == ["APPLE"]
    assert names(Author.objects.filter(name__startswith="A")) == ["APPLE", "Apple"]
    assert names(Author.objects.filter(name__endswith="e")) == ["Apple", "apple"]
    assert names(Author.objects.filter(name__gte="a", name__lt="b")) == \
        sorted(w for w in words if "a" <= w < "b")


def test_i_lookups_fold_case_for_every_letter(words):
    assert names(Author.objects.filter(name__iexact="APPLE")) == ["APPLE", "Apple", "apple"]
    assert names(Author.objects.filter(name__iexact="é")) == ["É", "é"]
    assert names(Author.objects.filter(name__iexact="ω")) == ["Ω", "ω"]
    assert names(Author.objects.filter(name__iexact="ǆ")) == ["ǅ"]
    assert names(Author.objects.filter(name__icontains="pPl")) == \
        ["APPLE", "Apple", "apple", "apple "]
    assert names(Author.objects.filter(name__istartswith="É")) == ["É", "é"]
    # simple per-letter folding: every sigma becomes σ, ß stays ß
    assert names(Author.objects.filter(name__iexact="σασ")) == ["ΣΑΣ"]
    assert names(Author.objects.filter(name__iendswith="ς")) == ["σας"]
    assert names(Author.objects.filter(name__iexact="SS")) == []


@pytest.mark.parametrize("needle, expected", [
    ("%", ["%", "a%b"]), ("_", ["_", "a_b"]), ("!", ["a!b"]), ("\\", ["a\\b"]),
    ("a%", ["a%b"]), ("_b", ["a_b"]),
])
def test_wildcards_in_a_pattern_match_themselves(words, needle, expected):
    assert names(Author.objects.filter(name__contains=needle)) == expected
    assert names(Author.objects.filter(name__icontains=needle.upper())) == expected


def test_patterns_from_other_columns_are_escaped_too(any_db):
    Author.objects.bulk_create([Author(name=n, email=e) for n, e in [
        ("a%b", "%"), ("axb", "_"), ("Ab", "a"), ("zz", None), ("x!y", "!y")]])
    assert names(Author.objects.filter(name__contains=F("email"))) == ["a%b", "x!y"]
    assert names(Author.objects.filter(name__icontains=F("email"))) == ["Ab", "a%b", "x!y"]
    assert names(Author.objects.filter(name__endswith=F("email"))) == ["x!y"]
    assert names(Author.objects.exclude(name__startswith=F("email"))) == ["Ab", "a%b", "axb",
                                                                        "x!y", "zz"]


def test_trailing_spaces_count(words):
    assert names(Author.objects.filter(name="apple ")) == ["apple "]
    assert Author.objects.filter(name__in=["apple", "apple "]).count() == 2
    assert Author.objects.values("name").distinct().count() == len(set(words))


# --- NULLs, empty lists, ranges --------------------------------------------------------------


@pytest.fixture
def rated(any_db):
    Book.objects.bulk_create([Book(title=t, rating=r, pages=p, published=d) for t, r, p, d in [
        ("a", 2.5, 10, dt.date(2020, 1, 1)), ("b", None, 20, None), ("c", -1.0, 30, dt.date(2020, 1, 31)),
        ("d", None, 40, dt.date(2020, 2, 1)), ("e", 0.0, 50, None)]])


def titles(plan) -> list[str]:
    return list(plan.values_list("title", flat=True))


def test_nulls_sort_first_ascending_and_last_descending(rated):
    assert titles(Book.objects.order_by("rating", "title")) == ["b", "d", "c", "e", "a"]
    assert titles(Book.objects.order_by("-rating", "title")) == ["a", "e", "c", "b", "d"]
    assert titles(Book.objects.order_by("-published", "-title")) == ["d", "c", "a", "e", "b"]


def test_in_empty_matches_nothing_and_range_is_inclusive(rated):
    assert titles(Book.objects.filter(pages__in=[])) == []
    assert Book.objects.exclude(pages__in=[]).count() == 5
    assert titles(Book.objects.filter(pages__range=(20, 40)).order_by("title")) == ["b", "c", "d"]
    assert titles(Book.objects.filter(
        published__range=(dt.date(2020, 1, 1), dt.date(2020, 1, 31))).order_by("title")) == ["a", "c"]
    assert titles(Book.objects.exclude(rating__gt=0).order_by("title")) == ["b", "c", "d", "e"]


# --- numbers -----------------------------------------------------------------------------------


def test_integer_arithmetic_truncates_toward_zero(any_db):
    for n in (-7, 7):
        Book.objects.create(title=str(n), pages=n)
    rows = Book.objects.order_by("pages").annotate(
        half=F("pages") / 2, mod=F("pages") % 2, neg_mod=F("pages") % -2, by_zero=F("pages") / 0,
        mod_zero=F("pages") % 0, plus=F("pages") * 3 - 1,
    ).values_list("half", "mod", "neg_mod", "by_zero", "mod_zero", "plus")
    assert list(rows) == [(-3, -1, -1, None, None, -22), (3, 1, 1, None, None, 20)]


def test_avg_is_float_and_decimals_keep_their_scale(any_db):
    Book.objects.bulk_create([Book(title="0", pages=1, price=D("1.00")),
                              Book(title="a", pages=1, price=D("0.10")),
                              Book(title="b", pages=1, price=D("0.20")),
                              Book(title="c", pages=2, price=D("1234567.05"))])
    got = Book.objects.exclude(title="0").aggregate(
        avg=Avg("pages"), sum=Sum("price"), lo=Min("price"), hi=Max("price"),
        avg_price=Avg("price"), n=Sum("pages"))
    assert got["avg"] == 4 / 3 and type(got["avg"]) is float
    assert got["sum"] == D("1234567.35") and str(got["sum"]) == "1234567.35"
    assert str(got["lo"]) == "0.10" and str(got["hi"]) == "1234567.05"
    assert math.isclose(got["avg_price"], 1234567.35 / 3) and got["n"] == 4 and type(got["n"]) is int
    thirds = Book.objects.order_by("title").annotate(t=F("price") / 3).values_list("t", flat=True)
    assert list(thirds) == [D("0.3333333333"), D("0.0333333333"), D("0.0666666667"),
                            D("411522.35")]
    assert Book.objects.filter(price__gt=D("0.1")).count() == 3


def test_float_and_decimal_make_a_float(any_db):
    Book.objects.create(title="a", rating=0.5, price=D("2.00"))
    value = Book.objects.annotate(x=F("rating") * F("price")).values_list("x", flat=True).get()
    assert value == 1.0 and type(value) is float


@pytest.mark.parametrize("plan, why", [
    (lambda: Book.objects.annotate(m=F("rating") % 2), "integers only"),
    (lambda: Book.objects.order_by("meta"), "JSON values have no portable order"),
    (lambda: Book.objects.values("title").distinct().order_by("pages"), "only name selected"),
    (lambda: Book.objects.values("title").annotate(n=Count("*")).order_by("pages"),
     "only name grouped"),
    (lambda: Book.objects.annotate(m=Max("meta")), "JSON has no order"),
])
def test_plans_without_one_meaning_fail_to_compile_everywhere(plan, why):
    # No database needed: the plan is refused at compile time, the same way for all three.
    for dialect in VENDORS:
        with pytest.raises(qplan.NotSupportedError, match=why):
            plan().compile(dialect)


def test_grouping_orders_by_joined_columns_of_grouped_rows(any_db):
    ann, bob = Author.objects.bulk_create([Author(name="ann"), Author(name="bob")])
    Book.objects.bulk_create([Book(title="x", author=bob), Book(title="y", author=ann),
                              Book(title="z", author=ann)])
    rows = Book.objects.annotate(n=Count("id")).order_by("-author__name", "title")
    assert [(b.title, b.n) for b in rows] == [("x", 1), ("y", 1), ("z", 1)]
    grouped = Book.objects.values("author__name").annotate(n=Count("*")).order_by("-n")
    assert list(grouped) == [{"author__name": "ann", "n": 2}, {"author__name": "bob", "n": 1}]
    distinct = Book.objects.values("author__name").distinct().order_by("-author__name")
    assert [r["author__name"] for r in distinct] == ["bob", "ann"]


# --- writes and transactions -------------------------------------------------------------------


def test_explicit_ids_do_not_collide_with_generated_ones(any_db):
    # DENSE_AUTO_IDS False (Galera): ids step by the cluster size, so only their order holds
    dense = qplan.connections["default"].backend.DENSE_AUTO_IDS
    Author.objects.bulk_create([Author(id=10, name="ten"), Author(id=11, name="eleven")])
    new = Author.objects.create(name="next")
    assert new.pk == 12 if dense else new.pk > 11
    Author.objects.create(id=5, name="five")
    after = Author.objects.create(name="after").pk
    assert after == 13 if dense else after > new.pk


def test_atomic_rolls_back_everything_in_the_block(any_db):
    Author.objects.create(name="kept")
    with pytest.raises(RuntimeError):
        with qplan.atomic(using="default"):
            Author.objects.create(name="lost")
            Author.objects.filter(name="kept").update(name="renamed")
            raise RuntimeError("boom")
    assert names(Author.objects.all()) == ["kept"]


def test_savepoints_nest(any_db):
    if not savepoints():
        return assert_nesting_refused()
    with qplan.atomic(using="default"):
        Author.objects.create(name="outer")
        with pytest.raises(qplan.IntegrityError):
            with qplan.atomic(using="default"):
                Author.objects.create(name="inner", email="e")
                Author.objects.create(name="dup", email="e")
        Author.objects.create(name="after")  # the transaction is still usable
    assert names(Author.objects.all()) == ["after", "outer"]


def test_bulk_create_failing_half_way_leaves_no_rows(any_db):
    tags = [Tag(code=f"t{i}") for i in range(50)] + [Tag(code="t7")]
    with pytest.raises(qplan.IntegrityError) as info:
        Tag.objects.bulk_create(tags, batch_size=10)
    assert info.value.__cause__ is not None  # the driver's own exception is chained
    assert Tag.objects.count() == 0


def test_integrity_errors_are_mapped(any_db):
    Author.objects.create(name="a", email="same")
    with pytest.raises(qplan.IntegrityError, match="default"):
        Author.objects.create(name="b", email="same")
    with pytest.raises(qplan.IntegrityError):
        Book.objects.create(title="orphan", author_id=999)
    assert Author.objects.count() == 1  # and the connection is fine afterwards


def test_updates_and_deletes_through_joins(any_db):
    ann = Author.objects.create(name="ann")
    Book.objects.bulk_create([Book(title="a", author=ann, pages=1), Book(title="b", pages=2)])
    assert Book.objects.filter(author__name="ann").update(pages=F("pages") + 10) == 1
    assert list(Book.objects.order_by("title").values_list("pages", flat=True)) == [11, 2]
    assert Book.objects.filter(author__name__startswith="a").delete() == (1, {"testmodels.Book": 1})
    assert titles(Book.objects.all()) == ["b"]


def test_update_counts_matched_rows_and_save_updates_in_place(any_db):
    ann = Author.objects.create(name="ann")
    assert Author.objects.filter(name="ann").update(name="ann") == 1  # unchanged, still counted
    ann.save()  # an update that changes nothing is not mistaken for a missing row
    assert Author.objects.count() == 1


def test_iterator_streams_every_row(any_db):
    Tag.objects.bulk_create([Tag(code=f"c{i:03}", label=None if i % 3 else "x") for i in range(250)])
    codes = [t.code for t in Tag.objects.order_by("code").iterator(chunk_size=64)]
    assert codes == [f"c{i:03}" for i in range(250)]
    assert Tag.objects.filter(label__isnull=True).count() == 166


def test_a_server_that_cannot_start_fails_the_run_when_servers_are_required(monkeypatch):
    import conftest
    from servers import ServerUnavailable

    missing = (None, ServerUnavailable("mariadbd not found"))
    monkeypatch.setattr(conftest, "REQUIRE_SERVERS", True)  # scripts/test and CI
    with pytest.raises(ServerUnavailable):
        conftest._ready(missing)
    monkeypatch.setattr(conftest, "REQUIRE_SERVERS", False)  # a developer's machine
    with pytest.raises(pytest.skip.Exception):
        conftest._ready(missing)


# --- differential: hypothesis rows and plans, every backend equals SQLite ------------------------

ALPHABET = st.sampled_from(list("aAbBzZiI _%!\\'\"\téÉßΣσςǅİıÅÅ😀ﬁꭓᏓ0"))
TEXT = st.text(ALPHABET, max_size=6)
SMALL_INT = st.integers(-20, 20)
FLOATS = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 0.1, 1e-300, 2.5])
PRICES = st.decimals(D("-9999.99"), D("9999.99"), places=2, allow_nan=False, allow_infinity=False)
DATES = st.dates(dt.date(1990, 1, 1), dt.date(2030, 12, 31))
DATETIMES = st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2030, 12, 31),
                         timezones=st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=5, minutes=30))]))
JSON = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=5)


@st.composite
def datasets(draw: Any) -> tuple[list[Author], list[Book]]:
    n_authors = draw(st.integers(0, 5))
    authors = [Author(id=i + 1, name=draw(TEXT), email=draw(st.none() | st.just(f"e{i}")))
               for i in range(n_authors)]
    books = []
    for i in range(draw(st.integers(0, 12))):
        books.append(Book(
            id=i + 1, title=draw(TEXT), pages=draw(SMALL_INT),
            author_id=draw(st.none() | st.integers(1, n_authors)) if n_authors else None,
            rating=draw(st.none() | FLOATS), price=draw(PRICES), is_active=draw(st.booleans()),
            published=draw(st.none() | DATES), created=draw(st.none() | DATETIMES),
            cover=draw(st.none() | st.binary(max_size=4)), meta=draw(st.none() | JSON),
            notes=draw(TEXT)))
    return authors, books


TEXT_LOOKUPS = ["exact", "iexact", "contains", "icontains", "startswith", "istartswith",
                "endswith", "iendswith", "gt", "gte", "lt", "lte"]
ORDER_LOOKUPS = ["exact", "gt", "gte", "lt", "lte"]
LEAVES = {
    "title": (TEXT_LOOKUPS, TEXT), "notes": (TEXT_LOOKUPS, TEXT),
    "author__name": (TEXT_LOOKUPS, TEXT), "pages": (ORDER_LOOKUPS, SMALL_INT),
    "rating": (ORDER_LOOKUPS, FLOATS), "price": (ORDER_LOOKUPS, PRICES),
    "published": (ORDER_LOOKUPS, DATES), "created": (ORDER_LOOKUPS, DATETIMES),
    "is_active": (["exact"], st.booleans()),
}
NULLABLE = ["rating", "published", "created", "author", "author__name", "author__email", "meta",
            "cover"]


@st.composite
def leaves(draw: Any) -> Q:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return Q(**{f"{draw(st.sampled_from(NULLABLE))}__isnull": draw(st.booleans())})
    if kind == 1:
        field = draw(st.sampled_from(["title", "pages", "price", "author__name"]))
        values = draw(st.lists(LEAVES[field][1], max_size=3))
        return Q(**{f"{field}__in": values})
    if kind == 2:
        field = draw(st.sampled_from(["title", "pages", "price", "published", "rating"]))
        low, high = sorted(draw(st.lists(LEAVES[field][1], min_size=2, max_size=2)))
        return Q(**{f"{field}__range": (low, high)})
    if kind == 3:
        lookup = draw(st.sampled_from(["exact", "gt", "lt"]))
        return Q(**{f"pages__{lookup}": F("author__id")})
    if kind == 4:
        lookup = draw(st.sampled_from(["exact", "gt", "lte", "iexact", "contains"]))
        return Q(**{f"title__{lookup}": F(draw(st.sampled_from(["notes", "author__name"])))})
    if kind == 5:  # a subquery: IN (SELECT ...)
        lookup = draw(st.sampled_from(["gt", "icontains", "exact"]))
        inner = Author.objects.filter(**{f"name__{lookup}": draw(TEXT)})
        return Q(author__in=inner.values("id") if draw(st.booleans()) else inner)
    field = draw(st.sampled_from(sorted(LEAVES)))
    lookups, values = LEAVES[field]
    return Q(**{f"{field}__{draw(st.sampled_from(lookups))}": draw(values)})


Q_TREES = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda qs: qs[0] & qs[1] if len(qs) == 2
                                                    else qs[0] & qs[1] & qs[2]),
        st.lists(inner, min_size=2, max_size=3).map(lambda qs: qs[0] | qs[1] if len(qs) == 2
                                                    else qs[0] | qs[1] | qs[2]),
        st.lists(inner, min_size=2, max_size=3).map(lambda qs: qs[0] ^ qs[1] if len(qs) == 2
                                                    else qs[0] ^ qs[1] ^ qs[2]),
        inner.map(lambda q: ~q)),
    max_leaves=4)

ORDERABLE = ["title", "pages", "rating", "price", "is_active", "published", "created", "notes",
             "author__name", "author__email"]
VALUE_FIELDS = ["title", "pages", "rating", "price", "is_active", "published", "created",
                "cover", "meta", "notes", "author__name", "author_id"]
AGGREGATE_ARGS = {
    Count: ["id", "rating", "author__name", "title", "meta"],
    Sum: ["pages", "price", "rating"], Avg: ["pages", "price", "rating"],
    Min: ["title", "pages", "price", "rating", "published", "created", "author__name"],
    Max: ["title", "pages", "price", "rating", "published", "created", "author__name"],
}
ARITHMETIC = st.sampled_from([
    F("pages") + 1, F("pages") * -3, F("pages") / 3, F("pages") % 4, F("pages") - F("author__id"),
    F("price") * 2, F("price") - F("pages"), F("price") / 7, F("rating") / 2, F("rating") + F("pages"),
])


WRITES = st.sampled_from([
    ("delete", {}), ("update", {"pages": F("pages") + 1}), ("update", {"title": "x%"}),
    ("update", {"rating": None, "is_active": False}), ("update", {"price": F("price") * 2}),
    ("update", {"pages": F("pages") / 3}), ("update", {"notes": F("title")}),
    ("update", {"rating": F("rating") / 0}),
])


@st.composite
def aggregates(draw: Any) -> Any:
    fn = draw(st.sampled_from(list(AGGREGATE_ARGS)))
    distinct = fn in (Count, Sum, Avg) and draw(st.booleans())
    return fn(draw(st.sampled_from(AGGREGATE_ARGS[fn])), distinct=distinct)


@st.composite
def plans(draw: Any) -> tuple[Any, bool]:
    """A plan over Book and whether its row order is fully determined."""
    plan = Book.objects.all()
    for _ in range(draw(st.integers(0, 2))):
        q = draw(Q_TREES)
        plan = plan.exclude(q) if draw(st.booleans()) else plan.filter(q)
    shape = draw(st.sampled_from(["models", "values", "values_list", "count", "exists",
                                  "aggregate", "group", "annotate", "distinct", "per_row",
                                  "write"]))
    order = [("-" if draw(st.booleans()) else "") + f for f in
             draw(st.lists(st.sampled_from(ORDERABLE), max_size=2, unique=True))]
    if shape == "group":
        keys = draw(st.lists(st.sampled_from(["author__name", "is_active", "published", "pages"]),
                             min_size=1, max_size=2, unique=True))
        aggs = {f"a{i}": draw(aggregates()) for i in range(draw(st.integers(1, 2)))}
        plan = plan.values(*keys).annotate(**aggs)
        if draw(st.booleans()):
            if isinstance(aggs["a0"], Count):
                plan = plan.filter(a0__gte=draw(st.integers(0, 2)))
            else:
                plan = plan.filter(a0__isnull=False)
        return plan.order_by(*[("-" if draw(st.booleans()) else "") + k for k in keys]), True
    if shape == "aggregate":
        if draw(st.booleans()):
            plan = plan.order_by(*order, "id")[draw(st.integers(0, 3)):draw(st.integers(3, 8))]
        return ("aggregate", plan, {f"a{i}": draw(aggregates()) for i in range(3)}), True
    if shape == "distinct":
        fields = draw(st.lists(st.sampled_from(["title", "pages", "is_active", "author__name",
                                                "price", "published"]), min_size=1, max_size=2,
                               unique=True))
        plan = plan.values(*fields).distinct()
        if draw(st.booleans()):
            return plan.order_by(*fields)[: draw(st.integers(0, 5))], True
        return plan, False
    if shape == "write":  # writes run in order on every database; the table is compared after
        return ("write", plan, draw(WRITES)), True
    if shape == "per_row":  # an aggregate per model row: grouped by every column
        plan = plan.annotate(n=draw(aggregates()))
        if draw(st.booleans()):
            plan = plan.filter(n__isnull=False)
        return plan.order_by(*order, "id"), True
    if shape == "annotate":
        plan = plan.annotate(x=draw(ARITHMETIC))
        if draw(st.booleans()):
            plan = plan.filter(x__gt=draw(SMALL_INT))
        plan = plan.order_by("x", *order, "id") if draw(st.booleans()) else plan.order_by(*order, "id")
        return plan.values("id", "x"), True
    total = draw(st.booleans())
    if total or order:
        plan = plan.order_by(*order, "id") if total else plan.order_by(*order)
    if total and draw(st.booleans()):
        start = draw(st.integers(0, 5))
        plan = plan[start:start + draw(st.integers(0, 6))] if draw(st.booleans()) else plan[start:]
    if shape == "values":
        plan = plan.values(*draw(st.lists(st.sampled_from(VALUE_FIELDS), min_size=1, max_size=4,
                                          unique=True)))
    elif shape == "values_list":
        plan = plan.values_list(*draw(st.lists(st.sampled_from(VALUE_FIELDS), min_size=1,
                                               max_size=3, unique=True)))
    elif shape in ("count", "exists"):
        return (shape, plan, None), True
    return plan, total


def run(spec: Any, alias: str) -> Any:
    if isinstance(spec, tuple):
        kind, plan, aggs = spec
        plan = plan.using(alias)
        if kind == "count":
            return plan.count()
        if kind == "exists":
            return plan.exists()
        if kind == "write":
            op, changes = aggs
            count = plan.update(**changes) if op == "update" else plan.delete()[0]
            return count, list(Book.objects.using(alias).order_by("id").values_list())
        return plan.aggregate(**aggs)
    rows = list(spec.using(alias))
    return [tuple(getattr(r, a) for a in r._meta.attnames) if isinstance(r, qplan.Model) else r
            for r in rows]


def same(a: Any, b: Any) -> bool:
    """Equal values; floats equal to within binary rounding (sums may add in any order)."""
    if isinstance(a, float) or isinstance(b, float):
        return (isinstance(a, (int, float)) and isinstance(b, (int, float))
                and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def sort_key(row: Any) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 6)
        if isinstance(v, dict):
            return sorted((k, norm(x)) for k, x in v.items())
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return v
    return repr(norm(row))


REFERENCE, *OTHERS = VENDORS  # the others must return what the first (SQLite) returns


@pytest.fixture
def every(databases):
    """One alias per registered backend, named after it."""
    return databases(**{vendor: vendor for vendor in VENDORS})


@contextlib.contextmanager
def rows_in_every_database(authors: list[Author], books: list[Book]):
    """Insert the rows in a transaction per database and roll them back afterwards."""
    with rolled_back(VENDORS):
        for alias in VENDORS:
            Author.objects.using(alias).bulk_create([_copy(a) for a in authors])
            Book.objects.using(alias).bulk_create([_copy(b) for b in books])
        yield


def _copy(obj: Any) -> Any:
    return type(obj)(**{f.attname: obj.__dict__.get(f.attname) for f in obj._meta.fields})


@given(data=datasets(), specs=st.lists(plans(), min_size=4, max_size=4))
def test_every_backend_returns_what_sqlite_returns(every, data, specs):
    authors, books = data
    with rows_in_every_database(authors, books):
        for spec, ordered in specs:
            expected = run(spec, REFERENCE)
            for alias in OTHERS:
                got = run(spec, alias)
                if not ordered:
                    expected, got = sorted(expected, key=sort_key), sorted(got, key=sort_key)
                assert same(got, expected), f"{alias} differs for {spec!r}:\n{got!r}\n!=\n{expected!r}"
