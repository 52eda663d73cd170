"""Read timeouts for drivers that have none: a watchdog thread cuts a statement that outlives
its alias's ``READ_TIMEOUT``.

A frozen server (stopped, or behind a dead link) still acknowledges TCP, so a driver that
waits for its answer without a time limit (psycopg2) waits forever. ``qplan.connections``
arms an alarm around each driver call on such a backend; when an alarm is due, this
module's one thread runs its action (the backend's ``interrupt``: shut the connection's
socket, so the driver's wait ends with a connection error) and marks it fired. Only the
connections qplan armed are touched; nothing process-wide changes.

An action runs under the lock ``disarm`` takes, so it never touches a connection whose
call has returned and been disarmed (its socket may be closed and its number reused).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

TICK = 0.05  # how often due alarms are looked for while any is armed (the timeout's slack)


class Alarm:
    """One armed driver call: its deadline and what cuts it."""

    __slots__ = ("deadline", "action", "fired")

    def __init__(self, deadline: float, action: Callable[[], Any]) -> None:
        self.deadline = deadline
        self.action = action
        self.fired = False


_armed: set[Alarm] = set()
_lock = threading.Lock()
_wake = threading.Event()
_thread: threading.Thread | None = None


def arm(seconds: float, action: Callable[[], Any]) -> Alarm:
    """Run ``action`` in ``seconds`` unless :func:`disarm` comes first."""
    global _thread
    alarm = Alarm(time.monotonic() + seconds, action)
    with _lock:
        idle = not _armed  # the thread clears ``_wake`` (under the lock) only when none is armed
        _armed.add(alarm)
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_watch, name="qplan-watchdog", daemon=True)
            _thread.start()
    if idle:
        _wake.set()
    return alarm


def disarm(alarm: Alarm) -> bool:
    """Cancel ``alarm``; True if its action already ran (the call was cut)."""
    with _lock:
        _armed.discard(alarm)
        return alarm.fired


def _watch() -> None:
    while True:
        _wake.wait()
        with _lock:
            now = time.monotonic()
            for alarm in [a for a in _armed if a.deadline <= now]:
                _armed.discard(alarm)
                alarm.fired = True
                try:
                    alarm.action()
                except Exception:  # cutting an already broken connection: nothing to do
                    pass
            if not _armed:
                _wake.clear()
        time.sleep(TICK)
