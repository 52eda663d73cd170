"""Rows of a select_related plan as instances with their related instances in place.

The builder selects the plan's own columns first, then each related model's columns
(``Builder.related_pairs``), and precomputes how a row splits: per related path, the
entry it hangs from, the cache attribute (``_cache_writer``, what ``ForwardRelation``
reads, so ``novel.writer`` runs no query), its model, column range, attnames and the
index of its primary key. A NULL key means no related row (a LEFT JOIN found none):
the cache holds None and the chain below it is None too. No metadata is looked up per row.
"""

from __future__ import annotations

from typing import Any, Iterable


def nested_models(rows: Iterable[tuple], columns: tuple, nested: tuple, model: Any,
                  alias: str) -> list:
    """Instances of ``model`` (``_db`` = ``alias``) from decoded ``rows``, each with its
    select_related instances cached; ``nested`` is ``Template.nested``."""
    start, entries = nested
    cols = columns[:start]
    new = model.__new__
    out: list = []
    append = out.append
    if len(entries) == 1:  # one relation (the common case): no list of parents per row
        [(_, cache, rmodel, first, stop, names, pk)] = entries
        for row in rows:
            obj = new(model)
            d = obj.__dict__
            d.update(zip(cols, row))
            d["_db"] = alias
            if row[pk] is None:
                d[cache] = None
            else:
                rel = d[cache] = rmodel.__new__(rmodel)
                rd = rel.__dict__
                rd.update(zip(names, row[first:stop]))
                rd["_db"] = alias
            append(obj)
        return out
    for row in rows:
        obj = new(model)
        d = obj.__dict__
        d.update(zip(cols, row))
        d["_db"] = alias
        made = []
        for parent, cache, rmodel, first, stop, names, pk in entries:
            holder = obj if parent < 0 else made[parent]
            rel = None
            if holder is not None:
                if row[pk] is not None:
                    rel = rmodel.__new__(rmodel)
                    rd = rel.__dict__
                    rd.update(zip(names, row[first:stop]))
                    rd["_db"] = alias
                holder.__dict__[cache] = rel
            made.append(rel)
        append(obj)
    return out
