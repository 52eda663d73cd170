"""backends/functions.py and the EXPLAIN/row-lock facts: every registered backend's tables
speak qplan's vocabulary (a typo there would silently refuse or mis-spell a feature), and
every hook gives SQL its dialect writes. The rows are checked on every database by
tests/test_functions.py (hence this file's other name), test_date_parts.py,
test_plan_methods.py and test_select_for_update.py."""

from __future__ import annotations

import pytest
from sqlglot import exp

from qplan import backends, funckinds
from qplan.backends.functions import FunctionHooks
from qplan.backends.galera import GaleraBackend
from qplan.backends.mysql import MySQLBackend

LOCK_OPTIONS = {"nowait", "skip_locked", "of", "no_key"}  # select_for_update()'s keywords


def _backends():
    return [backends.get(name) for name in backends.names()]


@pytest.mark.parametrize("backend", _backends(), ids=lambda b: b.name)
def test_tables_name_only_what_qplan_asks_for(backend):
    assert set(backend.CAST_TYPES) == set(funckinds.CAST_TYPES.values()) - {"decimal"}
    assert len(backend.GREATEST_SQL) == 2
    assert backend.SELECT_FOR_UPDATE_OPTIONS <= LOCK_OPTIONS
    assert backend.SELECT_FOR_UPDATE or not backend.SELECT_FOR_UPDATE_OPTIONS
    for word in (*backend.EXPLAIN_FORMATS, *backend.EXPLAIN_OPTIONS):
        assert word == word.upper()  # explaining.prefix compares the upper-cased input


@pytest.mark.parametrize("backend", _backends(), ids=lambda b: b.name)
def test_every_date_part_and_function_hook_writes_sql(backend):
    col = exp.column("c", quoted=True)
    sqls = [backend.now(), backend.to_date(col), backend.utc(col), backend.instant(col),
            backend.upper(col), backend.concat([col, col.copy()]),
            backend.substring([col, exp.Literal.number(1)]),
            backend.regex_match(col, exp.Literal.string("^a")),
            backend.floor_positive(col), backend.truncate(col),
            *(backend.cast_kind(col, kind, to)[0] for kind, to in backend.CAST_TYPES.items())]
    sqls += [backend.extract(part, col) for part in funckinds.EXTRACT_KINDS]
    sqls += [backend.trunc(kind, col, datetime) for kind in funckinds.TRUNC_KINDS
             for datetime in (True, False) if datetime or kind not in funckinds.TIME_KINDS]
    for sql in sqls:
        assert sql.sql(dialect=backend.dialect)


def test_galera_spells_everything_as_mariadb():
    hooks = [n for n in dir(FunctionHooks) if not n.startswith("_")]
    hooks += ["EXPLAIN_FORMATS", "EXPLAIN_OPTIONS", "explain_prefix", "SELECT_FOR_UPDATE",
              "SELECT_FOR_UPDATE_OPTIONS", "LOCKS_OUTER_JOINS"]
    assert all(getattr(GaleraBackend, n) is getattr(MySQLBackend, n) for n in hooks)
