"""The Galera backend without a server: registration, positions, errors (servers: tests/test_galera.py)."""

from __future__ import annotations

import pymysql
import pytest

import qplan
from qplan import backends
from testmodels import Book

galera, mysql = backends.get("galera"), backends.get("mysql")


def test_galera_is_a_registered_mariadb_backend_with_its_own_facts():
    assert "galera" in backends.names()
    assert backends.get("mariadb_galera") is galera
    assert galera.dialect == mysql.dialect == "mysql"
    plan = Book.objects.filter(title__iexact="É").order_by("-rating")[1:3]
    assert plan.compile("galera") == plan.compile("mysql")
    assert galera.DENSE_AUTO_IDS is False and mysql.DENSE_AUTO_IDS is True
    assert "WSREP_LAST_WRITTEN_GTID" in galera.WRITE_POSITION_SQL
    assert "WSREP_LAST_SEEN_GTID" in galera.REPLAY_POSITION_SQL


def test_positions_are_galera_gtids():
    assert galera.reached(galera.parse_position("1-101-10"), galera.parse_position("1-102-10"))
    assert not galera.reached(galera.parse_position("1-101-9"), galera.parse_position("1-101-10"))
    with pytest.raises(ValueError):
        galera.parse_position("00000000-0000-0000-0000-000000000000:-1")  # wsrep_gtid_mode=OFF


def test_a_node_outside_the_primary_component_cannot_serve():
    not_ready = pymysql.err.OperationalError(1047, "WSREP has not yet prepared node for application use")
    assert galera.is_disconnect(not_ready, None)
    assert not mysql.is_disconnect(not_ready, None)


@pytest.mark.parametrize("backend", [galera, mysql])
def test_a_certification_conflict_or_deadlock_is_a_serialization_failure(backend):
    exc = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")
    error = backend.map_error(exc, "database 'g1'")
    assert type(error) is qplan.SerializationFailure
    assert isinstance(error, qplan.OperationalError)
    assert str(error).startswith("database 'g1': ") and "Deadlock" in str(error)
    other = backend.map_error(pymysql.err.OperationalError(1205, "Lock wait timeout"), "x")
    assert type(other) is qplan.OperationalError
