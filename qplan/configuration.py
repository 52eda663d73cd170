"""Changing qplan's configuration: ``configure``, ``add_database``, ``remove_database``, ``reset``.

These are the only functions that change settings, and each tells the layers that keep
state about an alias at once, explicitly (nothing registers a listener when imported):
this thread's connections to a changed alias close (other threads' reconnect on their
next use), its connection pool closes, idle shard workers stop, a backend drops what a removed alias held (a
SQLite ``:memory:`` database).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from . import aconnections, payloads, pools, routing, settings
from .backends import get as get_backend
from .shapecache import cache
from .connections import connections
from .sharding import shutdown
from .settings import _KEEP


def _changed(old: Mapping[str, Mapping[str, Any]], aliases: Iterable[str]) -> None:
    aliases = list(aliases)
    connections.forget(aliases)
    pools.close(aliases)  # idle connections close now, lent ones when they come back
    aconnections.forget(aliases)  # the async pools, on their loops
    shutdown(wait=False)  # shard workers: a SQLite alias's worker keeps its own connection
    for config in old.values():
        get_backend(config["ENGINE"]).forget(config)


def configure(
    databases: Mapping[str, str | Mapping[str, Any]] | None = None,
    *,
    routers: Iterable[Any] | None = None,
    signing_key: str | bytes | None = _KEEP,
    compile_cache_size: int | None = None,
) -> None:
    """Set the databases (replacing all aliases), the router chain, the payload signing key.

    Arguments left out keep their current value; ``signing_key=None`` clears the key.
    """
    if compile_cache_size is not None:
        cache.resize(compile_cache_size)
    if databases is not None:
        old = settings.replace_databases(databases)
        _changed(old, set(old) | set(databases))
    settings.set_options(routers=routers, signing_key=signing_key)


def add_database(alias: str, spec: str | Mapping[str, Any]) -> None:
    """Add or replace one alias at run time; connections to what it replaced close."""
    old = settings.put_database(alias, spec)
    _changed({alias: old} if old is not None else {}, [alias])


def remove_database(alias: str) -> None:
    """Remove an alias at run time, closing its connections."""
    _changed({alias: settings.drop_database(alias)}, [alias])


def reset() -> None:
    """Back to the state of a fresh import: no databases, routers or signing key; connections
    closed (every thread's, on their next use), shard workers stopped, the compile cache
    and this context's read-your-writes state cleared. For tests and re-configuration."""
    old = settings.replace_databases({})
    _changed(old, old)
    settings.set_options(routers=(), signing_key=None)
    cache.clear()
    payloads.loaded.clear()
    routing.forget_writes()
