"""The web tests' fixtures: the app on a seeded store of every test database, through
Starlette's test client (ASGI, in process).

The app only reads, so the tests that only read share one seeded database per test module and
database kind (``seeded``, ``client``): seeding it for each of several hundred tests cost more
than the tests. A test that writes takes a database of its own, seeded for it
(``fresh_seeded``, ``fresh_client``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from taskjobs.store import Store
from taskjobs.web import create_app
from tests.services import scratch_database
from tests.web.seed import Seeded, seed


@pytest.fixture(scope="module")
def seeded_store(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A store of its own for the module's reading tests, seeded once."""
    with scratch_database(db_kind, str(tmp_path_factory.mktemp(f"seeded-{db_kind}"))) as url:
        shared = Store(url)
        shared.upgrade()
        try:
            yield shared
        finally:
            shared.dispose()


@pytest.fixture(scope="module")
def seeded(seeded_store: Store) -> Seeded:
    """The seeded jobs of the module's shared store."""
    return seed(seeded_store)


@pytest.fixture(scope="module")
def client(seeded_store: Store, seeded: Seeded) -> Iterator[TestClient]:
    """A client of the app on the module's shared seeded store; a server error fails the
    test."""
    with TestClient(create_app(seeded_store)) as test_client:
        yield test_client


@pytest.fixture
def fresh_seeded(store: Store) -> Seeded:
    """The seeded jobs, in the test's own (empty) store, for a test that writes more."""
    return seed(store)


@pytest.fixture
def fresh_client(store: Store, fresh_seeded: Seeded) -> Iterator[TestClient]:
    """A client of the app on the test's own seeded store."""
    with TestClient(create_app(store)) as test_client:
        yield test_client
