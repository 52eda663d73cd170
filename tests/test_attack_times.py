"""Attack: TIME values a server holds that ``datetime.time`` cannot (MariaDB's TIME is a
duration up to 838:59:59 and may be negative; PostgreSQL's goes to 24:00:00; SQLite's is
text another program may have written): read back, they raise qplan's ``DataError``
naming the value, not a bare ``ValueError`` from deep in decoding."""

from __future__ import annotations

import datetime as dt

import pytest

import qplan
from timemodels import ALL, Shift

# what each backend's TIME column may hold that no datetime.time can be
# (PostgreSQL's 24:00:00 is not here: psycopg2 reads it as 00:00 before qplan sees it;
# a known limitation, no qplan write produces it.)
ODD = {"sqlite": ["25:00:00", "-01:00:00", "12:00:00junk", "12:00+01:00"], "postgresql": [],
       "mysql": ["25:00:00", "-01:00:00"], "duckdb": ["24:00:00"]}


@pytest.fixture
def shift_tables(any_db):
    qplan.drop_tables(ALL, missing_ok=True)
    qplan.create_tables(ALL)
    yield any_db
    qplan.connections.close_all()
    qplan.drop_tables(ALL, missing_ok=True)


def test_a_time_no_python_time_can_hold_is_a_data_error(shift_tables):
    conn = qplan.connections["default"]
    table = conn.backend.quote("qt_shift")
    Shift.objects.create(label="ok", starts=dt.time(23, 59, 59, 999999))
    for n, text in enumerate(ODD.get(shift_tables, ODD["mysql"])):  # galera: MariaDB
        try:
            conn.execute(f"INSERT INTO {table} (id, label, starts) VALUES ({100 + n}, 'odd', "
                         f"CAST('{text}' AS TIME))" if shift_tables != "sqlite" else
                         f"INSERT INTO {table} (id, label, starts) VALUES ({100 + n}, 'odd', '{text}')")
        except qplan.DatabaseError:  # this server refuses it itself: nothing to read back
            continue
        with pytest.raises(qplan.DataError, match="TIME"):
            list(Shift.objects.filter(label="odd").values_list("starts", flat=True))
        with pytest.raises(qplan.DataError, match="TIME"):
            list(Shift.objects.filter(label="odd"))
        conn.execute(f"DELETE FROM {table} WHERE label = 'odd'")
    assert list(Shift.objects.values_list("starts", flat=True)) == [dt.time(23, 59, 59, 999999)]
