"""Lifecycle events as values: what each builder makes of what Celery hands a receiver."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from taskjobs import InvalidInputError, lifecycle
from taskjobs.lifecycle import Lineage
from taskjobs.model import (
    STAGE_ENDED,
    STAGE_PRESUMED_END,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RECEIVED_AGAIN,
    STAGE_RUNNING,
    STAGE_RUNNING_AGAIN,
    order_key,
)

AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=timezone.utc)


def test_a_publish_fills_what_it_knows_and_orders_by_attempt_and_delivery() -> None:
    event = lifecycle.published(
        "job", name="proj.add", user=None, request="[]", queue="celery",
        lineage=Lineage(parent_id="job", root_id="root", group_id=None), retries=2, eta=None,
        delivery=1234, at=AT,
    )  # fmt: skip
    assert (event.state, event.seq, event.delivery) == (
        "pending",
        order_key(2, STAGE_PUBLISHED),
        1234,
    )
    assert event.values == {"celery_state": "RETRY", "retries": 2, "eta": None}
    # Unknown values fill nothing; a task named as its own parent (a retry) has none.
    assert event.fill == {"name": "proj.add", "request": "[]", "queue": "celery", "root_id": "root"}
    assert event.columns() == {"status": "pending", "updated_at": AT, **event.values}
    assert event.fill_columns() == {"created_at": AT, **event.fill}


def test_a_start_sets_its_start_time_and_a_redelivery_its_own_stage() -> None:
    event = lifecycle.started(
        "job", name="proj.add", user="alice", request=None, queue=None, lineage=Lineage(),
        retries=0, worker="celery@w", pid=7, redelivered=True, delivery=None, at=AT,
    )  # fmt: skip
    assert event.seq == order_key(0, STAGE_RUNNING_AGAIN)
    assert event.columns()["started_at"] == AT and event.values["pid"] == 7
    received = lifecycle.received(
        "job", name=None, user=None, request=None, queue=None, lineage=Lineage(), retries=1,
        eta=None, worker=None, redelivered=False, delivery=None, at=AT,
    )  # fmt: skip
    assert received.seq == order_key(1, STAGE_RECEIVED) != order_key(1, STAGE_RECEIVED_AGAIN)
    assert received.values == {"celery_state": "RECEIVED", "received_at": AT, "retries": 1}


def test_an_end_that_knows_no_attempt_ends_the_current_one() -> None:
    blind = lifecycle.ended(
        "job", what="failure", celery_state="FAILURE", retries=None, reason="killed\n",
        exc_type="WorkerLostError", at=AT,
    )  # fmt: skip
    assert (blind.seq, blind.stage, blind.state) == (None, STAGE_ENDED, "error")
    assert blind.message == "[2026-03-04T05:06:07Z] killed\n" and blind.guard_message
    assert blind.columns()["finished_at"] == AT and "retries" not in blind.values
    known = lifecycle.ended(
        "job", what="revocation", celery_state="REVOKED", retries=3, reason="revoked",
        exc_type=None, at=AT,
    )  # fmt: skip
    assert (known.seq, known.stage) == (order_key(3, STAGE_ENDED), None)


ETA = datetime(2026, 3, 4, 6, 0, tzinfo=timezone.utc)
WORKFLOW = Lineage(parent_id="dad", root_id="root", group_id="g")
KNOWN = {"name": "proj.add", "user": "ada", "request": "[1]", "queue": "q"}
FILLED = {**KNOWN, "parent_id": "dad", "root_id": "root", "group_id": "g"}


def test_a_receipt_and_a_start_carry_every_field_they_know() -> None:
    receipt = lifecycle.received(
        "job", **KNOWN, lineage=WORKFLOW, retries=1, eta=ETA, worker="celery@w",
        redelivered=False, delivery=4, at=AT, existing_only=True,
    )  # fmt: skip
    assert receipt == lifecycle.Event(
        "job", "pending", AT, "receipt",
        values={"celery_state": "RECEIVED", "received_at": AT, "worker": "celery@w",
                "retries": 1, "eta": ETA},
        fill=FILLED, seq=order_key(1, STAGE_RECEIVED), delivery=4, existing_only=True,
        logged_late=True,
    )  # fmt: skip
    start = lifecycle.started(
        "job", **KNOWN, lineage=WORKFLOW, retries=1, worker="celery@w", pid=42,
        redelivered=False, delivery=4, at=AT, existing_only=True,
    )  # fmt: skip
    assert start == lifecycle.Event(
        "job", "running", AT, "start",
        values={"celery_state": "STARTED", "started_at": AT, "worker": "celery@w", "pid": 42,
                "retries": 1},
        fill=FILLED, seq=order_key(1, STAGE_RUNNING), delivery=4, existing_only=True,
        logged_late=True,
    )  # fmt: skip
    for event in (
        lifecycle.received("job", **KNOWN, lineage=WORKFLOW, retries=0, eta=None, worker=None,
                           redelivered=True, delivery=None, at=AT),
        lifecycle.started("job", **KNOWN, lineage=WORKFLOW, retries=0, worker=None, pid=1,
                          redelivered=True, delivery=None, at=AT),
    ):  # fmt: skip
        assert not event.existing_only and event.delivery is None


def test_a_publish_and_a_success_carry_every_field_they_know() -> None:
    publish = lifecycle.published("job", **KNOWN, lineage=WORKFLOW, retries=0, eta=ETA,
                                  delivery=3, at=AT, existing_only=True)  # fmt: skip
    assert publish == lifecycle.Event(
        "job", "pending", AT, "publish",
        values={"celery_state": "PENDING", "retries": 0, "eta": ETA}, fill=FILLED,
        seq=order_key(0, STAGE_PUBLISHED), delivery=3, existing_only=True, logged_late=True,
    )  # fmt: skip
    success = lifecycle.succeeded("job", name="proj.add", result="3", runtime=0.5, retries=2,
                                  delivery=3, at=AT, existing_only=True)  # fmt: skip
    assert success == lifecycle.Event(
        "job", "finished", AT, "success",
        values={"celery_state": "SUCCESS", "result": "3", "runtime": 0.5, "retries": 2},
        fill={"name": "proj.add"}, seq=order_key(2, STAGE_ENDED), delivery=3,
        existing_only=True,
    )  # fmt: skip
    plain = lifecycle.succeeded("job", name=None, result="3", runtime=None, retries=0,
                                delivery=None, at=AT)  # fmt: skip
    assert (plain.fill, plain.existing_only) == ({}, False)


def test_an_end_carries_every_field_it_knows() -> None:
    event = lifecycle.ended(
        "job", what="failure", celery_state="FAILURE", retries=2, reason="boom",
        exc_type="ValueError", at=AT, runtime=1.5, name="proj.add",
        lineage=Lineage(parent_id="dad", root_id="root", group_id="g"), delivery=9,
        existing_only=True,
    )  # fmt: skip
    assert event == lifecycle.Event(
        "job", "error", AT, "failure",
        values={"celery_state": "FAILURE", "exc_type": "ValueError", "runtime": 1.5,
                "retries": 2},
        fill={"name": "proj.add", "parent_id": "dad", "root_id": "root", "group_id": "g"},
        seq=order_key(2, STAGE_ENDED), delivery=9, message="[2026-03-04T05:06:07Z] boom\n",
        existing_only=True,
    )  # fmt: skip
    plain = lifecycle.ended("job", what="revocation", celery_state="REVOKED", retries=0,
                            reason="r", exc_type=None, at=AT)  # fmt: skip
    assert (plain.fill, plain.existing_only, plain.delivery) == ({}, False, None)


def test_a_retry_moves_to_the_next_attempt_and_always_keeps_its_note() -> None:
    event = lifecycle.retried("job", retries=1, reason="boom", delivery=5, at=AT)
    assert event == lifecycle.Event(
        "job", "pending", AT, "retry",
        values={"celery_state": "RETRY", "retries": 2},
        seq=order_key(2, STAGE_PUBLISHED), delivery=5,
        message="[2026-03-04T05:06:07Z] attempt 2 failed, retrying: boom\n",
        guard_message=False, existing_only=False,
    )  # fmt: skip
    later = lifecycle.retried("job", retries=0, reason="x", delivery=None, at=AT,
                              existing_only=True)  # fmt: skip
    assert later.existing_only and later.delivery is None


def test_a_replacement_names_at_most_twenty_ids_once_each() -> None:
    named = [f"proj.step id-{n}" for n in range(25)]
    event = lifecycle.replaced("job", replacement=named + named[:3], retries=0, delivery=None,
                               at=AT)  # fmt: skip
    assert event.seq == order_key(0, STAGE_PRESUMED_END) and event.state == "running"
    assert event.message is not None and event.message.count("proj.step") == 20
    assert "proj.step id-19 and 5 more; the job ends when job does" in event.message
    small = lifecycle.replaced("job", replacement=["a.b 1", "c.d 2", "a.b 1"], retries=2,
                               delivery=77, at=AT)  # fmt: skip
    assert small == lifecycle.Event(
        "job", "running", AT, "replacement",
        values={"celery_state": "REPLACED"},
        seq=order_key(2, STAGE_PRESUMED_END), delivery=77,
        message="[2026-03-04T05:06:07Z] replaced by a.b 1, c.d 2; the job ends when job does\n",
        guard_message=False, existing_only=False,
    )  # fmt: skip
    assert lifecycle.replaced("job", replacement=["a.b 1"], retries=0, delivery=None, at=AT,
                              existing_only=True).existing_only  # fmt: skip


def test_a_failed_publish_is_a_presumed_end() -> None:
    event = lifecycle.publish_failed("job", name="proj.add", error="OSError()", exc_type="OSError",
                                     at=AT)  # fmt: skip
    assert event == lifecycle.Event(
        "job", "error", AT, "publish failure",
        values={"celery_state": "PUBLISH_FAILED", "exc_type": "OSError"},
        fill={"name": "proj.add"}, stage=STAGE_PRESUMED_END,
        message="[2026-03-04T05:06:07Z] publish failed, the task was never queued: OSError()\n",
    )  # fmt: skip
    assert lifecycle.publish_failed("j", name=None, error="e", exc_type="E", at=AT).fill == {}


def test_an_explicit_write_has_no_order_and_says_what_it_is() -> None:
    event = lifecycle.explicit(12, "finished", {"result": "1"}, AT)  # type: ignore[arg-type]
    assert (event.job_id, event.seq, event.stage, event.delivery) == ("12", None, None, None)
    assert str(event) == "the finished write of job 12 (finished, at 05:06:07.890000)"
    start = lifecycle.started(
        "j", name=None, user=None, request=None, queue=None, lineage=Lineage(), retries=0,
        worker=None, pid=1, redelivered=False, delivery=9, at=AT,
    )  # fmt: skip
    assert str(start) == "the start of job j (running, STARTED, order 9/3, at 05:06:07.890000)"
    unstamped = dataclasses.replace(start, delivery=None)
    assert str(unstamped) == "the start of job j (running, STARTED, order 0/3, at 05:06:07.890000)"


def test_an_event_of_a_bad_job_id_is_refused_when_built() -> None:
    with pytest.raises(InvalidInputError, match="255"):
        lifecycle.explicit("x" * 256, "pending", {}, AT)


def test_a_note_is_a_stamped_line() -> None:
    note = lifecycle.Note("job", "half way  \n", AT)
    assert note.line == "[2026-03-04T05:06:07Z] half way\n"
    assert str(note) == "the progress note of job job ('half way  \\n')"
    long = lifecycle.Note("job", "x" * 100, AT)
    assert str(long) == f"the progress note of job job ({'x' * 60!r})", "its first 60 characters"


def test_a_retry_names_no_parent_when_received_started_or_ended() -> None:
    # Celery names a retried task as its own parent: no event records the job as its own.
    itself = Lineage(parent_id="job", root_id="root", group_id="g")
    events = [
        lifecycle.received(
            "job", **KNOWN, lineage=itself, retries=1, eta=None, worker="celery@w",
            redelivered=False, delivery=None, at=AT,
        ),
        lifecycle.started(
            "job", **KNOWN, lineage=itself, retries=1, worker="celery@w", pid=1,
            redelivered=False, delivery=None, at=AT,
        ),
        lifecycle.ended(
            "job", what="failure", celery_state="FAILURE", retries=1, reason="boom",
            exc_type="ValueError", at=AT, name="proj.add", lineage=itself,
        ),
    ]  # fmt: skip
    for event in events:
        assert "parent_id" not in event.fill, event.what
        assert (event.fill["root_id"], event.fill["group_id"]) == ("root", "g")


def test_a_redelivered_receipt_orders_after_a_presumed_end() -> None:
    receipt = lifecycle.received(
        "job", name=None, user=None, request=None, queue=None, lineage=Lineage(), retries=2,
        eta=None, worker="celery@w", redelivered=True, delivery=None, at=AT,
    )  # fmt: skip
    assert receipt.seq == order_key(2, STAGE_RECEIVED_AGAIN) > order_key(2, STAGE_PRESUMED_END)


def test_a_replacement_of_exactly_twenty_ids_names_them_all_and_no_more() -> None:
    named = [f"proj.step id-{n}" for n in range(20)]
    event = lifecycle.replaced("job", replacement=named, retries=0, delivery=None, at=AT)
    assert event.message == (
        f"[2026-03-04T05:06:07Z] replaced by {', '.join(named)}; the job ends when job does\n"
    )
