"""MySQL and MariaDB through PyMySQL.

Identifiers are quoted with backticks (MariaDB's default sql_mode has no
ANSI_QUOTES). Tables are created with the ``utf8mb4_nopad_bin`` collation so that
equality and LIKE are case-sensitive, text orders by code point and trailing
spaces count, as on SQLite and PostgreSQL. Sessions run in UTC and autocommit.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from sqlglot import exp

from .base import UTC, Backend


def _naive_utc(value: _dt.datetime) -> _dt.datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


class MySQLBackend(Backend):
    name = "mysql"
    dialect = "mysql"
    paramstyle = "format"
    max_params = 65535
    insert_returning = True  # MariaDB >= 10.5; MySQL proper falls back to lastrowid

    DATA_TYPES = {
        **Backend.DATA_TYPES,
        "FloatField": "DOUBLE",
        "TextField": "LONGTEXT",
        "DateTimeField": "DATETIME(6)",
        "BinaryField": "LONGBLOB",
        "JSONField": "LONGTEXT",
    }
    AUTO_PK = "INTEGER AUTO_INCREMENT PRIMARY KEY"
    ADAPT = {_dt.datetime: _naive_utc}

    def int_divide(self, lhs: exp.Expression, rhs: exp.Expression) -> exp.Expression:
        return exp.IntDiv(this=lhs, expression=rhs)

    def table_options(self) -> str:
        return " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin"

    def create_index(self, index: str, table: str, column: str, exist_ok: bool) -> str:
        guard = "IF NOT EXISTS " if exist_ok else ""
        return f"CREATE INDEX {guard}{index} ON {table} ({column})"

    def connect(self, settings: dict[str, Any]) -> Any:
        import pymysql

        options = dict(settings["OPTIONS"])
        options.setdefault("connect_timeout", 5)
        options.setdefault("charset", "utf8mb4")
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


backend = MySQLBackend()
