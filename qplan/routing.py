"""Choosing the alias a plan runs on: ``using()``, then ``Meta.using``, then the router chain.

Routers are duck-typed, as in Django: any object with ``db_for_read(plan, **hints)``
and/or ``db_for_write(plan, **hints)``; a missing method or a ``None`` answer lets
the next router decide, the first alias wins, and ``default`` is the last resort.
"""

from __future__ import annotations

from typing import Any

from . import settings

METHODS = {"read": "db_for_read", "write": "db_for_write"}


def ask(router: Any, kind: str, plan: Any, hints: dict[str, Any]) -> str | None:
    """One router's answer for a read or a write; None when it has no opinion."""
    if isinstance(router, str):
        return router
    method = getattr(router, METHODS[kind], None)
    return method(plan, **hints) if method is not None else None


def route(plan: Any, kind: str | None = None, **hints: Any) -> str:
    """The alias ``plan`` runs on: resolved once per evaluation."""
    if plan.alias is not None:
        return plan.alias
    kind = kind or plan.kind
    meta_using = plan.model._meta.using
    if meta_using is not None:
        alias = ask(meta_using, kind, plan, hints)
        if alias is not None:
            return alias
    for router in settings.option("routers"):
        alias = ask(router, kind, plan, hints)
        if alias is not None:
            return alias
    return settings.DEFAULT_ALIAS
