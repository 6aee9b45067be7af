"""Migration 0013: a job's history holds each step (job, time, Celery state) once, and a
unique index keeps it so."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command

from taskjobs.store import Store
from taskjobs.store.schema import alembic_config, head_revision
from taskjobs.store.tables import transitions

AT = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


def step(job_id: str, celery_state: str | None, seconds: int, worker: str) -> dict[str, object]:
    return {
        "job_id": job_id, "status": "pending" if celery_state == "PENDING" else "running",
        "celery_state": celery_state, "worker": worker, "retries": 0,
        "at": AT + timedelta(seconds=seconds),
    }  # fmt: skip


# Written in this order, before the upgrade: "a" logged its publish twice (the race the index
# ends), and three times; a step without a Celery state is never a repeat of another.
BEFORE = [
    step("a", "PENDING", 0, "publisher"),
    step("a", "PENDING", 0, "worker-1"),
    step("a", "STARTED", 1, "worker-1"),
    step("b", "PENDING", 0, "publisher"),
    step("a", "PENDING", 0, "worker-2"),
    step("b", None, 5, "api"),
    step("b", None, 5, "api"),
    step("b", "PENDING", 9, "publisher"),  # published again later: another step
]


def history(store: Store) -> list[tuple[str, str | None, int, str]]:
    t = transitions.c
    query = sa.select(t.job_id, t.celery_state, t.at, t.worker).order_by(t.id)
    with store.engine.connect() as connection:
        return [
            (job_id, state, int((at - AT).total_seconds()), worker)
            for job_id, state, at, worker in connection.execute(query)
        ]


def test_the_upgrade_keeps_the_first_row_of_each_step(fresh_url: str) -> None:
    store = Store(fresh_url)  # its engine only, until the upgrade below
    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0012")
        connection.execute(sa.insert(transitions), BEFORE)
    assert store.upgrade() == ("0012", head_revision())
    assert history(store) == [
        ("a", "PENDING", 0, "publisher"),
        ("a", "STARTED", 1, "worker-1"),
        ("b", "PENDING", 0, "publisher"),
        ("b", None, 5, "api"),
        ("b", None, 5, "api"),
        ("b", "PENDING", 9, "publisher"),
    ]
    # The index now refuses a repeat written by other means than taskjobs' own writes.
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as connection:
        connection.execute(sa.insert(transitions), step("a", "STARTED", 1, "worker-2"))
    store.dispose()


def test_a_downgrade_and_an_upgrade_again_keep_the_history(fresh_url: str) -> None:
    store = Store(fresh_url)
    store.upgrade()
    with store.engine.begin() as connection:
        connection.execute(sa.insert(transitions), [step("a", "PENDING", 0, "publisher")])
        command.downgrade(alembic_config(connection), "0012")
        connection.execute(sa.insert(transitions), [step("a", "PENDING", 0, "worker-1")])
    assert store.upgrade() == ("0012", head_revision())
    assert history(store) == [("a", "PENDING", 0, "publisher")]
    store.dispose()
