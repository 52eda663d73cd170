"""Database settings by alias: ``configure()``, adding and removing aliases at run time.

An alias maps to a dict in Django's shape or to a URL; both are normalised into one
plain dict per alias (``ENGINE`` is always a registered backend's name, see
``qplan.backends``).
Listeners (the connection registry, caches) are told when an alias changes.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Mapping

from . import backends
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
_databases: dict[str, dict[str, Any]] = {}
_options: dict[str, Any] = {"routers": (), "signing_key": None}
_listeners: list[Callable[[str], None]] = []
_KEEP: Any = object()  # "leave this setting as it is"


def _engine(value: Any, alias: str) -> str:
    """The registered backend name for an ENGINE (its last dotted part, so Django's
    ``django.db.backends.postgresql`` works too)."""
    try:
        return backends.canonical(str(value or "").rsplit(".", 1)[-1], "ENGINE")
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
        spec = backends.get(engine).parse_url(url)
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


def normalise(alias: str, spec: str | Mapping[str, Any]) -> dict[str, Any]:
    """One alias's settings as a complete dict with a canonical ``ENGINE``."""
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
    if backends.get(out["ENGINE"]).FILE_DATABASE and not out["NAME"]:
        raise ConfigurationError(
            f"database {alias!r}: {out['ENGINE']} needs a NAME (a path or ':memory:')")
    return out


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


def _changed(aliases: Iterable[str]) -> None:
    for alias in aliases:
        for listener in list(_listeners):
            listener(alias)


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
    with _lock:
        if databases is not None:
            new = {alias: normalise(alias, spec) for alias, spec in databases.items()}
            old = set(_databases)
            _databases.clear()
            _databases.update(new)
            _changed(old | set(new))
        if routers is not None:
            _options["routers"] = tuple(routers)
        if signing_key is not _KEEP:
            _options["signing_key"] = signing_key
    if compile_cache_size is not None:
        from .compiler import cache

        cache.resize(compile_cache_size)


def add_database(alias: str, spec: str | Mapping[str, Any]) -> None:
    """Add or replace one alias at run time; open connections to it are closed."""
    settings = normalise(alias, spec)
    with _lock:
        _databases[alias] = settings
        _changed([alias])


def remove_database(alias: str) -> None:
    """Remove an alias at run time, closing its connections."""
    with _lock:
        if alias not in _databases:
            raise ConfigurationError(f"unknown database alias {alias!r}" + suggest(alias, _databases))
        del _databases[alias]
        _changed([alias])


def database(alias: str) -> dict[str, Any]:
    """The normalised settings of ``alias``; ``ConfigurationError`` naming the known aliases."""
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


def on_change(listener: Callable[[str], None]) -> None:
    """Call ``listener(alias)`` whenever an alias is added, replaced or removed."""
    _listeners.append(listener)
