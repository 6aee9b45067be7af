"""Scratch databases for tests: a new, empty database made for one test (or run) and dropped
after it, on SQLite (a file), PostgreSQL, or MySQL/MariaDB."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlalchemy as sa

from taskjobs.errors import ConfigurationError
from taskjobs.store.engine import parse_url, safe_url


@contextmanager
def scratch_database(
    server: str | None, directory: str | Path, *, prefix: str = "taskjobs_test"
) -> Iterator[str]:
    """The URL of a new, empty database, dropped (or deleted) afterwards.

    ``server`` None, or a ``sqlite:`` URL: a SQLite file in ``directory``. Else the URL of a
    PostgreSQL or MySQL/MariaDB server, naming any database there from which its user may
    create databases (``postgresql://postgres@host/postgres``, ``mysql://root@host/mysql``);
    the new one is created beside it. The URL given names no driver, as a user writes it.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if server is None or server.startswith("sqlite"):
        path = Path(directory) / f"{name}.sqlite3"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with suppress(FileNotFoundError):
                    os.remove(f"{path}{suffix}")
        return
    url = parse_url(server)
    backend = url.get_backend_name()
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise ConfigurationError(f"no scratch databases on {safe_url(url)}")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    quoted = f'"{name}"' if backend == "postgresql" else f"`{name}`"
    force = " WITH (FORCE)" if backend == "postgresql" else ""
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
        try:
            made = url.set(database=name, drivername=backend)
            yield made.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted}{force}")
    finally:
        admin.dispose()
