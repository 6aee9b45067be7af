"""Publishing off the caller's path: in the "async" publish mode ``apply_async`` returns before
its pending job is written; this process's writer commits what has queued in one
transaction, and reads and writes here wait for it, so they see it. A publisher that dies before
the write leaves nothing lost: the worker's receipt writes everything the publish would have."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery, group
from celery.contrib.testing.worker import start_worker

import taskjobs
from taskjobs import lifecycle
from taskjobs.api.job import deleteJob, findJob, getJob, getJobHistory, setJob
from taskjobs.celery.recorder import Change
from taskjobs.celery.tracker import Tracker
from taskjobs.lifecycle import Lineage
from taskjobs.store import Store
from taskjobs.store.tables import jobs
from tests.waiting import job_in
from tests.writes import count_statements

# Long enough that nothing is written by the timer during a test: only a read or a drain writes.
HELD = 60


def publishing_app(name: str, **conf: Any) -> tuple[Celery, Any, Tracker]:
    """An installed app with one task, ``{name}.double``, on the memory broker."""
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.update(task_default_queue=f"{name}-queue", **conf)

    @app.task(name=f"{name}.double", shared=False)
    def double(value: int) -> int:
        return value * 2

    return app, double, taskjobs.install(app)


def stored(store: Store, job_id: str) -> bool:
    """Whether the job's row is in the database, read without waiting for queued writes."""
    with store.engine.connect() as connection:
        return connection.scalar(sa.select(sa.func.count()).where(jobs.c.id == job_id)) == 1


@pytest.fixture
def held(store: Store) -> Iterator[tuple[Celery, Any, Tracker]]:
    """An app whose publishes wait for a read (or a drain) to be written."""
    app, task, tracker = publishing_app(
        "held", taskjobs_publish_mode="async", taskjobs_publish_interval=HELD
    )
    yield app, task, tracker
    tracker.drain()


def test_a_publish_does_not_wait_for_the_database_and_a_read_here_sees_it(
    store: Store, held: tuple[Celery, Any, Tracker]
) -> None:
    _, task, _ = held
    result = task.apply_async((1,), headers={"taskjobs_user": "alice"})
    assert not stored(store, result.id), "the caller waited for the pending job's commit"
    job = getJob(result.id)  # waits for this process's queued publishes
    assert job is not None and (job["name"], job["user"], job["queue"]) == (
        "held.double", "alice", "held-queue")  # fmt: skip
    assert stored(store, result.id)


def test_a_group_is_published_in_one_transaction(
    store: Store, held: tuple[Celery, Any, Tracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's pending rows are queued while it publishes, then written together: one
    transaction, and each statement in it run once for all of them."""
    _, task, tracker = held
    transactions: list[int] = []
    apply_all = store.apply_all

    def counted(changes: Sequence[Change]) -> None:
        transactions.append(len(changes))
        apply_all(changes)

    monkeypatch.setattr(store, "apply_all", counted)
    with count_statements(store) as statements:
        results = group(task.s(n) for n in range(50)).apply_async()
        assert tracker.drain() == 0
    assert transactions == [50]
    assert len(statements) == (1 if store.engine.dialect.name == "postgresql" else 2)
    assert all(getJob(result.id) is not None for result in results.results)


def test_an_explicit_write_after_a_publish_is_not_overtaken_by_it(
    store: Store, held: tuple[Celery, Any, Tracker]
) -> None:
    _, task, tracker = held
    finished = task.apply_async((1,))
    setJob(finished.id, {"result": "done by hand"}, "finished")
    deleted = task.apply_async((2,))
    deleteJob(deleted.id)
    tracker.drain()
    assert getattr(findJob(finished.id)[0], "status", None) == "finished"
    assert findJob(deleted.id) == (None, None)


def test_the_sync_mode_commits_the_pending_job_before_the_publish_returns(store: Store) -> None:
    _, task, _ = publishing_app("synced", taskjobs_publish_mode="sync")
    result = task.apply_async((1,))
    assert stored(store, result.id)


def test_publishing_is_off_the_callers_path_by_default(store: Store) -> None:
    _, task, tracker = publishing_app("defaults", taskjobs_publish_interval=HELD)
    try:
        result = task.apply_async((1,))
        assert not stored(store, result.id), "the default publish waited for the database"
    finally:
        tracker.drain()
    assert stored(store, result.id)


# What a worker writes does not depend on the database: one is enough for a worker's run.
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_publisher_that_dies_before_writing_loses_nothing_a_worker_receives(
    store: Store, held: tuple[Celery, Any, Tracker]
) -> None:
    """The publisher's queue is lost (as when it is killed); the worker's receipt writes the
    job with all the publish knew: name, user, request, queue and lineage."""
    app, task, tracker = held
    result = task.apply_async((21,), headers={"taskjobs_user": "bob"})
    tracker.publisher().after_fork()  # what a killed publisher loses: its queue
    assert findJob(result.id) == (None, None)
    # Started by hand: the worker must start after the publish, on this test's own app.
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        job = job_in(result.id, "finished")
    assert (job["name"], job["user"], job["queue"], job["result"]) == (
        "held.double", "bob", "held-queue", "42")  # fmt: skip
    assert json.loads(job["request"]) == {"args": [21], "kwargs": {}}
    assert job["root_id"] == result.id and job["created_at"] <= job["received_at"]
    # The receipt wrote the publish too, at its publish time: the history is whole.
    history = getJobHistory(result.id)
    assert [h["celery_state"] for h in history] == [
        "PENDING", "RECEIVED", "STARTED", "SUCCESS"]  # fmt: skip
    assert history[0]["at"] == job["created_at"] < history[1]["at"]


def test_a_late_publish_write_still_dates_the_job_from_its_publish(
    store: Store, held: tuple[Celery, Any, Tracker]
) -> None:
    """A worker received the message before the publisher's write landed: the job keeps the
    publish time as its creation, and the state the worker gave it."""
    _, task, tracker = held
    result = task.apply_async((1,))
    publisher = tracker.publisher()
    (published,) = list(publisher.buffer)
    publisher.after_fork()  # hold the write back, to apply it after the worker's
    receipt = lifecycle.received(
        result.id, name="held.double", user=None, request=None, queue="held-queue",
        lineage=Lineage(), retries=0, eta=None, worker="celery@w", redelivered=False,
        delivery=published.delivery, at=published.at + timedelta(milliseconds=5),
    )  # fmt: skip
    store.apply(receipt)
    store.apply(published)
    job = getJob(result.id)
    assert job is not None and job["celery_state"] == "RECEIVED"
    assert job["created_at"] == published.at < job["received_at"]


# What a worker writes does not depend on the database: one is enough for a worker's run.
@pytest.mark.parametrize("db_kind", ["sqlite"], indirect=True)
def test_a_receipt_that_overtakes_an_async_publish_keeps_the_history_whole(
    store: Store, held: tuple[Celery, Any, Tracker]
) -> None:
    """The worker receives and runs the task before the publisher's write lands, which then
    lands: one PENDING row, first, at the publish time; nothing the publish wrote is lost."""
    app, task, tracker = held
    result = task.apply_async((4,), headers={"taskjobs_user": "carol"})
    publisher = tracker.publisher()
    (published,) = list(publisher.buffer)
    publisher.after_fork()  # held back until the worker is done
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        job_in(result.id, "finished")
    store.apply(published)
    job = getJob(result.id, "finished")
    assert job is not None and (job["user"], job["result"]) == ("carol", "8")
    history = getJobHistory(result.id)
    assert [h["celery_state"] for h in history] == [
        "PENDING", "RECEIVED", "STARTED", "SUCCESS"]  # fmt: skip
    assert history[0]["at"] == job["created_at"]
    assert abs((published.at - job["created_at"]).total_seconds()) < 0.01


def test_a_bad_publish_mode_names_the_valid_ones() -> None:
    app = Celery("badmode", broker="memory://", set_as_current=False)
    app.conf.taskjobs_publish_mode = "later"
    with pytest.raises(
        taskjobs.ConfigurationError, match="taskjobs_publish_mode 'later'.*async, sync"
    ):
        taskjobs.install(app)
