"""The pytest plugin (entry point ``taskjobs``; ``-p no:taskjobs`` turns it off).

``taskjobs_store``: a fresh store for one test, made the store of every job function and
tracked app while the test runs: a SQLite file in the test's temporary folder, or, with
``--taskjobs-database-url URL`` (or ``TASKJOBS_TEST_DATABASE_URL``) naming a PostgreSQL or
MySQL server, a database of its own created there and dropped after the test. The
pytest-celery apps the test uses (``celery_app``, ``celery_session_app``) are tracked into it:
in eager mode, and under ``celery_session_worker``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from taskjobs import config
from taskjobs.store import Store
from taskjobs.store.scratch import scratch_database

if TYPE_CHECKING:
    from taskjobs.celery.tracker import Tracker

URL_OPTION = "--taskjobs-database-url"
URL_VARIABLE = "TASKJOBS_TEST_DATABASE_URL"
# The names of the databases made for tests on a server start with this.
SCRATCH_PREFIX = "taskjobs_pytest"
# The pytest-celery (``celery.contrib.pytest``) apps a test's store tracks when it uses them.
CELERY_APPS = ("celery_app", "celery_session_app")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("taskjobs", "taskjobs: tracked Celery tasks as jobs")
    group.addoption(
        URL_OPTION,
        dest="taskjobs_database_url",
        default=None,
        metavar="URL",
        help="A PostgreSQL or MySQL server on which each test using taskjobs_store gets a "
        f"database of its own (default: ${URL_VARIABLE}, else a SQLite file per test).",
    )


@pytest.fixture
def taskjobs_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty job store for this test, the store of every job function and tracked
    app until it ends; pytest-celery's apps the test uses are tracked into it."""
    server = request.config.getoption("taskjobs_database_url") or os.environ.get(URL_VARIABLE)
    with scratch_database(server, tmp_path, prefix=SCRATCH_PREFIX) as url:
        store = Store(url)
        store.upgrade()
        trackers: list[Tracker] = []
        try:
            with config.using(store):
                for name in CELERY_APPS:
                    if name in request.fixturenames:
                        # Imported here: loading the plugin does not load Celery.
                        from taskjobs.celery import install

                        trackers.append(install(request.getfixturevalue(name)))
                yield store
                for tracker in trackers:  # what a batched writer still holds goes in now
                    tracker.drain()
        finally:
            store.dispose()
