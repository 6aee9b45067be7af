"""Fixtures shared by every tier: the store, parametrized over SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import taskjobs
from taskjobs.store import Store
from taskjobs.store.tables import jobs, stat_log, stats, transitions, workers
from tests.services import IN_CI, scratch_database

ALL_DATABASES = ("sqlite", "postgresql", "mariadb")


def _databases() -> tuple[str, ...]:
    """The databases the store fixture runs on: every one, or those TASKJOBS_TEST_DATABASES
    names (comma-separated; for a quicker local or mutation run, never in CI)."""
    named = os.environ.get("TASKJOBS_TEST_DATABASES")
    if not named:
        return ALL_DATABASES
    chosen = tuple(name.strip() for name in named.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(ALL_DATABASES))
    if unknown or not chosen:
        raise pytest.UsageError(
            f"TASKJOBS_TEST_DATABASES={named!r}: give some of {', '.join(ALL_DATABASES)}"
        )
    if IN_CI and set(chosen) != set(ALL_DATABASES):
        raise pytest.UsageError("TASKJOBS_TEST_DATABASES must not narrow a CI run")
    return chosen


DATABASES = _databases()


@pytest.fixture(scope="session", params=DATABASES)
def db_kind(request: pytest.FixtureRequest) -> str:
    """The kind of database a test runs on."""
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One scratch database of the kind for the whole run."""
    with scratch_database(db_kind, str(tmp_path_factory.mktemp(db_kind))) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The configured store, every table empty."""
    configured = taskjobs.configure(database_url)
    configured.upgrade()
    # The writer builds each shape's statement once and keeps it; the store is kept per URL for
    # the whole run, so only the first test to write a shape would build it. Built afresh for
    # each test, every test that writes reaches the code that builds it, and mutation testing
    # (which runs, for each mutant, only the tests that reached its function) runs them all.
    configured._writer._statements.clear()
    with configured.engine.begin() as connection:
        # The jobs first: deleting them logs changes of the aggregates, deleted next.
        for table in (jobs, transitions, workers, stat_log, stats):
            connection.execute(sa.delete(table))
    yield configured
    taskjobs.configure(None)


@pytest.fixture
def fresh_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a brand-new, empty database of the test's kind."""
    with scratch_database(db_kind, str(tmp_path)) as url:
        yield url
