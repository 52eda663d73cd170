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


def engine() -> Any:
    """The installed engine."""
    if _engine is None:
        raise ConfigurationError("no engine installed to run plans: import qplan")
    return _engine
