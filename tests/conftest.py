"""Fixtures shared by every tier: the store, parametrized over SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import taskjobs
from taskjobs.store import Store
from taskjobs.store.tables import jobs, transitions, workers
from tests.services import scratch_database

# Celery's own fixtures; pytest-celery's Docker-based ones are kept out by -p no:celery.
pytest_plugins = ("celery.contrib.pytest",)

DATABASES = ("sqlite", "postgresql", "mariadb")


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
    with configured.engine.begin() as connection:
        for table in (jobs, transitions, workers):
            connection.execute(sa.delete(table))
    yield configured
    taskjobs.configure(None)


@pytest.fixture
def fresh_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a brand-new, empty database of the test's kind."""
    with scratch_database(db_kind, str(tmp_path)) as url:
        yield url
