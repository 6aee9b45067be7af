"""Celery signal receivers: each lifecycle event becomes one guarded transition of its job.

Every receiver is a module-level function connected strongly and once. None of them can change a
task's outcome: a failed write is logged with the task id and the task goes on.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery, Task, signals

from taskjobs import config
from taskjobs.api.job import transition
from taskjobs.celery.payload import capped, failure_text, request_text, result_text
from taskjobs.celery.recorder import Write, recorder_for
from taskjobs.model import (
    CELERY_PURGED,
    CELERY_REPLACED,
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
    check_datetime,
    check_job_id,
    delivery_stamp,
    order_key,
    utcnow,
)
from taskjobs.settings import Settings

logger = logging.getLogger("taskjobs")

# The message header that names a job's user.
USER_HEADER = "taskjobs_user"
# The message header with the message's delivery stamp (``model.delivery_stamp``).
DELIVERY_HEADER = "taskjobs_delivery"
# Celery's message header counting how deeply a task replaced another one (0: not at all).
NESTING_HEADER = "replaced_task_nesting"
# Ids named in a job's "replaced by" note; a longer replacement says how many more.
MAX_NAMED_IDS = 20

# Apps whose every task is tracked, with their settings.
installed: WeakKeyDictionary[Celery, Settings] = WeakKeyDictionary()
# Settings of apps whose JobTask tasks are tracked without install().
_base_class_apps: WeakKeyDictionary[Celery, Settings] = WeakKeyDictionary()
# Monotonic time each task running in this process started, once its start was recorded.
_started: dict[str, float] = {}
# This process's worker node name (``celery@host``), known from ``worker_init``; prefork pool
# children inherit it. Inside a task, Celery's request names only the host on some pools.
_node_name: str | None = None
# The tracked task this thread is publishing, so that a failed publish can be recorded.
_publishing = threading.local()
# What the tasks running in this thread published as their replacements, by task id.
_replacing = threading.local()
# How many eager runs of each task id this thread is inside: an eager ``Task.replace`` runs its
# replacement inside the task, under the task's own id, and only the outermost run's end counts.
_eager_depth = threading.local()


def settings_for(task: Task | None) -> Settings | None:
    """The settings under which ``task`` is tracked, or None when it is not."""
    settings = _app_settings(task)
    return (
        settings if settings is not None and settings.tracks(getattr(task, "name", None)) else None
    )


def _app_settings(task: Task | None) -> Settings | None:
    """The settings of the tracked app ``task`` belongs to, whether or not its name is tracked."""
    if task is None:
        return None
    app = task.app
    settings = installed.get(app)
    if settings is None:
        from taskjobs.celery.task import JobTask

        if not isinstance(task, JobTask):
            return None
        settings = _base_class_apps.get(app)
        if settings is None:
            settings = _base_class_apps.setdefault(app, Settings.load(app.conf))
            config.configure_default(settings.database_url)
    return settings


def tracking(task: Task | None, nesting: Any) -> tuple[Settings, bool] | None:
    """Whether events of ``task`` are recorded: its settings, and whether only into a job that
    exists. A task whose name is not tracked (Celery's own ``celery.accumulate``, say) is
    followed when it runs as part of a replacement (``nesting`` > 0): it may carry the id of
    the job it replaced, and that job ends when it does."""
    settings = settings_for(task)
    if settings is not None:
        return settings, False
    if not _int(nesting):
        return None
    settings = _app_settings(task)
    return None if settings is None else (settings, True)


def _task_named(name: str | None) -> Task | None:
    """The task registered under ``name`` in the current app, if this process has it."""
    from celery import current_app

    return current_app.tasks.get(name) if name else None


def settings_for_name(name: str | None) -> Settings | None:
    """The settings under which a task known only by name (at publish) is tracked."""
    for settings in list(installed.values()):
        if settings.tracks(name):
            return settings
    return settings_for(_task_named(name))


@contextmanager
def recording(event: str, task_id: Any) -> Iterator[None]:
    """Run one recording; log any failure with the task id and swallow it."""
    try:
        yield
    except Exception:
        logger.exception("taskjobs: could not record %s of task %s", event, task_id)


def _note(text: str, at: datetime) -> str:
    """One entry of a job's ``messages``: a UTC time stamp, the text, a newline."""
    return f"[{at:%Y-%m-%dT%H:%M:%S}Z] {text.rstrip()}\n"


def _lineage(source: Mapping[str, Any], task_id: str) -> dict[str, Any]:
    """Parent, root and group ids from message headers. A retry is published from inside the
    task itself, so Celery names the task as its own parent: that is no parent."""
    parent_id = source.get("parent_id")
    return {
        "parent_id": None if parent_id == task_id else parent_id,
        "root_id": source.get("root_id"),
        "group_id": source.get("group"),
    }


def _record(
    task_id: str,
    state: str,
    values: Mapping[str, Any],
    *,
    at: datetime | None = None,
    **options: Any,
) -> None:
    """Write one transition through the recorder, stamped now (not when a buffer is written)."""
    store = config.current_store()
    perform = functools.partial(
        transition, check_job_id(task_id), state, values, at=at or utcnow(), store=store, **options
    )
    recorder_for(store).submit(Write(task_id, f"{state} transition", perform))


def _int(value: Any) -> int:
    """A whole number from a message header or request field that may be missing or text."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _delivery(source: Any) -> int | None:
    """The delivery stamp of the message ``source`` (its headers, request dict or request)
    came from; None when its publisher did not stamp it."""
    value = source.get(DELIVERY_HEADER) if isinstance(source, Mapping) else None
    if value is None and not isinstance(source, Mapping):
        value = getattr(source, DELIVERY_HEADER, None)
    return _int(value) or None


def _redelivered(request: Any) -> bool:
    """Whether the broker delivered this message before (to a worker that did not ack it)."""
    return bool((getattr(request, "delivery_info", None) or {}).get("redelivered"))


def _clean(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


# -- publisher ------------------------------------------------------------------------------------


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
    with recording("publish", task_id):
        settings = settings_for_name(sender)
        existing_only = False
        if settings is None:
            adopted = tracking(_task_named(sender), headers.get(NESTING_HEADER))
            if adopted is None:
                return
            settings, existing_only = adopted
        if task_id is None:
            return
        running = _running_task()
        delivery = delivery_stamp(
            utcnow(), _delivery(running.request) if running is not None else None
        )
        headers[DELIVERY_HEADER] = delivery
        if running is not None:
            _note_replacement(running, sender, headers, body)
        args, kwargs = (body[0], body[1]) if isinstance(body, (tuple, list)) else ((), {})
        retries = int(headers.get("retries") or 0)
        queue = getattr(declare[0], "name", None) if declare else None
        fill = {
            "name": sender,
            "user": headers.get(USER_HEADER),
            "request": request_text(
                settings,
                _task_named(sender),
                args,
                kwargs,
                headers.get("argsrepr"),
                headers.get("kwargsrepr"),
            ),
            "queue": queue or routing_key or exchange,
            **_lineage(headers, task_id),
        }
        _publishing.task = (task_id, sender)
        values = {
            "celery_state": "PENDING" if retries == 0 else "RETRY",
            "retries": retries,
            "eta": check_datetime("eta", headers.get("eta")),
        }
        _record(
            task_id,
            PENDING,
            values,
            fill=_clean(fill),
            seq=order_key(retries, STAGE_PUBLISHED),
            delivery=delivery,
            existing_only=existing_only,
        )


def _running_task() -> Task | None:
    """The task running in this thread, if any (a publish from inside a task)."""
    from celery import current_task

    task: Task | None = current_task._get_current_object()
    running = task is not None and getattr(task.request, "id", None) is not None
    return task if running else None


def _note_replacement(
    running: Task, name: str | None, headers: Mapping[str, Any], body: Any
) -> None:
    """Remember what a task publishes as its replacement (``Task.replace``): the messages
    sent from inside it one replacement level deeper than itself."""
    request = running.request
    if _int(headers.get(NESTING_HEADER)) <= _int(getattr(request, NESTING_HEADER, None)):
        return
    if headers.get("id") == request.id:  # a single task takes over the id: it is all there is
        _record_replacement(running, [f"{name} {request.id}"])
        return
    sent: list[str] = _replacing.__dict__.setdefault(request.id, [])
    sent.append(f"{name} {headers.get('id')}")
    embedded = body[2] if isinstance(body, (tuple, list)) and len(body) > 2 else None
    if isinstance(embedded, Mapping):
        for link in reversed(embedded.get("chain") or []):
            sent.extend(_signature_names(link))
        chord_body = embedded.get("chord")
        if chord_body:
            sent.extend(f"{text} (when the group is done)" for text in _signature_names(chord_body))


def _signature_names(signature: Any) -> list[str]:
    """ "name id" of each task a signature (a dict in a message body) will run, group members
    included."""
    if not isinstance(signature, Mapping):
        return []
    options = signature.get("options") or {}
    members = (signature.get("kwargs") or {}).get("tasks")
    if members and signature.get("task") in ("celery.group", "celery.chain"):
        return [text for member in members for text in _signature_names(member)]
    if options.get("task_id"):
        return [f"{signature.get('task')} {options['task_id']}"]
    return []


@contextmanager
def watching_publish() -> Iterator[None]:
    """Around a publish: if it raises after the job was written, mark the job as never queued."""
    _publishing.task = None
    try:
        yield
    except Exception as exc:
        published: tuple[str, str | None] | None = getattr(_publishing, "task", None)
        if published is not None:
            _record_publish_failure(published[0], published[1], exc)
        raise
    finally:
        _publishing.task = None


def _record_publish_failure(task_id: str, name: str | None, exc: BaseException) -> None:
    """A publish raised: the job is not left pending for a message no broker holds."""
    with recording("publish failure", task_id):
        now = utcnow()
        _record(
            task_id,
            ERROR,
            {"celery_state": "PUBLISH_FAILED", "exc_type": type(exc).__name__},
            fill={"name": name},
            stage=STAGE_PRESUMED_END,
            message=_note(f"publish failed, the task was never queued: {exc!r}", now),
            at=now,
        )


def record_purge(app: Celery, queues: list[str], count: Any, started: datetime) -> None:
    """``app.control.purge()`` deleted the messages waiting in ``queues``: the jobs created
    before it that no worker had received end in error, PURGED (a presumed end: a message a
    worker had taken after all moves its job on)."""
    settings = installed.get(app)
    with recording("purge", f"in {', '.join(queues)}"):
        if settings is None or not count:
            return
        ended = config.current_store().presume_queued_ended(
            queues=queues,
            created_before=started,
            celery_state=CELERY_PURGED,
            note=f"purged: app.control.purge() deleted the waiting messages of {', '.join(queues)}"
            " before any worker took this one",
            at=utcnow(),
        )
        logger.info("taskjobs: %s message(s) purged; %d pending job(s) marked purged", count, ended)


# -- worker main process --------------------------------------------------------------------------


def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A worker holds the message: still pending, now with its receiver and time."""
    task_id = getattr(request, "id", None)
    with recording("receipt", task_id):
        message = request.request_dict
        tracked = tracking(request.task, message.get(NESTING_HEADER))
        if task_id is None or tracked is None:
            return
        retries = int(message.get("retries") or 0)
        now = utcnow()
        fill = {
            "name": request.name,
            "user": message.get(USER_HEADER),
            "queue": (request.delivery_info or {}).get("routing_key"),
            **_lineage(message, task_id),
        }
        _record(
            task_id,
            PENDING,
            _clean(
                {
                    "celery_state": "RECEIVED",
                    "received_at": now,
                    "worker": request.hostname,
                    "retries": retries,
                    "eta": check_datetime("eta", message.get("eta")),
                }
            ),
            fill=_clean(fill),
            seq=order_key(
                retries, STAGE_RECEIVED_AGAIN if _redelivered(request) else STAGE_RECEIVED
            ),
            delivery=_delivery(message),
            existing_only=tracked[1],
            at=now,
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
    with recording("revocation", task_id):
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None))
        if task_id is None or tracked is None:
            return
        if expired:
            reason = "expired before it ran (revoked)"
        elif terminated:
            reason = f"revoked and terminated by signal {signum}"
        else:
            reason = "revoked before it ran"
        _end(
            task_id,
            ERROR,
            "REVOKED",
            int(request.retries or 0),
            reason,
            exc_type=None,
            delivery=_delivery(request),
            existing_only=tracked[1],
        )
        _fail_chord_body(tracked[0], request, f"{sender.name if sender else ''} {task_id}",
                         f"TaskRevokedError({reason!r})")  # fmt: skip


def on_rejected(sender: Any = None, message: Any = None, exc: Any = None, **_: Any) -> None:
    """A message the worker could not accept (bad format, invalid task): error, REJECTED."""
    headers = getattr(message, "headers", None) or {}
    task_id = headers.get("id")
    with recording("rejection", task_id):
        if task_id is None or settings_for_name(headers.get("task")) is None:
            return
        retries = int(headers.get("retries") or 0)
        _end(
            task_id,
            ERROR,
            "REJECTED",
            retries,
            f"message rejected by the worker: {exc!r}",
            exc_type=type(exc).__name__ if exc else None,
            name=headers.get("task"),
            delivery=_delivery(headers),
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
    with recording("unknown task", id):
        if id is None or not any(s.tracks(name) for s in list(installed.values())):
            return
        headers = getattr(message, "headers", None) or {}
        retries = int(headers.get("retries") or 0)
        _end(
            id,
            ERROR,
            "FAILURE",
            retries,
            f"unknown task {name!r}: no worker has it registered ({exc!r})",
            exc_type="NotRegistered",
            name=name,
            delivery=_delivery(headers),
        )


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """Remember the worker's node name for the jobs this process (and its children) runs."""
    global _node_name
    _node_name = getattr(sender, "hostname", None)


# -- where the task runs --------------------------------------------------------------------------


def on_prerun(
    sender: Task | None = None,
    task_id: str | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """The task body is about to run: running, with worker, pid, attempt and start time."""
    with recording("start", task_id):
        request: Any = getattr(sender, "request", None)
        if getattr(request, "is_eager", False) and task_id is not None:
            depths = _eager_depth.__dict__
            depths[task_id] = depths.get(task_id, 0) + 1
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None))
        if task_id is None or tracked is None:
            return
        assert sender is not None
        settings, existing_only = tracked
        retries = int(request.retries or 0)
        now = utcnow()
        fill = {
            "name": sender.name,
            "user": getattr(request, USER_HEADER, None),
            "request": request_text(
                settings,
                sender,
                args,
                kwargs,
                getattr(request, "argsrepr", None),
                getattr(request, "kwargsrepr", None),
            ),
            "queue": (request.delivery_info or {}).get("routing_key"),
            **_lineage(
                {
                    "parent_id": request.parent_id,
                    "root_id": request.root_id,
                    "group": request.group,
                },
                task_id,
            ),
        }
        _record(
            task_id,
            RUNNING,
            {
                "celery_state": "STARTED",
                "started_at": now,
                "worker": _node_name or request.hostname,
                "pid": os.getpid(),
                "retries": retries,
            },
            fill=_clean(fill),
            seq=order_key(retries, STAGE_RUNNING_AGAIN if _redelivered(request) else STAGE_RUNNING),
            delivery=_delivery(request),
            existing_only=existing_only,
            at=now,
        )
        # The runtime counts from here, not from before this write as Celery's does.
        _started[task_id] = time.monotonic()


def on_success(
    sender: Task | None = None, result: Any = None, runtime: float | None = None, **_: Any
) -> None:
    """Finished, with the result as JSON text and the runtime."""
    request = getattr(sender, "request", None)
    task_id = getattr(request, "id", None)
    with recording("success", task_id):
        if _inside_itself(task_id):
            return
        started = _started.pop(task_id, None) if task_id else None
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None))
        if request is None or task_id is None or tracked is None:
            return
        settings, existing_only = tracked
        if started is not None:
            runtime = time.monotonic() - started
        retries = int(request.retries or 0)
        _record(
            task_id,
            FINISHED,
            {
                "celery_state": "SUCCESS",
                "result": result_text(settings, sender, result),
                "runtime": runtime,
                "retries": retries,
            },
            fill=_clean({"name": getattr(request, "task", None) or getattr(sender, "name", None)}),
            seq=order_key(retries, STAGE_ENDED),
            delivery=_delivery(request),
            existing_only=existing_only,
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
    with recording("failure", task_id):
        if _inside_itself(task_id):
            return
        started = _started.pop(task_id, None) if task_id else None
        request: Any = getattr(sender, "request", None)
        # In the worker's main process (lost worker, hard time limit) the task's request is
        # not always on the stack: then end whatever attempt the job is at.
        own = request is not None and request.id == task_id
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None) if own else None)
        if task_id is None or tracked is None:
            return
        settings, existing_only = tracked
        text = capped(failure_text(exception, traceback, einfo), settings.max_message)
        runtime = time.monotonic() - started if started is not None else None
        _end(
            task_id,
            ERROR,
            "FAILURE",
            int(request.retries or 0) if own else None,
            text,
            exc_type=type(exception).__name__,
            runtime=runtime,
            delivery=_delivery(request) if own else None,
            existing_only=existing_only,
        )
        if own:
            failed = f"{getattr(sender, 'name', None)} {task_id}"
            _fail_chain_successors(settings, request, failed, exception)
            _fail_chord_body(settings, request, failed, repr(exception))


def on_retry(
    sender: Task | None = None, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    """The attempt failed and will run again: pending, the next attempt, the reason noted."""
    task_id = getattr(request, "id", None)
    with recording("retry", task_id):
        if task_id is not None:
            _started.pop(task_id, None)
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None))
        if task_id is None or tracked is None:
            return
        retries = int(request.retries or 0)
        now = utcnow()
        _record(
            task_id,
            PENDING,
            {"celery_state": "RETRY", "retries": retries + 1},
            seq=order_key(retries + 1, STAGE_PUBLISHED),
            message=_note(f"attempt {retries + 1} failed, retrying: {reason}", now),
            guard_message=False,
            delivery=_delivery(request),
            existing_only=tracked[1],
            at=now,
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
    with recording("internal error", task_id):
        tracked = tracking(sender, getattr(request, NESTING_HEADER, None))
        if task_id is None or tracked is None:
            return
        retries = int(getattr(request, "retries", 0) or 0)
        text = capped(failure_text(exception, traceback, einfo), tracked[0].max_message)
        _end(
            task_id,
            ERROR,
            "FAILURE",
            retries,
            text,
            exc_type=type(exception).__name__,
            delivery=_delivery(request),
            existing_only=tracked[1],
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
    replacement: list[str] | None = _replacing.__dict__.pop(task_id, None)
    if replacement is None or state != "IGNORED":
        return
    _record_replacement(sender, replacement)


def _record_replacement(task: Task | None, replacement: list[str]) -> None:
    """``task`` replaced itself: its job says by what, and waits for it."""
    request: Any = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    with recording("replacement", task_id):
        tracked = tracking(task, getattr(request, NESTING_HEADER, None))
        if tracked is None or task_id is None:
            return
        named = list(dict.fromkeys(replacement))
        listed = ", ".join(named[:MAX_NAMED_IDS])
        if len(named) > MAX_NAMED_IDS:
            listed += f" and {len(named) - MAX_NAMED_IDS} more"
        now = utcnow()
        # A presumed end of this delivery: the replacement's messages, published later, move
        # the job on; the one carrying this job's id ends it.
        _record(
            task_id,
            RUNNING,
            {"celery_state": CELERY_REPLACED},
            seq=order_key(int(request.retries or 0), STAGE_PRESUMED_END),
            delivery=_delivery(request),
            message=_note(f"replaced by {listed}; the job ends when {task_id} does", now),
            guard_message=False,
            existing_only=tracked[1],
            at=now,
        )


def _inside_itself(task_id: str | None) -> bool:
    """Whether this is an eager run nested in another eager run of the same id (a replacement
    run by an eager ``Task.replace``): its end is not the job's, the outer run's is."""
    return task_id is not None and _eager_depth.__dict__.get(task_id, 0) > 1


def _end(
    task_id: str,
    state: str,
    celery_state: str,
    retries: int | None,
    reason: str,
    *,
    exc_type: str | None,
    runtime: float | None = None,
    name: str | None = None,
    delivery: int | None = None,
    existing_only: bool = False,
    fill: Mapping[str, Any] | None = None,
) -> None:
    now = utcnow()
    values = _clean(
        {
            "celery_state": celery_state,
            "exc_type": exc_type,
            "runtime": runtime,
            "retries": retries,
        }
    )
    _record(
        task_id,
        state,
        values,
        fill=_clean({"name": name, **(fill or {})}),
        seq=None if retries is None else order_key(retries, STAGE_ENDED),
        delivery=delivery,
        stage=STAGE_ENDED if retries is None else None,
        message=_note(reason, now),
        existing_only=existing_only,
        at=now,
    )


def _fail_chain_successors(settings: Settings, request: Any, failed: str, exception: Any) -> None:
    """Celery stores every later link of a failed task's chain as failed, though none of them
    ever runs or is published: each gets its job, in error, naming the link that failed."""
    reason = f"not run: {failed}, earlier in its chain, failed: {type(exception).__name__}: "
    _end_unrun(
        settings,
        request.chain,
        reason + str(exception),
        type(exception).__name__,
        parent_id=request.id,
        root_id=request.root_id,
    )


def _fail_chord_body(settings: Settings, request: Any, failed: str, error: str) -> None:
    """A chord header member failed (or was revoked): Celery fails the chord body with a
    ``ChordError`` once the header is done, without running it, and every link chained after
    the body too. Their jobs end now, in error, naming the member."""
    body = getattr(request, "chord", None)
    if not isinstance(body, Mapping):
        return
    member_id = failed.rsplit(" ", 1)[-1]
    reason = f"not run: chord header member {failed} failed: Dependency {member_id} raised {error}"
    root_id = getattr(request, "root_id", None)
    members = (
        (body.get("kwargs") or {}).get("tasks") if body.get("task") == "celery.group" else None
    )
    _end_unrun(settings, members or [body], reason, "ChordError",
               parent_id=None, root_id=root_id, chained=False)  # fmt: skip
    options = body.get("options") or {}
    _end_unrun(settings, options.get("chain"), reason, "ChordError",
               parent_id=options.get("task_id"), root_id=root_id)  # fmt: skip


def _end_unrun(
    settings: Settings,
    signatures: Any,
    reason: str,
    exc_type: str,
    *,
    parent_id: str | None,
    root_id: str | None,
    chained: bool = True,
) -> None:
    """End in error the jobs of ``signatures`` (message-body dicts; a chain listed last to
    first, as Celery lists it, each link the parent of the next), tasks Celery ended without
    running them. A task whose name is not
    tracked only ends a job that exists (one it replaced)."""
    for signature in reversed(list(signatures or [])):
        if not isinstance(signature, Mapping):
            continue
        options = signature.get("options") or {}
        job_id, name = options.get("task_id"), signature.get("task")
        if not job_id:
            continue
        with recording("a task Celery ended without running it", job_id):
            _end(
                job_id,
                ERROR,
                "FAILURE",
                None,
                reason,
                exc_type=exc_type,
                name=name,
                existing_only=not settings.tracks(name),
                fill=_clean(
                    {
                        "parent_id": parent_id,
                        "root_id": root_id,
                        "group_id": options.get("group_id"),
                    }
                ),
            )
        if chained:
            parent_id = job_id


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
    (signals.worker_init, on_worker_init),
)


def connect() -> None:
    """Connect every receiver, strongly and once (safe to call again)."""
    for signal, receiver in _RECEIVERS:
        signal.connect(receiver, weak=False, dispatch_uid=f"taskjobs.{receiver.__name__}")
