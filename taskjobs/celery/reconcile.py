"""Reconciling pending jobs with the broker: a job no worker took, whose message the broker no
longer holds (deleted by ``celery purge``, by hand, or by a broker that lost it), will never run.

What each broker can tell:
- Redis: everything. A queue is a list (one per priority step) and the messages workers hold
  unacknowledged sit in one hash, so the ids of every message are read in one transaction.
- RabbitMQ (AMQP): only how many messages a queue holds ready, not which; messages a worker
  holds are not counted. So the jobs of a queue are known gone only when it holds none.
- Other transports: nothing; reconciling them is refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kombu.connection import Connection

from taskjobs.celery.tracker import Tracker, never_raising
from taskjobs.errors import ConfigurationError, TaskJobsError
from taskjobs.model import CELERY_PURGED, CELERY_VANISHED, utcnow
from taskjobs.store import Store

logger = logging.getLogger("taskjobs")

# Seconds between the two looks at the broker that must both miss a message before its job is
# ended: a worker may be taking it from the queue in between.
CONFIRM_AFTER = 1.0
# Jobs ended per statement.
BATCH = 500


@dataclasses.dataclass(frozen=True)
class QueueCheck:
    """What reconciling one queue found: its waiting jobs, how many of them were ended as
    vanished, and why the others were left alone when the broker could not tell."""

    queue: str
    waiting: int
    vanished: tuple[str, ...]
    undecided: str | None = None


def reconcile(
    store: Store,
    broker_url: str,
    *,
    created_before: datetime,
    queues: Iterable[str] | None = None,
    dry_run: bool = False,
) -> list[QueueCheck]:
    """End, in error with Celery state VANISHED, the pending jobs created before
    ``created_before`` that no worker received and whose message ``broker_url`` no longer
    holds; returns what each queue showed. With ``dry_run`` nothing is written."""
    waiting = store.queued_jobs(created_before=created_before, queues=queues)
    if not waiting:
        return []
    with Connection(broker_url, connect_timeout=5) as connection:
        look = _looker(connection)
        try:
            missing = look(waiting)
            if any(missing.values()):
                time.sleep(CONFIRM_AFTER)
                again = look({queue: list(ids) for queue, ids in missing.items() if ids})
                missing = {queue: [i for i in ids if i in again.get(queue, ())]
                           for queue, ids in missing.items()}  # fmt: skip
        except (*connection.connection_errors, *connection.channel_errors) as exc:
            raise TaskJobsError(
                f"cannot read the queues of the broker at {connection.as_uri()}: {exc}"
            ) from exc
    checks = []
    for queue, ids in sorted(waiting.items()):
        gone = missing.get(queue)
        if gone is None:
            checks.append(QueueCheck(queue, len(ids), (), "the broker cannot list its messages"))
            continue
        for start in range(0, len(gone) if not dry_run else 0, BATCH):
            store.presume_queued_ended(
                ids=gone[start : start + BATCH],
                created_before=created_before,
                celery_state=CELERY_VANISHED,
                note=f"vanished: the broker holds no message for this job in queue {queue!r}"
                " (taskjobs reconcile); no worker received it",
                at=utcnow(),
            )
        checks.append(QueueCheck(queue, len(ids), tuple(gone)))
    return checks


def _looker(connection: Connection) -> Any:
    """A function from {queue: job ids} to {queue: the ids whose message the broker lacks}, or
    None for a queue it cannot tell about."""
    transport = connection.transport.driver_type
    if transport == "redis":
        return lambda waiting: _redis_missing(connection.default_channel, waiting)
    if transport == "amqp":
        return lambda waiting: _amqp_missing(connection.default_channel, waiting)
    raise ConfigurationError(
        f"cannot reconcile with a {transport!r} broker: taskjobs reads the queues of Redis "
        "(redis://, rediss://) and RabbitMQ (amqp://, pyamqp://) only"
    )


def _redis_missing(channel: Any, waiting: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Read every message of the queues and the unacknowledged hash in one transaction."""
    pipe = channel.client.pipeline(transaction=True)
    names = {queue: [channel._q_for_pri(queue, pri) for pri in channel.priority_steps]
             for queue in waiting}  # fmt: skip
    for keys in names.values():
        for key in keys:
            pipe.lrange(key, 0, -1)
    pipe.hvals(channel.unacked_key)
    replies = pipe.execute()
    held = {_message_id(raw) for raw in replies[-1]}
    found = iter(replies[:-1])
    missing: dict[str, list[str]] = {}
    for queue, keys in names.items():
        present = set(held)
        for _ in keys:
            present.update(_message_id(raw) for raw in next(found))
        missing[queue] = [job_id for job_id in waiting[queue] if job_id not in present]
    return missing


def _message_id(raw: Any) -> str | None:
    """The task id of a message as Redis keeps it (an unacked entry wraps it in a list)."""
    try:
        payload = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if isinstance(payload, list) and payload:
        payload = payload[0]
    headers = payload.get("headers") if isinstance(payload, dict) else None
    return headers.get("id") if isinstance(headers, dict) else None


def _amqp_missing(channel: Any, waiting: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """A queue with no ready message has none of its waiting jobs' messages; a queue with some
    cannot say which (left out of the result)."""
    missing: dict[str, list[str]] = {}
    for queue, ids in waiting.items():
        try:
            ready = channel.queue_declare(queue=queue, passive=True).message_count
        except Exception:  # noqa: BLE001 - the queue does not exist: it holds nothing
            channel = channel.connection.channel()
            ready = 0
        if ready == 0:
            missing[queue] = list(ids)
    return missing


def record_purge(tracker: Tracker, queues: list[str], count: Any, started: datetime) -> None:
    """``app.control.purge()`` deleted the messages waiting in ``queues``: the jobs created
    before it that no worker had received end in error, PURGED (a presumed end: a message a
    worker had taken after all moves its job on)."""
    with never_raising("purge", f"in {', '.join(queues)}"):
        if not count:
            return
        ended = tracker.store.presume_queued_ended(
            queues=queues,
            created_before=started,
            celery_state=CELERY_PURGED,
            note=f"purged: app.control.purge() deleted the waiting messages of {', '.join(queues)}"
            " before any worker took this one",
            at=utcnow(),
        )
        logger.info("taskjobs: %s message(s) purged; %d pending job(s) marked purged", count, ended)
