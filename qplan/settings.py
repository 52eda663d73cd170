"""Database settings by alias: ``configure()``, adding and removing aliases at run time.

An alias maps to a dict in Django's shape or to a URL; both are normalised into one
plain dict per alias (``ENGINE`` is always a registered backend's name, see
``qplan.backends``).
This module only holds and checks settings; ``qplan.configuration`` changes them and
tells the layers that keep state about an alias (connections, shard workers).
"""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import Any, Mapping

from .backends import canonical as canonical_backend
from .backends import get as get_backend
from .errors import ConfigurationError, suggest

DEFAULT_ALIAS = "default"

KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS", "READ_ONLY")
TEXT_KEYS = ("NAME", "USER", "PASSWORD", "HOST")
# URL query values of a flag (``?read_only=1``).
FLAGS = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


def redact(url: str) -> str:
    """``url`` with its password (everything between ``user:`` and the last ``@``) masked."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"

_lock = threading.RLock()
_databases: dict[str, Mapping[str, Any]] = {}  # alias -> read-only settings
_options: dict[str, Any] = {"routers": (), "signing_key": None}
_KEEP: Any = object()  # "leave this setting as it is"


def _engine(value: Any, alias: str) -> str:
    """The registered backend name for an ENGINE (its last dotted part, so Django's
    ``django.db.backends.postgresql`` works too)."""
    try:
        return canonical_backend(str(value or "").rsplit(".", 1)[-1], "ENGINE")
    except ConfigurationError as exc:
        raise ConfigurationError(f"database {alias!r}: {exc}") from None


def parse_url(url: str, alias: str = "?") -> dict[str, Any]:
    """Turn ``scheme://...`` into a settings dict, by the rules of the scheme's backend."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise ConfigurationError(  # not shown: it might be a DSN holding a password
            f"database {alias!r}: expected a URL (scheme://...), got a str of {len(url)} "
            f"characters without '://'")
    engine = _engine(scheme.split("+", 1)[0], alias)
    try:
        spec = get_backend(engine).parse_url(url)
    except ValueError:
        raise ConfigurationError(
            f"database {alias!r}: bad host or port in {redact(url)!r} (a password holding "
            f"'/', '@', ':' or '#' must be percent-encoded)") from None
    spec["ENGINE"] = engine
    return _with_flags(spec, alias)


def _with_flags(spec: dict[str, Any], alias: str) -> dict[str, Any]:
    """Take qplan's own flags (``?read_only=1``) out of a URL's driver options."""
    flag = spec["OPTIONS"].pop("read_only", None)
    if flag is not None:
        if flag.lower() not in FLAGS:
            raise ConfigurationError(
                f"database {alias!r}: read_only={flag!r} in the URL is not 1/0/true/false")
        spec["READ_ONLY"] = FLAGS[flag.lower()]
    return spec


def normalise(alias: str, spec: str | Mapping[str, Any]) -> Mapping[str, Any]:
    """One alias's settings as a complete, read-only mapping with a canonical ``ENGINE``."""
    if not isinstance(alias, str) or not alias:
        raise ConfigurationError(f"a database alias is a non-empty str, got {alias!r}")
    if isinstance(spec, str):
        spec = parse_url(spec, alias)
    elif not isinstance(spec, Mapping):
        raise ConfigurationError(
            f"database {alias!r}: expected a URL or a dict, got {type(spec).__name__}"
        )
    unknown = set(spec) - set(KEYS)
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigurationError(f"database {alias!r}: unknown key {bad!r}" + suggest(bad, KEYS))
    out: dict[str, Any] = {"ENGINE": _engine(spec.get("ENGINE"), alias)}
    for key in TEXT_KEYS:
        value = spec.get(key) or ""
        if not isinstance(value, str):
            raise ConfigurationError(
                f"database {alias!r}: {key} must be a str, got {type(value).__name__}")
        out[key] = value
    out["PORT"] = _port(spec.get("PORT"), alias)
    options = spec.get("OPTIONS") or {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ConfigurationError(f"database {alias!r}: OPTIONS must be a dict of driver "
                                 f"options by name, got {type(options).__name__}")
    out["OPTIONS"] = dict(options)
    read_only = spec.get("READ_ONLY", False)
    if not isinstance(read_only, bool):
        raise ConfigurationError(
            f"database {alias!r}: READ_ONLY must be True or False, got {read_only!r}")
    out["READ_ONLY"] = read_only
    backend = get_backend(out["ENGINE"])
    if backend.FILE_DATABASE and not out["NAME"]:
        raise ConfigurationError(
            f"database {alias!r}: {out['ENGINE']} needs a NAME (a path or ':memory:')")
    out = backend.settings(out)
    out["OPTIONS"] = MappingProxyType(out["OPTIONS"])
    return MappingProxyType(out)


def _port(value: Any, alias: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        port = int(value)
        if isinstance(value, (bool, float)) or not 0 < port < 65536:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"database {alias!r}: PORT must be a port number (1-65535), got {value!r}") from None
    return port


def replace_databases(databases: Mapping[str, str | Mapping[str, Any]]
                      ) -> dict[str, Mapping[str, Any]]:
    """Make ``databases`` the configured aliases; return the replaced settings by alias.

    Everything is checked before anything changes. ``qplan.configuration`` calls this and
    tells the layers holding state about the aliases.
    """
    new = {alias: normalise(alias, spec) for alias, spec in databases.items()}
    with _lock:
        old = dict(_databases)
        _databases.clear()
        _databases.update(new)
    return old


def put_database(alias: str, spec: str | Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Add or replace one alias; return the settings it replaced, if any."""
    config = normalise(alias, spec)
    with _lock:
        old = _databases.get(alias)
        _databases[alias] = config
    return old


def drop_database(alias: str) -> Mapping[str, Any]:
    """Remove one alias; return its settings."""
    with _lock:
        if alias not in _databases:
            raise ConfigurationError(f"unknown database alias {alias!r}" + suggest(alias, _databases))
        return _databases.pop(alias)


def set_options(**options: Any) -> None:
    """Set router chain and signing key (``_KEEP``: leave as it is)."""
    with _lock:
        if options.get("routers", _KEEP) is not _KEEP and options["routers"] is not None:
            _options["routers"] = tuple(options["routers"])
        if options.get("signing_key", _KEEP) is not _KEEP:
            _options["signing_key"] = options["signing_key"]


def database(alias: str) -> Mapping[str, Any]:
    """The normalised settings of ``alias`` (read-only); ``ConfigurationError`` naming the
    known aliases."""
    try:
        return _databases[alias]
    except KeyError:
        known = ", ".join(sorted(_databases)) or "none configured"
        raise ConfigurationError(
            f"unknown database alias {alias!r} (known aliases: {known})"
        ) from None


def databases() -> dict[str, dict[str, Any]]:
    """A copy of every alias's settings."""
    with _lock:
        return {alias: dict(spec) for alias, spec in _databases.items()}


def option(name: str) -> Any:
    return _options[name]
