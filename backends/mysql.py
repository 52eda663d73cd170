"""MariaDB through PyMySQL (tested against MariaDB 10.11; MySQL 8 is untested).

Identifiers are quoted with backticks (MariaDB's default sql_mode has no
ANSI_QUOTES, so ``"x"`` is a string there). Tables are created with the
``utf8mb4_nopad_bin`` collation so that equality and LIKE are case-sensitive, text
orders by code point and trailing spaces count, as on SQLite and PostgreSQL. The
``i...`` lookups fold case with the Unicode 14 tables of ``utf8mb4_uca1400_ai_ci``
(simple lower-casing, as the other backends do) and compare the folded text in
binary. Sessions run in UTC and autocommit; DATETIME holds naive UTC.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlglot import exp

from qplan import errors

from .base import UTC, Backend
from .functions import DATE_TRUNC_FORMATS, fn, num

# pymysql.constants.CR: the connection is gone (server restarted, killed, timed out).
_GONE = {2006, 2013, 2055}
# Server error codes with a more precise qplan error than their PEP 249 class gives:
# 1213 ER_LOCK_DEADLOCK (a deadlock, or a Galera certification conflict).
_TYPED_ERRORS: dict[int, type[errors.DatabaseError]] = {
    1213: errors.SerializationFailure,
    4025: errors.IntegrityError,  # ER_CONSTRAINT_FAILED: a CHECK constraint (PyMySQL: Operational)
}

_UINT32, _UINT64 = (1 << 32) - 1, (1 << 64) - 1


# Extract parts as MariaDB's functions of a date (week, iso_year, iso_week_day: see ``extract``).
EXTRACT_FUNCTIONS = {"year": "YEAR", "month": "MONTH", "day": "DAYOFMONTH", "week_day": "DAYOFWEEK",
                     "quarter": "QUARTER", "hour": "HOUR", "minute": "MINUTE", "second": "SECOND"}
# Trunc to a time kind: DATE_FORMAT formats.
TIME_TRUNC_FORMATS = {"hour": "%Y-%m-%d %H:00:00", "minute": "%Y-%m-%d %H:%i:00",
                      "second": "%Y-%m-%d %H:%i:%s"}


class GtidPosition:
    """A MariaDB GTID position (``'0-1-10,1-101-7'``): per replication domain, the highest
    sequence number. Sequence numbers grow within a domain, whichever server wrote them, so
    a position has reached another when it has, in every domain of the other, a sequence
    number at least as high (a partial order: two domains may each be ahead)."""

    __slots__ = ("seqs",)

    def __init__(self, seqs: dict[int, int]) -> None:
        self.seqs = seqs  # domain id -> sequence number

    @classmethod
    def parse(cls, text: str) -> GtidPosition:
        """``domain-server-seqno`` GTIDs separated by commas (``''``: nothing replicated);
        ``ValueError`` for anything else, also a domain named twice."""
        if not isinstance(text, str):
            raise ValueError(f"not a GTID position: {text!r:.80}")
        seqs: dict[int, int] = {}
        for gtid in filter(None, (part.strip() for part in text.split(","))):
            pieces = gtid.split("-")
            if len(pieces) != 3 or not all(p.isascii() and p.isdigit() for p in pieces):
                raise ValueError(f"not a GTID: {gtid!r:.80}")
            domain, server, seqno = map(int, pieces)
            if domain > _UINT32 or server > _UINT32 or seqno > _UINT64 or domain in seqs:
                raise ValueError(f"not a GTID position: {text!r:.80}")
            seqs[domain] = seqno
        return cls(seqs)

    def reached(self, wanted: GtidPosition) -> bool:
        """Whether this position holds everything ``wanted`` holds, in every domain."""
        mine = self.seqs
        return all(mine.get(domain, -1) >= seqno for domain, seqno in wanted.seqs.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GtidPosition) and self.seqs == other.seqs

    def __hash__(self) -> int:
        return hash(frozenset(self.seqs.items()))

    def __repr__(self) -> str:
        return f"GtidPosition({self.seqs!r})"


def _naive_utc(value: _dt.datetime) -> _dt.datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _datetime_utc(text: str) -> Any:
    """A DATETIME as the aware UTC value qplan returns (the session runs in UTC).

    Parsing with the offset is about 15x faster than PyMySQL's converter followed by
    ``replace(tzinfo=)``; zero dates and other odd forms go through PyMySQL's converter.
    """
    try:
        return _dt.datetime.fromisoformat(text + "+00:00")
    except ValueError:
        from pymysql.converters import convert_datetime

        return convert_datetime(text)


def _conversions() -> dict:
    from pymysql.constants import FIELD_TYPE
    from pymysql.converters import conversions

    conv = dict(conversions)
    conv[FIELD_TYPE.DATETIME] = _datetime_utc
    return conv



def _bytes_as_hex(escape: Any) -> Any:
    """aiomysql's ``escape`` with bytes as PyMySQL 1.2 writes them (``X'..'``): aiomysql
    0.3 calls PyMySQL's ``escape_bytes_prefixed``, which PyMySQL 1.2 no longer has as a
    function."""
    def escape_bytes(obj: Any, *args: Any) -> str:
        if isinstance(obj, (bytes, bytearray)):
            return f"X'{bytes(obj).hex()}'"
        return escape(obj, *args)

    return escape_bytes


class MySQLBackend(Backend):
    name = "mysql"
    SPELLINGS = ("mariadb", "pymysql")
    DEFAULT_PORT = 3306
    dialect = "mysql"
    paramstyle = "format"
    max_params = 65535
    insert_returning = True  # MariaDB >= 10.5 (INSERT/DELETE ... RETURNING, not UPDATE)
    LIMIT_FOR_OFFSET = "18446744073709551615"  # the largest LIMIT: MySQL has no OFFSET alone
    aggregate_filter = False  # no FILTER (WHERE ...): CASE WHEN inside the aggregate
    nulls_placement = False  # no NULLS FIRST/LAST: ORDER BY (x IS NULL) first
    TABLE_COLLATION = "utf8mb4_nopad_bin"
    # Its LOWER() uses Unicode 14 simple case mapping (MariaDB >= 10.10; on MySQL 8 use
    # utf8mb4_0900_ai_ci). The default utf8mb4 tables are older and BMP-only.
    LOWER_COLLATION = "utf8mb4_uca1400_ai_ci"

    DATA_TYPES = {
        **Backend.DATA_TYPES,
        "FloatField": "DOUBLE",
        "TextField": "LONGTEXT",
        "DateTimeField": "DATETIME(6)",
        "TimeField": "TIME(6)",
        "BinaryField": "LONGBLOB",
        "JSONField": "LONGTEXT",
    }
    AUTO_PK = "INTEGER AUTO_INCREMENT PRIMARY KEY"
    READ_ONLY_SQL = "SET SESSION TRANSACTION READ ONLY"
    ADAPT = {_dt.datetime: _naive_utc}
    # Index prefix for columns MySQL cannot index whole.
    PREFIX_INDEXED = {"TextField": 191, "JSONField": 191, "BinaryField": 255}

    # --- dialect hooks ----------------------------------------------------------------------

    TIME_FORMATS = {"hour": "%H:00:00", "minute": "%H:%i:00", "second": "%H:%i:%s"}

    def trunc_time(self, part: str, value: exp.Expression) -> exp.Expression:
        text = exp.Anonymous(this="TIME_FORMAT", expressions=[
            value, exp.Literal.string(self.TIME_FORMATS[part])])
        return exp.Cast(this=text, to=exp.DataType.build("TIME(6)", dialect="mysql"))

    def to_time(self, value: exp.Expression) -> exp.Expression:
        return exp.Cast(this=value, to=exp.DataType.build("TIME(6)", dialect="mysql"))

    def int_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        return exp.IntDiv(this=lhs, expression=rhs)

    def decimal_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        # MySQL keeps only scale(lhs) + div_precision_increment (4) places: widen first.
        wide = exp.Cast(this=lhs, to=exp.DataType.build("DECIMAL(65, 30)", dialect="mysql"))
        return super().decimal_divide(wide, rhs)

    def lower(self, value: exp.Expression) -> exp.Expression:
        if not isinstance(value, (exp.Column, exp.Placeholder)):  # COLLATE binds tightly
            value = exp.Paren(this=value)
        folded = exp.Lower(this=exp.Collate(this=value,
                                            expression=exp.Var(this=self.LOWER_COLLATION)))
        return exp.Collate(this=folded, expression=exp.Var(this=self.TABLE_COLLATION))

    EXPLAIN_FORMATS = ("TEXT", "JSON")  # MariaDB: FORMAT=JSON; TREE is MySQL's only
    EXPLAIN_OPTIONS = ("ANALYZE",)

    def explain_prefix(self, format: str | None, flags: dict[str, bool]) -> str:
        head = "ANALYZE" if flags.get("ANALYZE") else "EXPLAIN"
        return f"{head} FORMAT=JSON " if format == "JSON" else f"{head} "

    SELECT_FOR_UPDATE = True
    SELECT_FOR_UPDATE_OPTIONS = frozenset({"nowait", "skip_locked"})  # MariaDB 10.6+; no OF

    # --- functions (``backends.functions``) ---------------------------------------------------

    CAST_TYPES = {"int": "SIGNED", "float": "DOUBLE", "text": "CHAR", "date": "DATE"}

    def concat(self, parts: list[exp.Expression]) -> exp.Expression:
        return fn("CONCAT", *parts)  # || is OR here

    def regex_match(self, value: exp.Expression, pattern: exp.Expression) -> exp.Expression:
        # MariaDB has no REGEXP_LIKE; REGEXP_INSTR is PCRE2 too
        return exp.GT(this=fn("REGEXP_INSTR", value, pattern), expression=num(0))

    def truncate(self, value: exp.Expression) -> exp.Expression:
        return fn("TRUNCATE", value, num(0))

    def extract(self, part: str, value: exp.Expression) -> exp.Expression:
        if part == "iso_year":
            return self.int_divide(fn("YEARWEEK", value, num(3)), num(100))
        if part == "iso_week_day":
            return exp.Add(this=fn("WEEKDAY", value), expression=num(1))
        if part == "week":
            return fn("WEEK", value, num(3))  # mode 3: ISO weeks, Monday first
        return fn(EXTRACT_FUNCTIONS[part], value)

    def trunc(self, part: str, x: exp.Expression, datetime: bool) -> exp.Expression:
        if part in TIME_TRUNC_FORMATS:
            return self.cast(fn("DATE_FORMAT", x, exp.Literal.string(TIME_TRUNC_FORMATS[part])),
                             "DATETIME(6)")
        if part == "week":
            day = fn("FROM_DAYS", exp.Sub(this=fn("TO_DAYS", x), expression=fn("WEEKDAY", x.copy())))
        elif part == "quarter":
            first = exp.Sub(this=exp.Mul(this=fn("QUARTER", x), expression=num(3)),
                            expression=num(2))
            day = self.cast(fn("CONCAT", fn("YEAR", x.copy()), exp.Literal.string("-"), first,
                               exp.Literal.string("-01")), "DATE")
        else:
            day = self.cast(fn("DATE_FORMAT", x, exp.Literal.string(DATE_TRUNC_FORMATS[part])),
                            "DATE")
        return self.cast(day, "DATETIME(6)") if datetime else day

    def now(self) -> exp.Expression:
        return fn("UTC_TIMESTAMP", num(6))

    def insert_defaults(self, table: exp.Table) -> exp.Expression:
        # No DEFAULT VALUES here: an empty value list is a row of defaults.
        return exp.Insert(this=table, expression=exp.Values(expressions=[exp.Tuple(expressions=[])]))

    # LEFT JOIN even along non-null foreign keys: MariaDB 10.11 reorders an INNER JOIN to read
    # the related table first and filesort, ignoring ORDER BY pk LIMIT (select_related of
    # 20 rows out of 10,000: 11 ms instead of 0.3 ms, benchmarks/bench_relations.py). A WHERE
    # rejecting NULLs still lets it turn the LEFT JOIN into an inner one (outer join
    # simplification), so filters on the related table keep their plans.
    INNER_JOINS = False
    UPSERT_NEEDS_TARGET = False  # MariaDB cannot name the unique key: any one conflicts

    def on_conflict(self, insert: exp.Insert, meta: Any, option: tuple) -> exp.Insert:
        """MariaDB's spelling: ``INSERT IGNORE`` (which also turns other errors of a row, as
        a value too long, into warnings, as in Django) or ``ON DUPLICATE KEY UPDATE x =
        VALUES(x)``; ``unique_fields`` cannot be named here: a clash on any unique key of the
        table (the primary key included) updates the row."""
        if option[0] == "ignore":
            insert.set("ignore", True)
            return insert
        sets = [exp.EQ(this=exp.column(exp.to_identifier(c, quoted=True)),
                       expression=exp.Anonymous(this="VALUES", expressions=[
                           exp.column(exp.to_identifier(c, quoted=True))]))
                for c in (meta.get_field(n).column for n in option[1])]
        insert.set("conflict", exp.OnConflict(duplicate=True, action=exp.Var(this="UPDATE"),
                                              expressions=sets))
        return insert

    # --- DDL ------------------------------------------------------------------------------------

    def table_options(self) -> str:
        return f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.TABLE_COLLATION}"

    def index_column(self, field: Any) -> str:
        prefix = self.PREFIX_INDEXED.get(field.internal_type)
        column = self.quote(field.column)
        return f"{column}({prefix})" if prefix else column

    # --- connections --------------------------------------------------------------------------

    def connect(self, settings: dict[str, Any]) -> Any:
        import pymysql
        import pymysql.constants.CLIENT

        options = dict(settings["OPTIONS"])
        connect_timeout, read_timeout = self.timeouts(settings)
        options.setdefault("connect_timeout", connect_timeout or 31536000)  # None: PyMySQL's max
        options.setdefault("read_timeout", read_timeout)
        options.setdefault("write_timeout", read_timeout)
        options.setdefault("charset", "utf8mb4")
        # UPDATE counts the rows it matched, as on the other databases (not only those changed)
        options["client_flag"] = options.get("client_flag", 0) | pymysql.constants.CLIENT.FOUND_ROWS
        options.setdefault("conv", _conversions())
        raw = pymysql.connect(
            host=settings["HOST"] or "localhost",
            port=settings["PORT"] or 3306,
            user=settings["USER"] or None,
            password=settings["PASSWORD"] or "",
            database=settings["NAME"] or None,
            autocommit=True,
            **options,
        )
        with raw.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
        return raw

    # The async edge: aiomysql, built on PyMySQL (the same conversions); READ_TIMEOUT is
    # qplan.aio's asyncio timeout there, aiomysql has no read timeout of its own.

    async def aconnect(self, settings: dict[str, Any]) -> Any:
        import aiomysql
        import pymysql.constants.CLIENT

        options = dict(settings["OPTIONS"])
        connect_timeout = self.timeouts(settings)[0]
        options.setdefault("connect_timeout", connect_timeout or 31536000)
        options.setdefault("charset", "utf8mb4")
        options["client_flag"] = options.get("client_flag", 0) | pymysql.constants.CLIENT.FOUND_ROWS
        options.setdefault("conv", _conversions())
        raw = await aiomysql.connect(
            host=settings["HOST"] or "localhost", port=settings["PORT"] or 3306,
            user=settings["USER"] or None, password=settings["PASSWORD"] or "",
            db=settings["NAME"] or None, autocommit=True, **options)
        raw.escape = _bytes_as_hex(raw.escape)
        async with raw.cursor() as cur:
            await cur.execute("SET time_zone = '+00:00'")
            if settings.get("READ_ONLY"):
                await cur.execute(self.READ_ONLY_SQL)
        return raw

    async def arun(self, raw: Any, sql: str, params: tuple, fetch: bool) -> tuple:
        async with raw.cursor() as cur:
            await cur.execute(sql, params or None)
            rows = list(await cur.fetchall()) if fetch else None
            return rows, cur.rowcount, cur.lastrowid

    async def aclose(self, raw: Any) -> None:
        raw.close()

    STREAM_EXCLUSIVE = True

    async def astart(self, raw: Any, sql: str, params: tuple) -> Any:
        """An unbuffered ``SSCursor``: the rows stay on the server's socket until fetched."""
        import aiomysql

        cur = await raw.cursor(aiomysql.SSCursor)
        try:
            await cur.execute(sql, params or None)
        except BaseException:
            await cur.close()
            raise
        return cur

    async def afetch(self, handle: Any, size: int) -> list:
        return list(await handle.fetchmany(size))

    async def afinish(self, handle: Any) -> None:
        await handle.close()  # reads the unread rest: the connection can run its next statement

    def async_in_transaction(self, raw: Any) -> bool:
        from pymysql.constants import SERVER_STATUS

        return bool(raw.closed or raw.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS)

    def async_is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        return raw is None or bool(raw.closed) or self.is_disconnect(exc, None)

    # --- replication positions (read-your-writes): MariaDB GTIDs, every domain ------------------

    WRITE_POSITION_SQL = "SELECT @@gtid_binlog_pos"  # the primary, after this session's commit
    REPLAY_POSITION_SQL = "SELECT @@gtid_slave_pos"  # a replica: what its SQL thread committed
    WAIT_POSITION_SQL = "SELECT MASTER_GTID_WAIT(%s, %s) = 0"

    def parse_position(self, text: str) -> GtidPosition:
        return GtidPosition.parse(text)

    def reached(self, replayed: GtidPosition, wanted: GtidPosition) -> bool:
        return replayed.reached(wanted)

    def probe_details(self, conn: Any) -> str:
        """A replica's GTID position and lag (``SHOW SLAVE STATUS``; without the
        REPLICA MONITOR privilege, the position alone); a primary's binlog position."""
        slave_pos, binlog_pos = conn.fetchall("SELECT @@gtid_slave_pos, @@gtid_binlog_pos")[0]
        try:
            cur = conn.execute("SHOW SLAVE STATUS")
            rows = cur.fetchall()
            names = [d[0] for d in cur.description or ()]
        except errors.DatabaseError:  # no privilege: the positions are all it can say
            if slave_pos:
                return (f"; replica, GTID {slave_pos}, lag unknown (SHOW SLAVE STATUS needs "
                        f"the SLAVE MONITOR privilege)")
            return f"; primary, GTID {binlog_pos}" if binlog_pos else ""
        if not rows:
            return f"; primary, GTID {binlog_pos}" if binlog_pos else ""
        lag = dict(zip(names, rows[0])).get("Seconds_Behind_Master")
        return (f"; replica, GTID {slave_pos or '(none)'}, lag "
                f"{lag if lag is not None else 'unknown (not replicating)'} s")

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import pymysql

        return (pymysql.err.MySQLError,)

    # Server error codes that mean the connection (or the server behind it) cannot serve.
    GONE = _GONE

    def is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and \
            exc.args[0] in self.GONE

    def map_error(self, exc: BaseException, where: str) -> errors.Error:
        """PEP 249's mapping, except the server errors in ``_TYPED_ERRORS`` (1213:
        ``SerializationFailure``, 4025: a failed CHECK, ``IntegrityError``)."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        typed = _TYPED_ERRORS.get(code) if code is not None else None
        if typed is not None:
            return typed(f"{where}: {str(exc).strip()}")
        return super().map_error(exc, where)


backend = MySQLBackend()
