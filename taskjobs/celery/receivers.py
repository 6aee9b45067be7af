"""The worker side: Celery's task signals, each turned into one lifecycle event of its job.

Every receiver is a module-level function connected strongly and once. Each reads what Celery
hands it, builds the event with ``taskjobs.lifecycle`` and gives it to the tracker of the
task's app. None of them can change a task's outcome: a failed write is logged with the task
id and the task goes on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import Task, signals

from taskjobs import lifecycle
from taskjobs.celery import canvas, registry, worker
from taskjobs.celery.message import (
    QUEUED_HEADER,
    USER_HEADER,
    delivery,
    lineage,
    nesting,
    redelivered,
    request_lineage,
    routing_key,
    whole,
)
from taskjobs.celery.payload import capped, failure_text, request_text, result_text
from taskjobs.celery.publish import on_before_publish
from taskjobs.celery.tracker import never_raising
from taskjobs.model import (
    CELERY_FAILURE,
    CELERY_REJECTED,
    CELERY_REVOKED,
    check_datetime,
    stamp_time,
    utcnow,
)

# Monotonic time each task running in this process started, once its start was recorded.
_started: dict[str, float] = {}
# How many eager runs of each task id this thread is inside: an eager ``Task.replace`` runs its
# replacement inside the task, under the task's own id, and only the outermost run's end counts.
_eager_depth = threading.local()


def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A worker holds the message: still pending, now with its receiver and time."""
    task_id = getattr(request, "id", None)
    with never_raising("receipt", task_id):
        message = request.request_dict
        tracked = registry.tracking(request.task, message.get("replaced_task_nesting"))
        if task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        if tracker.ends_queued:  # its pool process may be gone before it writes the end
            tracker.outcomes.watch(request, existing_only)
        queued = bool(message.get(QUEUED_HEADER))
        stamp = delivery(message)
        known = {
            "name": request.name,
            "user": message.get(USER_HEADER),
            # Only a job whose publish may not be written yet needs it (kept off the main loop
            # otherwise: the task's start records it too).
            "request": request_text(
                tracker.settings,
                request.task,
                request.args,
                request.kwargs,
                request.argsrepr,
                request.kwargsrepr,
            )
            if queued
            else None,
            "queue": routing_key(request),
            "lineage": lineage(message),
            "retries": whole(message.get("retries")),
            "eta": check_datetime("eta", message.get("eta")),
            "delivery": stamp,
            "existing_only": existing_only,
        }
        receipt = lifecycle.received(
            task_id, **known, worker=request.hostname, redelivered=redelivered(request),
            at=utcnow(),
        )  # fmt: skip
        if not queued:
            tracker.record(receipt)
            return
        # The publisher queued its write (the "async" publish mode), and this receipt may land
        # first: the publish is written here too, as the publisher writes it, with the same
        # order key, so whichever lands second only fills in what the job lacks, and the job's
        # history starts at PENDING, at the publish time, either way. One transaction: the
        # worker's main loop pays one commit, as for a receipt alone.
        at = stamp_time(stamp) if stamp is not None else utcnow()
        tracker.record(lifecycle.published(task_id, **known, at=at), receipt)


def on_prerun(
    sender: Task | None = None,
    task_id: str | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """The task body is about to run: running, with worker, pid, attempt and start time."""
    with never_raising("start", task_id):
        request: Any = getattr(sender, "request", None)
        if getattr(request, "is_eager", False) and task_id is not None:
            depths = _eager_depth.__dict__
            depths[task_id] = depths.get(task_id, 0) + 1
        tracked = registry.tracking(sender, nesting(request))
        if task_id is None or tracked is None:
            return
        assert sender is not None
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.started(
                task_id,
                name=sender.name,
                user=getattr(request, USER_HEADER, None),
                request=request_text(
                    tracker.settings,
                    sender,
                    args,
                    kwargs,
                    getattr(request, "argsrepr", None),
                    getattr(request, "kwargsrepr", None),
                ),
                queue=routing_key(request),
                lineage=request_lineage(request),
                retries=whole(request.retries),
                worker=worker.node_name() or request.hostname,
                pid=os.getpid(),
                redelivered=redelivered(request),
                delivery=delivery(request),
                at=utcnow(),
                existing_only=existing_only,
            )
        )
        # The runtime counts from here, not from before this write as Celery's does.
        _started[task_id] = time.monotonic()


def on_success(
    sender: Task | None = None, result: Any = None, runtime: float | None = None, **_: Any
) -> None:
    """Finished, with the result as JSON text and the runtime."""
    request = getattr(sender, "request", None)
    task_id = getattr(request, "id", None)
    with never_raising("success", task_id):
        if _inside_itself(task_id):
            return
        started = _started.pop(task_id, None) if task_id else None
        tracked = registry.tracking(sender, nesting(request))
        if request is None or task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.succeeded(
                task_id,
                name=getattr(request, "task", None) or getattr(sender, "name", None),
                result=result_text(tracker.settings, sender, result),
                runtime=time.monotonic() - started if started is not None else runtime,
                retries=whole(request.retries),
                delivery=delivery(request),
                at=utcnow(),
                existing_only=existing_only,
            ),
            end=True,
        )


def on_failure(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: Any = None,
    traceback: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """Error, with the exception type, message and traceback; a reason for lost workers and
    time limits. Celery may send this twice for one hard time limit: the second is ignored."""
    with never_raising("failure", task_id):
        if _inside_itself(task_id):
            return
        started = _started.pop(task_id, None) if task_id else None
        request: Any = getattr(sender, "request", None)
        # In the worker's main process (lost worker, hard time limit) the task's request is
        # not always on the stack: then end whatever attempt the job is at.
        own = request is not None and request.id == task_id
        tracked = registry.tracking(sender, nesting(request) if own else None)
        if task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.ended(
                task_id,
                what="failure",
                celery_state=CELERY_FAILURE,
                retries=whole(request.retries) if own else None,
                reason=capped(
                    failure_text(exception, traceback, einfo), tracker.settings.max_message
                ),
                exc_type=type(exception).__name__,
                runtime=time.monotonic() - started if started is not None else None,
                delivery=delivery(request) if own else None,
                existing_only=existing_only,
                at=utcnow(),
            ),
            # Ended in the task's own process; the worker's main loop (a lost worker, a hard
            # time limit) never waits for the database.
            end=own,
        )
        if own:
            failed = f"{getattr(sender, 'name', None)} {task_id}"
            canvas.fail_chain_successors(tracker, request, failed, exception)
            canvas.fail_chord_body(tracker, request, failed, repr(exception))


def on_retry(
    sender: Task | None = None, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    """The attempt failed and will run again: pending, the next attempt, the reason noted."""
    task_id = getattr(request, "id", None)
    with never_raising("retry", task_id):
        if task_id is not None:
            _started.pop(task_id, None)
        tracked = registry.tracking(sender, nesting(request))
        if task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.retried(
                task_id,
                retries=whole(request.retries),
                reason=str(reason),
                delivery=delivery(request),
                at=utcnow(),
                existing_only=existing_only,
            ),
            end=True,  # the end of this attempt, in its own process
        )


def on_revoked(
    sender: Task | None = None,
    request: Any = None,
    terminated: bool = False,
    signum: Any = None,
    expired: bool = False,
    **_: Any,
) -> None:
    """Revoked, expired or terminated: the job ends in error, saying which."""
    task_id = getattr(request, "id", None)
    with never_raising("revocation", task_id):
        tracked = registry.tracking(sender, nesting(request))
        if task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        if expired:
            reason = "expired before it ran (revoked)"
        elif terminated:
            reason = f"revoked and terminated by signal {signum}"
        else:
            reason = "revoked before it ran"
        tracker.record(
            lifecycle.ended(
                task_id,
                what="revocation",
                celery_state=CELERY_REVOKED,
                retries=whole(request.retries),
                reason=reason,
                exc_type=None,
                delivery=delivery(request),
                existing_only=existing_only,
                at=utcnow(),
            )
        )
        canvas.fail_chord_body(tracker, request, f"{sender.name if sender else ''} {task_id}",
                               f"TaskRevokedError({reason!r})")  # fmt: skip


def on_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    """A message the worker could not accept (bad format, invalid task): error, REJECTED."""
    headers = getattr(message, "headers", None) or {}
    task_id = headers.get("id")
    with never_raising("rejection", task_id):
        tracker = registry.for_name(headers.get("task"), getattr(sender, "app", None))
        if task_id is None or tracker is None:
            return
        tracker.record(
            lifecycle.ended(
                task_id,
                what="rejection",
                celery_state=CELERY_REJECTED,
                retries=whole(headers.get("retries")),
                reason=f"message rejected by the worker: {exc!r}",
                exc_type=type(exc).__name__ if exc else None,
                name=headers.get("task"),
                delivery=delivery(headers),
                at=utcnow(),
            )
        )


def on_unknown(
    sender: Any = None,
    message: Any = None,
    exc: Any = None,
    name: Any = None,
    id: Any = None,
    **_: Any,
) -> None:
    """A task name no worker knows: error, as Celery records it (FAILURE, NotRegistered)."""
    with never_raising("unknown task", id):
        tracker = registry.for_name(name, getattr(sender, "app", None))
        if id is None or tracker is None:
            return
        headers = getattr(message, "headers", None) or {}
        tracker.record(
            lifecycle.ended(
                id,
                what="unknown task",
                celery_state=CELERY_FAILURE,
                retries=whole(headers.get("retries")),
                reason=f"unknown task {name!r}: no worker has it registered ({exc!r})",
                exc_type="NotRegistered",
                name=name,
                delivery=delivery(headers),
                at=utcnow(),
            )
        )


def on_internal_error(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: Any = None,
    traceback: Any = None,
    einfo: Any = None,
    request: Any = None,
    **_: Any,
) -> None:
    """Celery failed outside the task body (or an eager task propagated its error)."""
    with never_raising("internal error", task_id):
        tracked = registry.tracking(sender, nesting(request))
        if task_id is None or tracked is None:
            return
        tracker, existing_only = tracked
        tracker.record(
            lifecycle.ended(
                task_id,
                what="internal error",
                celery_state=CELERY_FAILURE,
                retries=whole(getattr(request, "retries", 0)),
                reason=capped(
                    failure_text(exception, traceback, einfo), tracker.settings.max_message
                ),
                exc_type=type(exception).__name__,
                delivery=delivery(request),
                existing_only=existing_only,
                at=utcnow(),
            )
        )


def on_postrun(
    sender: Task | None = None, task_id: str | None = None, state: str | None = None, **_: Any
) -> None:
    """Forget the start time of a task that ended without success or failure signals; a task
    that replaced itself notes what replaces it."""
    if task_id is None:
        return
    depths = _eager_depth.__dict__
    if task_id in depths:
        depths[task_id] -= 1
        if depths[task_id] > 0:
            return
        del depths[task_id]
    _started.pop(task_id, None)
    replacement = canvas.take_replacement(task_id)
    if replacement is None or state != "IGNORED":
        return
    at, named = replacement
    canvas.record_replacement(sender, named, at)


def _inside_itself(task_id: str | None) -> bool:
    """Whether this is an eager run nested in another eager run of the same id (a replacement
    run by an eager ``Task.replace``): its end is not the job's, the outer run's is."""
    return task_id is not None and _eager_depth.__dict__.get(task_id, 0) > 1


_RECEIVERS: tuple[tuple[Any, Callable[..., None]], ...] = (
    (signals.before_task_publish, on_before_publish),
    (signals.task_received, on_received),
    (signals.task_prerun, on_prerun),
    (signals.task_success, on_success),
    (signals.task_failure, on_failure),
    (signals.task_retry, on_retry),
    (signals.task_revoked, on_revoked),
    (signals.task_rejected, on_rejected),
    (signals.task_unknown, on_unknown),
    (signals.task_internal_error, on_internal_error),
    (signals.task_postrun, on_postrun),
    *worker.RECEIVERS,
)


def connect() -> None:
    """Connect every receiver, strongly and once (safe to call again)."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"taskjobs.{receiver.__name__}")
