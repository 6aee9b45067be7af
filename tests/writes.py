"""Lifecycle writes for tests that set a job up at a given order key or time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from taskjobs.config import current_store
from taskjobs.lifecycle import Event
from taskjobs.model import Job, utcnow
from taskjobs.store import Store


def transition(
    job_id: str,
    state: str,
    values: Mapping[str, Any],
    *,
    fill: Mapping[str, Any] | None = None,
    seq: int | None = None,
    delivery: int | None = None,
    stage: int | None = None,
    message: str | None = None,
    guard_message: bool = True,
    existing_only: bool = False,
    read_back: bool = False,
    at: datetime | None = None,
    store: Store | None = None,
) -> Job | None:
    """Apply one event, as the Celery receivers build them, to ``store`` (the current one)."""
    event = Event(
        job_id,
        state,
        at or utcnow(),
        "test write",
        values=dict(values),
        fill=dict(fill or {}),
        seq=seq,
        delivery=delivery,
        stage=stage,
        message=message,
        guard_message=guard_message,
        existing_only=existing_only,
    )
    return (store or current_store()).apply(event, read_back=read_back)


@contextmanager
def count_statements(store: Store) -> Iterator[list[str]]:
    """Collect the SQL statements the store sends, transaction control left out."""
    seen: list[str] = []

    def record(_conn, _cursor, statement: str, *_args: object) -> None:  # type: ignore[no-untyped-def]
        if statement.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT"):
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)
