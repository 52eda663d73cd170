"""SQLite through the standard library's ``sqlite3``.

Connections run in autocommit mode (qplan issues BEGIN/SAVEPOINT itself), enforce
foreign keys and make LIKE case-sensitive, so a plan means what it means on the
server databases. Adapters are applied per value, never registered on the global
``sqlite3`` module.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
import sqlite3
import statistics
from typing import Any

from sqlglot import exp

from qplan import errors

from .base import UTC, Backend, MemoryDatabases, decimal_of_double
from .functions import DATE_TRUNC_FORMATS, fn, num

OPTIONS = ("timeout", "journal_mode")  # what OPTIONS (or a URL's query) may set
JOURNAL_MODES = ("delete", "truncate", "persist", "memory", "wal", "off")


def _datetime_text(value: _dt.datetime) -> str:
    # Fixed width, UTC, no offset: text order is time order.
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_datetime(value: Any) -> Any:
    if type(value) is str:
        try:  # the stored form: parsing with the offset is 5x faster than .replace(tzinfo=)
            return _from_iso(value + "+00:00")
        except ValueError:
            return _from_iso(value).astimezone(UTC)  # text written with its own offset
    if value is None or isinstance(value, _dt.datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    return _dt.datetime.fromisoformat(value).replace(tzinfo=UTC)


_from_iso = _dt.datetime.fromisoformat


def _time_text(value: _dt.time) -> str:
    """Fixed width (``HH:MM:SS.ffffff``): text order is time order, as for datetimes."""
    return value.isoformat(timespec="microseconds")


def _text(*parts: Any) -> exp.Expression:
    """SQL text joined with ``||``; str parts are literals."""
    sql = [exp.Literal.string(p) if isinstance(p, str) else p for p in parts]
    joined = sql[0]
    for part in sql[1:]:
        joined = exp.DPipe(this=joined, expression=part, safe=True)
    return exp.Paren(this=joined)


def _substr(value: exp.Expression, start: int, length: int | None = None) -> exp.Expression:
    return exp.Substring(this=value, start=exp.Literal.number(start),
                         length=None if length is None else exp.Literal.number(length))


class _LowerMap(dict):
    """Code point -> simple (one-character) lower case, filled on demand for ``str.translate``."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        low = c.lower()
        if len(low) != 1:  # only U+0130 lower-cases to two characters; its simple form is "i"
            low = "i" if cp == 0x130 else c
        self[cp] = low
        return low


_LOWER = _LowerMap()


def simple_lower(value: Any) -> Any:
    """LOWER() as PostgreSQL (libc C.utf8) and MariaDB (uca1400) fold: every letter, not
    only ASCII as SQLite's own; registered per connection, never globally."""
    if type(value) is not str:
        return value
    return value.lower() if value.isascii() else value.translate(_LOWER)


class _UpperMap(dict):
    """Code point -> simple (one-character) upper case (``ß`` stays ``ß``)."""

    def __missing__(self, cp: int) -> str:
        c = chr(cp)
        up = c.upper()
        self[cp] = up if len(up) == 1 else c
        return self[cp]


_UPPER = _UpperMap()


def simple_upper(value: Any) -> Any:
    """UPPER() as PostgreSQL and MariaDB map case: every letter, one character each."""
    if type(value) is not str:
        return value
    return value.upper() if value.isascii() else value.translate(_UPPER)


def regexp(pattern: Any, value: Any) -> Any:
    """``value REGEXP pattern`` (``__regex``): Python ``re``, a match anywhere; NULL for NULL.
    qplan only sends patterns of the subset every backend shares (``qplan.regex``)."""
    if pattern is None or value is None:
        return None
    return 1 if re.search(pattern, value) else 0


def memory_uri(memory_id: str) -> str:
    """The shared-cache URI of a ``:memory:`` alias, so every thread of it sees one database."""
    return f"file:{memory_id}?mode=memory&cache=shared"


class _Spread:
    """SQLite's STDDEV_POP/STDDEV_SAMP/VAR_POP/VAR_SAMP (it has none): ``statistics``
    computes them exactly from the non-NULL values, correctly rounded; NULL over no rows
    (and, for the sample ones, over one), as the other databases return."""

    compute: Any = None
    least = 1

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: Any) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> Any:
        if len(self.values) < self.least:
            return None
        return float(type(self).compute(self.values))


SPREADS = {
    name: type(name, (_Spread,), {"compute": staticmethod(fn), "least": least})
    for name, fn, least in (("stddev_pop", statistics.pstdev, 1), ("stddev_samp", statistics.stdev, 2),
                            ("var_pop", statistics.pvariance, 1), ("var_samp", statistics.variance, 2))
}


# --- date parts: SQLite has no date types, only text and strftime -------------------------------

PARTS = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M", "second": "%S"}
TIME_TRUNC_FORMATS = {"hour": "%Y-%m-%d %H:00:00", "minute": "%Y-%m-%d %H:%M:00",
                      "second": "%Y-%m-%d %H:%M:%S"}


def _int(sql: exp.Expression) -> exp.Expression:
    return exp.Cast(this=sql, to=exp.DataType.build("INTEGER", dialect="sqlite"))


def _strftime(fmt: str, x: exp.Expression) -> exp.Expression:
    return fn("STRFTIME", exp.Literal.string(fmt), x.copy())


def _monday_index(x: exp.Expression) -> exp.Expression:
    """0 = Monday .. 6 = Sunday (ISO order) of a SQLite date or datetime."""
    shifted = exp.Add(this=_int(_strftime("%w", x)), expression=num(6))
    return exp.Paren(this=exp.Mod(this=exp.Paren(this=shifted), expression=num(7)))


def _day_shift(x: exp.Expression, days: exp.Expression) -> exp.Expression:
    """The date ``days`` after ``x``'s (SQLite has no %V/%G before 3.46: Julian days)."""
    return fn("DATE", exp.Add(this=fn("JULIANDAY", x.copy()), expression=days))


def _thursday(x: exp.Expression) -> exp.Expression:
    """The Thursday of ``x``'s ISO week: its year and day of year give ISO year and week."""
    return _day_shift(x, exp.Sub(this=num(3), expression=_monday_index(x)))


def extract(part: str, x: exp.Expression) -> exp.Expression:
    """An ``Extract`` part of a SQLite date or datetime text, as an integer."""
    if part in PARTS:
        return _int(_strftime(PARTS[part], x))
    if part == "week_day":
        return exp.Add(this=_int(_strftime("%w", x)), expression=num(1))
    if part == "iso_week_day":
        return exp.Add(this=_monday_index(x), expression=num(1))
    if part == "quarter":
        month = exp.Add(this=_int(_strftime("%m", x)), expression=num(2))
        return exp.Div(this=exp.Paren(this=month), expression=num(3), typed=True)
    thursday = _thursday(x)
    if part == "iso_year":
        return _int(_strftime("%Y", thursday))
    day = exp.Sub(this=_int(_strftime("%j", thursday)), expression=num(1))  # week
    return exp.Add(this=exp.Div(this=exp.Paren(this=day), expression=num(7), typed=True),
                   expression=num(1))


def trunc(part: str, x: exp.Expression, datetime: bool) -> exp.Expression:
    """A SQLite date or datetime text truncated to ``part``, as the same kind of text."""
    if part in TIME_TRUNC_FORMATS:
        return _strftime(TIME_TRUNC_FORMATS[part], x)
    if part == "week":
        day = _day_shift(x, exp.Neg(this=_monday_index(x)))
    elif part == "quarter":
        back = exp.Mod(this=exp.Paren(this=exp.Sub(this=_int(_strftime("%m", x)),
                                                   expression=num(1))), expression=num(3))
        months = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("-"),
                                          expression=exp.Paren(this=back), safe=True),
                           expression=exp.Literal.string(" months"), safe=True)
        day = fn("DATE", x.copy(), exp.Literal.string("start of month"), months)
    else:
        return _strftime(DATE_TRUNC_FORMATS[part] + (" 00:00:00" if datetime else ""), x)
    if not datetime:
        return day
    return exp.DPipe(this=day, expression=exp.Literal.string(" 00:00:00"), safe=True)


class SQLiteBackend(Backend):
    name = "sqlite"
    SPELLINGS = ("sqlite3",)
    FILE_DATABASE = True
    MEMORY = MemoryDatabases("qplan-mem")
    dialect = "sqlite"
    paramstyle = "qmark"
    max_params = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    insert_returning = sqlite3.sqlite_version_info >= (3, 35)
    UPSERT_RETURNS_KEYS = insert_returning
    LIMIT_FOR_OFFSET = "-1"
    aggregate_filter = sqlite3.sqlite_version_info >= (3, 30)  # FILTER (WHERE ...) since 3.30

    def map_error(self, exc: BaseException, where: str) -> errors.Error:
        """PEP 249's mapping, except "database is locked", a ``SerializationFailure``: two
        transactions that read, then both write, cannot both go on (SQLite refuses the
        second's write lock at once), and a transaction run again may succeed."""
        if isinstance(exc, sqlite3.OperationalError) and "database is locked" in str(exc):
            return errors.SerializationFailure(f"{where}: {str(exc).strip()}")
        return super().map_error(exc, where)

    DATA_TYPES = {
        **Backend.DATA_TYPES,
        "DecimalField": "DECIMAL",
        "FloatField": "REAL",
        "DateTimeField": "DATETIME",
    }
    AUTO_PK = "INTEGER PRIMARY KEY AUTOINCREMENT"
    READ_ONLY_SQL = "PRAGMA query_only = ON"
    ADAPT = {
        bool: int,
        decimal.Decimal: str,
        _dt.datetime: _datetime_text,
        _dt.date: _dt.date.isoformat,
        _dt.time: _time_text,
    }
    DECODE = {**Backend.DECODE, "DateTimeField": _parse_datetime}
    DECODE_KIND = {**Backend.DECODE_KIND, "decimal": decimal_of_double}

    # A TIME is text in the fixed width ``_time_text`` writes; each part has its place.
    TIME_KEPT = {"hour": (3, "00:00.000000"), "minute": (6, "00.000000"), "second": (8, ".000000")}

    def trunc_time(self, part: str, value: exp.Expression) -> exp.Expression:
        kept, zeros = self.TIME_KEPT[part]
        return _text(_substr(value, 1, kept), zeros)

    def to_time(self, value: exp.Expression) -> exp.Expression:
        # A datetime's text has 6 (stored), 3 (Now()) or no (Trunc) fraction digits:
        # 'HH:MM:SS' then its fraction padded to 6 digits.
        seconds = exp.Anonymous(this="STRFTIME", expressions=[exp.Literal.string("%H:%M:%S"),
                                                              value])
        fraction = _substr(_text(_substr(value.copy(), 21), "000000"), 1, 6)
        return _text(seconds, ".", fraction)

    def decimal_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        # NUMERIC affinity stores 1.00 as the integer 1, and 1 / 7 would truncate to 0.
        return super().decimal_divide(exp.Cast(this=lhs, to=exp.DataType.build("double")), rhs)

    # --- functions (``backends.functions``): numbers and text have no fixed types here -----

    CAST_TYPES = {"int": "INTEGER", "float": "REAL", "text": "TEXT", "date": "DATE"}
    GREATEST_SQL = ("MAX", "MIN")  # multi-argument MIN/MAX: NULL when any argument is

    def floor_positive(self, value: exp.Expression) -> exp.Expression:
        return self.cast(self.cast(value, "INTEGER"), "REAL")

    def truncate(self, value: exp.Expression) -> exp.Expression:
        return value  # CAST AS INTEGER truncates toward zero itself

    def cast_kind(self, value: exp.Expression, kind: str, to: str) -> tuple[exp.Expression, bool]:
        if kind == "decimal":
            return value, False  # SQLite keeps numbers as they are (NUMERIC affinity)
        if kind == "date":
            return fn("DATE", value), True  # NULL for a text that is no date
        return super().cast_kind(value, kind, to)

    def to_date(self, value: exp.Expression) -> exp.Expression:
        return fn("DATE", value)

    def extract(self, part: str, value: exp.Expression) -> exp.Expression:
        return extract(part, value)

    def trunc(self, part: str, value: exp.Expression, datetime: bool) -> exp.Expression:
        return trunc(part, value, datetime)

    def explain_prefix(self, format: str | None, flags: dict[str, bool]) -> str:
        return "EXPLAIN QUERY PLAN "

    def now(self) -> exp.Expression:
        return fn("STRFTIME", exp.Literal.string("%Y-%m-%d %H:%M:%f"), exp.Literal.string("now"))

    def connect(self, settings: dict[str, Any]) -> sqlite3.Connection:
        name = settings["NAME"]
        options = {k: v for k, v in settings["OPTIONS"].items() if not k.startswith("_")}
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown sqlite option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
        journal = str(options.get("journal_mode") or "").lower()
        if journal and journal not in JOURNAL_MODES:
            raise ValueError(f"journal_mode must be one of {', '.join(JOURNAL_MODES)}")
        timeout = float(options.pop("timeout", 10))
        if name == ":memory:":
            uri = memory_uri(settings["OPTIONS"]["_memory"])
            self.MEMORY.keeper(settings, lambda memory_id: sqlite3.connect(  # keeps it alive
                memory_uri(memory_id), uri=True, check_same_thread=False))
            raw = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        else:
            raw = sqlite3.connect(name, isolation_level=None, timeout=timeout,
                                  uri=name.startswith("file:"))
        raw.execute("PRAGMA foreign_keys = ON")
        raw.execute("PRAGMA case_sensitive_like = ON")
        raw.create_function("lower", 1, simple_lower, deterministic=True)
        raw.create_function("upper", 1, simple_upper, deterministic=True)
        raw.create_function("regexp", 2, regexp, deterministic=True)  # qplan.regex's subset
        for spread_name, spread in SPREADS.items():
            raw.create_aggregate(spread_name, 1, spread)
        if journal:
            raw.execute(f"PRAGMA journal_mode = {journal}")  # one of JOURNAL_MODES
        return raw

    async def aconnect(self, settings: dict[str, Any]) -> Any:
        """An ``aiosqlite`` connection around the same ``sqlite3`` connection ``connect``
        makes (pragmas, functions), opened in aiosqlite's own thread."""
        import aiosqlite

        raw = await aiosqlite.Connection(lambda: self.connect(settings), 64)
        if settings.get("READ_ONLY"):
            await raw.execute(self.READ_ONLY_SQL)
        return raw

    async def arun(self, raw: Any, sql: str, params: tuple, fetch: bool) -> tuple:
        cur = await raw.execute(sql, params or None)
        try:
            rows = await cur.fetchall() if fetch else None
            return rows, cur.rowcount, cur.lastrowid
        finally:
            await cur.close()

    async def aclose(self, raw: Any) -> None:
        await raw.close()

    async def astart(self, raw: Any, sql: str, params: tuple) -> Any:
        return await raw.execute(sql, params or None)  # sqlite3 steps its rows on demand

    async def afetch(self, handle: Any, size: int) -> list:
        return list(await handle.fetchmany(size))

    async def afinish(self, handle: Any) -> None:
        await handle.close()

    def async_in_transaction(self, raw: Any) -> bool:
        return bool(raw.in_transaction)

    def async_is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        return raw is None or "closed" in str(exc) or "no active connection" in str(exc)

    def async_errors(self) -> tuple[type[BaseException], ...]:
        import aiosqlite

        return (sqlite3.Error, aiosqlite.Error, ValueError)  # ValueError: no active connection

    VERSION_SQL = "SELECT sqlite_version()"

    def probe_details(self, conn: Any) -> str:
        conn.fetchall("SELECT count(*) FROM sqlite_master")  # reads the file's header
        return ""

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        """SQLite has no server: only a connection closed under qplan is gone."""
        if raw is None:
            return True
        try:
            raw.total_changes
        except sqlite3.ProgrammingError:
            return True
        return False


backend = SQLiteBackend()
