"""Lifecycle events as values: what one write does to one job, built by pure functions.

A receiver of the Celery integration reads what Celery hands it (a message's headers, a task's
request) and calls one builder here with plain values; the builder returns a frozen ``Event``
that says everything the store needs to apply it: the job, the state it moves to, the values it
sets, the values it only fills in where the row has none, its order key and delivery (the guard
that makes late and repeated events harmless), and the line it adds to the job's messages. The
recorder queues events; the store applies them. No Celery, no SQL.

The documented job functions build their writes here too (``explicit``): they carry no order
key, so they always apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from taskjobs.model import (
    CELERY_PENDING,
    CELERY_PUBLISH_FAILED,
    CELERY_RECEIVED,
    CELERY_REPLACED,
    CELERY_RETRY,
    CELERY_STARTED,
    CELERY_SUCCESS,
    ERROR,
    FINISHED,
    PENDING,
    RUNNING,
    STAGE_ENDED,
    STAGE_PRESUMED_END,
    STAGE_PUBLISHED,
    STAGE_RECEIVED,
    STAGE_RECEIVED_AGAIN,
    STAGE_RUNNING,
    STAGE_RUNNING_AGAIN,
    check_job_id,
    message_line,
    order_key,
)

# The timestamp column each state sets when a job enters it (unless the event sets it itself).
STATE_TIMESTAMPS = {RUNNING: "started_at", FINISHED: "finished_at", ERROR: "finished_at"}
# Ids named in a job's "replaced by" note; a longer replacement says how many more.
MAX_NAMED_IDS = 20


@dataclasses.dataclass(frozen=True)
class Event:
    """One write of one job: move it to ``state``, setting ``values`` and filling ``fill``.

    Ordering: with ``seq`` (an order key, ``model.order_key``) the values apply only if
    ``(delivery, seq)`` is newer than the row's; with ``stage`` instead (an event that does not
    know its attempt) only if the row's current attempt is at an earlier stage; with neither,
    always. ``message`` is appended to the job's messages, only when the values apply if
    ``guard_message``. With ``existing_only`` the event never creates a job.

    History: an event that applies adds the job's new state to its history. One that does not
    adds nothing, unless it is ``logged_late``: a step that happened whatever came after it (a
    publish, a receipt, a start), written late because it was queued. Its own state is then
    logged at its own time, once (not if the history already holds that state at that time).
    An end is never logged late: Celery reports some ends twice.
    """

    job_id: str
    state: str
    at: datetime
    # What the event is, in a log line's words ("start", "publish failure"...).
    what: str
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fill: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seq: int | None = None
    delivery: int | None = None
    stage: int | None = None
    message: str | None = None
    guard_message: bool = True
    existing_only: bool = False
    logged_late: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "job_id", check_job_id(self.job_id))

    def columns(self) -> dict[str, Any]:
        """The columns the event sets: its state, its time, its values, and the timestamp its
        state stands for."""
        columns = {"status": self.state, "updated_at": self.at, **self.values}
        timestamp = STATE_TIMESTAMPS.get(self.state)
        if timestamp is not None:
            columns.setdefault(timestamp, self.at)
        return columns

    def fill_columns(self) -> dict[str, Any]:
        """The columns the event fills in where the row has none: a new job is created now."""
        return {"created_at": self.at, **self.fill}

    def __str__(self) -> str:
        celery_state = self.values.get("celery_state")
        detail = self.state if celery_state is None else f"{self.state}, {celery_state}"
        order = f", order {self.delivery or 0}/{self.seq}" if self.seq is not None else ""
        return f"the {self.what} of job {self.job_id} ({detail}{order}, at {self.at:%H:%M:%S.%f})"


@dataclasses.dataclass(frozen=True)
class Note:
    """A line added to an existing job's messages (a progress note), stamped ``at``."""

    job_id: str
    text: str
    at: datetime

    @property
    def line(self) -> str:
        return message_line(self.text, self.at)

    def __str__(self) -> str:
        return f"the progress note of job {self.job_id} ({self.text[:60]!r})"


@dataclasses.dataclass(frozen=True)
class Lineage:
    """Where a task stands in a workflow: its parent, root and group ids."""

    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None

    def of(self, job_id: str) -> dict[str, Any]:
        """The lineage columns of job ``job_id``. A retry is published from inside the task
        itself, so Celery names the task as its own parent: that is no parent."""
        parent_id = None if self.parent_id == job_id else self.parent_id
        return _known(parent_id=parent_id, root_id=self.root_id, group_id=self.group_id)


def explicit(job_id: str, state: str, values: Mapping[str, Any], at: datetime) -> Event:
    """A documented function's write: no order key, so it applies in any direction."""
    return Event(job_id, state, at, f"{state} write", values=values)


def published(
    job_id: str,
    *,
    name: str | None,
    user: str | None,
    request: str | None,
    queue: str | None,
    lineage: Lineage,
    retries: int,
    eta: datetime | None,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """A publisher sent the message of an attempt: the job is pending (a retry's next attempt
    too, from the message Celery publishes for it)."""
    return Event(
        job_id,
        PENDING,
        at,
        "publish",
        values={
            "celery_state": CELERY_PENDING if retries == 0 else CELERY_RETRY,
            "retries": retries,
            "eta": eta,
        },
        fill=_known(name=name, user=user, request=request, queue=queue, **lineage.of(job_id)),
        seq=order_key(retries, STAGE_PUBLISHED),
        delivery=delivery,
        existing_only=existing_only,
        logged_late=True,
    )


def received(
    job_id: str,
    *,
    name: str | None,
    user: str | None,
    request: str | None,
    queue: str | None,
    lineage: Lineage,
    retries: int,
    eta: datetime | None,
    worker: str | None,
    redelivered: bool,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """A worker holds the message: still pending, now with its receiver and the time. It
    fills in all that a publish records, for a job whose publisher died before writing it."""
    return Event(
        job_id,
        PENDING,
        at,
        "receipt",
        values=_known(
            celery_state=CELERY_RECEIVED, received_at=at, worker=worker, retries=retries, eta=eta
        ),
        fill=_known(name=name, user=user, request=request, queue=queue, **lineage.of(job_id)),
        seq=order_key(retries, STAGE_RECEIVED_AGAIN if redelivered else STAGE_RECEIVED),
        delivery=delivery,
        existing_only=existing_only,
        logged_late=True,
    )


def started(
    job_id: str,
    *,
    name: str | None,
    user: str | None,
    request: str | None,
    queue: str | None,
    lineage: Lineage,
    retries: int,
    worker: str | None,
    pid: int,
    redelivered: bool,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """The task body is about to run: running, with its worker, pid, attempt and start."""
    return Event(
        job_id,
        RUNNING,
        at,
        "start",
        values={
            "celery_state": CELERY_STARTED,
            "started_at": at,
            "worker": worker,
            "pid": pid,
            "retries": retries,
        },
        fill=_known(name=name, user=user, request=request, queue=queue, **lineage.of(job_id)),
        seq=order_key(retries, STAGE_RUNNING_AGAIN if redelivered else STAGE_RUNNING),
        delivery=delivery,
        existing_only=existing_only,
        logged_late=True,
    )


def succeeded(
    job_id: str,
    *,
    name: str | None,
    result: str,
    runtime: float | None,
    retries: int,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """The task returned: finished, with its result (as text) and its runtime."""
    return Event(
        job_id,
        FINISHED,
        at,
        "success",
        values={
            "celery_state": CELERY_SUCCESS,
            "result": result,
            "runtime": runtime,
            "retries": retries,
        },
        fill=_known(name=name),
        seq=order_key(retries, STAGE_ENDED),
        delivery=delivery,
        existing_only=existing_only,
    )


def retried(
    job_id: str,
    *,
    retries: int,
    reason: str,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """Attempt ``retries`` failed and will run again: pending, at the next attempt. The note is
    kept even when the next attempt's publish is already recorded (it orders after this)."""
    return Event(
        job_id,
        PENDING,
        at,
        "retry",
        values={"celery_state": CELERY_RETRY, "retries": retries + 1},
        seq=order_key(retries + 1, STAGE_PUBLISHED),
        delivery=delivery,
        message=message_line(f"attempt {retries + 1} failed, retrying: {reason}", at),
        guard_message=False,
        existing_only=existing_only,
    )


def ended(
    job_id: str,
    *,
    what: str,
    celery_state: str,
    retries: int | None,
    reason: str,
    exc_type: str | None,
    at: datetime,
    runtime: float | None = None,
    name: str | None = None,
    lineage: Lineage | None = None,
    delivery: int | None = None,
    existing_only: bool = False,
) -> Event:
    """The task ended in error (failed, revoked, rejected, unknown, never run), ``reason``
    noted. ``retries`` None: the event does not know the attempt (the worker's main process
    saw a kill), so it ends whatever attempt the job is at."""
    return Event(
        job_id,
        ERROR,
        at,
        what,
        values=_known(
            celery_state=celery_state, exc_type=exc_type, runtime=runtime, retries=retries
        ),
        fill=_known(name=name, **(lineage.of(job_id) if lineage is not None else {})),
        seq=None if retries is None else order_key(retries, STAGE_ENDED),
        stage=STAGE_ENDED if retries is None else None,
        delivery=delivery,
        message=message_line(reason, at),
        existing_only=existing_only,
    )


def replaced(
    job_id: str,
    *,
    replacement: list[str],
    retries: int,
    delivery: int | None,
    at: datetime,
    existing_only: bool = False,
) -> Event:
    """The task replaced itself (``Task.replace``) by the tasks named in ``replacement``
    ("name id" each): a presumed end of this delivery, so the replacement's messages, published
    later, move the job on, and the one carrying this job's id ends it."""
    named = list(dict.fromkeys(replacement))
    listed = ", ".join(named[:MAX_NAMED_IDS])
    if len(named) > MAX_NAMED_IDS:
        listed += f" and {len(named) - MAX_NAMED_IDS} more"
    return Event(
        job_id,
        RUNNING,
        at,
        "replacement",
        values={"celery_state": CELERY_REPLACED},
        seq=order_key(retries, STAGE_PRESUMED_END),
        delivery=delivery,
        message=message_line(f"replaced by {listed}; the job ends when {job_id} does", at),
        guard_message=False,
        existing_only=existing_only,
    )


def publish_failed(
    job_id: str, *, name: str | None, error: str, exc_type: str, at: datetime
) -> Event:
    """The publish raised after the job was written: the job is not left pending for a message
    no broker holds (a presumed end: a message that got through after all moves it on)."""
    return Event(
        job_id,
        ERROR,
        at,
        "publish failure",
        values={"celery_state": CELERY_PUBLISH_FAILED, "exc_type": exc_type},
        fill=_known(name=name),
        stage=STAGE_PRESUMED_END,
        message=message_line(f"publish failed, the task was never queued: {error}", at),
    )


def _known(**values: Any) -> dict[str, Any]:
    """The values that are known (not None)."""
    return {key: value for key, value in values.items() if value is not None}
