"""The bounded cache of compiled templates, keyed by (model, dialect, shape)."""

from __future__ import annotations

import collections
import threading
from typing import Any

from . import compiler
from .template import Template

class ShapeCache:
    """An LRU of templates keyed by (model, dialect, shape), bounded in entries and in bytes.

    Lookups, inserts and evictions are thread-safe. A template's bytes are estimated
    (``Template.size``: its SQL text plus a cost per bind entry); one larger than the
    whole budget is returned but not kept. ``misses`` is counted under the lock and is
    exact; ``hits`` is counted without it (a hit stays a dictionary lookup), so threads
    racing on hits may lose increments: it is a statistic, never a correctness input.
    """

    def __init__(self, maxsize: int = 2048, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0
        self._data: collections.OrderedDict[Any, Template] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, meta: Any, shape: tuple, backend: Any) -> Template:
        key = (meta.key, backend.name, shape)
        data = self._data
        try:
            template = data[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            if len(data) > self.maxsize // 2:  # only recency matters once the cache fills
                with self._lock:
                    if key in data:
                        data.move_to_end(key)
            return template
        template = compiler.build(meta, shape, backend)
        with self._lock:
            self.misses += 1
            old = data.pop(key, None)  # another thread compiled it meanwhile
            if old is not None:
                self.bytes -= old.size
            if template.size <= self.max_bytes:
                data[key] = template
                self.bytes += template.size
                self._evict()
        return template

    def _evict(self) -> None:
        """Drop least recently used templates until both bounds hold (lock held)."""
        data = self._data
        while data and (len(data) > self.maxsize or self.bytes > self.max_bytes):
            self.bytes -= data.popitem(last=False)[1].size

    def resize(self, maxsize: int | None = None, max_bytes: int | None = None) -> None:
        """New bounds: at most ``maxsize`` templates and ``max_bytes`` estimated bytes."""
        for name, value in (("size", maxsize), ("byte budget", max_bytes)):
            if value is not None and (type(value) is not int or value < 1):
                raise ValueError(f"compile cache {name} must be a positive integer, got {value!r}")
        with self._lock:
            self.maxsize = self.maxsize if maxsize is None else maxsize
            self.max_bytes = self.max_bytes if max_bytes is None else max_bytes
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


cache = ShapeCache()
