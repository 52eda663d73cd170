"""Shared fixtures: hypothesis profiles, the opt-in slow flag, SQLite databases."""

from __future__ import annotations

import os
from typing import Iterator

import pytest
from hypothesis import HealthCheck, settings

import qplan
import testmodels

# Bounded by default (the whole suite must stay well under 15 minutes on 2 cores);
# QPLAN_HYPOTHESIS=thorough for exploratory runs.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=2000, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("QPLAN_HYPOTHESIS", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run slow exploratory tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'default.db'}"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[str]:
    """``default`` as a fresh SQLite file holding the test models' tables."""
    qplan.configure(databases={"default": sqlite_url})
    qplan.create_tables(testmodels.ALL)
    yield "default"
    qplan.connections.close_all()
    qplan.configure(databases={})
