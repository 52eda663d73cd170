"""The engine that evaluates plans, installed explicitly by ``qplan/__init__``.

Plans and models are values: they hold no connection and import nothing of the layers
that run them. Evaluating one (``list(plan)``, ``count()``, ``save()``) asks the engine
installed here (``qplan.execution.Engine``), so the plan layer never imports execution.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

_engine: Any = None


def install(engine: Any) -> None:
    """Make ``engine`` the one that compiles and runs plans (``qplan`` does this on import)."""
    global _engine
    _engine = engine


_aio: Any = None


def install_async(module: Any) -> None:
    """Make ``module`` (``qplan.aio``) the async edge the ``a*`` methods await."""
    global _aio
    _aio = module


def aio() -> Any:
    """The installed async edge."""
    if _aio is None:
        raise ConfigurationError("no async edge installed to await plans: import qplan")
    return _aio


def engine() -> Any:
    """The installed engine."""
    if _engine is None:
        raise ConfigurationError("no engine installed to run plans: import qplan")
    return _engine
