"""Alembic environment: runs on the connection the store hands over, inside its transaction."""

from __future__ import annotations

from alembic import context

from taskjobs.store.tables import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    transactional_ddl=connection.dialect.name != "mysql",
)
with context.begin_transaction():
    context.run_migrations()
