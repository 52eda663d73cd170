"""``select_related``: which single-valued relations a plan joins to fill related instances.

A plan holds ``("select_related", name, ...)`` records of canonical relation paths
(``"writer"``, ``"writer__mentor"``, forward foreign keys and one-to-ones both ways:
``"bio"``, ``"writer__bio"``), ``("select_related",)`` for Django's "every
non-null foreign key" and ``("select_related", None)`` to clear. ``check`` validates
the names a user gives (Django's messages, with a did-you-mean); ``chains`` folds a
plan's records into the relation paths to join, parents first, which the builder
(columns and joins), the hints routers read (``related_models``) and materialising all
follow. Only metadata is read here: no classes are kept in records.
"""

from __future__ import annotations

from typing import Any

from .errors import FieldError, suggest
from .records import SEP, _same_database
from .relations import Relation, relations, reverse_accessor

OP = "select_related"
MAX_DEPTH = 5  # Django's Query.max_depth for select_related() without names


def _choices(meta: Any) -> list[str]:
    """What Django lists: forward relations, then reverse one-to-ones."""
    rels = relations(meta).values()
    return ([r.name for r in rels if r.kind == "forward"]
            + [r.name for r in rels if r.kind == "reverse" and r.one_to_one])


def _invalid(meta: Any, name: str, part: str, non_relational: bool) -> FieldError:
    choices = _choices(meta)
    listed = ", ".join(choices) or "(none)"
    if non_relational:
        text = f"Non-relational field given in select_related: '{part}'. Choices are: {listed}"
    else:
        text = f"Invalid field name(s) given in select_related: '{part}'. Choices are: {listed}"
    hint = suggest(part, choices) if choices else ""
    if hint.startswith("; did you mean"):
        text += hint
    if part != name:
        text += f" (in {name!r})"
    return FieldError(f"{meta.model.__name__}: {text}")


def follow(meta: Any, part: str, name: str) -> Relation:
    """The single-valued relation ``part`` of ``meta``'s model, or Django's ``FieldError``."""
    rel = relations(meta).get(part)
    if rel is None or rel.many:
        raise _invalid(meta, name, part, part in meta.by_name or part == "pk")
    return rel


def caches(rel: Relation) -> tuple[str, str | None]:
    """The cache attributes a joined relation fills: on the parent (``_cache_writer``,
    ``_cache_bio``: what ``ForwardRelation`` and the reverse one-to-one accessor read) and,
    as Django does for one-to-ones both ways, on the related instance pointing back
    (``bio._cache_writer``, ``writer._cache_bio``); None where there is no way back (a
    foreign key's reverse side is a manager, ``related_name='+'`` has no accessor)."""
    if rel.kind == "reverse":
        return "_cache_" + rel.accessor, "_cache_" + rel.field.name
    back = reverse_accessor(rel.field) if rel.one_to_one else None
    return "_cache_" + rel.name, None if back is None else "_cache_" + back


def check(meta: Any, names: tuple) -> tuple[str, ...]:
    """The canonical paths for ``select_related(*names)``; ``FieldError``/``RoutingError``
    at the building line for a name that is not a chain of single-valued relations, or a
    chain reaching a model pinned to another database."""
    out: dict[str, None] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise FieldError(f"{meta.model.__name__}: select_related() takes relation names, "
                             f"got {name!r:.80}")
        current, parts = meta, []
        for part in name.split(SEP):
            rel = follow(current, part, name)
            _same_database(meta, rel.target, f"{meta.model.__name__}.select_related({name!r})")
            parts.append(rel.name)
            current = rel.target
        out[SEP.join(parts)] = None
    return tuple(out)


def _every(meta: Any, prefix: str, depth: int, out: dict[str, Any]) -> None:
    """Every non-null forward foreign key, recursively, ``MAX_DEPTH`` deep (Django)."""
    if depth > MAX_DEPTH:
        return
    for rel in relations(meta).values():
        if rel.kind == "forward" and not rel.nullable:
            path = prefix + rel.name
            out[path] = rel
            _every(rel.target, path + SEP, depth + 1, out)


def requested(records: tuple) -> tuple[str, ...] | None:
    """What the select_related records ask for: names (as given), None for nothing, or
    ``()`` for every non-null foreign key. A later call adds names; ``None`` clears;
    names after a bare ``select_related()`` replace it (Django)."""
    state: tuple[str, ...] | None = None
    for record in records:
        if record[0] != OP:
            continue
        if record[1:] == (None,):
            state = None
        elif len(record) == 1:
            state = ()
        else:
            state = tuple(dict.fromkeys((state or ()) + record[1:]))
    return state


def chains(meta: Any, records: tuple) -> dict[str, Relation]:
    """The relation paths the records join, parents before children: ``{path: relation}``."""
    names = requested(records)
    if names is None:
        return {}
    out: dict[str, Relation] = {}
    if not names:
        _every(meta, "", 1, out)
        return out
    for name in names:
        current, path = meta, ""
        for part in name.split(SEP):
            rel = follow(current, part, name)
            path = path + SEP + part if path else part
            out.setdefault(path, rel)
            current = rel.target
    return out


def check_all(meta: Any) -> None:
    """``select_related()`` without names: its joins must stay on one database too."""
    for path, rel in chains(meta, ((OP,),)).items():
        _same_database(meta, rel.target, f"{meta.model.__name__}.select_related() ({path})")
