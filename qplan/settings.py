"""Database settings by alias: ``configure()``, adding and removing aliases at run time.

An alias maps to a dict in Django's shape or to a URL; both are normalised into one
plain dict per alias (``ENGINE`` is always a registered backend's name, see
``qplan.backends``). qplan's own keys: ``READ_ONLY``; ``POOL`` (a server alias's
connection pool: ``max_size``, ``min_size``, ``timeout``, ``max_lifetime``, ``max_idle``
(seconds an idle connection beyond ``min_size`` is kept; ``None``: forever), completed from
``POOL_DEFAULTS``; ``None`` for none, always ``None`` for file databases);
``CONNECT_TIMEOUT`` and ``READ_TIMEOUT`` (seconds, ``None`` waits forever). URLs carry them
as ``?read_only=1``, ``?pool_max_size=5``, ``?connect_timeout=3``, ``?read_timeout=none``.
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

KEYS = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS", "READ_ONLY", "POOL",
        "CONNECT_TIMEOUT", "READ_TIMEOUT")
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

# A server alias's connection pool (``qplan.pools``): what a POOL dict may hold, its defaults,
# and whether a value must be a whole number. ``"POOL": None`` turns pooling off.
POOL_DEFAULTS: dict[str, float | int | None] = {
    "max_size": 20, "min_size": 0, "timeout": 30.0, "max_lifetime": 3600.0, "max_idle": 600.0}
POOL_COUNTS = ("max_size", "min_size")
# Seconds; None waits forever. Applied to server databases (file databases have no network).
TIMEOUT_DEFAULTS: dict[str, float | None] = {"CONNECT_TIMEOUT": 5.0, "READ_TIMEOUT": 30.0}
# URL query names of qplan's own settings: query name -> (key, POOL entry or None).
URL_SETTINGS = {
    "connect_timeout": ("CONNECT_TIMEOUT", None), "read_timeout": ("READ_TIMEOUT", None),
    **{f"pool_{name}": ("POOL", name) for name in POOL_DEFAULTS},
}

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
    """Take qplan's own settings (``?read_only=1``, ``?read_timeout=2``, ``?pool_max_size=5``)
    out of a URL's driver options; numbers are checked later, with the dict settings."""
    flag = spec["OPTIONS"].pop("read_only", None)
    if flag is not None:
        if flag.lower() not in FLAGS:
            raise ConfigurationError(
                f"database {alias!r}: read_only={flag!r} in the URL is not 1/0/true/false")
        spec["READ_ONLY"] = FLAGS[flag.lower()]
    for name, (key, entry) in URL_SETTINGS.items():
        text = spec["OPTIONS"].pop(name, None)
        if text is None:
            continue
        value = None if text.lower() == "none" else _url_number(text, name, alias)
        if entry is None:
            spec[key] = value
        else:
            spec.setdefault("POOL", {})[entry] = value
    return spec


def _url_number(text: str, name: str, alias: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(
            f"database {alias!r}: {name}={text!r} in the URL is not a number") from None


def _seconds(value: Any, alias: str, key: str) -> float | None:
    """A timeout in seconds: a positive number, or None (wait forever)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        raise ConfigurationError(
            f"database {alias!r}: {key} must be a positive number of seconds or None, "
            f"got {value!r}")
    return float(value)


def _pool(value: Any, alias: str, server: bool) -> Mapping[str, Any] | None:
    """The POOL setting completed with its defaults; None: no pool (file databases)."""
    if value is None or not server:
        return None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"database {alias!r}: POOL must be a dict (max_size, min_size, "
                                 f"timeout, max_lifetime, max_idle) or None, got {type(value).__name__}")
    unknown = sorted(set(value) - set(POOL_DEFAULTS))
    if unknown:
        raise ConfigurationError(f"database {alias!r}: unknown key POOL[{unknown[0]!r}]"
                                 + suggest(str(unknown[0]), POOL_DEFAULTS))
    pool = {**POOL_DEFAULTS, **value}
    for name in POOL_COUNTS:
        count = pool[name]
        if isinstance(count, float) and count.is_integer():
            count = pool[name] = int(count)  # from a URL
        if isinstance(count, bool) or not isinstance(count, int) or count < 0 or \
                (name == "max_size" and count < 1):
            raise ConfigurationError(f"database {alias!r}: POOL[{name!r}] must be a whole number "
                                     f"(max_size at least 1), got {count!r}")
    if pool["min_size"] > pool["max_size"]:
        raise ConfigurationError(f"database {alias!r}: POOL['min_size'] ({pool['min_size']}) is "
                                 f"larger than POOL['max_size'] ({pool['max_size']})")
    for name in ("timeout", "max_lifetime", "max_idle"):
        pool[name] = _seconds(pool[name], alias, f"POOL[{name!r}]")
    return MappingProxyType(pool)


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
    server = not backend.FILE_DATABASE
    out["POOL"] = _pool(spec.get("POOL", POOL_DEFAULTS), alias, server)
    for key, default in TIMEOUT_DEFAULTS.items():
        out[key] = _seconds(spec.get(key, default), alias, key)
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
