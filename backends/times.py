"""Reading a TIME back, whatever the driver gives (the SQL of times: ``FunctionHooks``
``trunc_time`` and ``to_time``, in ``backends/functions.py``)."""

from __future__ import annotations

import datetime as _dt
from typing import Any


def to_time_value(value: Any) -> Any:
    """A TIME as a naive ``datetime.time``: SQLite's text, MariaDB's ``timedelta`` (its
    drivers read TIME as a duration), or the driver's ``time``."""
    if value is None or type(value) is _dt.time:
        return value
    if isinstance(value, _dt.timedelta):
        micro = value // _dt.timedelta(microseconds=1)
        seconds, micro = divmod(micro, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return _dt.time(hour, minute, second, micro)
    if isinstance(value, str):
        return _dt.time.fromisoformat(value)
    return value.replace(tzinfo=None)
