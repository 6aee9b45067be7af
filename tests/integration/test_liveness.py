"""Worker heartbeats and the reaper, on every database."""

from __future__ import annotations

import logging
import os
import weakref
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery import signals

import taskjobs
from taskjobs import liveness
from taskjobs.api.job import findJob, getJob, getJobHistory
from taskjobs.celery import heartbeat, receivers, registry
from taskjobs.celery.heartbeat import Heart
from taskjobs.model import (
    STAGE_ENDED,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RECEIVED_AGAIN,
    STAGE_RUNNING,
    STAGE_RUNNING_AGAIN,
    order_key,
    utcnow,
)
from taskjobs.report import build_report
from taskjobs.settings import Settings
from taskjobs.store import Store, dialects, store_for
from taskjobs.store.tables import jobs, stat_log
from taskjobs.store.workers import REAP_LOCK, REAP_LOCK_NAME
from tests.waiting import wait_for
from tests.writes import transition


def test_one_reap_of_several_silent_workers_writes_one_history_row_per_job(
    store: Store,
) -> None:
    now = utcnow()
    for worker in ("celery@one", "celery@two"):
        store.heartbeat(worker, hostname="h", pid=1, at=now - timedelta(seconds=120))
        transition(f"on-{worker}", "running", {"worker": worker},
                   seq=order_key(0, STAGE_RUNNING))  # fmt: skip
    marked = liveness.reap(60, store)
    assert marked == {"celery@one": 1, "celery@two": 1}
    for worker in marked:
        assert [h.status for h in store.history(f"on-{worker}")] == ["running", "error"]


def test_silent_workers_running_jobs_are_marked_lost_once(store: Store) -> None:
    now = utcnow()
    store.heartbeat("celery@dead", hostname="h1", pid=1, at=now - timedelta(seconds=120))
    store.heartbeat("celery@alive", hostname="h2", pid=2, at=now)
    transition("on-dead", "running", {"worker": "celery@dead"}, seq=order_key(0, STAGE_RUNNING))
    transition("on-alive", "running", {"worker": "celery@alive"}, seq=order_key(0, STAGE_RUNNING))
    transition("done-on-dead", "finished", {"worker": "celery@dead"}, seq=order_key(0, STAGE_ENDED))

    assert liveness.reap(60, store) == {"celery@dead": 1}
    lost = getJob("on-dead", "error")
    assert lost is not None and lost["celery_state"] == "LOST" and lost["exc_type"] == "WorkerLost"
    assert "worker lost: celery@dead sent no heartbeat for over 60s" in lost["messages"]
    assert [h["status"] for h in getJobHistory("on-dead")] == ["running", "error"]
    assert getJob("on-alive", "running") is not None
    assert getJob("done-on-dead", "finished") is not None
    # The dead worker is now marked stopped: reaping again finds nothing.
    assert liveness.reap(60, store) == {}
    workers = {w.name: w for w in store.list_workers()}
    assert workers["celery@dead"].stopped_at is not None
    assert workers["celery@alive"].stopped_at is None


def test_the_jobs_a_lost_worker_had_received_say_they_wait_for_redelivery(store: Store) -> None:
    """Received but not started: the job stays pending (the broker delivers the message again),
    and its messages say why it waits. A job the worker never received, or a worker that stopped
    cleanly (its messages go back to the queue), adds nothing."""
    now = utcnow()
    store.heartbeat("celery@dead", hostname="h1", pid=1, at=now - timedelta(seconds=120))
    store.heartbeat("celery@leaving", hostname="h2", pid=2, at=now)
    received = {"worker": "celery@dead", "received_at": now, "celery_state": "RECEIVED"}
    transition("waiting", "pending", received, seq=order_key(0, STAGE_RECEIVED))
    transition("queued", "pending", {"celery_state": "PENDING"}, seq=order_key(0, STAGE_PUBLISHED))
    transition("leaving", "pending", {**received, "worker": "celery@leaving"},
               seq=order_key(0, STAGE_RECEIVED))  # fmt: skip

    assert liveness.reap(60, store) == {"celery@dead": 0}
    assert liveness.worker_stopped("celery@leaving", "shut down", store) == 0
    waiting = getJob("waiting", "pending")
    assert waiting is not None and waiting["celery_state"] == "RECEIVED"
    assert waiting["messages"].split("] ", 1)[1] == (
        "worker lost: celery@dead stopped sending heartbeats before this task started; "
        "it waits for its message to be delivered again\n"
    )
    assert getJob("queued", "pending")["messages"] == ""  # type: ignore[index]
    assert getJob("leaving", "pending")["messages"] == ""  # type: ignore[index]
    assert [h["status"] for h in getJobHistory("waiting")] == ["pending"], "no new state"


def test_a_lost_job_moves_on_when_its_message_is_redelivered(store: Store) -> None:
    now = utcnow()
    store.heartbeat("celery@dead", hostname="h", pid=1, at=now - timedelta(seconds=120))
    transition("job", "running", {"worker": "celery@dead"}, seq=order_key(0, STAGE_RUNNING))
    liveness.reap(60, store)
    transition("job", "pending", {"worker": "celery@other"}, seq=order_key(0, STAGE_RECEIVED_AGAIN))
    transition("job", "running", {"worker": "celery@other"}, seq=order_key(0, STAGE_RUNNING_AGAIN))
    assert getJob("job", "running")["worker"] == "celery@other"  # type: ignore[index]
    transition("job", "finished", {}, seq=order_key(0, STAGE_ENDED))
    assert getJob("job", "finished") is not None


def test_a_true_end_reported_late_beats_a_presumed_loss(store: Store) -> None:
    store.heartbeat("celery@slow", hostname="h", pid=1, at=utcnow() - timedelta(seconds=120))
    transition("job", "running", {"worker": "celery@slow"}, seq=order_key(0, STAGE_RUNNING))
    liveness.reap(60, store)
    transition("job", "finished", {"result": "1"}, seq=order_key(0, STAGE_ENDED))
    assert getJob("job", "finished") is not None


def test_a_stopped_worker_loses_its_running_jobs_at_once(store: Store) -> None:
    store.heartbeat("celery@w", hostname="h", pid=1, at=utcnow())
    transition("job", "running", {"worker": "celery@w"}, seq=order_key(0, STAGE_RUNNING))
    assert liveness.worker_stopped("celery@w", "stopped by a cold shutdown", store) == 1
    job = getJob("job", "error")
    assert job is not None and "stopped by a cold shutdown" in job["messages"]


def test_a_heartbeat_revives_a_worker_marked_stopped(store: Store) -> None:
    store.heartbeat("celery@w", hostname="h", pid=1, at=utcnow() - timedelta(seconds=120))
    liveness.reap(60, store)
    liveness.beat("celery@w", "h", 1, store)
    assert store.list_workers()[0].stopped_at is None


def test_after_an_outage_longer_than_the_timeout_no_live_worker_is_judged_lost(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every worker is silent during a store outage. The first worker to beat again must not
    mark the others' running jobs lost; only one that has beaten for a whole timeout since may
    judge, and then a worker that stays silent is lost."""
    caplog.set_level(logging.WARNING, logger="taskjobs")
    timeout = 0.5
    settings = Settings.load({"taskjobs_worker_timeout": timeout})
    hearts = (Heart("celery@first", settings, lambda: store),
              Heart("celery@second", settings, lambda: store))  # fmt: skip
    first, second = hearts
    first.beat_and_reap()
    second.beat_and_reap()
    transition("job", "running", {"worker": "celery@second"}, seq=order_key(0, STAGE_RUNNING))

    unreachable = store_for(f"sqlite:///{tmp_path}/missing/folder/jobs.sqlite3")
    for heart in hearts:  # the outage
        heart.store_of = lambda: unreachable
    outage_began = utcnow()
    first.beat_and_reap()
    second.beat_and_reap()
    assert first.beating_since is None and second.beating_since is None
    wait_for(lambda: utcnow() - outage_began > timedelta(seconds=2 * timeout),
             what="the outage to outlast the timeout")  # fmt: skip
    for heart in hearts:
        heart.store_of = lambda: store

    first.beat_and_reap()  # back first: the second worker, silent through the outage, is alive
    assert getJob("job", "running") is not None, "a live worker's job was marked lost"
    second.beat_and_reap()
    assert store.list_workers() and all(w.stopped_at is None for w in store.list_workers())

    # The second worker now dies: once the first has beaten for a timeout, it is judged.
    wait_for(lambda: first.beat_and_reap() or getJob("job", "error"), timeout=10,
             what="the silent worker's job to be marked lost")  # fmt: skip
    assert "taskjobs: heartbeat of worker celery@first failed" in caplog.messages
    assert (
        "taskjobs: worker celery@second sent no heartbeat for over 0.5s: 1 running job(s) "
        "marked lost" in caplog.messages
    )
    beaten = {w.name: w for w in store.list_workers()}["celery@first"]
    assert (beaten.hostname, beaten.pid) == (os.uname().nodename, os.getpid())
    assert "celery@second sent no heartbeat" in getJob("job", "error")["messages"]  # type: ignore[index]


def test_each_function_acts_on_the_store_it_is_given(store: Store, tmp_path: Path) -> None:
    other = taskjobs.configure(f"sqlite:///{tmp_path}/other.sqlite3")  # the default elsewhere
    try:
        liveness.beat("celery@w", "h", 7, store)
        (beating,) = store.list_workers()
        assert (beating.name, beating.hostname, beating.pid) == ("celery@w", "h", 7)
        store.heartbeat("celery@dead", hostname="h", pid=1, at=utcnow() - timedelta(seconds=120))
        transition("lost", "running", {"worker": "celery@dead"}, seq=order_key(0, STAGE_RUNNING),
                   store=store)  # fmt: skip
        assert liveness.reap(60, store) == {"celery@dead": 1}
        assert liveness.worker_stopped("celery@w", "stopped", store) == 0  # nothing running
        transition("old", "finished", {}, at=utcnow() - timedelta(days=2), store=store)
        assert liveness.expire({"finished": 86400}, 1, 10, store) == 1
        assert other.list_workers() == [] and other.select(limit=10) == []
    finally:
        taskjobs.configure(None)


@pytest.mark.parametrize("timeout", [0.1, 60, 6000])
def test_beat_interval_is_a_fraction_of_the_timeout_within_bounds(timeout: float) -> None:
    interval = liveness.beat_interval(timeout)
    assert liveness.MIN_BEAT <= interval <= liveness.MAX_BEAT and interval <= max(timeout, 0.2)


def test_expiry_deletes_old_jobs_of_the_given_states_in_bounded_batches(store: Store) -> None:
    old = utcnow() - timedelta(days=10)
    for i in range(5):
        transition(f"old-done-{i}", "finished", {}, at=old)
    transition("old-error", "error", {}, at=old)
    transition("old-running", "running", {}, at=old)
    transition("new-done", "finished", {})
    # Two batches of two: four of the five old finished jobs go this round.
    assert liveness.expire({"finished": 86400}, batches=2, batch_size=2, store=store) == 4
    assert liveness.expire({"finished": 86400, "error": 86400}, 10, 100, store) == 2
    left = sorted(job.id for job in store.select())
    assert left == ["new-done", "old-running"]
    assert getJobHistory("old-error") == []


class Consumer:
    """What sends ``worker_ready``: a worker's consumer, named by its hostname, of its app."""

    def __init__(self, hostname: str, app: object = None) -> None:
        self.hostname = hostname
        self.app = app


def test_a_worker_beats_from_ready_and_its_shutdown_ends_its_running_jobs(store: Store) -> None:
    """Through Celery's own worker signals, sent as a worker sends them (``worker_ready`` by
    its consumer, ``worker_shutting_down`` with how it stops, ``worker_shutdown`` on the
    warm path): the worker beats from ready; a cold shutdown ends its running jobs at once; a
    warm one marks it stopped and stops its heartbeat."""
    from tests.celeryapp import app  # an installed app, whose settings the heartbeat uses

    tracker = registry.installed(app)
    assert tracker is not None and tracker.heart is None
    signals.worker_ready.send(sender=Consumer(None, app))  # type: ignore[arg-type]
    assert tracker.heart is None, "no hostname: nothing to beat for"
    signals.worker_ready.send(sender=Consumer("celery@untracked", object()))
    assert tracker.heart is None, "a worker of an app taskjobs does not track"
    worker = Consumer("celery@signals", app)
    signals.worker_ready.send(sender=worker)
    try:
        assert tracker.heart is not None and tracker.heart.is_alive()
        assert tracker.heart.name == "taskjobs-heartbeat-celery@signals"  # in thread dumps
        wait_for(lambda: [w.name for w in store.list_workers()] == ["celery@signals"],
                 what="the first heartbeat")  # fmt: skip
        signals.worker_ready.send(sender=Consumer("celery@other", app))
        assert tracker.heart.worker == "celery@signals", "one heartbeat per process"

        transition("cut", "running", {"worker": "celery@signals"}, seq=order_key(0, STAGE_RUNNING))
        signals.worker_shutting_down.send(sender="celery@signals", sig="SIGTERM", how="Warm",
                                          exitcode=0)  # fmt: skip
        assert getJob("cut", "running") is not None, "a warm shutdown lets its tasks finish"
        signals.worker_shutting_down.send(sender="celery@signals", sig="SIGQUIT", how="Cold",
                                          exitcode=0)  # fmt: skip
        job = getJob("cut", "error")
        assert (
            job is not None and "stopped by a cold shutdown while the task ran" in (job["messages"])
        )
        transition("warm", "running", {"worker": "celery@signals"}, seq=order_key(0, STAGE_RUNNING))
    finally:
        heart = tracker.heart
        signals.worker_shutdown.send(sender=worker)
    assert tracker.heart is None and heart is not None
    heart.join(timeout=30)
    assert not heart.is_alive()
    (stopped,) = store.list_workers()
    assert stopped.stopped_at is not None
    job = getJob("warm", "error")
    assert job is not None and "shut down while the task ran" in job["messages"]


def test_the_worker_receivers_are_connected_strongly_and_once() -> None:
    watched = (signals.worker_ready, signals.worker_shutting_down, signals.worker_shutdown,
               signals.worker_process_shutdown)  # fmt: skip
    for signal in watched:  # as in a process where nothing connected them yet
        for key, _ in list(signal.receivers):
            if str(key[0]).startswith("taskjobs."):
                signal.disconnect(dispatch_uid=key[0])
    receivers.connect()
    receivers.connect()
    for signal in watched:
        ours = [ref for key, ref in signal.receivers if str(key[0]).startswith("taskjobs.")]
        assert len(ours) == 1, signal
        assert callable(ours[0]) and not isinstance(ours[0], weakref.ReferenceType)


def test_a_beating_worker_deletes_jobs_past_their_time_to_keep(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    transition("old", "finished", {}, at=now - timedelta(hours=2))
    transition("old-error", "error", {}, at=now - timedelta(hours=2))
    transition("new", "finished", {}, at=now)
    transition("older-error", "error", {}, at=now - timedelta(hours=5))
    settings = Settings.load({"taskjobs_keep_finished": 3600, "taskjobs_keep_error": 4 * 3600,
                              "taskjobs_worker_timeout": 1.2})  # a beat every 0.2 s  # fmt: skip
    heart = Heart("celery@keeper", settings, lambda: store)
    assert heart.daemon and heart.interval == liveness.beat_interval(settings.worker_timeout)
    with caplog.at_level(logging.INFO, logger="taskjobs"):
        heart.start()
        try:
            wait_for(lambda: findJob("old") == findJob("older-error") == (None, None),
                     what="the old jobs to be deleted")  # fmt: skip
            (after_expiry,) = store.list_workers()
            # It goes on beating after deleting.
            wait_for(lambda: store.list_workers()[0].last_seen > after_expiry.last_seen,
                     what="the next heartbeat")  # fmt: skip
        finally:
            heart.stop()
            heart.join(timeout=30)
    assert findJob("new")[1] == "finished" and findJob("old-error")[1] == "error"
    assert "taskjobs: deleted 2 job(s) past their time to keep" in caplog.messages


def test_a_presumed_end_is_recorded_whole_and_holds_against_older_events(store: Store) -> None:
    """A reaped job ends at the presumed end of its own attempt, whatever stage it had
    reached: older events of that attempt do not reopen it, a redelivery moves it on, its
    true end wins. Its history gets one row; jobs it did not end get none."""
    now = utcnow()
    dead = {"worker": "celery@dead"}
    store.heartbeat("celery@dead", hostname="h", pid=1, at=now - timedelta(seconds=120))
    before = now - timedelta(seconds=100)  # the jobs started before their worker fell silent
    transition("retried", "running", {**dead, "retries": 5, "celery_state": "STARTED"},
               seq=order_key(5, STAGE_RUNNING), message="started\n", at=before)  # fmt: skip
    transition("redelivered", "running", dead, seq=order_key(0, STAGE_RUNNING_AGAIN), at=before)
    transition("by-api", "running", dead, at=before)  # no order key: the documented API
    transition("done", "finished", {**dead, "celery_state": "SUCCESS"},
               seq=order_key(0, STAGE_ENDED), at=now)  # fmt: skip

    assert store.reap(silent_since=now - timedelta(seconds=60), worker=None, at=now,
                      reason="sent no heartbeat") == {"celery@dead": 3}  # fmt: skip
    retried = store.get("retried")
    assert retried is not None and retried.finished_at == now and retried.retries == 5
    assert retried.messages.startswith("started\n[") and "celery@dead" in retried.messages
    assert store.get("by-api").messages.startswith("[")  # type: ignore[union-attr]
    *_, last = store.history("retried")
    assert (last.status, last.celery_state, last.worker, last.retries, last.at) == (
        "error",
        "LOST",
        "celery@dead",
        5,
        now,
    )
    assert [h.status for h in store.history("done")] == ["finished"]

    transition("retried", "running", {}, seq=order_key(5, STAGE_RUNNING))
    transition("redelivered", "pending", {}, seq=order_key(0, STAGE_RECEIVED_AGAIN))
    transition("by-api", "running", {}, seq=order_key(0, STAGE_RUNNING))

    def status(job_id: str) -> str:
        job = store.get(job_id)
        assert job is not None
        return job.status

    assert [status(i) for i in ("retried", "redelivered", "by-api")] == ["error"] * 3
    transition("retried", "pending", {}, seq=order_key(5, STAGE_RECEIVED_AGAIN))
    assert status("retried") == "pending"
    transition("redelivered", "finished", {}, seq=order_key(0, STAGE_ENDED))
    assert status("redelivered") == "finished"

    # The worker comes back, runs another job and falls silent again: only that job gets a
    # new history row.
    store.heartbeat("celery@dead", hostname="h", pid=1, at=now)
    transition("second", "running", dead, seq=order_key(0, STAGE_RUNNING))
    later = now + timedelta(seconds=90)
    assert store.reap(silent_since=later - timedelta(seconds=60), worker=None, at=later,
                      reason="sent no heartbeat") == {"celery@dead": 1}  # fmt: skip
    assert [h.status for h in store.history("by-api")] == ["running", "error"]


def test_bookkeeping_that_fails_is_logged_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Recording a worker's stop or deleting old jobs runs in the worker's own threads and
    shutdown: a store that fails there is logged, with what failed, and nothing is raised."""
    caplog.set_level(logging.INFO, logger="taskjobs")
    unreachable = store_for(f"sqlite:///{tmp_path}/missing/folder/jobs.sqlite3")
    heart = Heart("celery@gone", Settings.load({"taskjobs_keep_finished": 60}), lambda: unreachable)
    heart.stopped("stopped")
    heart.expire()
    heart.fold()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "taskjobs: could not record the stop of worker celery@gone",
        "taskjobs: deleting expired jobs failed",
        "taskjobs: folding the running aggregates failed",
    ]
    assert all(r.exc_info is not None for r in failures)


def test_a_revoke_is_noted_on_the_jobs_not_yet_ended(store: Store) -> None:
    """The pending jobs take REVOKING and the note, a running one the note only, an ended
    one nothing; the order keys stay, so the worker's next events apply as before."""
    now = utcnow()
    transition("queued", "pending", {"celery_state": "PENDING"}, seq=order_key(0, STAGE_PUBLISHED))
    transition("busy", "running", {"celery_state": "STARTED"}, seq=order_key(0, STAGE_RUNNING))
    transition("done", "finished", {"celery_state": "SUCCESS"}, seq=order_key(0, STAGE_ENDED))
    ids = ["queued", "busy", "done", "never-stored"]
    assert store.note_revoked(ids, celery_state="REVOKING", note="revoke sent", at=now) == 2
    queued, busy, done = (store.get(job_id) for job_id in ("queued", "busy", "done"))
    assert queued is not None and busy is not None and done is not None
    assert (queued.status, queued.celery_state) == ("pending", "REVOKING")
    assert queued.messages.endswith("] revoke sent\n") and queued.updated_at == now
    assert (busy.status, busy.celery_state) == ("running", "STARTED")
    assert busy.messages.endswith("] revoke sent\n")
    assert done.messages == "" and done.celery_state == "SUCCESS"
    transition("queued", "running", {"celery_state": "STARTED"}, seq=order_key(0, STAGE_RUNNING))
    assert getJob("queued", "running") is not None, "a worker that never heard of it runs it"


def test_a_beating_worker_folds_the_logged_changes_into_the_aggregates(store: Store) -> None:
    """What the jobs' writes logged is moved into the running aggregates within a fold's
    interval, and the report's figures stay what they were."""
    now = utcnow()
    for i in range(30):
        transition(f"j{i}", "finished", {"name": "t", "runtime": 2.0}, at=now)
    window = {"since": now - timedelta(minutes=1), "until": now + timedelta(minutes=1),
              "store": store}  # fmt: skip
    before = build_report(**window)

    def unfolded() -> int:
        with store.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(stat_log)))

    assert unfolded() == 30
    heart = Heart("celery@folder", Settings.load({}), lambda: store)
    heart.start()
    try:
        wait_for(lambda: unfolded() == 0, what="the changes to be folded")
        transition("late", "error", {"name": "t"}, at=now)
        wait_for(lambda: unfolded() == 0, what="the next fold")
    finally:
        heart.stop()
        heart.join(timeout=30)
    after = build_report(**window)
    assert before.tasks[0].counts["finished"] == after.tasks[0].counts["finished"] == 30
    assert (after.tasks[0].runtime_p50, after.totals["error"]) == (2.0, 1)  # a round bound


def test_a_heart_reaps_the_store_it_beats_in_not_the_default(store: Store, tmp_path: Path) -> None:
    """A worker's app may keep its jobs in a store other than the process's default: its heart
    judges the silent workers of that store."""
    store.heartbeat("celery@dead", hostname="h", pid=1, at=utcnow() - timedelta(seconds=120))
    transition("lost", "running", {"worker": "celery@dead"}, seq=order_key(0, STAGE_RUNNING),
               store=store)  # fmt: skip
    other = taskjobs.configure(f"sqlite:///{tmp_path}/other.sqlite3")  # the default elsewhere
    try:
        settings = Settings.load({"taskjobs_worker_timeout": 0.5})
        heart = Heart("celery@judge", settings, lambda: store)

        def judged() -> bool:
            heart.beat_and_reap()
            job = store.get("lost")
            return job is not None and job.status == "error"

        wait_for(judged, timeout=10, what="the silent worker's job to be marked lost")
        assert other.list_workers() == []
    finally:
        taskjobs.configure(None)


def test_one_round_of_a_hearts_bookkeeping_is_bounded(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fold moves at most ``FOLD_LIMIT`` logged changes, an expiry deletes at most
    ``EXPIRE_BATCHES`` batches of ``EXPIRE_BATCH_SIZE`` jobs: a worker's bookkeeping never holds
    the job store for long, however much has piled up; the next rounds do the rest."""
    monkeypatch.setattr(heartbeat, "FOLD_LIMIT", 4)
    monkeypatch.setattr(heartbeat, "EXPIRE_BATCHES", 2)
    monkeypatch.setattr(heartbeat, "EXPIRE_BATCH_SIZE", 2)
    old = utcnow() - timedelta(days=2)
    for i in range(7):
        transition(f"old-{i}", "finished", {"name": "t"}, at=old)

    def unfolded() -> int:
        with store.engine.connect() as connection:
            return int(connection.scalar(sa.select(sa.func.count()).select_from(stat_log)))

    heart = Heart("celery@bounded", Settings.load({"taskjobs_keep_finished": 86400}), lambda: store)
    assert unfolded() == 7
    heart.fold()
    assert unfolded() == 3
    with caplog.at_level(logging.INFO, logger="taskjobs"):
        heart.expire()
    assert len(store.select()) == 3
    assert caplog.messages == ["taskjobs: deleted 4 job(s) past their time to keep"]
    heart.expire()
    assert store.select() == []


def test_a_stop_recorded_while_another_process_reaps_still_marks_its_jobs(
    store: Store, db_kind: str
) -> None:
    """One process at a time looks for silent workers; a worker's own stop, recorded
    meanwhile, does not wait for that: the worker is stopped and its running job lost."""
    if db_kind == "sqlite":
        pytest.skip("SQLite's write lock makes the stop wait for the other reaper instead")
    store.heartbeat("celery@w", hostname="h", pid=1, at=utcnow())
    transition("job", "running", {"worker": "celery@w"}, seq=order_key(0, STAGE_RUNNING))
    with (
        store.engine.begin() as connection,
        dialects.try_lock(connection, key=REAP_LOCK, name=REAP_LOCK_NAME) as held,
    ):
        assert held, "this test is the other process reaping"
        assert liveness.worker_stopped("celery@w", "shut down", store) == 1
        assert liveness.reap(0, store) == {}  # the search for silent ones waits its turn
    job = getJob("job", "error")
    assert job is not None and job["celery_state"] == "LOST"
    assert [w.stopped_at is not None for w in store.list_workers() if w.name == "celery@w"] == [
        True
    ]


def test_expiry_keeps_a_job_that_moved_on_while_its_batch_was_being_deleted(
    store: Store, db_kind: str
) -> None:
    """A job lost long ago (``error``, past its time to keep) is delivered again just as an
    expiry picked it for deletion: the job, running again, is kept."""
    if db_kind == "sqlite":
        pytest.skip("SQLite's write lock: no job changes between a purge's statements")
    old = utcnow() - timedelta(days=10)
    store.heartbeat("celery@dead", hostname="h", pid=1, at=old)
    transition("lost", "running", {"worker": "celery@dead"}, seq=order_key(0, STAGE_RUNNING),
               at=old)  # fmt: skip
    assert liveness.reap(60, store) == {"celery@dead": 1}
    redelivered: list[str] = []

    def redeliver_once_picked(*args: object) -> None:
        statement = str(args[2])  # the purge's: SELECT <jobs>.id FROM <jobs> WHERE ... LIMIT n
        picks = statement.startswith(f"SELECT {jobs.name}.id") and "LIMIT" in statement
        if picks and not redelivered:
            redelivered.append(statement)  # another worker, in its own transaction
            transition("lost", "running", {"worker": "celery@other"},
                       seq=order_key(0, STAGE_RUNNING_AGAIN))  # fmt: skip

    sa.event.listen(store.engine, "after_cursor_execute", redeliver_once_picked)
    try:
        assert liveness.expire({"error": 86400}, 1, 10, store) == 0
    finally:
        sa.event.remove(store.engine, "after_cursor_execute", redeliver_once_picked)
    assert redelivered, "the expiry picked the job"
    job = getJob("lost", "running")
    assert job is not None and job["worker"] == "celery@other"
    # Its history stays with it: the first run, the loss, the run again.
    history = [(t.status, t.worker) for t in store.history("lost")]
    assert history == [("running", "celery@dead"), ("error", "celery@dead"),
                       ("running", "celery@other")]  # fmt: skip
