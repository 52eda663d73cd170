"""``atomic()``: a transaction as a context manager or decorator, nesting through savepoints.

Where a block runs:

- ``atomic(using=alias)``: on ``alias``.
- ``atomic()``: on the routers' write alias when they name one without a plan
  (``PrimaryReplica``'s primary, a plain alias, ``default`` without routers). Where they
  cannot (``Sharded``: the alias depends on the row), the block binds to the alias of
  the first statement that runs inside it. Once a block is bound, a write routed to
  another alias, or in a block bound by its first statement any statement routed to
  another alias, raises ``TransactionManagementError`` naming both: nothing inside a
  block commits on its own elsewhere.

The outermost block issues BEGIN and COMMIT (ROLLBACK on an exception); inner blocks
use SAVEPOINT / RELEASE / ROLLBACK TO (on a database without savepoints the backend's
``savepoint_sql`` refuses an inner block). ``Atomic(alias, savepoint=False)`` (qplan's own,
e.g. ``bulk_create``) opens no savepoint inside an open block: it joins that block, and a
failure in it dooms the block it joined. A statement that fails inside a block dooms it
(see ``Connection``): leaving a doomed block rolls it back and, unless an exception is
already on its way out, raises ``TransactionManagementError``, so a caught error never
lets half a block commit. One ``atomic`` object may be reused and nested freely, also
from several threads.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

from .connections import Connection, connections
from .errors import TransactionManagementError
from .replication import record_write
from .routing import write_alias

F = TypeVar("F", bound=Callable[..., Any])


class _Frame:
    """One open block in one thread: where it runs (once known) and its savepoint."""

    __slots__ = ("alias", "conn", "name", "routed", "lazy", "savepoint")

    def __init__(self, alias: str | None, routed: bool, lazy: bool, savepoint: bool = True) -> None:
        self.alias = alias
        self.savepoint = savepoint  # False: inside an open block, join it instead
        self.conn: Connection | None = None  # set when the block is opened on its alias
        self.name = ""  # savepoint name; "" for the outermost block of a connection
        self.routed = routed  # atomic() without using
        self.lazy = lazy  # bound by the first statement routed inside it


class _Frames(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Frame] = []


_frames = _Frames()


def _routed_top() -> _Frame | None:
    for frame in reversed(_frames.stack):
        if frame.routed:
            return frame
    return None


def _open(frame: _Frame) -> None:
    """BEGIN (outermost on its connection) or SAVEPOINT for ``frame`` on its alias."""
    conn = connections[frame.alias]  # type: ignore[index]
    if conn.savepoints and not frame.savepoint:
        return  # joins the open block: its statements fail (and doom) as that block's
    if conn.savepoints:
        conn.savepoint_ids += 1
        name = f"qplan_sp_{conn.savepoint_ids}"
        conn.execute(conn.backend.savepoint_sql(name))  # refused in a doomed block
    else:
        name = ""
        conn.control(conn.backend.begin_sql())
    conn.push_block(name)
    frame.conn, frame.name = conn, name


def _bind(alias: str) -> None:
    """Open the blocks still waiting for their first statement on ``alias``."""
    for frame in _frames.stack:
        if frame.routed and frame.alias is None:
            frame.alias = alias
            _open(frame)


def in_block() -> bool:
    """Whether this thread has an ``atomic()`` block open (its statements stay in this thread)."""
    return bool(_frames.stack)


def check_statement(alias: str, write: bool) -> None:
    """Called before each statement on ``alias``: bind a waiting block, or refuse another alias."""
    if not _frames.stack:
        return
    top = _routed_top()
    if top is None:
        return
    if top.alias is None:
        _bind(alias)
    elif top.alias != alias and (write or top.lazy):
        what = "a write" if write else "a statement"
        raise TransactionManagementError(
            f"{what} routed to {alias!r} inside an atomic() block on {top.alias!r}: it cannot "
            f"join that transaction and would commit on its own; use atomic(using={alias!r}) "
            f"around it, outside this block")


class Atomic:
    """The object ``atomic()`` returns; see the module docstring."""

    def __init__(self, using: str | None, savepoint: bool = True) -> None:
        self.using = using
        self.savepoint = savepoint
        self._local = threading.local()

    def _mine(self) -> list[_Frame]:
        mine = getattr(self._local, "frames", None)
        if mine is None:
            mine = self._local.frames = []
        return mine

    def __enter__(self) -> Connection | None:
        outer = _routed_top()
        if self.using is not None:
            connections[self.using]  # an unknown alias fails here, naming the known ones
            if outer is not None and outer.alias is None:
                _bind(self.using)
            elif outer is not None and outer.alias != self.using:
                raise TransactionManagementError(
                    f"atomic(using={self.using!r}) inside an atomic() block on {outer.alias!r}: "
                    f"its commit would not wait for the outer block's")
            frame = _Frame(self.using, routed=False, lazy=False, savepoint=self.savepoint)
        elif outer is not None:
            frame = _Frame(outer.alias, routed=True, lazy=outer.lazy, savepoint=self.savepoint)
        else:
            alias = write_alias()  # the transaction follows the router
            frame = _Frame(alias, routed=True, lazy=alias is None, savepoint=self.savepoint)
        if frame.alias is not None:
            _open(frame)
        _frames.stack.append(frame)
        self._mine().append(frame)
        return frame.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        frame = self._mine().pop()
        stack = _frames.stack
        del stack[len(stack) - 1 - stack[::-1].index(frame)]
        if frame.conn is not None:
            _leave(frame.conn, exc_type is not None)

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with Atomic(self.using, self.savepoint):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def _leave(conn: Connection, failing: bool) -> None:
    """End the innermost block of ``conn``: release or commit, else roll back (and say why)."""
    depth = len(conn.savepoints)
    reason = conn.doomed
    lost = reason is not None and conn.doomed_depth == 0
    doomed = reason is not None and conn.doomed_depth <= depth
    name = conn.pop_block()
    if name:  # a savepoint
        if lost:  # nothing to roll back to: the outer blocks are doomed as well
            if not failing:
                raise TransactionManagementError(
                    f"{conn.where()}: {reason}; nothing this atomic() block wrote was committed")
            return
        if not failing and not doomed:
            conn.control(conn.backend.release_sql(name))
            return
        try:
            conn.control(conn.backend.rollback_to_sql(name))
            conn.control(conn.backend.release_sql(name))
        except Exception:  # whatever it was, the transaction can no longer be trusted
            conn.doom(0, "a savepoint could not be rolled back")
            if failing:
                return
            raise
        if doomed and conn.doomed_depth == depth:
            conn.doomed = None  # what failed in this block is undone; the outer blocks go on
        if doomed and not failing:
            raise TransactionManagementError(
                f"{conn.where()}: {reason}; the atomic() block was rolled back to its savepoint")
        return
    if not failing and not doomed:
        try:
            conn.control("COMMIT")
        except BaseException:  # a failed (or interrupted) COMMIT: roll back, then re-raise
            _quietly(conn, "ROLLBACK")
            raise
        record_write(conn)
        return
    if conn.raw is not None:
        _quietly(conn, "ROLLBACK")
    if not failing:
        raise TransactionManagementError(
            f"{conn.where()}: {reason}; the transaction was rolled back, nothing in it was "
            f"committed")


def _quietly(conn: Connection, sql: str) -> None:
    """Roll back without hiding the exception that caused it."""
    try:
        conn.control(sql)
    except Exception:  # the original error matters more than the rollback's
        conn.close()  # a connection that cannot roll back is not reused


def atomic(using: str | Callable[..., Any] | None = None) -> Any:
    """``with atomic():``, ``@atomic`` or ``@atomic(using='replica')``."""
    if callable(using):
        return Atomic(None)(using)
    return Atomic(using)
