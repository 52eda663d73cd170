"""Where a key value lives: the ``Sharded`` router, ``Shard``, ``ShardSet`` and ``stable_hash``.

Routing asks ``Sharded`` for a plan's shards; a plan that touches several gets a
``ShardSet``, which the engine hands to ``qplan.sharding.execute``.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import hashlib
import math
from bisect import bisect_right
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

from .. import routing
from ..errors import ConfigurationError, RoutingError
from ..records import VALUE


# Whole decimals and floats under 10**4300 in magnitude hash as the integer they equal
# (as they always did; Python's own int/str conversion limit is 4300 digits, and such a
# conversion takes well under a millisecond); larger ones hash through their text, so
# Decimal("1e1000000") is never turned into a million-digit integer.
_WHOLE_DIGITS = 4300


def _number_text(value: Any) -> int | bytes:
    """A float or Decimal as the int it equals (when whole and small) or canonical text."""
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():  # under 2**1024
            return int(value)
        return repr(value).encode()
    if value.is_finite() and value.adjusted() < _WHOLE_DIGITS and value == value.to_integral_value():
        return int(value)
    if value.is_nan():  # NaN and sNaN: normalize() would raise on a signaling NaN
        return str(value).encode()
    return str(value.normalize(_WIDE)).encode()


# The default context (28 digits) with every exponent allowed: normalize() neither
# overflows on Decimal("1e1000000") nor changes the text of any other value.
_WIDE = decimal.Context(prec=28, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def stable_hash(value: Any) -> int:
    """A hash of a key value that is the same in every process (unlike ``hash()`` of a str).

    Integers hash to themselves, so ``by='hash'`` puts integer key ``k`` on shard
    ``k % n``; other values hash through BLAKE2b of a canonical text. Cheap for any
    value a plan can hold: no number is converted before its magnitude is known.
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, decimal.Decimal)):
        found = _number_text(value)
        if isinstance(found, int):
            return found
        data = found
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    elif isinstance(value, (_dt.date, _dt.time)):
        data = value.isoformat().encode()
    else:
        data = repr(value).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Shard(NamedTuple):
    """One shard: its name and its target, an alias or a ``PrimaryReplica``-like group."""

    name: str
    target: Any

    @property
    def group(self) -> Any:
        return None if isinstance(self.target, str) else self.target

    @property
    def aliases(self) -> tuple[str, ...]:
        if isinstance(self.target, str):
            return (self.target,)
        aliases = getattr(self.target, "aliases", None)
        return tuple(aliases) if aliases else (self.write_alias(None),)

    def write_alias(self, plan: Any) -> str:
        if isinstance(self.target, str):
            return self.target
        return self.target.db_for_write(plan)

    def read_alias(self, plan: Any) -> str:
        if isinstance(self.target, str):
            return self.target
        return self.target.db_for_read(plan)

    def describe(self) -> str:
        if isinstance(self.target, str):
            return f"alias {self.target!r}"
        primary = getattr(self.target, "primary", None)
        replicas = list(getattr(self.target, "replicas", ()))
        if primary is not None:
            return (f"{type(self.target).__name__}: writes to {primary!r}, reads from a "
                    f"caught-up replica of {replicas!r} or the primary")
        return repr(self.target)


class ShardSet(tuple):
    """The shards a plan touches, when there are several: routing's answer for a scatter.

    A tuple of ``Shard`` with the ``router`` that chose them; the engine hands a plan
    routed to a ``ShardSet`` to ``qplan.sharding.execute``.
    """

    router: "Sharded"

    def __new__(cls, shards: Iterable[Shard], router: "Sharded") -> "ShardSet":
        self = super().__new__(cls, shards)
        self.router = router
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self)

    def write_aliases(self) -> tuple[str, ...]:
        return tuple(s.write_alias(None) for s in self)

    def __repr__(self) -> str:
        return "ShardSet(" + ", ".join(repr(s.name) for s in self) + ")"

    __str__ = __repr__


BY = ("hash", "range")


class Sharded:
    """A router spreading the rows of every model with a ``key`` field over ``shards``.

    - ``shards``: a list of targets, or a mapping ``name -> target``; a target is an
      alias or a ``PrimaryReplica`` group (its replicas and read-your-writes then work
      per shard). Unnamed shards are named after their alias (a group: its primary).
    - ``by='hash'`` (default): shard ``stable_hash(value) % len(shards)``;
      ``by='range'`` with ``bounds=[b1, b2, ...]`` (one fewer than the shards):
      shard ``i`` holds ``bounds[i-1] <= value < bounds[i]``;
      ``by=callable``: ``callable(value)`` returns a shard index or name.
    - ``models``: the models sharded this way (default: every model with a field
      called ``key``); other models get no opinion from this router.

    A plan that pins the key runs on its shards only; one that does not runs on all
    of them (``qplan.sharding.execute``). Inserts go to the shard of each row's key;
    a row without one is a ``RoutingError``, and so is an ``update()`` that would
    change the key of existing rows.
    """

    def __init__(self, key: str, shards: Sequence[Any] | Mapping[str, Any], *,
                 by: str | Callable[[Any], Any] = "hash", bounds: Sequence[Any] | None = None,
                 models: Iterable[Any] | None = None) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"Sharded: key is a field name, got {key!r}")
        self.key = key
        items = list(shards.items()) if isinstance(shards, Mapping) else [
            (None, target) for target in shards]
        built = []
        for name, target in items:
            if not isinstance(target, str) and not (hasattr(target, "db_for_read")
                                                    and hasattr(target, "db_for_write")):
                raise ConfigurationError(
                    f"Sharded: a shard is an alias or a PrimaryReplica group, got {target!r}")
            if name is None:
                name = target if isinstance(target, str) else target.db_for_write(None)
            built.append(Shard(str(name), target))
        if not built:
            raise ConfigurationError("Sharded: needs at least one shard")
        names = [s.name for s in built]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Sharded: shard names must differ, got {names!r}")
        self.shards: tuple[Shard, ...] = tuple(built)
        self._by_name = {s.name: s for s in built}
        if callable(by):
            self.by: Any = by
        elif by not in BY:
            raise ConfigurationError(f"Sharded: by is 'hash', 'range' or a callable, got {by!r}")
        else:
            self.by = by
        if by == "range":
            if bounds is None or len(bounds) != len(built) - 1:
                raise ConfigurationError(
                    f"Sharded(by='range'): give {len(built) - 1} bounds for {len(built)} shards, "
                    f"got {bounds!r}")
            if list(bounds) != sorted(bounds):
                raise ConfigurationError(f"Sharded(by='range'): bounds must ascend, got {bounds!r}")
        elif bounds is not None:
            raise ConfigurationError("Sharded: bounds are only for by='range'")
        self.bounds = tuple(bounds) if bounds is not None else ()
        self._models = None if models is None else frozenset(
            m if isinstance(m, str) else m._meta.key for m in models)
        self._handles: dict[Any, Any] = {}

    def __repr__(self) -> str:
        by = self.by if isinstance(self.by, str) else getattr(self.by, "__name__", "callable")
        return f"Sharded(key={self.key!r}, by={by!r}, shards={[s.name for s in self.shards]!r})"

    # --- which models, which shard ------------------------------------------------------------------

    def key_field(self, model: Any) -> Any:
        """The key field of a model this router shards, else None."""
        meta = model._meta
        found = self._handles.get(meta.key, False)
        if found is False:
            found = meta.by_name.get(self.key) or meta.by_attname.get(self.key)
            if self._models is not None and meta.key not in self._models:
                found = None
            self._handles[meta.key] = found
        return found

    def handles(self, model: Any) -> bool:
        return self.key_field(model) is not None

    def shard_for(self, value: Any) -> Shard:
        """The shard holding rows whose key is ``value``."""
        if value is None:
            raise RoutingError(f"shard key {self.key!r} has no value: the row cannot be placed")
        by = self.by
        if by == "hash":
            return self.shards[stable_hash(value) % len(self.shards)]
        if by == "range":
            try:
                return self.shards[bisect_right(self.bounds, value)]
            except TypeError as exc:
                raise RoutingError(f"shard key {self.key!r}: {value!r} cannot be compared with "
                                   f"the bounds {list(self.bounds)!r}") from exc
        answer = by(value)
        if isinstance(answer, str) and answer in self._by_name:
            return self._by_name[answer]
        if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(self.shards):
            return self.shards[answer]
        raise RoutingError(f"{self!r}: by({value!r}) returned {answer!r}, not a shard index or name")

    def shards_for(self, plan: Any) -> tuple[Shard, ...]:
        """The shards that can hold rows ``plan`` reads or writes, in shard order."""
        field = self.key_field(plan.model)
        values = plan.constraints(field.name)
        if values is None:
            return self.shards
        if not values:  # pinned to nothing (``key__in=[]``): any one shard answers "no rows"
            return self.shards[:1]
        chosen = {self.shard_for(v).name for v in values}
        return tuple(s for s in self.shards if s.name in chosen)

    # --- the router protocol -------------------------------------------------------------------------

    def db_for_read(self, plan: Any, **hints: Any) -> Any:
        if plan is None or not self.handles(plan.model):
            return None
        shards = self.shards_for(plan)
        if len(shards) == 1:
            return shards[0].read_alias(plan)
        return ShardSet(shards, self)

    def db_for_write(self, plan: Any, **hints: Any) -> Any:
        if plan is None or not self.handles(plan.model):
            return None
        instance = hints.get("instance")
        if instance is not None and isinstance(instance, plan.model):  # save() / delete()
            return self._instance_alias(plan, instance)
        self._check_write(plan)
        shards = self.shards_for(plan)
        last = plan.records[-1] if plan.records else ()
        if last and last[0] == "insert" and self.key_field(plan.model).name not in last[1]:
            return ShardSet(self.shards, self)  # rows not known yet (bulk_create): placed per row
        if len(shards) == 1:
            return shards[0].write_alias(plan)
        return ShardSet(shards, self)

    def placement_keys(self, model: Any) -> tuple[str, ...]:
        """The shard key, for the models this router shards (``routing.placement_keys``)."""
        field = self.key_field(model)
        return () if field is None else (field.name,)

    def _instance_alias(self, plan: Any, obj: Any) -> str:
        """Where an instance is written: the shard of its key, which must be the shard it was
        read from (a key that moved the row would leave a copy behind)."""
        model = plan.model
        field = self.key_field(model)
        value = obj.__dict__.get(field.attname)
        if value is None:
            raise RoutingError(f"{model.__name__}: no value for the shard key {field.name!r}; "
                               f"the row cannot be placed on a shard")
        shard = self.shard_for(value)
        if not obj._adding and obj._db is not None and obj._db not in shard.aliases:
            raise RoutingError(
                f"{model.__name__} {obj.pk!r}: cannot change the shard key {field.name!r} of an "
                f"existing row to {value!r} (the key decides which shard holds the row); delete "
                f"it and create it again")
        return shard.write_alias(plan)

    def positions_wanted(self, plan: Any) -> list[tuple[Any, str, int]]:
        """What the replica groups of ``plan``'s shards need to know (``routing.positions_wanted``)."""
        if plan is None or not self.handles(plan.model):
            return []
        out = []
        for shard in self.shards_for(plan):
            wanted = getattr(shard.group, "positions_wanted", None)
            if wanted is not None:
                out.extend(wanted(plan))
        return out

    @property
    def read_only_aliases(self) -> tuple[str, ...]:
        """Every shard group's replicas (``routing.check_writable``)."""
        return tuple(a for s in self.shards for a in getattr(s.group, "read_only_aliases", ()))

    def _check_write(self, plan: Any) -> None:
        last = plan.records[-1] if plan.records else ()
        if not last or last[0] != "update":
            return
        name = self.key_field(plan.model).name
        for field, node in last[1]:
            if field != name:
                continue
            pinned = plan.constraints(name)
            if node[0] == VALUE and pinned is not None and set(pinned) == {node[1]}:
                continue  # sets the key to the value it already has
            raise RoutingError(
                f"{plan.model.__name__}.update(): cannot change the shard key {name!r} of existing "
                f"rows (the key decides which shard holds a row); delete them and create them "
                f"again with the new key")

    def allow_relation(self, model_a: Any, model_b: Any) -> bool | None:
        """Joins only between models sharded by this router (their rows are co-located)."""
        a, b = self.handles(model_a), self.handles(model_b)
        if a or b:
            return a and b
        return None

    def allow_migrate(self, alias: str, model: Any) -> bool | None:
        if self.handles(model) and any(alias in s.aliases for s in self.shards):
            return True
        return None

    def failover(self, plan: Any, alias: str, error: BaseException) -> str | None:
        for shard in self.shards:
            if alias in shard.aliases and shard.group is not None:
                method = getattr(shard.group, "failover", None)
                return method(plan, alias, error) if method is not None else None
        return None


def sharded_router(plan: Any) -> "Sharded | None":
    """The ``Sharded`` router in ``plan``'s chain that shards its model, if any (asks no router)."""
    if plan.db is not None:
        return None
    for router in routing.chain(plan):
        if isinstance(router, Sharded) and router.handles(plan.model):
            return router
    return None
