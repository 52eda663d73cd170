"""The async edge of a backend (``qplan.aio``): how a database is awaited.

A backend with an async driver overrides ``aconnect``/``arun``/``aclose`` (and the streaming
trio); these defaults run the blocking driver on a small bounded pool of worker threads
(DuckDB), never on the event loop. ``Backend`` inherits ``AsyncEdge``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

# Worker threads for drivers without an async API (DuckDB): bounded, shared by all loops.
_WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="qplan-aio")


async def _on_worker(fn: Callable[..., Any], *args: Any) -> Any:
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(_WORKERS, fn, *args)


def _run_blocking(raw: Any, sql: str, params: tuple, fetch: bool) -> tuple:
    cur = raw.cursor()
    try:
        cur.execute(sql, params) if params else cur.execute(sql)
        return cur.fetchall() if fetch else None, cur.rowcount, getattr(cur, "lastrowid", None)
    finally:
        cur.close()


class AsyncEdge:
    """The awaited half of a backend (see the module docstring)."""

    # A backend with an async driver overrides ``aconnect``/``arun``/``aclose``; the defaults run
    # the blocking driver on a small bounded pool of worker threads (DuckDB), never on the loop.

    async def aconnect(self, settings: dict[str, Any]) -> Any:
        """A new async driver connection (default: the blocking one, opened on a worker)."""
        raw = await _on_worker(self.connect, settings)
        if settings.get("READ_ONLY"):
            await _on_worker(self.set_read_only, raw)
        return raw

    async def arun(self, raw: Any, sql: str, params: tuple, fetch: bool) -> tuple:
        """Run ``sql`` on ``raw``: ``(rows or None, rowcount, lastrowid)``."""
        return await _on_worker(_run_blocking, raw, sql, params, fetch)

    async def aclose(self, raw: Any) -> None:
        await _on_worker(raw.close)

    # A streamed result holds the connection: no other statement can run on it meanwhile
    # (MariaDB's unbuffered result); inside an aatomic() block such a stream is read at once.
    STREAM_EXCLUSIVE = False

    # Streaming (``aiterator()``): ``astart`` runs the query and returns a handle, ``afetch``
    # gets at most ``size`` more rows per round trip ([] at the end), ``afinish`` closes the
    # handle and leaves ``raw`` ready for its next statement (a partly read result dropped).

    async def astart(self, raw: Any, sql: str, params: tuple) -> Any:
        """Run ``sql`` on a cursor of its own whose rows are fetched on demand."""
        def start() -> Any:
            cur = raw.cursor()
            cur.execute(sql, params) if params else cur.execute(sql)
            return cur
        return await _on_worker(start)

    async def afetch(self, handle: Any, size: int) -> list:
        return list(await _on_worker(handle.fetchmany, size))

    async def afinish(self, handle: Any) -> None:
        await _on_worker(handle.close)

    def async_in_transaction(self, raw: Any) -> bool:  # then it is not lent on
        return self.in_transaction(raw)

    def async_errors(self) -> tuple[type[BaseException], ...]:  # default: the blocking driver's
        return self.driver_errors()

    def async_is_disconnect(self, exc: BaseException, raw: Any) -> bool:
        return self.is_disconnect(exc, raw)
