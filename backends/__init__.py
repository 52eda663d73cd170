"""The open registry of database backends: ``register``, ``get``, ``names``.

A backend is one module holding one ``Backend`` subclass (see ``base``); every fact
about its database lives there. The built-in ones are registered here; others
register with ``qplan.backends.register(name, BackendClass)`` or through the entry
point group ``qplan.backends`` (``name = "package.module:BackendClass"``), loaded the
first time a name is not found. DuckDB (``duckdb``, whose driver is the optional extra
``qplan[duckdb]``) is registered that way, by qplan's own pyproject.toml. A backend's ``SPELLINGS`` (``postgres``, ``mariadb``...)
are accepted wherever its name is: ``ENGINE``, URL schemes, ``compile(dialect=...)``.
"""

from __future__ import annotations

import importlib
import threading
from importlib.metadata import entry_points
from typing import Any

from qplan.errors import ConfigurationError, suggest

ENTRY_POINT_GROUP = "qplan.backends"

# name -> "module:Class" of the built-in backends (imported on first use: their drivers are
# imported only when they connect).
BUILTIN = {
    "sqlite": "qplan.backends.sqlite:SQLiteBackend",
    "postgresql": "qplan.backends.postgresql:PostgreSQLBackend",
    "mysql": "qplan.backends.mysql:MySQLBackend",
    "galera": "qplan.backends.galera:GaleraBackend",
}

_lock = threading.RLock()
_backends: dict[str, Any] = {}  # canonical name -> backend instance
_spellings: dict[str, str] = {}  # every accepted spelling -> canonical name
_entry_points_loaded = False


def register(name: str, backend: Any) -> Any:
    """Register a backend class (or instance) under ``name`` and its ``SPELLINGS``.

    Re-registering a name replaces it (a test double, a newer implementation).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigurationError(f"a backend name is an identifier, got {name!r}")
    instance = backend() if isinstance(backend, type) else backend
    if not hasattr(instance, "connect") or not hasattr(instance, "dialect"):
        raise ConfigurationError(f"backend {name!r}: {backend!r} is not a qplan Backend")
    instance.name = name
    with _lock:
        _backends[name] = instance
        for spelling in (name, *getattr(instance, "SPELLINGS", ())):
            _spellings[spelling.lower()] = name
    return instance


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _builtins() -> None:
    for name, path in BUILTIN.items():
        if name not in _backends:
            register(name, _load(path))


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in _backends:
                register(ep.name, ep.load())


def canonical(name: Any, what: str = "dialect") -> str:
    """The registered name for a spelling (``postgres`` -> ``postgresql``); else
    ``ConfigurationError`` naming the registered ones."""
    key = str(name or "").lower()
    found = _spellings.get(key)
    if found is None:
        with _lock:
            _builtins()
            found = _spellings.get(key)
            if found is None:
                _load_entry_points()
                found = _spellings.get(key)
    if found is None:
        raise ConfigurationError(f"unknown {what} {name!r}" + suggest(key, _spellings))
    return found


def get(name: str) -> Any:
    """The backend registered as ``name`` (or one of its spellings)."""
    backend = _backends.get(name)
    if backend is None:
        backend = _backends[canonical(name)]
    return backend


def names() -> tuple[str, ...]:
    """Every registered backend's name, the built-in ones first."""
    with _lock:
        _builtins()
        _load_entry_points()
        return tuple(_backends)
