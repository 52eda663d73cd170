"""Signing keys and MACs, shared by both payload forms (pickle envelopes and JSON).

A key is str (taken as UTF-8) or bytes; a list of keys supports rotation: the first
signs, any of them verifies. MACs are HMAC-SHA256, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Sequence, Union

from . import settings
from .errors import ConfigurationError

Key = Union[str, bytes]
KeyArg = Union[Key, Sequence[Key], None]

MAC_SIZE = hashlib.sha256().digest_size


def signing_keys(key: KeyArg = None) -> tuple[bytes, ...] | None:
    """The keys to sign and check with: ``key``, else the configured one; None when unsigned."""
    if key is None:
        key = settings.option("signing_key")
        if key is None:
            return None
    keys = (key,) if isinstance(key, (str, bytes, bytearray)) else key
    if not isinstance(keys, (list, tuple)) or not keys:
        raise ConfigurationError(f"a signing key is str or bytes (or a list of them), got {key!r}")
    out = []
    for k in keys:
        if isinstance(k, str):
            k = k.encode("utf-8")
        if not isinstance(k, (bytes, bytearray)):
            raise ConfigurationError(f"a signing key is str or bytes, got {type(k).__name__}")
        if not k:
            raise ConfigurationError("a signing key must not be empty")
        out.append(bytes(k))
    return tuple(out)


def mac(key: bytes, data: bytes | memoryview) -> bytes:
    """HMAC-SHA256 of ``data`` (one call: OpenSSL's fast path)."""
    return hmac.digest(key, data, "sha256")


def matches(keys: tuple[bytes, ...], given: bytes, data: bytes | memoryview) -> bool:
    """Whether ``given`` is the MAC of ``data`` under any of ``keys`` (constant time)."""
    return any(hmac.compare_digest(given, mac(k, data)) for k in keys)
