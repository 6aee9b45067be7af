"""Schema versions: Alembic migrations shipped in the package, applied on first use."""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from taskjobs.store.dialects import POSTGRESQL, is_mysql
from taskjobs.store.tables import VERSION_TABLE

logger = logging.getLogger("taskjobs")

MIGRATIONS = Path(__file__).with_name("migrations")
# Key of the database-wide lock that lets one process at a time migrate (PostgreSQL, MySQL).
LOCK_NAME = "taskjobs_migrate"
LOCK_KEY = 0x7461736B6A6F6273  # "taskjobs"
# Seconds between a waiting process's reports that another one still migrates (MySQL's
# GET_LOCK waits at most that long at once).
LOCK_TIMEOUT = 60
# Alembic runs a migration through module-level proxies (``alembic.context``, ``alembic.op``):
# two threads migrating two databases at once would replace each other's.
_alembic = threading.Lock()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for our migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _shipped() -> tuple[str | None, frozenset[str]]:
    """The head and every revision of the migrations in the package, read once a process
    (about 5 ms each time: every process checks them on its first use of a store)."""
    script = ScriptDirectory.from_config(alembic_config())
    return script.get_current_head(), frozenset(r.revision for r in script.walk_revisions())


def head_revision() -> str | None:
    """The newest schema revision this version of taskjobs ships."""
    return _shipped()[0]


def known_revisions() -> frozenset[str]:
    """Every schema revision this version of taskjobs ships."""
    return _shipped()[1]


def is_newer(revision: str | None) -> bool:
    """Whether a database's revision is one this version does not ship: a newer release's,
    whose migrations only add (README, "Upgrading the schema with no downtime"), so this
    version runs on it as it is, as a worker not yet rolled to the new release must."""
    return revision is not None and revision not in known_revisions()


def current_revision(engine: Engine) -> str | None:
    """The revision a database is at; None when taskjobs never created its tables there."""
    with engine.connect() as connection:
        return _revision(connection)


def _revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine, *, write_option: dict[str, Any]) -> tuple[str | None, str | None]:
    """Migrate to the head revision, one process at a time; returns (before, after). A
    database a newer release has migrated is left as it is (``is_newer``)."""
    head = head_revision()
    before = current_revision(engine)
    if before == head or is_newer(before):
        return before, before
    with engine.connect() as connection:
        connection = connection.execution_options(**write_option)
        try:
            with connection.begin():
                _lock(connection)
                before = _revision(connection)
                if is_newer(before):
                    return before, before
                if before != head:
                    with _alembic:
                        command.upgrade(alembic_config(connection), "head")
        finally:
            _unlock(connection)
    return before, head


def _lock(connection: Connection) -> None:
    """Wait until no other process migrates this database (SQLite: BEGIN IMMEDIATE did it),
    however long its migration takes (a table copy on MySQL may take minutes), saying so every
    ``LOCK_TIMEOUT`` seconds."""
    dialect = connection.dialect.name
    if dialect == POSTGRESQL:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    elif is_mysql(dialect):
        waited = 0
        lock = text("SELECT GET_LOCK(:name, :timeout)")
        # 1 once held, 0 when the wait timed out (NULL on an error, which PyMySQL raises).
        while not connection.execute(lock, {"name": LOCK_NAME, "timeout": LOCK_TIMEOUT}).scalar():
            waited += LOCK_TIMEOUT
            logger.warning(
                "taskjobs: another process has been migrating the job store's schema for %d s "
                "or more; waiting for it to finish", waited,
            )  # fmt: skip


def _unlock(connection: Connection) -> None:
    """Release MySQL's lock, which outlives the transaction on the pooled connection."""
    if is_mysql(connection.dialect.name):
        connection.execute(text("DO RELEASE_LOCK(:name)"), {"name": LOCK_NAME})
        connection.commit()
