"""The whole cross-backend plan set again, every evaluation awaited through the async edge.

``tests/test_cross_backend.py``'s tests run here a second time with ``Engine._execute``
answering through ``qplan.aio.aexecute`` (the same core generators, driven by awaits on
aiosqlite, psycopg 3, aiomysql and DuckDB's worker threads): the tests' own assertions
are the comparison with the blocking path. Statements inside a blocking ``atomic()``
block and inserts over several shards stay on the blocking edge;
saves, ``bulk_create``, ``get_or_create``, ``update_or_create`` and ``bulk_update`` are
awaited too.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import pytest

from qplan import aconnections, aio, execution
from qplan.errors import NotSupportedError
from qplan.transactions import in_block

from test_cross_backend import *  # noqa: F401,F403 - the plan set, run again below
import test_cross_backend  # noqa: F401


@pytest.fixture(autouse=True)
def _through_the_async_edge(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    loop = asyncio.new_event_loop()
    blocking = execution.Engine._execute
    awaited: list[Any] = []

    def via_async(self: Any, plan: Any, using: Any) -> Any:
        if in_block():
            return blocking(self, plan, using)
        try:
            result = loop.run_until_complete(aio.aexecute(plan, using))
        except NotSupportedError:  # several shards: the blocking edge
            return blocking(self, plan, using)
        awaited.append(plan)
        return result

    monkeypatch.setattr(execution.Engine, "_execute", via_async)

    def awaiting(name: str, coroutine: Any) -> None:  # the write paths written as steps
        sync = getattr(execution.Engine, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if in_block():
                return sync(self, *args, **kwargs)
            try:
                result = loop.run_until_complete(coroutine(*args, **kwargs))
            except NotSupportedError:
                return sync(self, *args, **kwargs)
            awaited.append(name)
            return result

        monkeypatch.setattr(execution.Engine, name, method)

    awaiting("save_instance", aio.asave)
    awaiting("get_or_create", aio.aget_or_create)
    awaiting("update_or_create", aio.aupdate_or_create)
    awaiting("bulk_update", aio.abulk_update)
    awaiting("bulk_create", lambda root, objs, size, options=None: aio.abulk_create(
        root, objs, size, options or {}))
    yield awaited
    monkeypatch.undo()
    loop.run_until_complete(aconnections.close_all())
    loop.close()


def test_plans_are_awaited_here(any_db: str, _through_the_async_edge: list) -> None:
    """The fixture's edge is the one that ran (this module compares nothing otherwise)."""
    from testmodels import Author

    Author.objects.create(name="a")
    assert Author.objects.count() == 1 and list(Author.objects.values_list("name", flat=True)) == ["a"]
    assert "save_instance" in _through_the_async_edge and len(_through_the_async_edge) >= 3
