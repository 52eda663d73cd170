"""The dialect layer: one plan, three SQL texts; values bound, never inlined; the shape cache."""

from __future__ import annotations

import threading
import time

import pytest

import qplan
from qplan import F, Q
from qplan.shapecache import ShapeCache, cache
from testmodels import Author, Book

DIALECTS = qplan.backends.names()


def sql(plan, dialect):
    return plan.compile(dialect).sql


# One table per feature: what each dialect must write.
@pytest.mark.parametrize("build, expected", [
    (lambda: Book.objects.filter(pages__gte=3).values_list("id", flat=True), {
        "sqlite": 'SELECT "qt_book"."id" FROM "qt_book" WHERE "qt_book"."pages" >= ?',
        "postgresql": 'SELECT "qt_book"."id" FROM "qt_book" WHERE "qt_book"."pages" >= %s',
        "mysql": "SELECT `qt_book`.`id` FROM `qt_book` WHERE `qt_book`.`pages` >= %s",
    }),
    (lambda: Book.objects.order_by("-rating", "id").values_list("id", flat=True), {
        "sqlite": 'SELECT "qt_book"."id" FROM "qt_book" ORDER BY "qt_book"."rating" DESC, "qt_book"."id" ASC',
        # NULLs sort smallest: explicit for the nullable rating; the NOT NULL id keeps
        # PostgreSQL's own order, so an index on it can still be walked
        "postgresql": 'SELECT "qt_book"."id" FROM "qt_book" ORDER BY "qt_book"."rating" DESC NULLS LAST, '
                      '"qt_book"."id" ASC',
        "mysql": "SELECT `qt_book`.`id` FROM `qt_book` ORDER BY `qt_book`.`rating` DESC, `qt_book`.`id` ASC",
    }),
    (lambda: Book.objects.filter(is_active=True).values_list("id", flat=True), {
        # a bare boolean column: SQLite's planner keeps using indexes (is_active = ? made it scan)
        "sqlite": 'SELECT "qt_book"."id" FROM "qt_book" WHERE "qt_book"."is_active"',
        "postgresql": 'SELECT "qt_book"."id" FROM "qt_book" WHERE "qt_book"."is_active"',
        "mysql": "SELECT `qt_book`.`id` FROM `qt_book` WHERE `qt_book`.`is_active`",
    }),
    (lambda: Author.objects.values_list("id", flat=True)[5:], {
        "sqlite": 'SELECT "qt_author"."id" FROM "qt_author" LIMIT -1 OFFSET ?',
        "postgresql": 'SELECT "qt_author"."id" FROM "qt_author" OFFSET %s',
        "mysql": "SELECT `qt_author`.`id` FROM `qt_author` LIMIT 18446744073709551615 OFFSET %s",
    }),
    (lambda: Book.objects.filter(author__name="x").values_list("id", flat=True), {
        "sqlite": 'SELECT "qt_book"."id" FROM "qt_book" LEFT JOIN "qt_author" AS "T1" ON '
                  '"qt_book"."author_id" = "T1"."id" WHERE "T1"."name" = ?',
        "postgresql": 'SELECT "qt_book"."id" FROM "qt_book" LEFT JOIN "qt_author" AS "T1" ON '
                      '"qt_book"."author_id" = "T1"."id" WHERE "T1"."name" = %s',
        "mysql": "SELECT `qt_book`.`id` FROM `qt_book` LEFT JOIN `qt_author` AS `T1` ON "
                 "`qt_book`.`author_id` = `T1`.`id` WHERE `T1`.`name` = %s",
    }),
    (lambda: Book.objects.filter(pages__in=[]).values_list("id", flat=True), {
        d: q for d, q in zip(DIALECTS, (
            'SELECT "qt_book"."id" FROM "qt_book" WHERE 1 = 0',
            'SELECT "qt_book"."id" FROM "qt_book" WHERE 1 = 0',
            "SELECT `qt_book`.`id` FROM `qt_book` WHERE 1 = 0"))
    }),
])
def test_sql_per_dialect(build, expected):
    plan = build()
    for dialect, text in expected.items():
        assert sql(plan, dialect) == text


def test_user_values_are_bound_parameters_never_sql_text():
    evil = "x'); DROP TABLE qt_book; --"
    plan = Book.objects.filter(Q(title=evil) | Q(notes__contains=evil)).update_plan(notes=evil)
    for dialect in DIALECTS:
        text, params = plan.compile(dialect)
        assert "DROP" not in text
        assert params.count(evil) == 2 and "%x'); DROP TABLE qt!_book; --%" in params


def test_like_wildcards_in_values_are_escaped():
    _, params = Book.objects.filter(title__contains="50%_off!").compile("sqlite")
    assert params == ("%50!%!_off!!%",)
    for dialect in DIALECTS:
        assert "ESCAPE '!'" in sql(Book.objects.filter(title__startswith="a"), dialect)


def test_percent_signs_in_sql_are_doubled_for_format_paramstyle():
    plan = Book.objects.annotate(m=F("pages") % 7).filter(pages__gt=1).values_list("m", flat=True)
    for vendor in qplan.backends.names():
        text = sql(plan, vendor)
        if qplan.backends.get(vendor).paramstyle == "format":
            assert "%%" in text and text.count("%s") == 2
        else:
            assert " % " in text and "%%" not in text


def test_text_ordering_is_by_code_point_on_postgresql():
    plan = Book.objects.filter(title__gt="a").order_by("title").values_list("id", flat=True)
    text = sql(plan, "postgresql")
    assert text.count('COLLATE "C"') == 2
    assert 'COLLATE' not in sql(Book.objects.filter(title="a"), "postgresql")  # equality keeps the index


def test_integer_division_is_spelled_per_dialect():
    plan = Book.objects.annotate(h=F("pages") / 2).values_list("h", flat=True)
    assert " DIV " in sql(plan, "mysql")
    assert "/" in sql(plan, "sqlite") and "/" in sql(plan, "postgresql")


def test_limit_and_offset_are_parameters_so_pages_share_one_template():
    cache.clear()
    plan = Book.objects.order_by("id")
    for page in range(20):
        text, params = plan[page * 10:page * 10 + 10].compile("sqlite")
        assert params == ((10, page * 10) if page else (10,))
    assert len(cache) == 2  # the first page has no OFFSET, every other page shares one shape


def test_cached_compile_skips_sqlglot(monkeypatch):
    cache.clear()
    first = Book.objects.filter(pages__gt=5, title__startswith="a").order_by("-id")[3:9]
    first.compile("postgresql")
    assert cache.misses == 1

    def boom(*args, **kwargs):
        raise AssertionError("sqlglot ran on a cache hit")

    monkeypatch.setattr("qplan.compiler.build", boom)
    other = Book.objects.filter(title__startswith="zz", pages__gt=99).order_by("-id")[30:90]
    text, params = other.compile("postgresql")
    assert params == (99, "zz%", 60, 30) and cache.hits == 1
    with pytest.raises(AssertionError):
        other.compile("mysql")  # a new dialect is a new key


def test_shape_separates_what_changes_the_sql():
    def shape(p):
        return p.shape()[0]

    assert shape(Book.objects.filter(pages=1)) == shape(Book.objects.filter(pages=2))
    assert shape(Book.objects.filter(pages__in=[1, 2])) != shape(Book.objects.filter(pages__in=[1, 2, 3]))
    assert shape(Book.objects.filter(rating=None)) != shape(Book.objects.filter(rating=1.0))
    assert shape(Book.objects.filter(is_active=True)) != shape(Book.objects.filter(is_active=False))
    values = Book.objects.filter(pages__in=[4, 5], title="t").shape()[1]
    assert values == ((4, 5), "t")


def test_cache_is_bounded_and_resizable():
    small = ShapeCache(maxsize=3)
    from qplan.backends import get

    backend = get("sqlite")
    for n in range(6):
        p = Book.objects.filter(pages__in=list(range(n)))
        small.get(p._meta, p.shape()[0], backend)
    assert len(small) == 3
    small.resize(1)
    assert len(small) == 1
    with pytest.raises(ValueError):
        small.resize(0)
    qplan.configure(compile_cache_size=4096)
    assert cache.maxsize == 4096


def test_concurrent_compiles_agree():
    cache.clear()
    plans = [Book.objects.filter(pages__in=list(range(n % 7))).order_by("id")[n:n + 5] for n in range(200)]
    expected = [p.compile("mysql") for p in plans]
    cache.clear()
    results: list = [None] * len(plans)

    def work(offset):
        for i in range(offset, len(plans), 4):
            results[i] = plans[i].compile("mysql")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_compile_for_unknown_dialect():
    with pytest.raises(qplan.ConfigurationError, match="unknown dialect 'oracle'"):
        Book.objects.compile("oracle")


def test_ddl_per_dialect():
    from qplan.backends import get

    sqlite_ddl = get("sqlite").create_table(Book._meta)
    assert sqlite_ddl[0].startswith('CREATE TABLE "qt_book"')
    assert 'FOREIGN KEY ("author_id") REFERENCES "qt_author" ("id") ON DELETE CASCADE' in sqlite_ddl[0]
    assert any("qt_book_title_idx" in s for s in sqlite_ddl)
    mysql_ddl = get("mysql").create_table(Book._meta)[0]
    assert "`title` VARCHAR(200) NOT NULL" in mysql_ddl and "AUTO_INCREMENT" in mysql_ddl
    assert "utf8mb4_nopad_bin" in mysql_ddl
    pg_ddl = get("postgresql").create_table(Book._meta)[0]
    assert '"created" TIMESTAMP WITH TIME ZONE NULL' in pg_ddl and '"meta" JSONB NULL' in pg_ddl


# --- in lists: bucketed templates, one node, the backend's parameter limit ------------------


def test_in_lists_of_many_lengths_share_a_few_templates():
    cache.clear()
    lengths = [*range(1, 1100), 2047, 2048, 2049, 3000, 3072]
    for n in lengths:
        Book.objects.filter(pages__in=list(range(n))).values_list("id", flat=True).compile("sqlite")
    assert len(cache) == 13  # 1, 2, 4, ... 1024, then 2048 and 3072
    assert cache.misses == 13 and cache.hits == len(lengths) - 13
    sql, params = Book.objects.filter(pages__in=[5, 1, 3]).values_list("id", flat=True).compile("mysql")
    assert sql.endswith("IN (%s, %s, %s, %s)") and params == (5, 1, 3, 3)  # padded with the last


def test_a_huge_in_list_compiles_in_milliseconds_into_a_small_template():
    from qplan.backends import get

    cache.clear()
    plan = Book.objects.filter(pages__in=list(range(65536)), title="t")
    start = time.perf_counter()
    template = cache.get(plan._meta, plan.shape()[0], get("mysql"))
    assert time.perf_counter() - start < 0.25
    assert len(template.binds) == 2 and template.size < 5 * 65536
    values = plan.shape()[1]
    start = time.perf_counter()
    big = Book.objects.filter(pages__in=list(range(60000)), title="t")
    params = big.compile("postgresql").params
    assert time.perf_counter() - start < 0.25
    assert len(params) == 59 * 1024 + 1 and params[-2:] == (59999, "t")  # padded, then the title
    with pytest.raises(qplan.NotSupportedError, match="binds 65537 values; mysql accepts at most 65535"):
        template.params(values)


def test_a_statement_over_the_parameter_limit_is_refused_before_the_driver():
    with pytest.raises(qplan.NotSupportedError, match="binds 40001 values; sqlite accepts at most"):
        Book.objects.filter(pages__in=list(range(40000)), title="x").compile("sqlite")


def test_in_lists_up_to_the_limit_run_and_longer_ones_are_refused(any_db):
    from qplan.backends import get

    Book.objects.bulk_create([Book(title=str(i), pages=i) for i in range(5)])
    limit = get(any_db).max_params
    exactly = [3, 1, *range(1000, 1000 + limit - 2)]  # its bucket passes the limit, it does not
    assert sorted(Book.objects.filter(pages__in=exactly).values_list("pages", flat=True)) == [1, 3]
    with pytest.raises(qplan.NotSupportedError, match=f"binds {limit + 1} values; .* at most {limit} "):
        Book.objects.filter(pages__in=list(range(limit + 1))).count()
    assert Book.objects.filter(pages__in=[4, 2, 2, 0]).count() == 3


# --- the cache's byte budget ---------------------------------------------------------------------


def test_the_cache_is_bounded_in_bytes_too():
    from qplan.backends import get

    backend = get("sqlite")
    small = ShapeCache(maxsize=100, max_bytes=30_000)
    fields = ("id", "title", "pages", "rating", "price", "published", "created", "notes")
    plans = [Book.objects.order_by(f).values_list(f) for f in fields]
    for p in plans:
        small.get(p._meta, p.shape()[0], backend)
    assert len(small) == len(plans) and small.bytes <= small.max_bytes
    huge = Book.objects.filter(pages__in=list(range(8000)))
    template = small.get(huge._meta, huge.shape()[0], backend)
    assert 20_000 < template.size <= small.max_bytes
    assert small.bytes <= small.max_bytes and len(small) < len(plans)  # the oldest went
    newest = plans[-1]
    assert small.get(newest._meta, newest.shape()[0], backend) and small.hits == 1
    too_big = Book.objects.filter(pages__in=list(range(20000)))
    assert small.get(too_big._meta, too_big.shape()[0], backend).size > small.max_bytes
    assert small.bytes <= small.max_bytes  # returned, never kept
    small.resize(max_bytes=1000)
    assert len(small) == 0 and small.bytes == 0
    with pytest.raises(ValueError, match="byte budget"):
        small.resize(max_bytes=0)


def test_postgresql_leaves_booleans_undecoded_where_other_backends_convert():
    """psycopg2 and psycopg return ``bool`` for boolean columns: a decoder per row would only
    cost time; MySQL's TINYINT still needs one (values are checked in test_cross_backend)."""
    from qplan.backends import get as get_backend
    from qplan.shapecache import cache

    plan = Book.objects.values_list("is_active", "title")
    shape = plan.shape()[0]
    assert cache.get(plan._meta, shape, get_backend("postgresql")).decoders == ()
    assert [i for i, _ in cache.get(plan._meta, shape, get_backend("mysql")).decoders] == [0]
