"""One module per database; ``get(name)`` returns a vendor's backend, importing it lazily."""

from __future__ import annotations

import importlib
from typing import Any

from qplan.errors import ConfigurationError, suggest

# Accepted dialect names -> backend module.
MODULES = {
    "sqlite": "sqlite",
    "sqlite3": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}

_loaded: dict[str, Any] = {}


def get(name: str) -> Any:
    """The backend for ``name`` (``sqlite``, ``postgresql`` or ``mysql``)."""
    backend = _loaded.get(name)
    if backend is None:
        module = MODULES.get(name)
        if module is None:
            raise ConfigurationError(f"unknown dialect {name!r}" + suggest(name, MODULES))
        backend = _loaded[name] = importlib.import_module(f"{__name__}.{module}").backend
    return backend
