"""The web tests' fixtures: the app on a seeded store of every test database, through
Starlette's test client (ASGI, in process)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from taskjobs.store import Store
from taskjobs.web import create_app
from tests.web.seed import Seeded, seed


@pytest.fixture
def seeded(store: Store) -> Seeded:
    """The seeded jobs, in the test's (empty) store."""
    return seed(store)


@pytest.fixture
def client(store: Store, seeded: Seeded) -> Iterator[TestClient]:
    """A client of the app on the seeded store; a server error fails the test."""
    with TestClient(create_app(store)) as test_client:
        yield test_client
