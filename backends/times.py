"""Reading a TIME back, whatever the driver gives (the SQL of times: ``FunctionHooks``
``trunc_time`` and ``to_time``, in ``backends/functions.py``)."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from qplan import errors

DAY = _dt.timedelta(days=1)


def to_time_value(value: Any) -> Any:
    """A TIME as a naive ``datetime.time``: SQLite's text, MariaDB's ``timedelta`` (its
    drivers read TIME as a duration), or the driver's ``time``. What no time of day can be
    (MariaDB's durations past a day or negative, PostgreSQL's 24:00:00, text another program
    wrote) raises ``DataError`` naming the value, not a bare ``ValueError``."""
    if value is None or type(value) is _dt.time:
        return value
    if isinstance(value, _dt.timedelta):
        if not _dt.timedelta(0) <= value < DAY:
            raise _odd(value)
        micro = value // _dt.timedelta(microseconds=1)
        seconds, micro = divmod(micro, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return _dt.time(hour, minute, second, micro)
    if isinstance(value, str):
        try:
            parsed = _dt.time.fromisoformat(value)
        except ValueError:
            raise _odd(value) from None
        if parsed.tzinfo is not None:
            raise _odd(value)
        return parsed
    return value.replace(tzinfo=None)


def _odd(value: Any) -> errors.DataError:
    return errors.DataError(f"a TIME value no time of day can hold was read: {str(value)[:40]!r} "
                            f"(qplan's TimeField holds 00:00 to 23:59:59.999999)")
