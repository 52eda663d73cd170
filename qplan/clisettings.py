"""Settings for the ``qplan`` command line: a Python module or a ``qplan.toml``.

Looked up in this order: ``--settings`` (a module path such as ``mysite.qplan_settings``,
or a ``.py`` / ``.toml`` file), the ``QPLAN_SETTINGS`` environment variable (same
forms), then ``qplan.toml`` in the current folder. A Python module sets
``DATABASES``, ``ROUTERS``, ``MODELS`` and ``SIGNING_KEY``; a TOML file the same in
lower case::

    models = ["myapp.models"]                 # modules (or module.Model) to import
    routers = ["myapp.routing.ReplicaRouter"]  # objects or classes (called with no arguments)
    signing_key_env = "QPLAN_SIGNING_KEY"      # or signing_key = "..." (better kept out of files)

    [databases]
    default = "sqlite:///app.db"               # relative to the TOML file's folder
    replica = { ENGINE = "postgresql", NAME = "app", HOST = "10.0.0.2" }

Importing these modules is the user's explicit choice; payloads never name a module
that gets imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import configuration
from .backends import get as get_backend
from . import settings as qsettings
from .errors import ConfigurationError
from .models import Model, registered_models

ENV = "QPLAN_SETTINGS"
TOML_NAME = "qplan.toml"
NAMES = ("DATABASES", "ROUTERS", "MODELS", "SIGNING_KEY", "SIGNING_KEY_ENV")


@dataclass
class CLISettings:
    """What the command line runs with, and where it came from."""

    source: str = "no settings (pass --settings, set QPLAN_SETTINGS or add a qplan.toml)"
    databases: dict[str, Any] = field(default_factory=dict)
    routers: list[Any] = field(default_factory=list)
    models: list[type[Model]] = field(default_factory=list)
    signing_key: str | bytes | None = None

    def apply(self) -> None:
        """Configure qplan with these settings (replacing its databases and routers)."""
        configuration.configure(databases=self.databases, routers=self.routers,
                            signing_key=self.signing_key)


def load(spec: str | None = None, cwd: str | Path | None = None) -> CLISettings:
    """The settings named by ``spec``, else ``$QPLAN_SETTINGS``, else ``./qplan.toml``."""
    cwd = Path(cwd or os.getcwd())
    origin = "--settings"
    if not spec:
        spec, origin = os.environ.get(ENV) or None, ENV
    if not spec:
        default = cwd / TOML_NAME
        return from_toml(default) if default.is_file() else CLISettings()
    if spec.endswith(".toml"):
        return from_toml(_file(cwd, spec, origin))
    if spec.endswith(".py"):
        return from_module(_module_from_file(_file(cwd, spec, origin)), f"settings file {spec}")
    _on_path(cwd)
    try:
        module = importlib.import_module(spec)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import settings module {spec!r} ({origin}): {exc}") from exc
    return from_module(module, f"settings module {spec}")


def _file(cwd: Path, spec: str, origin: str) -> Path:
    path = (cwd / spec).resolve()
    if not path.is_file():
        raise ConfigurationError(f"settings file {spec!r} ({origin}) does not exist")
    return path


def _on_path(folder: Path) -> None:
    """Let settings name modules next to them, as ``python -m`` would (console scripts do not)."""
    entry = str(folder)
    if entry not in sys.path:
        sys.path.insert(0, entry)


def _module_from_file(path: Path) -> Any:
    _on_path(path.parent)
    name = f"qplan_settings_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
        raise ConfigurationError(f"cannot load settings file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def from_module(module: Any, source: str) -> CLISettings:
    values = {name: getattr(module, name) for name in NAMES if hasattr(module, name)}
    return _build(values, source, None)


def _toml() -> Any:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ConfigurationError("reading qplan.toml needs Python 3.11 or the tomli package") from None
    return tomllib


def from_toml(path: Path) -> CLISettings:
    toml = _toml()
    try:
        with open(path, "rb") as f:
            data = toml.load(f)
    except toml.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = key.upper()
        if name not in NAMES:
            raise ConfigurationError(
                f"{path}: unknown setting {key!r} (settings are: "
                f"{', '.join(n.lower() for n in NAMES)})")
        values[name] = value
    _on_path(path.parent)
    return _build(values, f"{path}", path.parent)


def _build(values: Mapping[str, Any], source: str, base: Path | None) -> CLISettings:
    databases = values.get("DATABASES") or {}
    if not isinstance(databases, Mapping):
        raise ConfigurationError(f"{source}: DATABASES must map aliases to URLs or dicts")
    databases = {alias: _relative(spec, base, alias) for alias, spec in databases.items()}
    key = values.get("SIGNING_KEY")
    env = values.get("SIGNING_KEY_ENV")
    if env:
        key = os.environ.get(str(env))
        if not key:
            raise ConfigurationError(f"{source}: SIGNING_KEY_ENV names {env!r}, which is not set")
    if key is not None and not isinstance(key, (str, bytes)):
        raise ConfigurationError(f"{source}: SIGNING_KEY must be str or bytes")
    return CLISettings(
        source=source,
        databases=dict(databases),
        routers=[_router(r, source) for r in _list(values.get("ROUTERS"), "ROUTERS", source)],
        models=_models(_list(values.get("MODELS"), "MODELS", source), source),
        signing_key=key,
    )


def _list(value: Any, name: str, source: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigurationError(f"{source}: {name} must be a list")
    return list(value)


def _relative(spec: Any, base: Path | None, alias: str) -> Any:
    """A relative SQLite path in a TOML file is relative to that file's folder."""
    if base is None:
        return spec
    config = dict(qsettings.normalise(alias, spec))
    config["NAME"] = get_backend(config["ENGINE"]).resolve_name(config["NAME"], str(base))
    return config


def _import_object(path: str, what: str, source: str) -> Any:
    """``pkg.module.Name`` or ``pkg.module:Name``: the object; ``pkg.module``: the module."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        try:
            return importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name is None or not path.startswith(exc.name) or "." not in path:
                raise ConfigurationError(f"{source}: cannot import {what} {path!r}: {exc}") from exc
            module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"{source}: cannot import {what} {path!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"{source}: module {module_name!r} has no {attr!r}") from None


def _router(value: Any, source: str) -> Any:
    if isinstance(value, str):
        value = _import_object(value, "router", source)
        if isinstance(value, type):
            value = value()
    return value


def _models(values: list[Any], source: str) -> list[type[Model]]:
    out: list[type[Model]] = []
    for value in values:
        if isinstance(value, str):
            value = _import_object(value, "models", source)
        if isinstance(value, type) and issubclass(value, Model):
            found = [value]
        elif isinstance(value, types.ModuleType):
            found = [m for m in registered_models() if m.__module__ == value.__name__]
        else:
            raise ConfigurationError(f"{source}: MODELS holds {value!r}, not a model or module")
        out.extend(m for m in found if m not in out and not m._meta.abstract)
    return out
