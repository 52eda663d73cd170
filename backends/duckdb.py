"""DuckDB through the ``duckdb`` package (``pip install 'qplan[duckdb]'``), imported only when
an alias connects, so qplan imports without it.

NAME is a file (``duckdb:///relative.duckdb``, ``duckdb:////absolute.duckdb``) or
``:memory:``; OPTIONS (or a URL's query) are DuckDB configuration settings given to
``duckdb.connect``. Every thread of a ``:memory:`` alias sees one database: the alias keeps
one DuckDB database object (``settings``/``forget`` hold and drop it) and each thread's
connection is a ``cursor()`` of it. Connections to one file share one database object
(DuckDB's own instance cache), so they must agree on OPTIONS.

How DuckDB differs from the other databases, and what this module does about it:

- NULLs sort last both ways by default: the order is emitted explicitly (NULLs smallest).
- ``/`` of integers is float division: integer division is ``//``, which truncates toward
  zero. Decimals are divided in binary floating point (as on SQLite): the quotient is
  rounded to ``DECIMAL_DIVISION_PLACES`` and decoded to 15 significant digits.
- No identity columns: an auto primary key takes ``nextval`` of a sequence of its own,
  created and dropped with the table; an insert with explicit ids moves the sequence past
  them (``setval``), as SQLite and MariaDB do by themselves.
- No SAVEPOINT: ``atomic()`` blocks cannot nest (``SUPPORTS_SAVEPOINTS`` is False: an inner
  block raises NotSupportedError; ``bulk_create`` inside a block joins it).
- Writers never wait for each other: the loser of a unique-key race may get its
  ``Duplicate key`` while the winner's commit is not yet visible to a new transaction
  (about 3% of two-thread races, for milliseconds): ``CONFLICT_VISIBLE_WITHIN``.
- Foreign keys take no ON DELETE action: deleting a row that is still referenced is an
  IntegrityError, whatever the field's ``on_delete`` says (CASCADE, SET NULL included).
- A database's access mode is fixed when it opens, and a process opens a file once: a
  READ_ONLY alias runs every statement in a read-only transaction instead (``Session``).
- Timestamps are stored as naive UTC (``TIMESTAMP``), as on MariaDB; -0.0 is stored as 0.0.
"""

from __future__ import annotations

import datetime as _dt
import sys
from typing import Any

from sqlglot import exp

from qplan import errors

from .base import UTC, Backend, MemoryDatabases, decimal_of_double

INSTALL = "pip install 'qplan[duckdb]'"

# First words of the statements that open or end a transaction (a read-only Session's care).
BEGINS = frozenset({"BEGIN", "START"})
ENDS = frozenset({"COMMIT", "END", "ROLLBACK", "ABORT"})


class MissingDriver(errors.ConfigurationError, ImportError):
    """The duckdb package is not installed (both a configuration error and an ImportError)."""


def driver() -> Any:
    """The ``duckdb`` module, imported on first use; ``MissingDriver`` naming the extra."""
    try:
        import duckdb
    except ImportError as exc:
        raise MissingDriver(f"the duckdb backend needs the duckdb package: {INSTALL}") from exc
    return duckdb


def _naive_utc(value: _dt.datetime) -> _dt.datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _unsigned_zero(value: float) -> float:
    """-0.0 stored as 0.0, as SQLite and PostgreSQL store it (DuckDB keeps the sign)."""
    return value + 0.0


def _name(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def _column(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=_name(name), table=_name(table) if table else None)


def _first_word(sql: str) -> str:
    words = sql.split(None, 1)
    return words[0].upper().rstrip(";") if words else ""


class Cursor:
    """A cursor of a ``Session``: its statements run on the session's one connection."""

    lastrowid = None

    def __init__(self, session: Session) -> None:
        self.session = session
        self.description: Any = None
        self.rowcount = -1
        self.rows: list | None = None  # rows fetched ahead; None: still pending on the connection

    def execute(self, sql: str, params: Any = None) -> Cursor:
        self.session.run(self, sql, params)
        return self

    def _pending(self) -> bool:
        return self.rows is None and self.session.reader is self

    def fetchall(self) -> list:
        if self._pending():
            self.session.reader = None
            return self.session.con.fetchall()
        rows, self.rows = self.rows or [], []
        return rows

    def fetchmany(self, size: int) -> list:
        if self._pending():
            return self.session.con.fetchmany(size)
        rows = self.rows or []
        self.rows = rows[size:]
        return rows[:size]

    def fetchone(self) -> Any:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def keep(self) -> None:
        """Fetch the rest of this cursor's result: another statement is about to run."""
        self.rows = self.session.con.fetchall() if self.description is not None else []

    def close(self) -> None:
        if self.session.reader is self:
            self.session.reader = None
        self.rows = []


class Session:
    """What qplan holds as one DuckDB connection.

    DuckDB's own ``cursor()`` opens another connection, outside this one's transaction, so
    every ``Cursor`` of a session runs on the session's one connection. A connection holds
    one pending result: before a statement runs, the rows another cursor has not fetched
    yet are fetched into it, so interleaved statements never cut a result short.

    A read-only session (READ_ONLY aliases) opens every transaction read-only, and runs a
    statement outside one in a read-only transaction of its own.
    """

    def __init__(self, con: Any) -> None:
        self.con = con
        self.reader: Cursor | None = None  # the cursor whose result the connection holds
        self.read_only = False
        self.in_transaction = False  # (kept only for a read-only session)
        self.closed = False

    def cursor(self) -> Cursor:
        return Cursor(self)

    def close(self) -> None:
        self.closed = True
        self.reader = None
        self.con.close()

    def run(self, cursor: Cursor, sql: str, params: Any) -> None:
        reader = self.reader
        if reader is not None and reader is not cursor:
            reader.keep()
        self.reader = None
        if self.read_only:
            word = _first_word(sql)
            if word in BEGINS:
                self.con.execute(DuckDBBackend.READ_ONLY_SQL)
                self.in_transaction = True
                return self._took(cursor)
            if word in ENDS:
                self.in_transaction = False
            elif not self.in_transaction:
                return self._alone_read_only(cursor, sql, params)
        self.con.execute(sql, params)
        self._took(cursor)

    def _took(self, cursor: Cursor) -> None:
        cursor.description, cursor.rowcount, cursor.rows = self.con.description, self.con.rowcount, None
        self.reader = cursor

    def _alone_read_only(self, cursor: Cursor, sql: str, params: Any) -> None:
        """``sql`` in a read-only transaction of its own; its rows are fetched before COMMIT."""
        self.con.execute(DuckDBBackend.READ_ONLY_SQL)
        try:
            self.con.execute(sql, params)
            self._took(cursor)
            cursor.keep()
            self.reader = None
        except BaseException:  # end the read-only transaction, then let the error through
            try:
                self.con.execute("ROLLBACK")
            except Exception:  # the statement's own error is the one to report
                pass
            raise
        self.con.execute("COMMIT")


# Messages of errors DuckDB raises under another class that are integrity violations: a
# unique key written by a concurrent transaction is found only at COMMIT, as a
# TransactionException.
_INTEGRITY_MESSAGES = ("constraint violation",)


class DuckDBBackend(Backend):
    name = "duckdb"
    FILE_DATABASE = True
    MEMORY = MemoryDatabases("qplan-duckdb")
    dialect = "duckdb"
    paramstyle = "qmark"
    max_params = 65535
    insert_returning = True
    null_order_small = False
    SUPPORTS_SAVEPOINTS = False
    CONFLICT_VISIBLE_WITHIN = 1.0  # the winner's commit shows within ms; 1 s of headroom

    DATA_TYPES = {
        **Backend.DATA_TYPES,
        "FloatField": "DOUBLE",
        "TextField": "VARCHAR",
        "JSONField": "VARCHAR",
    }
    # The sequence's name is filled in per table (``sequence``).
    AUTO_PK = "INTEGER PRIMARY KEY DEFAULT nextval({sequence})"
    READ_ONLY_SQL = "BEGIN TRANSACTION READ ONLY"
    ADAPT = {_dt.datetime: _naive_utc, float: _unsigned_zero}
    DECODE_KIND = {**Backend.DECODE_KIND, "decimal": decimal_of_double}

    def map_error(self, exc: BaseException, where: str) -> errors.Error:
        """PEP 249's mapping, except a constraint violation found at COMMIT (a concurrent
        transaction wrote the same unique key), which is an ``IntegrityError`` as elsewhere."""
        message = str(exc).strip()
        if any(m in message.lower() for m in _INTEGRITY_MESSAGES):
            return errors.IntegrityError(f"{where}: {message}")
        return super().map_error(exc, where)

    # --- dialect hooks ----------------------------------------------------------------------

    def int_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        return exp.IntDiv(this=lhs, expression=rhs)  # //: truncates toward zero

    def decimal_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        # DuckDB divides decimals as doubles; untyped, so sqlglot never writes //
        return exp.Round(this=exp.Div(this=lhs, expression=rhs),
                         decimals=exp.Literal.number(self.DECIMAL_DIVISION_PLACES))

    EXPLAIN_OPTIONS = ("ANALYZE",)

    # --- functions (``backends.functions``) ---------------------------------------------------

    CAST_TYPES = {"int": "BIGINT", "float": "DOUBLE", "text": "VARCHAR", "date": "DATE"}
    GREATEST_SKIPS_NULLS = True

    def upper(self, value: exp.Expression) -> exp.Expression:
        # utf8proc upper-cases ß to ẞ; no other database does
        return exp.Replace(this=super().upper(value), expression=exp.Literal.string("\u1e9e"),
                           replacement=exp.Literal.string("\u00df"))

    def now(self) -> exp.Expression:
        return self.instant(exp.Anonymous(this="get_current_timestamp", expressions=[]))

    def returning(self, insert: exp.Insert, meta: Any, explicit_pk: bool) -> exp.Expression:
        """After rows with explicit ids, move the pk's sequence past them (never back):

        ``WITH ins AS (INSERT ... RETURNING pk), seq AS (SELECT setval(s, GREATEST((SELECT
        MAX(pk) FROM ins), (SELECT last_value FROM duckdb_sequences() WHERE ...), 1)) AS
        moved) SELECT ins.pk, seq.moved FROM ins, seq`` (``moved`` is selected so that DuckDB
        computes it at all).
        """
        insert = super().returning(insert, meta, explicit_pk)
        if not (explicit_pk and meta.pk.auto):
            return insert
        pk, name = meta.pk.column, self.sequence_name(meta)
        last = exp.Select(expressions=[_column("last_value")]).from_(
            exp.Table(this=exp.Anonymous(this="duckdb_sequences")), copy=False).where(
            *[exp.EQ(this=_column(key), expression=value) for key, value in (
                ("database_name", exp.Anonymous(this="current_database")),
                ("schema_name", exp.Anonymous(this="current_schema")),
                ("sequence_name", exp.Literal.string(name)))], copy=False)
        top = exp.Select(expressions=[exp.Max(this=_column(pk))]).from_(
            exp.Table(this=_name("ins")), copy=False)
        # GREATEST as DuckDB means it (NULLs ignored; sqlglot's exp.Greatest would add a CASE
        # making any NULL argument the result): the last value is NULL until first used.
        moved = exp.Anonymous(this="setval", expressions=[
            exp.Literal.string(self.quote(name)),
            exp.Anonymous(this="greatest", expressions=[
                exp.Subquery(this=top), exp.Subquery(this=last), exp.Literal.number(1)])])
        select = exp.Select(expressions=[_column(pk, "ins"), _column("moved", "seq")]).from_(
            exp.Table(this=_name("ins")), copy=False).join(exp.Table(this=_name("seq")), copy=False)
        return select.with_(_name("ins"), as_=insert, copy=False).with_(
            _name("seq"), as_=exp.Select(expressions=[
                exp.Alias(this=moved, alias=_name("moved"))]), copy=False)

    # --- DDL ------------------------------------------------------------------------------------

    def sequence_name(self, meta: Any) -> str:
        """The sequence that numbers ``meta``'s auto primary key."""
        return f"{meta.db_table}_{meta.pk.column}_seq"

    def column_sql(self, field: Any) -> str:
        if field.primary_key and field.auto:
            sequence = exp.Literal.string(self.quote(self.sequence_name(field.model._meta)))
            return (f"{self.quote(field.column)} "
                    f"{self.AUTO_PK.format(sequence=sequence.sql(dialect=self.dialect))}")
        return super().column_sql(field)

    ON_DELETE_IN_DATABASE = False  # DuckDB refuses even a cascade qplan would do itself
    # (it checks foreign keys against rows deleted earlier in the same transaction)

    def on_delete(self, field: Any) -> str:
        return ""  # DuckDB's foreign keys take no action: a referenced row cannot be deleted

    def create_table(self, meta: Any, exist_ok: bool = False,
                     checks: tuple[tuple[str, str], ...] = ()) -> list[str]:
        sql = super().create_table(meta, exist_ok, checks)
        if meta.pk.auto:
            guard = "IF NOT EXISTS " if exist_ok else ""
            sql.insert(0, f"CREATE SEQUENCE {guard}{self.quote(self.sequence_name(meta))}")
        return sql

    def drop_table(self, meta: Any, missing_ok: bool = False) -> list[str]:
        sql = super().drop_table(meta, missing_ok)
        if meta.pk.auto:
            guard = "IF EXISTS " if missing_ok else ""
            sql.append(f"DROP SEQUENCE {guard}{self.quote(self.sequence_name(meta))}")
        return sql

    # --- settings -------------------------------------------------------------------------------

    # --- connections ----------------------------------------------------------------------------

    def connect(self, settings: dict[str, Any]) -> Session:
        duckdb = driver()
        name = settings["NAME"]
        options = {k: v for k, v in settings["OPTIONS"].items() if not k.startswith("_")}
        try:
            if name == ":memory:":
                con = self.MEMORY.keeper(  # one database for every thread of the alias
                    settings, lambda memory_id: duckdb.connect(":memory:", config=options),
                    lambda keeper: keeper.cursor())
            else:
                con = duckdb.connect(name, config=options)
        except duckdb.InvalidInputException as exc:  # an unknown setting or a bad value
            raise ValueError(str(exc)) from exc
        return Session(con)

    def set_read_only(self, raw: Session) -> None:
        raw.read_only = True

    VERSION_SQL = "SELECT library_version FROM pragma_version()"

    def probe(self, conn: Any) -> tuple[str, str]:
        version, details = super().probe(conn)
        return version.lstrip("v"), details  # "v2.0.1"

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (driver().Error,)

    def is_driver_error(self, exc: BaseException) -> bool:
        duckdb = sys.modules.get("duckdb")  # not imported: nothing came from it
        return duckdb is not None and isinstance(exc, duckdb.Error)

    def is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        """DuckDB has no server: only a connection closed under qplan is gone."""
        return raw is None or raw.closed or isinstance(exc, driver().ConnectionException)


backend = DuckDBBackend()
