"""The workers' side of the store on every database: who counts as silent, and the notes a
lost worker or a revoke leaves in exactly the jobs they concern."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from taskjobs.api.job import setJob
from taskjobs.model import (
    STAGE_ENDED,
    STAGE_PRESUMED_END,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RUNNING,
    STAGE_RUNNING_AGAIN,
    message_line,
    order_key,
    utcnow,
)
from taskjobs.store import Store
from taskjobs.store.tables import jobs
from tests.writes import transition


def test_a_worker_silent_for_exactly_the_timeout_is_not_lost(store: Store) -> None:
    # As the workers' list says: silent for exactly the timeout is not over it.
    now = utcnow()
    store.heartbeat("celery@w", hostname="h", pid=1, at=now - timedelta(seconds=60))
    transition("job", "running", {"worker": "celery@w"}, seq=order_key(0, STAGE_RUNNING))
    silent_since = now - timedelta(seconds=60)
    assert store.reap(silent_since=silent_since, worker=None, at=now, reason="silent") == {}
    job = store.get("job")
    assert job is not None and job.status == "running"
    assert [w.stopped_at for w in store.list_workers()] == [None]


def test_a_lost_worker_notes_only_the_jobs_it_received_and_had_not_started(store: Store) -> None:
    """The waiting note is appended to what the job's messages already hold; a job the worker
    ran (now lost), ended or never received takes no waiting note."""
    now = utcnow()
    dead = {"worker": "celery@dead", "received_at": now - timedelta(seconds=90)}
    store.heartbeat("celery@dead", hostname="h", pid=1, at=now - timedelta(seconds=120))
    transition("noted", "pending", dead, seq=order_key(0, STAGE_RECEIVED), message="kept\n")
    transition("bare", "pending", dead, seq=order_key(0, STAGE_RECEIVED))
    transition("busy", "running", dead, seq=order_key(0, STAGE_RUNNING))
    transition("done", "finished", dead, seq=order_key(0, STAGE_ENDED), message="done\n")
    # Pending and naming the worker, but never received by it (written by hand).
    transition("assigned", "pending", {"worker": "celery@dead"}, message="assigned\n")

    assert store.reap(silent_since=now - timedelta(seconds=60), worker=None, at=now,
                      reason="sent no heartbeat") == {"celery@dead": 1}  # fmt: skip
    waiting = message_line(
        "worker lost: celery@dead stopped sending heartbeats before this task started; "
        "it waits for its message to be delivered again",
        now,
    )
    messages = {job_id: store.get(job_id).messages  # type: ignore[union-attr]
                for job_id in ("noted", "bare", "busy", "done", "assigned")}  # fmt: skip
    assert messages["noted"] == "kept\n" + waiting
    assert messages["bare"] == waiting
    assert messages["busy"] == message_line("worker lost: celery@dead sent no heartbeat", now)
    assert messages["done"] == "done\n"
    assert messages["assigned"] == "assigned\n"


def test_a_revoke_notes_only_the_jobs_it_names_after_their_messages(store: Store) -> None:
    now = utcnow()
    pending = {"celery_state": "PENDING"}
    transition("noted", "pending", pending, seq=order_key(0, STAGE_PUBLISHED), message="kept\n")
    transition("bare", "running", {"celery_state": "STARTED"}, seq=order_key(0, STAGE_RUNNING))
    transition("other", "pending", pending, seq=order_key(0, STAGE_PUBLISHED), message="mine\n")
    assert store.note_revoked(["noted", "bare"], celery_state="REVOKING", note="revoke sent",
                              at=now) == 2  # fmt: skip
    line = message_line("revoke sent", now)
    noted, bare, other = (store.get(job_id) for job_id in ("noted", "bare", "other"))
    assert noted is not None and bare is not None and other is not None
    assert (noted.messages, noted.celery_state) == ("kept\n" + line, "REVOKING")
    assert (bare.messages, bare.celery_state) == (line, "STARTED")
    assert (other.messages, other.celery_state) == ("mine\n", "PENDING")


def test_a_reaped_job_ends_at_the_reap_as_the_presumed_end_of_its_attempt(store: Store) -> None:
    """Every field a loss writes, for each kind of order key a running job can hold: none (the
    API wrote it), a first or a later attempt's start (moved to that attempt's presumed end, so
    a late event of the attempt is refused and a redelivery still applies), and a redelivered
    start (already past the presumed end: kept)."""
    now = utcnow()
    store.heartbeat("celery@dead", hostname="h", pid=1, at=now - timedelta(seconds=120))
    on_dead = {"worker": "celery@dead"}
    setJob("unkeyed", on_dead, "running")
    keys = {
        "first": order_key(0, STAGE_RUNNING),
        "third": order_key(2, STAGE_RUNNING),
        "again": order_key(1, STAGE_RUNNING_AGAIN),
    }
    for job_id, seq in keys.items():
        transition(job_id, "running", on_dead, seq=seq, message="started\n")

    reaped_at = utcnow()  # after the starts: the reap is the last row of each history
    marked = store.reap(silent_since=now - timedelta(seconds=60), worker=None, at=reaped_at,
                        reason="sent no heartbeat")  # fmt: skip

    assert marked == {"celery@dead": 4}
    with store.engine.connect() as connection:
        seqs = {job_id: seq for job_id, seq in connection.execute(sa.select(jobs.c.id, jobs.c.seq))}
    assert seqs == {
        "unkeyed": STAGE_PRESUMED_END,
        "first": order_key(0, STAGE_PRESUMED_END),
        "third": order_key(2, STAGE_PRESUMED_END),
        "again": order_key(1, STAGE_RUNNING_AGAIN),
    }
    note = message_line("worker lost: celery@dead sent no heartbeat", reaped_at)
    for job_id in seqs:
        job = store.get(job_id)
        assert job is not None
        assert (job.status, job.celery_state, job.exc_type) == ("error", "LOST", "WorkerLost")
        assert (job.finished_at, job.updated_at) == (reaped_at, reaped_at)
        assert job.messages == ("" if job_id == "unkeyed" else "started\n") + note
        last = store.history(job_id)[-1]
        assert (last.status, last.celery_state, last.at) == ("error", "LOST", reaped_at)
    assert [w.stopped_at for w in store.list_workers()] == [reaped_at]


def test_a_queued_job_presumed_ended_holds_the_given_state_and_note(store: Store) -> None:
    now = utcnow()
    transition("queued", "pending", {"queue": "q"}, seq=order_key(1, STAGE_PUBLISHED),
               at=now - timedelta(minutes=5), message="sent\n")  # fmt: skip
    ended_at = now - timedelta(seconds=1)
    assert store.presume_queued_ended(queues=["q"], ids=None, created_before=now,
                                      celery_state="PURGED", note="queue purged",
                                      at=ended_at) == 1  # fmt: skip
    job = store.get("queued")
    assert job is not None
    assert (job.status, job.celery_state, job.exc_type) == ("error", "PURGED", None)
    assert (job.finished_at, job.updated_at) == (ended_at, ended_at)
    assert job.messages == "sent\n" + message_line("queue purged", ended_at)
    with store.engine.connect() as connection:
        assert connection.scalar(sa.select(jobs.c.seq)) == order_key(1, STAGE_PRESUMED_END)
    assert [(h.status, h.at) for h in store.history("queued")][-1] == ("error", ended_at)
