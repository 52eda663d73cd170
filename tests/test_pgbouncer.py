"""qplan behind pgbouncer in transaction pooling mode: every transaction may run on another
server session, so nothing qplan sends may depend on session state.

The behaviour tests of ``test_cross_backend`` run here again, with ``default`` on a database
reached through pgbouncer whose time zone is not UTC (``conftest.PGBOUNCER_TIME_ZONE``).
"""

from __future__ import annotations

import inspect

import pytest

import qplan
import test_cross_backend as behaviour
from conftest import PGBOUNCER_TIME_ZONE, in_threads, raised
from testmodels import Author

# The fixtures the behaviour tests use on top of ``any_db``; this module's ``any_db`` wins.
words, rated = behaviour.words, behaviour.rated
_ON_A_DATABASE = {"any_db", "words", "rated"}
BEHAVIOUR_TESTS = sorted(
    name for name, fn in vars(behaviour).items()
    if name.startswith("test_") and callable(fn)
    and _ON_A_DATABASE & set(inspect.signature(fn).parameters))
globals().update({name: getattr(behaviour, name) for name in BEHAVIOUR_TESTS})


@pytest.fixture
def any_db(databases) -> str:
    """``default`` through pgbouncer (a PostgreSQL server): the vendor the tests expect."""
    databases(default="pgbouncer")
    return "postgresql"


def test_the_behaviour_tests_are_all_here():
    assert len(BEHAVIOUR_TESTS) >= 20 and "test_every_field_type_round_trips" in BEHAVIOUR_TESTS


def test_sessions_keep_the_server_time_zone_and_results_are_still_utc(any_db):
    import datetime as dt

    zone = qplan.connections["default"].fetchall("SELECT current_setting('TimeZone')")[0][0]
    assert zone == PGBOUNCER_TIME_ZONE  # qplan set nothing on the session
    from testmodels import Book

    when = dt.datetime(2024, 2, 29, 23, 30, tzinfo=dt.timezone.utc)
    Book.objects.create(title="t", created=when)
    assert Book.objects.get().created == when
    assert Book.objects.filter(created__gte=when).count() == 1


def test_many_threads_with_transactions_through_the_pooler(any_db):
    errors: list[str] = []

    def worker(n: int) -> None:
        for i in range(5):
            with qplan.atomic():
                Author.objects.create(name=f"w{n}-{i}")
                if not Author.objects.filter(name=f"w{n}-{i}").exists():
                    errors.append(f"w{n}-{i} not seen inside its own transaction")

    errors += raised(in_threads(worker, 8))
    assert errors == []
    assert Author.objects.count() == 40
