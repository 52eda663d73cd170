"""Choosing the alias a plan runs on: ``using()``, then ``Meta.using``, then the router chain.

Routers are duck-typed, as in Django: any object with ``db_for_read(plan, **hints)``
and/or ``db_for_write(plan, **hints)``; a missing method or a ``None`` answer lets
the next router decide, the first alias wins, and ``default`` is the last resort.
Optional methods: ``allow_relation(model_a, model_b)``, ``allow_migrate(alias, model)``
and ``failover(plan, alias, error)`` (another alias for a read whose database failed).

Per-context state (the positions of this context's writes, the replica it reads
from) lives in ``contextvars``, so it follows threads and asyncio tasks, and the
read-your-writes token can be handed to a background job.

Routing decides and never does I/O: the replication positions read-your-writes needs
are read by execution (``qplan.replication``) and handed to the routers
(``positions_wanted`` / ``observed``) before they decide.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import random
import threading
import time
from typing import Any, Iterable, Iterator, Sequence

from . import settings
from .backends import get as get_backend
from .settings import DEFAULT_ALIAS, _options
from .errors import ConfigurationError, ConnectionFailure, ReadOnlyError, RoutingError

METHODS = {"read": "db_for_read", "write": "db_for_write"}


# --- the chain -------------------------------------------------------------------------------------


def ask(router: Any, kind: str, plan: Any, hints: dict[str, Any]) -> str | None:
    """One router's answer for a read or a write; None when it has no opinion."""
    if isinstance(router, str):
        return router
    method = getattr(router, METHODS[kind], None)
    return method(plan, **hints) if method is not None else None


def chain(plan: Any) -> Iterator[Any]:
    """The routers that may decide for ``plan``: the model's ``Meta.using``, then the settings'."""
    if plan is not None:
        meta_using = plan._meta.using
        if meta_using is not None:
            yield meta_using
    yield from settings.option("routers")


def resolve(plan: Any, kind: str | None = None, **hints: Any) -> tuple[Any, Any]:
    """``(target, router)``: where ``plan`` runs (an alias, or a ``ShardSet`` of several) and
    which router chose it (None: not a router)."""
    alias = plan._alias
    if alias is not None:
        return alias, None
    routers = _options["routers"]  # the hot path of every evaluation: kept flat
    meta_using = plan._meta.using
    if meta_using is not None:
        routers = (meta_using, *routers)
    elif not routers:
        return DEFAULT_ALIAS, None
    name = METHODS[kind or plan.kind]
    for router in routers:
        if type(router) is str:
            return router, None
        method = getattr(router, name, None)
        if method is not None:
            alias = method(plan, **hints) if hints else method(plan)
            if alias is not None:
                return alias, router
    return DEFAULT_ALIAS, None


def route(plan: Any, kind: str | None = None, **hints: Any) -> Any:
    """Where ``plan`` runs: an alias, or a ``ShardSet`` when several shards hold its rows."""
    return resolve(plan, kind, **hints)[0]


def write_alias() -> str | None:
    """The alias ``atomic()`` opens on without ``using``, or None when the routers cannot
    name one without a plan (``Sharded``): the block then binds to its first statement's."""
    for router in settings.option("routers"):
        if isinstance(router, str):
            return router
        method = getattr(router, "db_for_write", None)
        if not getattr(router, "handles_no_plan", False):
            if method is not None:
                return None  # its answer depends on the plan
            continue
        alias = method(None) if method is not None else None
        if alias is not None:
            return alias
    return settings.DEFAULT_ALIAS


def db_for_write(plan: Any, instance: Any = None) -> str:
    """Where a write of ``plan`` goes; for an instance, the routers are asked with it as a
    hint, and where none answers it goes back where it was read from (Django's rule)."""
    if plan._alias is not None:
        return plan._alias
    hints = {} if instance is None else {"instance": instance}
    for router in chain(plan):
        alias = ask(router, "write", plan, hints)
        if alias is not None:
            return alias
    if instance is not None and instance._db is not None:
        return instance._db
    return DEFAULT_ALIAS


def placement_keys(plan: Any) -> tuple[str, ...]:
    """Fields whose value decides which database holds a row of ``plan``'s model (a shard
    key): an instance's save() filters on them, so it never changes them."""
    keys: tuple[str, ...] = ()
    for router in chain(plan):
        method = getattr(router, "placement_keys", None)
        if method is not None:
            keys += tuple(k for k in method(plan.model) if k not in keys)
    return keys


def check_writable(alias: str, plan: Any = None) -> None:
    """Refuse a write on a read-only alias (``READ_ONLY``, or a router's replica) before it
    reaches the driver."""
    if settings.database(alias).get("READ_ONLY"):
        raise ReadOnlyError(f"database {alias!r} is read-only (READ_ONLY): the write was refused")
    for router in chain(plan):
        if alias in getattr(router, "read_only_aliases", ()):
            raise ReadOnlyError(
                f"database {alias!r} is read-only, a replica of {router!r}: the write was "
                f"refused (writes go to the primary)")


def check_relations(plan: Any, related: tuple | None = None) -> None:
    """Refuse a plan joining models whose routers keep them apart (``allow_relation``);
    ``related``: ``plan.related_models()`` when the caller already knows it."""
    if related is None:
        related = plan.related_models()
    if not related:
        return
    routers = list(chain(plan))
    for other in related:
        for router in [*routers, other._meta.using]:
            method = getattr(router, "allow_relation", None)
            if method is not None and method(plan.model, other) is False:
                raise RoutingError(
                    f"{plan.model.__name__} and {other.__name__} live on different databases: "
                    f"{plan!r} cannot join them"
                )


def allow_migrate(alias: str, model: Any) -> bool:
    """Whether ``create_tables`` may create ``model``'s table on ``alias``."""
    for router in [model._meta.using, *settings.option("routers")]:
        method = getattr(router, "allow_migrate", None)
        if method is not None:
            answer = method(alias, model)
            if answer is not None:
                return bool(answer)
    return True


# --- read-your-writes: positions of this context's writes -----------------------------------------

# alias -> (position or None, time.monotonic() of the write); replaced, never mutated.
_writes: contextvars.ContextVar[dict[str, tuple[str | None, float]]] = contextvars.ContextVar(
    "qplan_writes", default={})
# router id -> the replica this context reads from.
_sticky: contextvars.ContextVar[dict[int, str]] = contextvars.ContextVar("qplan_sticky", default={})

_tracked: set[str] = set()  # primaries some router reads around


def tracks(alias: str) -> bool:
    """Whether some router reads around writes on ``alias`` (it is a primary)."""
    return alias in _tracked


def remember_write(alias: str, position: str | None) -> None:
    """Record that this context wrote on ``alias``, at ``position`` (None: unknown)."""
    state = dict(_writes.get())
    state[alias] = (position, time.monotonic())
    _writes.set(state)


def pending_writes() -> bool:
    """Whether this context has writes a replica may not have yet (cheap: one lookup)."""
    return bool(_writes.get())


def adopt(ctx: contextvars.Context) -> None:
    """Take the writes and sticky replicas recorded in ``ctx`` (a worker's) into this context."""
    theirs = ctx.get(_writes)
    mine = _writes.get()
    if theirs and theirs is not mine:
        merged = dict(mine)
        for alias, entry in theirs.items():
            if alias not in merged or merged[alias][1] < entry[1]:
                merged[alias] = entry
        _writes.set(merged)
    sticky, my_sticky = ctx.get(_sticky), _sticky.get()
    if sticky and sticky is not my_sticky:
        _sticky.set({**my_sticky, **sticky})


class _Blocks(threading.local):
    def __init__(self) -> None:
        self.aliases: set[str] = set()


_blocks = _Blocks()


def transaction_aliases() -> set[str]:
    """This thread's aliases with an ``atomic()`` block open: the set ``qplan.connections``
    keeps (routing reads it, so reads inside a block go to its database)."""
    return _blocks.aliases


# This task's aliases with an ``aatomic()`` block open (``qplan.aconnections`` sets it):
# reads inside a block go to its database, as in a thread's ``atomic()``.
_task_blocks: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "qplan_task_blocks", default=frozenset())


def set_task_blocks(aliases: frozenset[str]) -> None:
    _task_blocks.set(aliases)


def positions_wanted(plan: Any) -> list[tuple[Any, str, str]]:
    """``(router, replica, position)`` for each replica whose replayed position the routers
    of ``plan`` need to know before deciding (``position``: the text the replica must have
    replayed); execution fetches them (``observed``)."""
    out = []
    for router in chain(plan):
        wanted = getattr(router, "positions_wanted", None)
        if wanted is not None:
            out.extend(wanted(plan))
    return out


def token() -> str:
    """This context's read-your-writes state as a string, for a background job."""
    now = time.monotonic()
    return json.dumps({a: [p, now - t] for a, (p, t) in _writes.get().items()}, sort_keys=True)


MAX_TOKEN = 65_536  # characters: a token holds one short entry per primary
MAX_POSITION = 4_096  # characters of one position (a GTID position names every domain)


@contextlib.contextmanager
def reading_after(state: str) -> Iterator[None]:
    """Read as if this context had made the writes recorded in ``state`` (a ``token()``).

    A malformed token is refused here, whole, with ``ConfigurationError``: nothing of it
    reaches the routers.
    """
    merged = {**_writes.get(), **parse_token(state)}
    reset = _writes.set(merged)
    try:
        yield
    finally:
        _writes.reset(reset)


def parse_token(state: Any) -> dict[str, tuple[str | None, float]]:
    """A ``token()`` string as ``{alias: (position, monotonic time of the write)}``."""
    if not isinstance(state, str) or len(state) > MAX_TOKEN:
        raise ConfigurationError(f"a read-your-writes token is a str of at most {MAX_TOKEN} "
                                 f"characters, got {type(state).__name__}")
    try:
        data = json.loads(state)
    except (ValueError, RecursionError):
        raise ConfigurationError(f"not a read-your-writes token: {state[:80]!r}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"not a read-your-writes token (not an object): {state[:80]!r}")
    now = time.monotonic()
    out = {}
    for alias, entry in data.items():
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ConfigurationError(f"read-your-writes token: entry {alias!r} is not "
                                     f"[position, age]: {entry!r:.80}")
        position, age = entry
        if type(age) not in (int, float) or not 0 <= age < float("inf"):
            raise ConfigurationError(f"read-your-writes token: entry {alias!r} has a bad age "
                                     f"{age!r:.40}")
        _check_position(alias, position)
        out[alias] = (position, now - age)
    return out


def _check_position(alias: str, position: Any) -> None:
    if alias not in settings.databases():
        raise ConfigurationError(f"read-your-writes token names unknown database alias {alias!r}")
    if position is None:
        return
    try:
        if type(position) is not str or len(position) > MAX_POSITION:
            raise ValueError
        get_backend(settings.database(alias)["ENGINE"]).parse_position(position)
    except (ValueError, TypeError, NotImplementedError):
        raise ConfigurationError(
            f"read-your-writes token: {position!r:.80} is not a replication position of "
            f"database {alias!r}") from None


def forget_writes() -> None:
    """Start this context afresh: no pending writes, no sticky replica."""
    _writes.set({})
    _sticky.set({})


# --- built-in routers -------------------------------------------------------------------------------


def _aliases(aliases: Iterable[str], what: str) -> tuple[str, ...]:
    out = tuple(aliases)
    if not out or not all(isinstance(a, str) for a in out):
        raise ConfigurationError(f"{what} takes a non-empty list of alias names, got {aliases!r}")
    return out


class RoundRobin:
    """Reads rotate over ``aliases``; writes go to ``writes`` (None: no opinion)."""

    handles_no_plan = True  # its write alias does not depend on the plan

    def __init__(self, aliases: Sequence[str], *, writes: str | None = None) -> None:
        self.aliases = _aliases(aliases, "RoundRobin")
        self.writes = writes
        self._next = itertools.count()

    def db_for_read(self, plan: Any, **hints: Any) -> str:
        return self.aliases[next(self._next) % len(self.aliases)]

    def db_for_write(self, plan: Any, **hints: Any) -> str | None:
        return self.writes


class Random:
    """Reads pick one of ``aliases`` at random (with optional ``weights``)."""

    handles_no_plan = True

    def __init__(self, aliases: Sequence[str], weights: Sequence[float] | None = None, *,
                 writes: str | None = None, seed: int | None = None) -> None:
        self.aliases = _aliases(aliases, "Random")
        if weights is not None and (len(weights) != len(self.aliases) or min(weights) < 0
                                    or sum(weights) <= 0):
            raise ConfigurationError(f"Random: one non-negative weight per alias, got {weights!r}")
        self.weights = tuple(weights) if weights is not None else None
        self.writes = writes
        self._random = random.Random(seed)

    def db_for_read(self, plan: Any, **hints: Any) -> str:
        return self._random.choices(self.aliases, self.weights)[0]

    def db_for_write(self, plan: Any, **hints: Any) -> str | None:
        return self.writes


class PrimaryReplica:
    """Writes to ``primary``; reads from a replica that has caught up with this context's writes.

    - Inside ``atomic()`` on the primary, reads go to the primary.
    - After a write, a replica serves this context's reads only once it has replayed
      the primary's position at that write (PostgreSQL LSNs, MariaDB and Galera GTIDs in
      every domain, compared by the backend's ``reached``); backends without positions
      read from the primary for ``lag_window`` seconds.
    - A context keeps reading from one replica (a count and the page after it agree).
    - A replica that fails is marked down for ``backoff`` seconds; reads move on to
      another replica, then the primary. After the back-off the next read tries it again
      (a failure marks it down once more; the read still fails over, without an error).
    """

    handles_no_plan = True

    def __init__(self, primary: str, replicas: Sequence[str], *, backoff: float = 5.0,
                 lag_window: float = 2.0) -> None:
        if not isinstance(primary, str):
            raise ConfigurationError(f"PrimaryReplica: primary is an alias name, got {primary!r}")
        self.primary = primary
        self.replicas = _aliases(replicas, "PrimaryReplica") if replicas else ()
        self.backoff = backoff
        self.lag_window = lag_window
        self._down: dict[str, float] = {}
        self._replayed: dict[str, Any] = {}  # replica -> latest position seen replayed
        self._lock = threading.Lock()
        self._next = itertools.count()
        self._id = id(self)  # this router's key in the per-context sticky-replica map
        _tracked.add(primary)

    def __repr__(self) -> str:
        return f"PrimaryReplica({self.primary!r}, {list(self.replicas)!r})"

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.primary, *self.replicas)

    @property
    def read_only_aliases(self) -> tuple[str, ...]:
        """Its replicas: qplan refuses writes there (``check_writable``)."""
        return self.replicas

    def db_for_write(self, plan: Any, **hints: Any) -> str:
        return self.primary

    def db_for_read(self, plan: Any, **hints: Any) -> str:
        if self.primary in _blocks.aliases or self.primary in _task_blocks.get():
            return self.primary  # inside atomic() / aatomic() on the primary
        sticky = _sticky.get().get(self._id)
        if sticky is not None and not self._down and self.primary not in _writes.get():
            return sticky  # the common case: this context's replica, nothing to wait for
        for replica in self._order(sticky):
            if not self.is_down(replica) and self._caught_up(replica):
                if replica != sticky:
                    _sticky.set({**_sticky.get(), self._id: replica})
                return replica
        return self.primary

    def _order(self, sticky: str | None) -> list[str]:
        """The replicas to try: this context's first, then the others in rotation."""
        order = [r for r in self.replicas if r != sticky]
        if order:
            k = next(self._next) % len(order)
            order = order[k:] + order[:k]
        if sticky in self.replicas:
            order.insert(0, sticky)
        return order

    def failover(self, plan: Any, alias: str, error: BaseException) -> str | None:
        """Mark ``alias`` down and name where the read should go instead; only for a
        server that cannot be reached (a query error is the query's, not the server's)."""
        if alias == self.primary or alias not in self.replicas or \
                not isinstance(error, ConnectionFailure):
            return None
        self.mark_down(alias)
        return self.db_for_read(plan)

    def mark_down(self, alias: str) -> None:
        """Keep reads off ``alias`` for ``backoff`` seconds; then it is tried again, and a
        failure marks it down once more (the read fails over without an error)."""
        with self._lock:
            self._down[alias] = time.monotonic() + self.backoff
        stuck = _sticky.get()
        if stuck.get(self._id) == alias:
            _sticky.set({k: v for k, v in stuck.items() if k != self._id})

    def is_down(self, alias: str) -> bool:
        until = self._down.get(alias)
        if until is None:
            return False
        if time.monotonic() < until:
            return True
        with self._lock:
            if self._down.get(alias) == until:
                del self._down[alias]
        return False

    # --- read-your-writes: decided from positions execution observed ----------------------------

    def _wanted(self, replica: str) -> tuple[Any, Any] | None:
        """``(backend, position)``: what ``replica`` must have replayed for this context, as
        its backend parses it; None: no wait."""
        pending = _writes.get().get(self.primary)
        if pending is None or pending[0] is None:
            return None
        backend = get_backend(settings.database(replica)["ENGINE"])
        if backend.REPLAY_POSITION_SQL is None:
            return None
        return backend, _parsed(backend, pending[0])

    def _has(self, replica: str, wanted: tuple[Any, Any]) -> bool:
        """Whether ``replica``'s last observed position has reached ``wanted``."""
        have = self._replayed.get(replica)
        if have is None:
            return False
        return have is NOT_A_STANDBY or wanted[0].reached(have, wanted[1])

    def _caught_up(self, replica: str) -> bool:
        pending = _writes.get().get(self.primary)
        if pending is None:
            return True
        wanted = self._wanted(replica)
        if wanted is None:  # positions unknown: wait out the lag window
            return time.monotonic() - pending[1] >= self.lag_window
        return self._has(replica, wanted)

    def positions_wanted(self, plan: Any) -> list[tuple[Any, str, str]]:
        """The replicas (in the order reads would try them) whose replayed position must be
        known before ``db_for_read`` can send this context's reads there."""
        if self.primary in _blocks.aliases or self.primary in _task_blocks.get() \
                or self.primary not in _writes.get():
            return []
        position = _writes.get()[self.primary][0]
        out = []
        for replica in self._order(_sticky.get().get(self._id)):
            wanted = self._wanted(replica)
            if wanted is not None and not self.is_down(replica) and \
                    not self._has(replica, wanted):
                out.append((self, replica, position))
        return out

    def observed(self, replica: str, replayed: str | None) -> bool:
        """Execution read ``replica``'s replayed position (None: not a standby, so it has
        everything); True when it has caught up with this context's writes."""
        backend = get_backend(settings.database(replica)["ENGINE"])
        have = NOT_A_STANDBY if replayed is None else _parsed(backend, replayed)
        with self._lock:
            old = self._replayed.get(replica)
            # keep the newer of the two (observations of two threads may arrive out of order)
            if old is None or (old is not NOT_A_STANDBY and (
                    have is NOT_A_STANDBY or not backend.reached(old, have))):
                self._replayed[replica] = have
        return self._caught_up(replica)


@functools.lru_cache(maxsize=1024)
def _parsed(backend: Any, text: str) -> Any:
    """``backend.parse_position(text)``, memoised (a context re-checks one position often)."""
    return backend.parse_position(text)


NOT_A_STANDBY = object()  # a "replica" that is not replaying: it has every position
