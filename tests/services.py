"""The real services tests use: where they are, whether they are up, scratch databases on them.

A missing service skips its tests on a laptop and fails them under CI=true.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest

from taskjobs.store.scratch import scratch_database as store_scratch_database

POSTGRES_URL = os.environ.get(
    "TASKJOBS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_URL = os.environ.get("TASKJOBS_TEST_MYSQL", "mysql://root@127.0.0.1:3306/mysql")
REDIS_URL = os.environ.get("TASKJOBS_TEST_REDIS", "redis://127.0.0.1:6379")
RABBITMQ_URL = os.environ.get("TASKJOBS_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def is_listening(url: str) -> bool:
    """Whether something accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def require(url: str, what: str) -> None:
    """Skip (or fail, in CI) the current test when the service at ``url`` is down."""
    if is_listening(url):
        return
    message = f"{what} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message}; CI must have it running (.ci/run starts it)")
    pytest.skip(message)


def _server_url(kind: str) -> str:
    return {"postgresql": POSTGRES_URL, "mariadb": MYSQL_URL}[kind]


def engine_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy should use named (as taskjobs picks it)."""
    drivers = {"postgresql://": "postgresql+psycopg://", "mysql://": "mysql+pymysql://"}
    for plain, full in drivers.items():
        if url.startswith(plain):
            return full + url[len(plain) :]
    return url


@contextmanager
def scratch_database(
    kind: str, tmp_dir: str, *, server: str | None = None, prefix: str = "taskjobs_test"
) -> Iterator[str]:
    """A new, empty database of ``kind`` (sqlite, postgresql, mariadb), dropped afterwards.

    ``server``: the admin database URL it is created from (default: the test services'); the
    URL yielded names no driver (``postgresql://``, ``mysql://``), as a taskjobs user writes it.
    """
    if kind != "sqlite":
        server = server or _server_url(kind)
        require(server, kind)
    with store_scratch_database(
        server if kind != "sqlite" else None, tmp_dir, prefix=prefix
    ) as url:
        yield url
