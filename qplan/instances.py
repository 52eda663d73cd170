"""Rows of a select_related plan as instances with their related instances in place.

The builder selects the plan's own columns first, then each related model's columns
(``Builder.related_pairs``), and precomputes how a row splits: per related path, the
entry it hangs from, the cache attribute (``_cache_writer``, what ``ForwardRelation``
reads, so ``novel.writer`` runs no query; ``_cache_bio`` for a reverse one-to-one), its
model, column range, attnames, the index of its primary key and, for a one-to-one, the
cache attribute pointing back at the parent (``bio.writer`` is the writer, as in Django). A NULL key means no related row (a LEFT JOIN found none):
the cache holds None and the chain below it is None too. No metadata is looked up per row.
"""

from __future__ import annotations

from typing import Any, Iterable


def nested_models(rows: Iterable[tuple], columns: tuple, nested: tuple, model: Any,
                  alias: str) -> list:
    """Instances of ``model`` (``_db`` = ``alias``) from decoded ``rows``, each with its
    select_related instances cached (and a one-to-one's way back, ``back``); ``nested``
    is ``Template.nested``."""
    start, entries = nested
    cols = columns[:start]
    new = model.__new__
    out: list = []
    append = out.append
    if len(entries) == 1:  # one relation (the common case): no list of parents per row
        [(_, cache, rmodel, first, stop, names, pk, back)] = entries
        rnew = rmodel.__new__
        for row in rows:
            obj = new(model)
            d = obj.__dict__
            d.update(zip(cols, row))
            d["_db"] = alias
            if row[pk] is None:
                d[cache] = None
            else:
                rel = d[cache] = rnew(rmodel)
                rd = rel.__dict__
                rd.update(zip(names, row[first:stop]))
                rd["_db"] = alias
                if back is not None:
                    rd[back] = obj
            append(obj)
        return out
    for row in rows:
        obj = new(model)
        d = obj.__dict__
        d.update(zip(cols, row))
        d["_db"] = alias
        made = []
        for parent, cache, rmodel, first, stop, names, pk, back in entries:
            holder = obj if parent < 0 else made[parent]
            rel = None
            if holder is not None:
                if row[pk] is not None:
                    rel = rmodel.__new__(rmodel)
                    rd = rel.__dict__
                    rd.update(zip(names, row[first:stop]))
                    rd["_db"] = alias
                    if back is not None:
                        rd[back] = holder
                holder.__dict__[cache] = rel
            made.append(rel)
        append(obj)
    return out
