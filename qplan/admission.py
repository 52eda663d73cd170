"""Admission of awaited evaluations on one event loop: how many run at once, how many start
per turn of the loop.

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
import weakref
from collections import deque
from typing import Any

MAX_IN_FLIGHT = 32
PER_TURN = 8


class Gate:
    """One loop's places: ``enter()`` gives ``None`` (go on) or a future to await; every
    admitted evaluation calls ``leave()`` once when it ends, however it ends."""

    __slots__ = ("free", "started", "waiters", "turning")

    def __init__(self) -> None:  # no reference to its loop: the loop keys it weakly
        self.free = MAX_IN_FLIGHT
        self.started = 0  # starts granted in this turn of the loop
        self.waiters: deque[asyncio.Future] = deque()
        self.turning = False  # a new turn is scheduled (``call_soon``: the next iteration)

    def enter(self) -> asyncio.Future | None:
        if self.free and self.started < PER_TURN and not self.waiters:
            self.free -= 1
            self.started += 1
            self._next_turn()
            return None
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def abandon(self, waiter: asyncio.Future) -> None:
        """The task awaiting ``waiter`` was cancelled: a place granted to it is given on."""
        if waiter.done() and not waiter.cancelled():
            self.leave()

    def leave(self) -> None:
        self.free += 1
        self._grant()

    def _grant(self) -> None:
        waiters = self.waiters
        while waiters and self.free and self.started < PER_TURN:
            waiter = waiters.popleft()
            if waiter.done():  # its task was cancelled while waiting
                continue
            waiter.set_result(None)
            self.free -= 1
            self.started += 1
        if self.started:
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
# The loop asked last and its gate, as one tuple (threads each replace it whole): the common
# case skips the weak dictionary's lookup, which builds a weakref per call.
_last: tuple[Any, Gate | None] = (None, None)


def gate() -> Gate:
    """The running loop's gate."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last[0] is loop:
        return last[1]  # type: ignore[return-value]
    found = _gates.get(loop)
    if found is None:
        found = _gates[loop] = Gate()
    _last = (loop, found)
    return found
