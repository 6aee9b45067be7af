"""Two processes writing one job at the same moment: the publisher and the worker both write a
task's publish (the worker from the message it received, in case the publisher's write is late
or lost), and the second write waits for the first one's row lock."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import pytest

from taskjobs import lifecycle
from taskjobs.lifecycle import Event, Lineage
from taskjobs.store import Store
from tests.waiting import wait_for

AT = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)


def publish(job_id: str) -> Event:
    return lifecycle.published(
        job_id, name="tasks.add", user=None, request=None, queue="celery", lineage=Lineage(),
        retries=0, eta=None, delivery=None, at=AT,
    )  # fmt: skip


def receipt(job_id: str) -> Event:
    return lifecycle.received(
        job_id, name="tasks.add", user=None, request=None, queue="celery", lineage=Lineage(),
        retries=0, eta=None, worker="w1@host", redelivered=False, delivery=None,
        at=AT.replace(second=1),
    )  # fmt: skip


# What the worker writes of a task it received, in one transaction: its publish alone (in the
# "direct" write mode), or its publish and receipt (a "grouped" batch).
WORKER_WRITES = {"publish": [publish], "publish-and-receipt": [publish, receipt]}


def blocked_writers(store: Store) -> int:
    """How many of the database's connections wait for a lock now: on MySQL and MariaDB, how
    many run a write of jobs (it can only be waiting, with the test's transaction holding the
    row it writes; their list of lock waits is a cache, refreshed at most every 0.1 s)."""
    query = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'",
        "mysql": "SELECT count(*) FROM information_schema.processlist "
        "WHERE db = database() AND info LIKE 'INSERT INTO taskjobs_jobs %%'",
    }[store.engine.dialect.name]
    with store.engine.connect() as connection:
        return int(connection.exec_driver_sql(query).scalar_one())


@pytest.mark.parametrize("worker_writes", WORKER_WRITES)
def test_a_publish_written_twice_at_once_is_in_the_history_once(
    store: Store, worker_writes: str
) -> None:
    """The first write holds the job's row until it commits; the second one, started before
    that commit, waits for it and then finds the job pending already. The history holds the
    publish once: what a user reads is one publish, not two."""
    if store.engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one write transaction at a time: no write waits inside another")
    other = Store(store.url)
    failures: list[BaseException] = []

    def write_second() -> None:
        try:
            other.apply_all([event("job-1") for event in WORKER_WRITES[worker_writes]])
        except Exception as exc:  # noqa: BLE001 - reported by the test's own thread below
            failures.append(exc)

    waiting = threading.Thread(target=write_second)
    with store.batch():
        store.apply(publish("job-1"))  # committed at the end of the block
        waiting.start()
        wait_for(lambda: blocked_writers(store) == 1, what="the second write to wait")
    waiting.join(timeout=30)
    other.dispose()
    assert not failures and not waiting.is_alive()

    steps = Counter((step.celery_state, step.at) for step in store.history("job-1"))
    assert steps[("PENDING", AT)] == 1, steps
    assert store.get("job-1").celery_state == "RECEIVED" or worker_writes == "publish"
