"""Plan methods of Django's that are records, not expressions: ``alias()``, ``none()``,
``only()``/``defer()`` and ``select_for_update()``; building and reading their records.

Records (plain values only):

    ("alias", ((name, expression), ...))   annotate() without selecting the names
    ("none",)                               no rows, answered without a query
    ("only", (name, ...))                   load only these fields (+ the primary key)
    ("defer", (name, ...)) | ("defer", None)   load all but these; None: load all again
    ("select_for_update", nowait, skip_locked, of, no_key)   of: ("self" | relation path, ...)

Names in ``only``/``defer`` are canonical: a field's name (``pk`` and attnames resolved),
or ``relation__field`` across forward foreign keys (the relation must be in the plan's
``select_related()``, checked when compiled). ``loading`` folds the records as Django's
``Query.add_deferred_loading``/``add_immediate_loading`` do; ``loaded_fields`` gives the
fields a model at a path loads. The SQL side is ``qplan.methodsql``.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, NotSupportedError, PlanError
from .records import SEP
from .relations import get_relation

RECORDS = ("alias", "none", "only", "defer", "select_for_update")
QUERY = object()  # empty_result(): this one needs its query (an aggregate's empty values)


class Methods:
    """These building methods of ``Plan`` (a mixin: ``Plan`` holds the state)."""

    __slots__ = ()

    def alias(self, *args: Any, **kwargs: Any) -> Any:
        """Django's ``alias()``: named expressions for ``filter()``/``order_by()`` that the
        rows do not carry. Record: ``("alias", ((name, expression), ...))``."""
        return self._add(("alias", self.annotate(*args, **kwargs)._records[-1][1]))

    def none(self) -> Any:
        """A plan of no rows, answered without a query (``qplan.methods``); chainable.
        Record: ``("none",)`` (compiled as ``WHERE 1 = 0``)."""
        return self if self._has("none") else self._add(("none",))

    def only(self, *fields: str) -> Any:
        """Load only ``fields`` (and the primary key); the rest load on access, one query
        per instance (Django). Record: ``("only", names)``."""
        return self._add(only_record(self, fields))

    def defer(self, *fields: str | None) -> Any:
        """Load all but ``fields``; ``defer(None)`` loads all again. Record:
        ``("defer", names)`` or ``("defer", None)``."""
        if not fields:
            return self
        return self._add(defer_record(self, fields))

    def select_for_update(self, nowait: bool = False, skip_locked: bool = False,
                          of: tuple = (), no_key: bool = False) -> Any:
        """Lock the rows read until the enclosing ``atomic()`` block ends (PostgreSQL,
        MariaDB). Record: ``("select_for_update", nowait, skip_locked, of, no_key)``."""
        return self._add(lock_record(self, nowait, skip_locked, of, no_key))


# --- alias() -----------------------------------------------------------------------------------

def aliases(records: tuple) -> set[str]:
    """Names made by ``alias()`` and not selected by a later ``annotate()``."""
    out: set[str] = set()
    for record in records:
        if record[0] == "alias":
            out.update(name for name, _ in record[1])
        elif record[0] == "annotate":
            out.difference_update(name for name, _ in record[1])
    return out


def check_selected(records: tuple, names: tuple, who: str) -> set[str]:
    """The ``alias()`` names, after Django's refusal to select one in ``values()``."""
    hidden = aliases(records)
    for name in names:
        if name in hidden:
            raise FieldError(f"{who}: Cannot select the {name!r} alias. Use annotate() to "
                             f"promote it.")
    return hidden


# --- none() ------------------------------------------------------------------------------------

def empty_result(plan: Any) -> Any:
    """What a ``none()`` plan evaluates to, without a query: no rows, a count of 0, False,
    0 rows written. An aggregate returns ``QUERY``: its query (``WHERE 1 = 0``) gives each
    aggregate's own empty value (``Count`` 0, ``Sum`` None, a ``default``) exactly."""
    last = plan.records[-1][0] if plan.records else ""
    if last == "count" or last == "update" or last == "delete":
        return 0
    if last == "exists":
        return False
    if last == "aggregate" or last == "insert":
        return QUERY
    return []


# --- only() / defer() --------------------------------------------------------------------------

def _names(plan: Any, fields: tuple, what: str) -> tuple[str, ...]:
    if plan._has("values") or plan._has("values_list"):
        raise PlanError(f"Cannot call {what}() after .values() or .values_list()")
    meta = plan._meta
    who = meta.model.__name__
    out = []
    for name in fields:
        if name is None:
            raise PlanError(f"Cannot pass None as an argument to {what}().")
        if not isinstance(name, str) or not name:
            raise FieldError(f"{who}: {what}() takes field names, got {name!r:.80}")
        parts = name.split(SEP)
        current = meta
        for part in parts[:-1]:
            rel = get_relation(current, part)
            if rel.kind != "forward":
                raise FieldError(f"{who}: {what}({name!r}): only fields across foreign keys "
                                 f"and one-to-one fields can be deferred, not across {part!r}")
            current = rel.target
        field = current.get_field(parts[-1])
        if field.name not in current.by_name:  # a ManyToManyField or a reverse relation
            raise FieldError(f"{who}: {what}({name!r}) does not name a column")
        out.append(SEP.join([*parts[:-1], field.name]))
    return tuple(out)


def only_record(plan: Any, fields: tuple) -> tuple:
    return ("only", _names(plan, fields, "only"))


def defer_record(plan: Any, fields: tuple) -> tuple:
    if fields == (None,):
        if plan._has("values") or plan._has("values_list"):
            raise PlanError("Cannot call defer() after .values() or .values_list()")
        return ("defer", None)
    return ("defer", _names(plan, fields, "defer"))


def loading(records: tuple) -> tuple[frozenset, bool] | None:
    """``(names, defer)`` as Django's ``Query.deferred_loading`` after the plan's
    ``only``/``defer`` records; None when every field loads."""
    names: frozenset = frozenset()
    defer = True
    for record in records:
        op = record[0]
        if op == "defer" and record[1] is None:
            names, defer = frozenset(), True
        elif op == "defer":
            given = frozenset(record[1])
            if defer:
                names = names | given
            elif names - given:
                names = names - given
            else:
                names, defer = given - names, True
        elif op == "only":
            given = frozenset(record[1])
            names, defer = (given - names if defer else given), False
    if defer and not names:
        return None
    return names, defer


def loaded_fields(meta: Any, state: tuple[frozenset, bool] | None, path: str = "") -> tuple:
    """The fields of ``meta``'s model loaded at relation ``path`` ("" for the plan's model):
    the primary key always; a foreign key whenever a field across it is named (``only``)."""
    if state is None:
        return meta.fields
    names, defer = state
    prefix = path + SEP if path else ""
    here = {n[len(prefix):] for n in names if n.startswith(prefix) and SEP not in n[len(prefix):]}
    across = {n[len(prefix):].split(SEP, 1)[0] for n in names
              if n.startswith(prefix) and SEP in n[len(prefix):]}
    if defer:
        return tuple(f for f in meta.fields if f.primary_key or f.name not in here)
    if path and not here and not across:
        return meta.fields  # only() names nothing of this relation: Django loads it whole
    return tuple(f for f in meta.fields
                 if f.primary_key or f.name in here or f.name in across)


def related_names(state: tuple[frozenset, bool] | None) -> set[str]:
    """The relation paths ``only``/``defer`` names reach into (``writer`` for ``writer__name``)."""
    if state is None:
        return set()
    out = set()
    for name in state[0]:
        parts = name.split(SEP)
        for i in range(1, len(parts)):
            out.add(SEP.join(parts[:i]))
    return out


# --- select_for_update() -----------------------------------------------------------------------

def lock_record(plan: Any, nowait: Any, skip_locked: Any, of: Any, no_key: Any) -> tuple:
    """The record of ``select_for_update()``; its ``of`` names are ``"self"`` or forward
    relation paths (which must be in ``select_related()``, checked when compiled)."""
    for flag, what in ((nowait, "nowait"), (skip_locked, "skip_locked"), (no_key, "no_key")):
        if not isinstance(flag, bool):
            raise PlanError(f"select_for_update({what}=...) takes True or False, got {flag!r:.40}")
    if nowait and skip_locked:
        raise PlanError("The nowait option cannot be used with skip_locked.")
    if isinstance(of, str) or not isinstance(of, (tuple, list)):
        raise PlanError(f"select_for_update(of=...) takes a tuple of names, got {of!r:.80}")
    meta = plan._meta
    names = []
    for name in of:
        if not isinstance(name, str) or not name:
            raise FieldError(f"select_for_update(of=...) takes names, got {name!r:.80}")
        if name != "self":
            current = meta
            for part in name.split(SEP):
                rel = get_relation(current, part)
                if rel.kind != "forward" and not rel.one_to_one:
                    raise FieldError(
                        f"Invalid field name(s) given in select_for_update(of=(...)): {name!r}. "
                        f"Only relational fields followed in the query are allowed.")
                current = rel.target
        names.append(name)
    return ("select_for_update", nowait, skip_locked, tuple(names), no_key)


# --- what sharded plans cannot do yet ----------------------------------------------------------

def check_sharded(plan: Any) -> None:
    """``NotSupportedError`` naming why a sharded plan cannot hold one of these records:
    each shard's rows merge by what they select, which these change."""
    for record in plan.records:
        op = record[0]
        if op == "select_for_update":
            raise NotSupportedError("select_for_update() across shards: each shard's lock needs "
                                    "its own atomic() block; filter by the shard key")
        if op in ("alias", "only", "defer"):
            raise NotSupportedError(f"{op}() on a plan that spans shards is not supported: the "
                                    f"merge of the shards' rows reads every selected column")
