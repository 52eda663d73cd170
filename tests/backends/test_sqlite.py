"""SQLite (sqlite3): per-connection functions, decimals, datetimes as text, errors."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3

import pytest

import qplan
from qplan import F, Sum
from qplan.backends import get
from testmodels import Author, Book, Tag

D = decimal.Decimal
backend = get("sqlite")


def test_lower_folds_every_letter_on_qplan_connections_only(db):
    cur = qplan.connections["default"].cursor()
    cur.execute("SELECT lower('ÀÉΣΟΔΟΣ İ ǅ Ꭓ ABC'), 'a' LIKE 'A'")
    assert cur.fetchone() == ("àéσοδοσ i ǆ ꭓ abc", 0)  # simple mapping; LIKE is case-sensitive
    plain = sqlite3.connect(":memory:")  # nothing is registered on the sqlite3 module
    assert plain.execute("SELECT lower('ÀB')").fetchone() == ("Àb",)
    plain.close()


def test_decimals_come_back_at_their_scale(db):
    Book.objects.bulk_create([Book(title="a", price=D("1.10")), Book(title="b", price=D("100")),
                              Book(title="c", price=D("0.20"))])
    assert [str(p) for p in Book.objects.order_by("title").values_list("price", flat=True)] == \
        ["1.10", "100.00", "0.20"]
    assert str(Book.objects.aggregate(s=Sum("price"))["s"]) == "101.30"
    # arithmetic runs in binary floating point; results keep 15 significant digits
    assert Book.objects.filter(title="a").annotate(x=F("price") - D("0.2")) \
        .values_list("x", flat=True).get() == D("0.9")


def test_decimal_precision_limit_is_fifteen_digits(db):
    from qplan import Model, fields

    class Wide(Model):
        amount = fields.DecimalField(max_digits=30, decimal_places=10)

        class Meta:
            db_table = "qt_wide"
            key = "tests.backends.Wide"

    qplan.create_tables([Wide])
    Wide.objects.create(amount=D("12345.6789012345"))  # 15 digits: exact
    Wide.objects.create(amount=D("123456789.0123456789"))  # 19 digits: rounded by SQLite
    exact, rounded = Wide.objects.order_by("id").values_list("amount", flat=True)
    assert exact == D("12345.6789012345")
    assert rounded != D("123456789.0123456789") and abs(rounded - D("123456789.0123456789")) < D("1e-6")


def test_datetimes_are_fixed_width_utc_text(db):
    Book.objects.create(title="a", created=dt.datetime(2020, 1, 2, 3, 4, 5,
                                                       tzinfo=dt.timezone(dt.timedelta(hours=1))))
    cur = qplan.connections["default"].cursor()
    cur.execute("SELECT created FROM qt_book")
    assert cur.fetchone() == ("2020-01-02 02:04:05.000000",)
    assert Book.objects.get().created == dt.datetime(2020, 1, 2, 2, 4, 5, tzinfo=dt.timezone.utc)


def test_errors_are_mapped_with_the_driver_error_chained(db):
    Tag.objects.create(code="a")
    with pytest.raises(qplan.IntegrityError, match="'default' \\(sqlite ") as info:
        Tag.objects.create(code="a")
    assert isinstance(info.value.__cause__, sqlite3.IntegrityError)
    with pytest.raises(qplan.IntegrityError):  # foreign keys are enforced
        Book.objects.create(title="orphan", author_id=42)
    with pytest.raises(qplan.OperationalError) as info:
        qplan.connections["default"].execute("SELECT * FROM no_such_table")
    assert isinstance(info.value.__cause__, sqlite3.OperationalError)


def test_a_database_that_cannot_open_is_named(tmp_path):
    qplan.configure(databases={"default": f"sqlite:///{tmp_path}/missing/dir/x.db"})
    try:
        with pytest.raises(qplan.OperationalError, match="cannot connect to database 'default'"):
            Author.objects.count()
    finally:
        qplan.configure(databases={})


def test_bulk_create_failing_half_way_leaves_no_rows(db):
    with pytest.raises(qplan.IntegrityError):
        Author.objects.bulk_create([Author(name=str(i), email=str(i % 40)) for i in range(50)],
                                   batch_size=7)
    assert Author.objects.count() == 0


def test_ddl():
    sql = "\n".join(backend.create_table(Book._meta))
    assert '"id" INTEGER PRIMARY KEY AUTOINCREMENT' in sql
    assert '"price" DECIMAL NOT NULL' in sql and '"created" DATETIME NULL' in sql
