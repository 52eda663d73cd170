"""Admission of awaited work on one event loop: how many run at once, how many start per
turn of the loop (``Gate``; also the places of each async connection pool).

A burst of tasks (1,000 coroutines awaiting plans at once) must not hold the loop: every
task's first step runs in the same loop iteration, so each does no more there than ask
for a place (a future, when there is none). At most ``MAX_IN_FLIGHT`` evaluations run at
once, and at most ``PER_TURN`` of them start in one iteration of the loop (routing,
compiling, borrowing a connection and sending a statement cost some 50-100 µs each):
the others start in the iterations after, in arrival order. Tasks inside ``aatomic()``
hold a connection and are never gated, so none waiting here can starve the block that
would free it.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections import deque
from typing import Any

MAX_IN_FLIGHT = 32
PER_TURN = 4


class Gate:
    """``places`` on one loop, taken in arrival order, at most ``per_turn`` new ones per turn
    of the loop: ``enter()`` gives ``None`` (go on) or a future to await; whoever got in
    calls ``leave()`` once when done, however it ends (a cancelled waiter: ``abandon()``)."""

    __slots__ = ("free", "per_turn", "started", "waiters", "turning")

    def __init__(self, places: int, per_turn: int | None) -> None:
        self.free = places  # no reference to its loop: a loop keys its gate weakly
        self.per_turn = per_turn if per_turn is not None else sys.maxsize
        # Starts granted since the last turn began. Counted, not reset every iteration
        # (that would cost a callback per call): a stale count only holds a start back to
        # the next turn, which is then scheduled.
        self.started = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.turning = False  # a new turn is scheduled (``call_soon``: the next iteration)

    def locked(self) -> bool:
        """Whether ``enter()`` would give a future to wait on."""
        return not self.free or self.started >= self.per_turn or bool(self.waiters)

    def enter(self) -> asyncio.Future | None:
        if self.free and self.started < self.per_turn and not self.waiters:
            self.free -= 1
            self.started += 1
            if self.started == self.per_turn:  # the next turn starts afresh
                self._next_turn()
            return None
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        if self.free:  # held back by this turn's starts: let in next turn
            self._next_turn()
        return waiter

    async def __aenter__(self) -> None:  # ``async with gate:`` (e.g. a lock: Gate(1, None))
        waiter = self.enter()
        if waiter is not None:
            try:
                await waiter
            except BaseException:
                self.abandon(waiter)
                raise

    async def __aexit__(self, *exc: object) -> None:
        self.leave()

    def abandon(self, waiter: asyncio.Future) -> None:
        """The task awaiting ``waiter`` was cancelled: a place granted to it is given on."""
        if waiter.done() and not waiter.cancelled():
            self.leave()

    def leave(self) -> None:
        self.free += 1
        self._grant()

    def _grant(self) -> None:
        waiters = self.waiters
        while waiters and self.free and self.started < self.per_turn:
            waiter = waiters.popleft()
            if waiter.done():  # its task was cancelled while waiting
                continue
            waiter.set_result(None)
            self.free -= 1
            self.started += 1
        if waiters and self.free:  # places, but this turn's starts are spent
            self._next_turn()

    def _next_turn(self) -> None:
        if not self.turning:
            self.turning = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        self.turning = False
        self.started = 0
        self._grant()


_gates: "weakref.WeakKeyDictionary[Any, Gate]" = weakref.WeakKeyDictionary()
# The loop asked last (weakly: a finished loop must be freed) and its gate, as one tuple
# (threads each replace it whole): the common case skips the weak dictionary's lookup.
_last: tuple[Any, Gate | None] = (lambda: None, None)


def gate() -> Gate:
    """The running loop's gate for evaluations (``MAX_IN_FLIGHT`` and ``PER_TURN`` as they
    are when the loop first awaits a plan)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last[0]() is loop:
        return last[1]  # type: ignore[return-value]
    found = _gates.get(loop)
    if found is None:
        found = _gates[loop] = Gate(MAX_IN_FLIGHT, PER_TURN)  # read now: settable before
    _last = (weakref.ref(loop), found)
    return found
