"""What every database backend has: dialect tables, value adapters, DDL, error mapping.

A backend is a thin class of UPPER_CASE tables and flags; each database extends
its parent's tables (``DECODE = {**Backend.DECODE, ...}``), as sqlglot's dialects
do. One instance per vendor serves every alias of that vendor.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import json
import os
import threading
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlglot import exp

from qplan import errors

from . import times
from .asyncedge import AsyncEdge
from .functions import FunctionHooks

UTC = _dt.timezone.utc


def _json_load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes, bytearray)) else value


def _to_bool(value: Any) -> Any:
    return None if value is None else bool(value)


def _to_int(value: Any) -> Any:
    return None if value is None else int(value)


def _to_float(value: Any) -> Any:
    return None if value is None else float(value)


def _to_decimal(value: Any) -> Any:
    if value is None or isinstance(value, decimal.Decimal):
        return value
    return decimal.Decimal(repr(value) if isinstance(value, float) else str(value))


def _aware_utc(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = _dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _to_date(value: Any) -> Any:
    if value is None or type(value) is _dt.date:
        return value
    if isinstance(value, _dt.datetime):
        return value.date()
    return _dt.date.fromisoformat(value)


def _to_bytes(value: Any) -> Any:
    return None if value is None else bytes(value)


def decimal_of_double(value: Any) -> Any:
    """A computed decimal that a database worked out in binary floating point (SQLite's
    arithmetic, DuckDB's decimal division): the 15 significant digits a double holds exactly,
    so 0.25 - 0.02 is 0.23, not 0.22999999999999998. Other values as ``Decimal``."""
    if isinstance(value, float):
        return decimal.Decimal(format(value, ".15g"))
    return _to_decimal(value)


class MemoryDatabases:
    """The databases of a backend's ``:memory:`` aliases: one per alias, shared by its threads
    and kept alive by a keeper object until the alias is removed or replaced.

    ``name`` gives an alias its own id (in ``OPTIONS["_memory"]``, when its settings are made),
    ``keeper`` opens or finds its keeper, ``forget`` closes it, and the database is gone.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._ids = itertools.count(1)
        self._keepers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def name(self, config: dict[str, Any]) -> dict[str, Any]:
        if config["NAME"] == ":memory:":
            config["OPTIONS"]["_memory"] = f"{self.prefix}-{next(self._ids)}"
        return config

    def keeper(self, config: Any, open_keeper: Callable[[str], Any],
               use: Callable[[Any], Any] = lambda keeper: keeper) -> Any:
        """``use(keeper)`` of the alias's keeper, opened with ``open_keeper(id)`` the first
        time; under the lock, so threads of one alias share one database."""
        key = config["OPTIONS"]["_memory"]
        with self._lock:
            keeper = self._keepers.get(key)
            if keeper is None:
                keeper = self._keepers[key] = open_keeper(key)
            return use(keeper)

    def forget(self, config: Any) -> None:
        if config["NAME"] != ":memory:":
            return
        with self._lock:
            keeper = self._keepers.pop(config["OPTIONS"]["_memory"], None)
        if keeper is not None:
            keeper.close()


# PEP 249 exception class names, in the order a driver exception's MRO is searched.
PEP249_ERRORS: dict[str, type[errors.DatabaseError]] = {
    "IntegrityError": errors.IntegrityError,
    "DataError": errors.DataError,
    "OperationalError": errors.OperationalError,
    "NotSupportedError": errors.NotSupportedError,
    "ProgrammingError": errors.ProgrammingError,
    "InternalError": errors.InternalError,
    "InterfaceError": errors.InterfaceError,
    "DatabaseError": errors.DatabaseError,
}


AGGREGATE_SQL: dict[str, type[exp.Expression]] = {
    "count": exp.Count, "sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max,
}
# StdDev/Variance: the same SQL names on every backend (SQLite's are Python functions).
SPREAD_SQL = ("stddev_pop", "stddev_samp", "var_pop", "var_samp")


class Backend(FunctionHooks, AsyncEdge):
    """Defaults shared by every database; subclasses override tables and hooks."""

    name = ""  # the registered name (``qplan.backends.register`` sets it)
    SPELLINGS: tuple[str, ...] = ()  # other ENGINE names and URL schemes that mean this backend
    dialect = ""  # sqlglot's dialect name
    paramstyle = "format"  # "qmark" (?) or "format" (%s)
    max_params = 32766
    insert_returning = True  # INSERT ... RETURNING
    # The database's own NULL order: True when NULLs sort as the smallest value (SQLite,
    # MySQL). qplan's documented order is that one; the compiler spells it out (NULLS
    # FIRST/LAST) through sqlglot for the others (PostgreSQL).
    null_order_small = True
    # Auto-increment keys of one connection's inserts are consecutive (False: they step, as on
    # a Galera cluster, where each node hands out every n-th value).
    DENSE_AUTO_IDS = True
    # The LIMIT a database needs before an OFFSET when the plan has none ("no limit" spelled
    # its way); None: OFFSET may stand alone.
    LIMIT_FOR_OFFSET: str | None = None
    # Aggregates take ``FILTER (WHERE ...)``; False: the compiler spells an aggregate's
    # ``filter=`` as ``CASE WHEN cond THEN x END`` inside it instead (MariaDB, MySQL).
    aggregate_filter = True
    # ORDER BY takes NULLS FIRST/LAST; False: ``x IS NULL`` is ordered first instead (MariaDB).
    nulls_placement = True

    # Field.internal_type -> column type in CREATE TABLE.
    DATA_TYPES: dict[str, str] = {
        "AutoField": "INTEGER",
        "IntegerField": "INTEGER",
        "BigIntegerField": "BIGINT",
        "FloatField": "DOUBLE PRECISION",
        "DecimalField": "DECIMAL({max_digits}, {decimal_places})",
        "CharField": "VARCHAR({max_length})",
        "TextField": "TEXT",
        "BooleanField": "BOOLEAN",
        "DateField": "DATE",
        "DateTimeField": "TIMESTAMP",
        "TimeField": "TIME",  # microseconds: PostgreSQL's and DuckDB's default precision
        "BinaryField": "BLOB",
        "JSONField": "TEXT",
    }
    AUTO_PK = "INTEGER PRIMARY KEY"

    # Python type of a plan value -> what the driver is given (missing: unchanged).
    ADAPT: dict[type, Callable[[Any], Any]] = {}

    # Field.internal_type -> converter of what the driver returns (missing: unchanged).
    DECODE: dict[str, Callable[[Any], Any]] = {
        "BooleanField": _to_bool,
        "DecimalField": _to_decimal,
        "DateTimeField": _aware_utc,
        "DateField": _to_date,
        "TimeField": times.to_time_value,
        "BinaryField": _to_bytes,
        "JSONField": _json_load,
    }
    # Field.internal_type -> a faster converter for columns that cannot be NULL.
    DECODE_NOT_NULL: dict[str, Callable[[Any], Any]] = {"BooleanField": bool}
    # Result kind of a computed column (aggregate, arithmetic) -> converter.
    DECODE_KIND: dict[str, Callable[[Any], Any]] = {
        "int": _to_int,
        "float": _to_float,
        "decimal": _to_decimal,
        "bool": _to_bool,
        "time": times.to_time_value,
    }

    # --- dialect hooks used by the compiler ---------------------------------------------------

    def quote(self, name: str) -> str:
        return exp.to_identifier(name, quoted=True).sql(dialect=self.dialect)

    def like(self, column: exp.Expression, pattern: exp.Expression, insensitive: bool) -> exp.Expression:
        """``column LIKE pattern`` with ``!`` as escape; case-sensitive unless ``insensitive``."""
        if insensitive:
            column, pattern = self.lower(column), self.lower(pattern)
        return exp.Escape(this=exp.Like(this=column, expression=pattern),
                          expression=exp.Literal.string("!"))

    def iexact(self, column: exp.Expression, value: exp.Expression) -> exp.Expression:
        return exp.EQ(this=self.lower(column), expression=self.lower(value))

    def lower(self, value: exp.Expression) -> exp.Expression:
        """Text folded for the ``i...`` lookups: simple one-character Unicode lower-casing."""
        return exp.Lower(this=value)

    def divisor(self, rhs: exp.Expression) -> exp.Expression:
        """The right side of ``/`` and ``%``: dividing by zero gives NULL on every backend."""
        return exp.Nullif(this=rhs, expression=exp.Literal.number(0))

    DECIMAL_DIVISION_PLACES = 10

    def decimal_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        """Decimal ``/``: rounded to ``DECIMAL_DIVISION_PLACES`` places on every backend."""
        return exp.Round(this=exp.Div(this=lhs, expression=rhs, typed=True),
                         decimals=exp.Literal.number(self.DECIMAL_DIVISION_PLACES))

    def aggregate(self, fn: str, inner: exp.Expression, kind: str | None) -> exp.Expression:
        """SQL of an aggregate; ``Avg``, ``StdDev`` and ``Variance`` are computed in binary
        floating point everywhere."""
        if (fn == "avg" or fn in SPREAD_SQL) and kind != "float":
            inner = self._as_float(inner)
        if fn in SPREAD_SQL:
            return exp.Anonymous(this=fn.upper(), expressions=[inner])
        return AGGREGATE_SQL[fn](this=inner)

    @staticmethod
    def _as_float(inner: exp.Expression) -> exp.Expression:
        if isinstance(inner, exp.Distinct):
            return exp.Distinct(expressions=[
                exp.Cast(this=e, to=exp.DataType.build("double")) for e in inner.expressions])
        return exp.Cast(this=inner, to=exp.DataType.build("double"))

    def insert_defaults(self, table: exp.Table) -> exp.Expression:
        """INSERT of one row holding only default values."""
        return exp.Insert(this=table, default=True)

    def returning(self, insert: exp.Insert, meta: Any, explicit_pk: bool) -> exp.Expression:
        """``insert`` made to return the new primary keys (``insert_returning`` backends)."""
        insert.set("returning", exp.Returning(expressions=[
            exp.Column(this=exp.Identifier(this=meta.pk.column, quoted=True))]))
        return insert

    # bulk_create(update_conflicts=True) names the unique key whose conflicts update the row
    # (``unique_fields``; False: the database cannot name one, any unique key conflicts).
    UPSERT_NEEDS_TARGET = True
    # Whether such an upsert returns the primary key of every row, inserted or updated, so
    # that bulk_create sets them on the objects (Django: PostgreSQL, SQLite 3.35+).
    UPSERT_RETURNS_KEYS = False

    def on_conflict(self, insert: exp.Insert, meta: Any, option: tuple) -> exp.Insert:
        """``insert`` made to skip rows that clash with an existing row on a unique key
        (``("ignore",)``: ``ON CONFLICT DO NOTHING``) or to update columns of the existing
        row (``("update", fields, unique_fields)``: ``ON CONFLICT (unique columns) DO UPDATE
        SET x = EXCLUDED.x``); every identifier quoted by sqlglot."""
        if option[0] == "ignore":
            insert.set("conflict", exp.OnConflict(action=exp.Var(this="DO NOTHING")))
            return insert
        _, update, unique = option
        sets = [exp.EQ(this=exp.column(exp.to_identifier(c, quoted=True)),
                       expression=exp.column(exp.to_identifier(c, quoted=True),
                                             table=exp.to_identifier("EXCLUDED")))
                for c in (meta.get_field(n).column for n in update)]
        keys = [exp.to_identifier(meta.get_field(n).column, quoted=True) for n in unique]
        insert.set("conflict", exp.OnConflict(action=exp.Var(this="DO UPDATE"), expressions=sets,
                                              conflict_keys=keys))
        return insert

    def text_compare(self, column: exp.Expression) -> exp.Expression:
        """``column`` as it should be compared and ordered: by code point."""
        return column

    def int_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        return exp.Div(this=lhs, expression=rhs, typed=True)

    # --- EXPLAIN and row locks (Django's features) --------------------------------------------

    # explain(format=..., **options): the formats and boolean options the database takes.
    EXPLAIN_FORMATS: tuple[str, ...] = ()
    EXPLAIN_OPTIONS: tuple[str, ...] = ()

    def explain_prefix(self, format: str | None, flags: dict[str, bool]) -> str:
        """The words before a query for ``explain()``, from a checked format and options."""
        return "EXPLAIN ANALYZE " if flags.get("ANALYZE") else "EXPLAIN "

    # select_for_update(): whether rows can be locked at all, and which of its options work
    # ("nowait", "skip_locked", "of", "no_key": Django's has_select_for_update_* features).
    SELECT_FOR_UPDATE = False
    SELECT_FOR_UPDATE_OPTIONS: frozenset[str] = frozenset()
    # Whether FOR UPDATE may lock rows of a LEFT JOINed table (PostgreSQL refuses: "FOR UPDATE
    # cannot be applied to the nullable side of an outer join").
    LOCKS_OUTER_JOINS = True

    # --- DDL ------------------------------------------------------------------------------------

    def column_type(self, field: Any) -> str:
        template = self.DATA_TYPES[field.internal_type]
        return template.format(**vars(field))

    def column_sql(self, field: Any) -> str:
        if field.primary_key and field.auto:
            return f"{self.quote(field.column)} {self.AUTO_PK}"
        parts = [self.quote(field.column), self.column_type(field)]
        parts.append("NULL" if field.null else "NOT NULL")
        if field.primary_key:
            parts.append("PRIMARY KEY")
        elif field.unique:
            parts.append("UNIQUE")
        return " ".join(parts)

    def table_options(self) -> str:
        return ""

    def create_table(self, meta: Any, exist_ok: bool = False,
                     checks: tuple[tuple[str, str], ...] = ()) -> list[str]:
        """CREATE TABLE (and CREATE INDEX) statements for one model; ``checks``: ``(name,
        condition SQL)`` of its check constraints (``qplan.schema.table_sql`` compiles them)."""
        table = self.quote(meta.db_table)
        lines = [self.column_sql(f) for f in meta.fields]
        for f in meta.fields:
            if f.is_relation:
                target = f.target._meta
                lines.append(
                    f"FOREIGN KEY ({self.quote(f.column)}) REFERENCES {self.quote(target.db_table)} "
                    f"({self.quote(target.pk.column)}){self.on_delete(f)}"
                )
        by_column = {f.column: f for f in meta.fields}
        for name, columns in meta.uniques:  # Meta.unique_together and Meta.constraints
            cols = ", ".join(self.index_column(by_column[c]) for c in columns)
            lines.append(f"CONSTRAINT {self.quote(name)} UNIQUE ({cols})")
        for name, condition in checks:  # Meta.constraints' CheckConstraints, as SQL
            lines.append(f"CONSTRAINT {self.quote(name)} CHECK ({condition})")
        guard = "IF NOT EXISTS " if exist_ok else ""
        sql = [f"CREATE TABLE {guard}{table} (\n    " + ",\n    ".join(lines) + "\n)" + self.table_options()]
        for f in meta.fields:
            if (f.db_index or f.is_relation) and not f.unique:
                index = self.quote(f"{meta.db_table}_{f.column}_idx")
                sql.append(self.create_index(index, table, self.index_column(f), exist_ok))
        for name, columns in meta.indexes:  # Meta.indexes
            cols = ", ".join(self.index_column(by_column[c]) for c in columns)
            sql.append(self.create_index(self.quote(name), table, cols, exist_ok))
        return sql

    # Whether the database refuses a foreign key pointing at no row (every backend here:
    # SQLite through PRAGMA foreign_keys, the others always): the builder then uses INNER
    # JOIN along non-null foreign keys, which could otherwise drop such a row.
    ENFORCES_FOREIGN_KEYS = True
    # Whether to use those INNER JOINs at all (same rows either way, a question of speed).
    INNER_JOINS = True

    # Whether foreign keys carry out their ON DELETE action (CASCADE, SET NULL); where not,
    # a referenced row cannot be deleted (and delete() counts no cascaded rows).
    ON_DELETE_IN_DATABASE = True

    def on_delete(self, field: Any) -> str:
        """The ON DELETE clause of a foreign key (``field.on_delete`` is spelled as SQL)."""
        return f" ON DELETE {field.on_delete}"

    def index_column(self, field: Any) -> str:
        """The quoted column (or column prefix) an index on ``field`` covers."""
        return self.quote(field.column)

    def create_index(self, index: str, table: str, column: str, exist_ok: bool) -> str:
        guard = "IF NOT EXISTS " if exist_ok else ""
        return f"CREATE INDEX {guard}{index} ON {table} ({column})"

    def drop_table(self, meta: Any, missing_ok: bool = False) -> list[str]:
        guard = "IF EXISTS " if missing_ok else ""
        return [f"DROP TABLE {guard}{self.quote(meta.db_table)}"]

    # --- settings ---------------------------------------------------------------------------------

    # NAME is a file path: URLs are scheme:///relative, scheme:////absolute, scheme://:memory:
    FILE_DATABASE = False

    def parse_url(self, url: str) -> dict[str, Any]:
        """A URL as settings (without ENGINE); ``ValueError`` for a bad host or port."""
        if self.FILE_DATABASE:
            path, _, query = url.partition("://")[2].partition("?")
            name = path[1:] if path.startswith("/") else path
            return {"NAME": unquote(name) if name not in ("", ":memory:") else ":memory:",
                    "OPTIONS": dict(parse_qsl(query))}
        parts = urlsplit(url)
        return {
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": parts.port,
            "OPTIONS": dict(parse_qsl(parts.query)),
        }

    # The databases of ``:memory:`` aliases, for backends that have them.
    MEMORY: MemoryDatabases | None = None

    def settings(self, config: dict[str, Any]) -> dict[str, Any]:
        """An alias's normalised settings, completed with what this backend needs to keep
        (called once per alias, before the settings become read-only): a ``:memory:``
        alias's id."""
        return self.MEMORY.name(config) if self.MEMORY is not None else config

    def forget(self, config: Any) -> None:
        """An alias with these settings was removed or replaced: drop what it held (a
        ``:memory:`` alias's database)."""
        if self.MEMORY is not None:
            self.MEMORY.forget(config)

    def is_file(self, name: str) -> bool:
        """Whether NAME is a path on this machine (not ``:memory:`` or a ``file:`` URI)."""
        return self.FILE_DATABASE and name != ":memory:" and not name.startswith("file:")

    def resolve_name(self, name: str, base: str) -> str:
        """NAME of a settings file's alias: a relative database file is relative to ``base``."""
        if self.is_file(name) and not os.path.isabs(name):
            return os.path.join(base, name)
        return name

    # --- connections ------------------------------------------------------------------------------

    def connect(self, settings: dict[str, Any]) -> Any:  # pragma: no cover - per backend
        raise NotImplementedError

    DEFAULT_PORT: int | None = None

    def describe(self, alias: str, settings: dict[str, Any]) -> str:
        """Where an alias points, for error messages (never the password)."""
        if self.FILE_DATABASE:
            return f"{alias!r} ({self.name} {settings['NAME']})"
        return (f"{alias!r} ({self.name} at {settings.get('HOST') or 'localhost'}:"
                f"{settings.get('PORT') or self.DEFAULT_PORT})")

    def begin_sql(self) -> str:
        return "BEGIN"

    # Whether atomic() blocks can nest (SAVEPOINT). Where they cannot, ``savepoint_sql``
    # refuses an inner block, and qplan's own blocks (bulk_create) join the open one.
    SUPPORTS_SAVEPOINTS = True

    # Seconds a unique-key conflict may be reported before the conflicting row's commit is
    # visible to a new transaction (0: never; servers make the loser wait for the commit).
    # get_or_create re-reads a lost race's row for that long (qplan/upserts.py).
    CONFLICT_VISIBLE_WITHIN = 0.0

    def savepoint_sql(self, name: str) -> str:
        if not self.SUPPORTS_SAVEPOINTS:
            raise errors.NotSupportedError(
                f"{self.name} has no savepoints: an atomic() block cannot open inside another "
                f"block on the same database (make it one block)")
        return f"SAVEPOINT {name}"

    def release_sql(self, name: str) -> str:
        return f"RELEASE SAVEPOINT {name}"

    def rollback_to_sql(self, name: str) -> str:
        return f"ROLLBACK TO SAVEPOINT {name}"

    # What ``qplan check`` asks: the server's version, then ``probe_details`` adds its role.
    VERSION_SQL = "SELECT version()"

    def probe(self, conn: Any) -> tuple[str, str]:
        """``(version, details)`` of a live connection, for ``qplan check``."""
        version = str(conn.fetchall(self.VERSION_SQL)[0][0])
        return version, self.describe_target(conn.settings) + self.probe_details(conn)

    def describe_target(self, settings: dict[str, Any]) -> str:
        if self.FILE_DATABASE:
            return settings["NAME"]
        return f"{settings['HOST'] or 'localhost'}:{settings['PORT'] or ''} {settings['NAME']}".strip()

    def probe_details(self, conn: Any) -> str:
        """What else ``qplan check`` says of a server (its replication role); "" for nothing."""
        return ""

    # Makes a session refuse writes itself, for READ_ONLY aliases (qplan refuses its own
    # writes before they are sent; this also stops raw SQL on the connection).
    READ_ONLY_SQL = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"

    def set_read_only(self, raw: Any) -> None:
        cur = raw.cursor()
        try:
            cur.execute(self.READ_ONLY_SQL)
        finally:
            cur.close()

    def is_usable(self, raw: Any) -> bool:
        """A cheap health check of a connection that saw an error."""
        try:
            cur = raw.cursor()
            cur.execute("SELECT 1")
            cur.fetchall()
            cur.close()
            return True
        except Exception:  # any failure of the probe means: do not reuse this connection
            return False

    # Replication positions, for read-your-writes: SQL giving the primary's position after a
    # write, and a standby's replayed position (NULL when not a standby). None: no positions,
    # so routing falls back to a time window.
    WRITE_POSITION_SQL: str | None = None
    REPLAY_POSITION_SQL: str | None = None
    # SQL that waits on a standby until it has replayed a position, at most some seconds
    # (parameters: the position's text, the seconds); None: execution cannot wait, it only
    # reads REPLAY_POSITION_SQL.
    WAIT_POSITION_SQL: str | None = None

    def parse_position(self, text: str) -> Any:
        """A position the statements above return, as a value ``reached`` compares;
        ``ValueError`` when ``text`` is not one."""
        raise NotImplementedError

    def reached(self, replayed: Any, wanted: Any) -> bool:
        """Whether a standby that has replayed ``replayed`` holds everything up to ``wanted``
        (both from ``parse_position``); a total order compares with ``>=``."""
        return bool(replayed >= wanted)

    def is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        """Whether ``exc`` says the connection itself is gone (a read may then be retried)."""
        return False

    # --- hung servers and pools ---------------------------------------------------------------

    # True when the driver has no read timeout of its own: qplan's watchdog then calls
    # ``interrupt`` on a driver call that outlives the alias's READ_TIMEOUT. False: ``connect``
    # hands READ_TIMEOUT to the driver.
    INTERRUPTS_READS = False

    def interrupt(self, raw: Any) -> None:
        """Cut ``raw``'s driver call from another thread, so that it fails as a lost
        connection; called only while that call runs (``INTERRUPTS_READS`` backends)."""

    def is_timeout(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the driver's own read timeout (a hung server, not a stale
        connection worth a second try)."""
        return "timed out" in str(exc)

    def in_transaction(self, raw: Any) -> bool:
        """Whether ``raw`` is inside a transaction (then it is not lent to another thread)."""
        return False

    @staticmethod
    def timeouts(settings: Any) -> tuple[Any, Any]:
        """``(CONNECT_TIMEOUT, READ_TIMEOUT)`` of an alias's settings (defaults 5 and 30 s)."""
        return settings.get("CONNECT_TIMEOUT", 5.0), settings.get("READ_TIMEOUT", 30.0)

    def driver_errors(self) -> tuple[type[BaseException], ...]:  # pragma: no cover - per backend
        """The driver's exception classes: only these become qplan ``DatabaseError``s."""
        raise NotImplementedError

    def is_driver_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` came from the database or its driver (not a bug in the caller)."""
        return isinstance(exc, self.driver_errors())

    def map_error(self, exc: BaseException, where: str) -> errors.Error:
        """The qplan error for a driver exception, by PEP 249 class name."""
        for klass in type(exc).__mro__:
            target = PEP249_ERRORS.get(klass.__name__)
            if target is not None:
                break
        else:
            target = errors.DatabaseError
        message = str(exc).strip() or type(exc).__name__
        return target(f"{where}: {message}")
