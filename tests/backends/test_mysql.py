"""MariaDB (PyMySQL): DDL, quoting, adapters, error mapping, reconnecting, transactions."""

from __future__ import annotations

import datetime as dt
import decimal

import pymysql
import pytest

import qplan
from qplan import F
from qplan.backends import get
from testmodels import Author, Book, Tag

D = decimal.Decimal
backend = get("mysql")


def raw_cursor():
    return qplan.connections["default"].cursor()


def test_ddl_uses_backticks_and_a_binary_no_pad_collation():
    sql = "\n".join(backend.create_table(Book._meta))
    assert '"' not in sql  # a double-quoted name is a string in MariaDB's default sql_mode
    assert sql.startswith("CREATE TABLE `qt_book` (")
    assert "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin" in sql
    for piece in ("`id` INTEGER AUTO_INCREMENT PRIMARY KEY", "`price` DECIMAL(10, 2) NOT NULL",
                  "`created` DATETIME(6) NULL", "`cover` LONGBLOB NULL", "`meta` LONGTEXT NULL",
                  "`rating` DOUBLE NULL", "`notes` LONGTEXT NOT NULL",
                  "CREATE INDEX `qt_book_title_idx` ON `qt_book` (`title`)"):
        assert piece in sql


def test_text_columns_are_indexed_by_prefix():
    from qplan import Model, fields

    class Note(Model):
        body = fields.TextField(db_index=True)

        class Meta:
            db_table = "qt_note"
            key = "tests.backends.Note"

    assert backend.create_table(Note._meta)[1] == \
        "CREATE INDEX `qt_note_body_idx` ON `qt_note` (`body`(191))"


def test_sql_spells_out_the_documented_meaning():
    sql, params = Book.objects.filter(title__iexact="É").annotate(
        h=F("pages") / 2, p=F("price") / 3).order_by("-rating")[1:3].compile("mysql")
    assert ("LOWER(`qt_book`.`title` COLLATE utf8mb4_uca1400_ai_ci) COLLATE utf8mb4_nopad_bin"
            " = LOWER(%s COLLATE utf8mb4_uca1400_ai_ci) COLLATE utf8mb4_nopad_bin") in sql
    assert "(`qt_book`.`pages` DIV NULLIF(%s, 0))" in sql
    assert "ROUND(CAST(`qt_book`.`price` AS DECIMAL(65, 30)) / NULLIF(%s, 0), 10)" in sql
    assert sql.endswith("ORDER BY `qt_book`.`rating` DESC LIMIT %s OFFSET %s")  # NULLs last
    assert params[-2:] == (2, 1)


def test_types_come_back_as_python_values(mysql_db):
    Book.objects.create(title="t", price=D("-12345678.91"), meta={"b": 1, "a": "x"},
                        cover=b"\x00'\\", created=dt.datetime(2020, 1, 1, 0, 0, 0, 5,
                                                              tzinfo=dt.timezone.utc),
                        is_active=True)
    book = Book.objects.get()
    assert book.is_active is True  # TINYINT(1) -> bool
    assert book.price == D("-12345678.91") and book.meta == {"a": "x", "b": 1}
    assert book.cover == b"\x00'\\"
    assert book.created == dt.datetime(2020, 1, 1, 0, 0, 0, 5, tzinfo=dt.timezone.utc)
    with raw_cursor() as cur:  # stored as naive UTC text whatever the client's zone
        cur.execute("SELECT CAST(created AS CHAR), meta FROM qt_book")
        assert cur.fetchone() == ("2020-01-01 00:00:00.000005", '{"a":"x","b":1}')


def test_insert_returning_gives_every_new_id_in_order(mysql_db):
    Tag.objects.create(code="first")
    authors = Author.objects.bulk_create([Author(name=str(i)) for i in range(30)])
    ids = [a.pk for a in authors]
    if qplan.connections["default"].backend.DENSE_AUTO_IDS:
        assert ids == list(range(1, 31))
    else:  # Galera: every n-th value, still in order
        assert ids == sorted(set(ids)) and len(ids) == 30
    assert [a.name for a in Author.objects.order_by("id")] == [str(i) for i in range(30)]


def test_update_has_no_returning_and_counts_rows(mysql_db):
    Author.objects.bulk_create([Author(name="a"), Author(name="b")])
    assert Author.objects.filter(name="a").update(name="c") == 1
    assert Author.objects.filter(name="c").update(name="c") == 1  # matched, not changed


def test_errors_are_mapped_with_the_driver_error_chained(mysql_db):
    Tag.objects.create(code="a")
    vendor = qplan.connections["default"].vendor
    with pytest.raises(qplan.IntegrityError, match=rf"'default' \({vendor} at 127\.0\.0\.1:") as info:
        Tag.objects.create(code="a")
    assert isinstance(info.value.__cause__, pymysql.err.IntegrityError)
    with pytest.raises(qplan.IntegrityError):
        Book.objects.create(title="orphan", author_id=12)
    with pytest.raises(qplan.FieldError, match="32-bit"):  # refused before the database
        Book.objects.create(title="big", pages=2**40)
    with pytest.raises(qplan.DataError):  # strict mode: out of range
        qplan.connections["default"].execute(
            "INSERT INTO qt_book (title, pages, price, is_active, notes) "
            "VALUES ('big', 1099511627776, 0, TRUE, '')")
    with pytest.raises(qplan.ProgrammingError):
        qplan.connections["default"].execute("SELECT * FROM no_such_table")
    assert Tag.objects.count() == 1


def test_percent_signs_survive_the_paramstyle(mysql_db):
    Author.objects.create(name="100%")
    assert Author.objects.filter(name__endswith="%").count() == 1
    assert list(Author.objects.filter(name__contains="0%").values_list("name", flat=True)) == ["100%"]


def test_transactions_and_savepoints(mysql_db):
    with qplan.atomic():
        Tag.objects.create(code="x")
        with pytest.raises(qplan.IntegrityError):
            with qplan.atomic():
                Tag.objects.create(code="y")
                Tag.objects.create(code="x")
    assert list(Tag.objects.values_list("code", flat=True)) == ["x"]
    with pytest.raises(qplan.IntegrityError):
        Author.objects.bulk_create([Author(name="a", email="e"), Author(name="b", email="e")])
    assert Author.objects.count() == 0


def test_a_server_that_is_down_is_named_and_a_restart_needs_no_new_process(mysql_db_server):
    mariadb, vendor = mysql_db_server, qplan.connections["default"].vendor
    Tag.objects.create(code="before")
    port = mariadb.port
    mariadb.stop()
    try:
        with pytest.raises(qplan.OperationalError,
                           match=rf"'default' \({vendor} at 127\.0\.0\.1:{port}\)") as info:
            Tag.objects.count()
        assert isinstance(info.value.__cause__, pymysql.err.OperationalError)
    finally:
        mariadb.start()
    assert Tag.objects.count() == 1
    mariadb.stop(kill=True)  # a crash while idle: the next read reconnects by itself
    mariadb.start()
    assert list(Tag.objects.values_list("code", flat=True)) == ["before"]


# --- GTID positions (read-your-writes) ------------------------------------------------------------


def test_gtid_positions_are_compared_in_every_domain():
    pos = backend.parse_position
    assert pos("").seqs == {}
    assert pos("0-1-10,\n1-2-5").seqs == {0: 10, 1: 5}
    assert backend.reached(pos("0-1-10,1-2-5"), pos("0-9-10"))  # the server id does not matter
    assert backend.reached(pos("0-1-10,1-2-5"), pos(""))
    assert not backend.reached(pos("0-1-10"), pos("0-1-10,1-2-1"))  # a domain missing
    assert not backend.reached(pos("0-1-10,1-2-5"), pos("0-1-11,1-2-5"))
    assert not backend.reached(pos(""), pos("0-1-1"))  # a replica that replicated nothing


@pytest.mark.parametrize("text", ["0-1", "0-1-2-3", "x-1-2", "0-1-2,0-1-3", "0-1--2", "0-1-+2",
                                  "4294967296-1-1", "0-1-18446744073709551616", "٣-1-2"])
def test_malformed_gtid_positions_are_refused(text):
    with pytest.raises(ValueError):
        backend.parse_position(text)
