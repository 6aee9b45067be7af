"""Ids that come back in new messages, and ends taskjobs presumes: the store's rules, on every
database. A message published later starts the job over; a late event of an earlier message
changes nothing; an unknown delivery is ordered within the row's own."""

from __future__ import annotations

from datetime import timedelta

from taskjobs.api.job import findJob, getJob, getJobHistory
from taskjobs.model import (
    STAGE_ENDED,
    STAGE_PRESUMED_END,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RUNNING,
    delivery_stamp,
    order_key,
    utcnow,
)
from taskjobs.store import Store
from tests.writes import transition

FIRST, SECOND = 1_000_000, 2_000_000


def test_a_later_delivery_starts_an_ended_job_over(store: Store) -> None:
    transition("job", "error", {"celery_state": "REVOKED"}, seq=order_key(0, STAGE_ENDED),
               delivery=FIRST)  # fmt: skip
    transition("job", "pending", {"celery_state": "PENDING"}, seq=order_key(0, STAGE_PUBLISHED),
               delivery=SECOND)  # fmt: skip
    transition("job", "finished", {"celery_state": "SUCCESS", "result": "4"},
               seq=order_key(0, STAGE_ENDED), delivery=SECOND)  # fmt: skip
    job = getJob("job", "finished")
    assert job is not None and job["result"] == "4"
    assert [h["celery_state"] for h in getJobHistory("job")] == ["REVOKED", "PENDING", "SUCCESS"]


def test_late_events_of_an_earlier_delivery_change_nothing(store: Store) -> None:
    transition("job", "running", {"worker": "w2"}, seq=order_key(0, STAGE_RUNNING),
               delivery=SECOND)  # fmt: skip
    # The first delivery's end arrives late, with a higher key than the row's.
    transition("job", "error", {"celery_state": "REVOKED"}, seq=order_key(3, STAGE_ENDED),
               delivery=FIRST, message="revoked\n")  # fmt: skip
    job = getJob("job", "running")
    assert job is not None and job["worker"] == "w2" and job["messages"] == ""


def test_events_of_one_delivery_are_still_ordered_by_their_keys(store: Store) -> None:
    transition("job", "finished", {"result": "1"}, seq=order_key(0, STAGE_ENDED),
               delivery=FIRST)  # fmt: skip
    transition("job", "running", {}, seq=order_key(0, STAGE_RUNNING), delivery=FIRST)
    transition("job", "pending", {}, seq=order_key(0, STAGE_RECEIVED), delivery=FIRST)
    assert getJob("job", "finished") is not None


def test_an_event_that_does_not_know_its_delivery_counts_as_the_rows_own(store: Store) -> None:
    transition("job", "running", {}, seq=order_key(0, STAGE_RUNNING), delivery=SECOND)
    transition("job", "finished", {"result": "2"}, seq=order_key(0, STAGE_ENDED))
    transition("job", "pending", {}, seq=order_key(0, STAGE_RECEIVED))
    job = getJob("job", "finished")
    assert job is not None and job["result"] == "2"
    # ...and the row keeps its delivery: an earlier one's late end is still ignored.
    transition("job", "error", {}, seq=order_key(5, STAGE_ENDED), delivery=FIRST)
    assert getJob("job", "finished") is not None


def test_a_stage_write_keeps_the_delivery_of_the_row(store: Store) -> None:
    transition("job", "running", {}, seq=order_key(0, STAGE_RUNNING), delivery=SECOND)
    transition("job", "error", {"celery_state": "FAILURE"}, stage=STAGE_ENDED)
    transition("job", "pending", {}, seq=order_key(0, STAGE_PUBLISHED), delivery=FIRST)
    job = getJob("job", "error")
    assert job is not None and job["celery_state"] == "FAILURE"


def test_an_existing_only_write_never_creates_a_job(store: Store) -> None:
    transition("ghost", "finished", {"result": "1"}, seq=order_key(0, STAGE_ENDED),
               existing_only=True)  # fmt: skip
    assert findJob("ghost") == (None, None) and getJobHistory("ghost") == []
    transition("job", "running", {"celery_state": "REPLACED"},
               seq=order_key(0, STAGE_PRESUMED_END), delivery=FIRST)  # fmt: skip
    transition("job", "finished", {"celery_state": "SUCCESS", "result": "[1, 2]"},
               fill={"name": "celery.accumulate"}, seq=order_key(0, STAGE_ENDED),
               delivery=SECOND, existing_only=True)  # fmt: skip
    job = getJob("job", "finished")
    assert job is not None and job["result"] == "[1, 2]"
    assert [h["celery_state"] for h in getJobHistory("job")] == ["REPLACED", "SUCCESS"]
    # An existing-only write is ordered like any other.
    transition("job", "running", {}, seq=order_key(0, STAGE_RUNNING), delivery=SECOND,
               existing_only=True)  # fmt: skip
    assert getJob("job", "finished") is not None


def test_the_reaper_leaves_a_replaced_job_to_its_replacement(store: Store) -> None:
    now = utcnow()
    store.heartbeat("w1", hostname="h", pid=1, at=now - timedelta(minutes=5))
    transition("replaced", "running", {"worker": "w1", "celery_state": "REPLACED"},
               seq=order_key(0, STAGE_PRESUMED_END))  # fmt: skip
    transition("running", "running", {"worker": "w1", "celery_state": "STARTED"},
               seq=order_key(0, STAGE_RUNNING))  # fmt: skip
    marked = store.reap(silent_since=now - timedelta(minutes=1), worker=None, at=now,
                        reason="sent no heartbeat")  # fmt: skip
    assert marked == {"w1": 1}
    assert getJob("replaced", "running") is not None and getJob("running", "error") is not None


def test_queued_jobs_presumed_ended_move_on_if_a_worker_took_them(store: Store) -> None:
    transition("waiting", "pending", {"queue": "q"}, seq=order_key(0, STAGE_PUBLISHED))
    transition("received", "pending", {"queue": "q", "received_at": utcnow()},
               seq=order_key(0, STAGE_RECEIVED))  # fmt: skip
    transition("other", "pending", {"queue": "r"}, seq=order_key(0, STAGE_PUBLISHED))
    later = utcnow() + timedelta(seconds=1)
    assert store.queued_jobs(created_before=later) == {"q": ["waiting"], "r": ["other"]}
    ended = store.presume_queued_ended(
        queues=["q"], created_before=later, celery_state="PURGED", note="purged", at=utcnow()
    )
    assert ended == 1
    job = getJob("waiting", "error")
    assert job is not None and job["celery_state"] == "PURGED" and "purged" in job["messages"]
    assert getJob("received", "pending") is not None and getJob("other", "pending") is not None
    # A presumed end: the worker that had the message after all still ends the job.
    transition("waiting", "finished", {"celery_state": "SUCCESS"}, seq=order_key(0, STAGE_ENDED))
    assert getJob("waiting", "finished") is not None


def test_queued_jobs_are_only_the_old_enough_unreceived_pending_ones_with_a_queue(
    store: Store,
) -> None:
    now = utcnow()
    old, cutoff = now - timedelta(minutes=10), now - timedelta(minutes=1)
    for job_id, queue in (("q-1", "q"), ("q-2", "q"), ("r-1", "r")):
        transition(job_id, "pending", {"queue": queue}, seq=order_key(0, STAGE_PUBLISHED), at=old)
    transition("young", "pending", {"queue": "q"}, seq=order_key(0, STAGE_PUBLISHED), at=cutoff)
    transition("no-queue", "pending", {}, seq=order_key(0, STAGE_PUBLISHED), at=old)
    transition("done", "finished", {"queue": "q"}, seq=order_key(0, STAGE_ENDED), at=old)
    transition("taken", "pending", {"queue": "q", "received_at": old},
               seq=order_key(0, STAGE_RECEIVED), at=old)  # fmt: skip

    # Created strictly before the cutoff: "young", created at it, is not queued long enough.
    assert store.queued_jobs(created_before=cutoff) == {"q": ["q-1", "q-2"], "r": ["r-1"]}
    assert store.queued_jobs(created_before=cutoff, queues=["r", "s"]) == {"r": ["r-1"]}
    assert store.queued_jobs(created_before=cutoff, queues=[]) == {}

    # By ids: only the named jobs that are still queued end.
    ended = store.presume_queued_ended(ids=["q-2", "taken", "done", "young"], created_before=cutoff,
                                       celery_state="VANISHED", note="gone", at=now)  # fmt: skip
    assert ended == 1 and getJob("q-2", "error")["celery_state"] == "VANISHED"  # type: ignore[index]
    # A presumed end: a late event of an earlier stage does not reopen the job.
    transition("q-2", "pending", {"received_at": now}, seq=order_key(0, STAGE_RECEIVED))
    assert getJob("q-2", "error") is not None
    assert store.presume_queued_ended(ids=[], created_before=now, celery_state="VANISHED",
                                      note="gone", at=now) == 0  # fmt: skip
    assert {job.id for job in store.select(status="pending", limit=10)} == {
        "q-1",
        "r-1",
        "young",
        "no-queue",
        "taken",
    }


def test_delivery_stamps_order_after_the_message_being_processed() -> None:
    now = utcnow()
    assert delivery_stamp(now) == int(now.timestamp() * 1_000_000)
    ahead = delivery_stamp(now + timedelta(seconds=5))
    assert delivery_stamp(now, after=ahead) == ahead + 1, (
        "a publisher clock behind still orders after"
    )
    assert delivery_stamp(now, after=ahead - 10**7) == delivery_stamp(now)
    assert delivery_stamp(now, after=delivery_stamp(now)) == delivery_stamp(now) + 1, (
        "a message published in the same microsecond as the one being processed"
    )
