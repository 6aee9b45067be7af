"""The publish side: a job exists, pending, before any worker can see its message.

``before_task_publish`` runs in the publisher, inside ``apply_async``/``send_task``, just
before the message goes to the broker. A publish that raises after that leaves the job in
error, never pending for a message no broker holds.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery, Task

from taskjobs import lifecycle
from taskjobs.celery import canvas, registry
from taskjobs.celery.message import (
    DELIVERY_HEADER,
    NESTING_HEADER,
    QUEUED_HEADER,
    USER_HEADER,
    delivery,
    lineage,
    whole,
)
from taskjobs.celery.payload import request_text
from taskjobs.celery.tracker import Tracker, never_raising
from taskjobs.model import check_datetime, delivery_stamp, stamp_time, utcnow

# Seconds a replacement's publish waits for the replaced task's queued writes (see
# ``canvas.settle_replaced``).
REPLACEMENT_SETTLE_TIMEOUT = 2.0
# The job this thread's publish wrote (id, task name, tracker), so that a failed publish can be
# recorded.
_published = threading.local()


def on_before_publish(
    sender: str | None = None,
    body: Any = None,
    exchange: str | None = None,
    routing_key: str | None = None,
    headers: dict[str, Any] | None = None,
    declare: Any = None,
    **_: Any,
) -> None:
    """The job exists, pending, before any worker can see the message; the message is stamped
    with its delivery, and a task publishing its own replacement notes what replaces it."""
    headers = headers if headers is not None else {}
    task_id = headers.get("id")
    with never_raising("publish", task_id):
        app = registry.publishing_app()
        if app is None or task_id is None:
            return
        tracker = registry.for_name(sender, app)
        existing_only = False
        if tracker is None:
            adopted = registry.tracking(registry.task_named(sender, app),
                                        headers.get(NESTING_HEADER))  # fmt: skip
            if adopted is None:
                return
            tracker, existing_only = adopted
        running = _running_task(app)
        stamp = delivery_stamp(utcnow(), delivery(running.request) if running is not None else None)
        headers[DELIVERY_HEADER] = stamp
        # The task this message is part of the replacement of, if any.
        replaced = (
            running
            if running is not None and canvas.note_replacement(running, sender, headers, body)
            else None
        )
        args, kwargs = (body[0], body[1]) if isinstance(body, (tuple, list)) else ((), {})
        queue = getattr(declare[0], "name", None) if declare else None
        event = lifecycle.published(
            task_id,
            name=sender,
            user=headers.get(USER_HEADER),
            request=request_text(
                tracker.settings,
                registry.task_named(sender, app),
                args,
                kwargs,
                headers.get("argsrepr"),
                headers.get("kwargsrepr"),
            ),
            queue=queue or routing_key or exchange,
            lineage=lineage(headers),
            retries=whole(headers.get("retries")),
            eta=check_datetime("eta", headers.get("eta")),
            delivery=stamp,
            # The stamp's own time: a worker that writes this publish from its receipt (below)
            # writes the same, and the job's history holds it once.
            at=stamp_time(stamp),
            existing_only=existing_only,
        )
        # A publish from inside a task (a retry, a replacement, a workflow's next step) is
        # written as the task's own events are: the jobs that only it creates must exist before
        # a worker ends them (see README, Publishing).
        queued = running is None and tracker.settings.publish_mode == "async"
        if queued:
            headers[QUEUED_HEADER] = 1
        _published.job = (event.job_id, sender, tracker, queued, running is None)
        _record(tracker, event, queued=queued, commit=running is None)
        if replaced is not None:
            canvas.settle_replaced(replaced, REPLACEMENT_SETTLE_TIMEOUT)


def _running_task(app: Celery) -> Task | None:
    """The task running in this thread, if any (a publish from inside a task)."""
    task: Task | None = app.current_task  # any app's: Celery keeps one stack a thread
    running = task is not None and getattr(task.request, "id", None) is not None
    return task if running else None


class watching_publish:  # noqa: N801 - used as a context manager, like contextlib's
    """Around a publish through ``app``: its job belongs to ``app``'s tracker, and if the
    publish raises after the job was written, the job is marked as never queued. (A class, not
    a generator: it runs around every publish, and costs a third of a generator's time.)"""

    __slots__ = ("app",)

    def __init__(self, app: Celery) -> None:
        self.app = app

    def __enter__(self) -> None:
        _published.job = None
        registry.enter_publishing(self.app)

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> None:
        try:
            published: tuple[str, str | None, Tracker, bool, bool] | None = getattr(
                _published, "job", None
            )
            if isinstance(exc, Exception) and published is not None:
                _record_publish_failure(*published, exc)
        finally:
            _published.job = None
            registry.leave_publishing()


def _record_publish_failure(
    task_id: str, name: str | None, tracker: Tracker, queued: bool, commit: bool,
    exc: BaseException,
) -> None:  # fmt: skip
    with never_raising("publish failure", task_id):
        # The same way as the publish itself: the failure never overtakes the pending job.
        failure = lifecycle.publish_failed(
            task_id, name=name, error=repr(exc), exc_type=type(exc).__name__, at=utcnow()
        )
        _record(tracker, failure, queued=queued, commit=commit)


def _record(tracker: Tracker, event: lifecycle.Event, *, queued: bool, commit: bool) -> None:
    """Record what a publish did: queued for this process's writer of publishes (the "async"
    mode), else as the app's other events are, committed before the publish returns when it
    is made outside a task (the "sync" mode, in every write mode)."""
    if queued:
        tracker.record_publish(event)
    else:
        tracker.record(event, commit=commit)
