"""One tracker per app: two Celery apps in one process keep their own database, write mode and
worker timeout, and neither redirects the other's jobs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from celery import Celery, signals

import taskjobs
from taskjobs.api.job import getJob
from taskjobs.celery import registry
from taskjobs.celery.tracker import Tracker
from taskjobs.store import Store, store_for
from taskjobs.store.tables import jobs


@dataclass
class TrackedApp:
    app: Celery
    tracker: Tracker
    store: Store
    task: Any


def tracked_app(name: str, url: str, **conf: Any) -> TrackedApp:
    """An installed app called ``name`` writing to ``url``, with one task, ``{name}.work``."""
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.update(taskjobs_database_url=url, task_default_queue=f"{name}-queue", **conf)

    @app.task(name=f"{name}.work", shared=False)
    def work(value: int) -> int:
        return value * 2

    return TrackedApp(app, taskjobs.install(app), store_for(url), work)


@pytest.fixture
def two_apps(tmp_path: Path) -> Iterator[tuple[TrackedApp, TrackedApp]]:
    taskjobs.configure(None)  # no store chosen by hand: each app's own setting counts
    orders = tracked_app("orders", f"sqlite:///{tmp_path}/orders.sqlite3",
                         taskjobs_write_mode="direct", taskjobs_worker_timeout=5)  # fmt: skip
    # Batched, every 60 s: its writes wait in the queue until drained.
    billing = tracked_app("billing", f"sqlite:///{tmp_path}/billing.sqlite3",
                          taskjobs_write_mode="batched", taskjobs_batch_interval=60,
                          taskjobs_worker_timeout=30)  # fmt: skip
    yield orders, billing
    for tracked in (orders, billing):
        tracked.tracker.drain()
        tracked.tracker.stop_heartbeat("test over")
    taskjobs.configure(None)


def test_each_app_writes_its_jobs_to_its_own_database(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    orders, billing = two_apps
    placed = orders.task.apply((1,))
    charged = billing.task.apply((2,))
    assert placed.get() == 2 and charged.get() == 4
    billing.tracker.drain()

    job = orders.store.get(placed.id)
    assert job is not None and (job.status, job.result, job.name) == (
        "finished",
        "2",
        "orders.work",
    )
    job = billing.store.get(charged.id)
    assert job is not None and (job.status, job.result, job.name) == (
        "finished",
        "4",
        "billing.work",
    )
    assert orders.store.get(charged.id) is None and billing.store.get(placed.id) is None
    assert (orders.tracker.store, billing.tracker.store) == (orders.store, billing.store)


def test_a_publish_is_recorded_by_the_app_that_publishes_it(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    """``apply_async`` through the broker: the pending job is in the publishing app's store."""
    orders, billing = two_apps
    placed = orders.task.apply_async((1,))
    charged = billing.app.send_task("billing.work", (2,))
    billing.tracker.drain()
    job = orders.store.get(placed.id)
    assert job is not None and (job.status, job.queue) == ("pending", "orders-queue")
    job = billing.store.get(charged.id)
    assert job is not None and (job.status, job.queue) == ("pending", "billing-queue")
    assert orders.store.get(charged.id) is None and billing.store.get(placed.id) is None


def test_an_app_that_is_not_installed_is_not_tracked_by_another(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    """A third app, never installed, publishes and runs a task of the same name as a tracked
    one: neither tracked app records it."""
    orders, billing = two_apps
    other = Celery("other", broker="memory://", set_as_current=False)

    @other.task(name="orders.work", shared=False)
    def work(value: int) -> int:
        return value

    ran, published = work.apply((1,)), other.send_task("orders.work", (1,))
    for tracked in (orders, billing):
        tracked.tracker.drain()
        assert tracked.store.get(ran.id) is None and tracked.store.get(published.id) is None


def test_each_app_writes_in_its_own_mode(two_apps: tuple[TrackedApp, TrackedApp]) -> None:
    orders, billing = two_apps
    assert not orders.tracker.recorder().mode.batched and billing.tracker.recorder().mode.batched
    placed, charged = orders.task.apply((1,)), billing.task.apply((2,))
    assert orders.store.get(placed.id) is not None, "direct: written before apply() returns"
    billing.store.upgrade()  # its tables, which its first write would have made
    with billing.store.engine.connect() as connection:  # not through taskjobs: nothing waits
        stored = connection.execute(sa.select(jobs.c.id).where(jobs.c.id == charged.id))
        assert stored.first() is None, "batched: queued for the next batch (in 60 s)"
    assert len(billing.tracker.recorder().buffer) == 2  # its start and its end
    # A read through taskjobs in this process first writes out what the process queued.
    assert getattr(billing.store.get(charged.id), "status", None) == "finished"
    assert not billing.tracker.recorder().buffer


class Consumer:
    """What sends ``worker_ready``: a worker's consumer, with its hostname and app."""

    def __init__(self, hostname: str, app: Celery) -> None:
        self.hostname, self.app = hostname, app


def test_a_worker_beats_with_its_own_apps_timeout_in_its_own_store(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    orders, billing = two_apps
    signals.worker_ready.send(sender=Consumer("celery@orders", orders.app))
    heart = orders.tracker.heart
    assert heart is not None and (heart.timeout, heart.store_of()) == (5.0, orders.store)
    assert billing.tracker.heart is None, "the other app's worker is not this one"
    signals.worker_ready.send(sender=Consumer("celery@billing", billing.app))
    heart = billing.tracker.heart
    assert heart is not None and (heart.timeout, heart.store_of()) == (30.0, billing.store)


def test_the_first_installed_app_chooses_the_default_store(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    """The documented functions, outside any app, read the store of the first app installed
    with a database URL; ``configure(url)`` overrides it, for every app too."""
    orders, billing = two_apps
    placed = orders.task.apply((1,))
    assert getJob(placed.id, "finished") is not None
    chosen = taskjobs.configure(str(billing.store.url))
    assert orders.tracker.store is chosen and billing.tracker.store is chosen


def test_install_refuses_a_bad_database_url_at_once(tmp_path: Path) -> None:
    app = Celery("bad-url", broker="memory://", set_as_current=False)
    app.conf.taskjobs_database_url = "oracle://scott@db/jobs"
    with pytest.raises(taskjobs.ConfigurationError, match="oracle"):
        taskjobs.install(app)
    assert registry.installed(app) is None


def test_a_job_task_of_an_app_with_bad_settings_runs_untracked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tracking never changes a task's outcome, not even through taskjobs' own settings."""
    app = Celery("bad-settings", broker="memory://", set_as_current=False)
    app.conf.taskjobs_worker_timeout = "soon"

    @app.task(base=taskjobs.JobTask, bind=True, shared=False)
    def step(self: Any) -> str:
        self.progress("half way")
        return "done"

    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        assert step.apply().get() == "done"
    assert "not tracking the JobTask tasks of app bad-settings" in caplog.text


def test_install_returns_the_apps_tracker_with_its_settings_read_again(
    two_apps: tuple[TrackedApp, TrackedApp],
) -> None:
    orders, _ = two_apps
    orders.app.conf.taskjobs_worker_timeout = 9
    assert taskjobs.install(orders.app) is orders.tracker
    assert orders.tracker.settings.worker_timeout == 9.0
    assert registry.installed(orders.app) is orders.tracker


def test_the_end_a_gone_pool_process_had_not_written_is_written_once(tmp_path: Path) -> None:
    """The "batched" mode's recovery, against a real store: the end a pool process returned is
    written when the store lacks it, and left alone when the job ended at that attempt."""
    from taskjobs import lifecycle
    from taskjobs.model import utcnow
    from tests.unit.test_outcomes import request

    taskjobs.configure(None)
    tracked = tracked_app("recovery", f"sqlite:///{tmp_path}/recovery.sqlite3",
                          taskjobs_write_mode="batched")  # fmt: skip
    tracker = tracked.tracker
    assert tracker.ends_queued
    tracked.store.apply(lifecycle.succeeded("t-done", name="tasks.add", result="1", runtime=0.1,
                                            retries=0, delivery=None, at=utcnow()))  # fmt: skip
    for task_id in ("t-lost", "t-done"):
        tracker.outcomes.watch(watched := request(task_id), existing_only=False)
        watched.on_success((False, "[1, 'two']", 0.2))
    assert tracker.write_lost_ends() == 1
    lost = tracked.store.get("t-lost")
    assert lost is not None and (lost.status, lost.result) == ("finished", '[1, "two"]')
    assert "end written by the worker's main process: pool process 999999999" in lost.messages
    done = tracked.store.get("t-done")
    assert done is not None and (done.result, done.messages) == ("1", "")
    assert tracker.write_lost_ends() == 0, "taken once"
    taskjobs.configure(None)


def test_a_gone_pool_process_s_ends_are_kept_for_a_store_that_is_down(tmp_path: Path) -> None:
    """The store cannot say whether the end was written: it is written anyway, buffered until
    the store is back (an end already there would stay: the order guard refuses it again)."""
    from tests.unit.test_outcomes import request

    taskjobs.configure(None)
    tracked = tracked_app("outage", "postgresql://nobody@127.0.0.1:1/nowhere",
                          taskjobs_write_mode="batched")  # fmt: skip
    tracker = tracked.tracker
    tracker.outcomes.watch(watched := request("t-lost"), existing_only=False)
    watched.on_success((False, "3", 0.2))
    assert tracker.write_lost_ends() == 1
    queued = list(tracker.recorder().buffer)
    assert [type(change).__name__ for change in queued] == ["Event", "Note"]
    assert "could not say whether it had written the task's end" in queued[1].text
    tracker.recorder().after_fork()  # forget what was buffered for a database that never comes
    taskjobs.configure(None)
