"""The registry of models by key: how a plan, which holds no classes, finds its model.

A plan names its model by ``module.QualName`` (or ``Meta.key``); a process that
imported the model's module finds it again here. Fields resolve ``ForeignKey("Name")``
through it too, so it sits below both.
"""

from __future__ import annotations

import threading
from typing import Any

from .errors import ConfigurationError, suggest

_registry: dict[str, Any] = {}
_by_name: dict[str, list[str]] = {}
_lock = threading.Lock()
_generation = [0]  # bumped by every registration: caches of reverse relations check it


def register(key: str, name: str, model: Any) -> None:
    """Make ``model`` findable by ``key`` and, while unambiguous, by its class ``name``."""
    with _lock:
        _registry[key] = model
        names = _by_name.setdefault(name, [])
        if key not in names:
            names.append(key)
        _generation[0] += 1


def generation() -> int:
    """How many registrations have happened: a cache built at another generation is stale."""
    return _generation[0]


def find_model(key: str) -> Any:
    """The model registered under ``key`` (``module.QualName``, or a unique class name), or
    None: a cheap probe for callers waiting for a model (no did-you-mean, which costs a scan
    of the whole registry)."""
    model = _registry.get(key)
    if model is not None:
        return model
    keys = _by_name.get(key, ())
    return _registry[keys[0]] if len(keys) == 1 else None


def get_model(key: str) -> Any:
    """The model registered under ``key`` (``module.QualName``, or a unique class name)."""
    model = find_model(key)
    if model is not None:
        return model
    keys = _by_name.get(key, ())
    if keys:
        raise ConfigurationError(f"model name {key!r} is ambiguous: {', '.join(sorted(keys))}")
    raise ConfigurationError(
        f"unknown model {key!r}: import the module that defines it first" + suggest(key, _registry)
    )


def registered_models() -> list[Any]:
    return list(_registry.values())
