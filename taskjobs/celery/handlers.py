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
import traceback as traceback_module
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.utils.saferepr import saferepr
from kombu.utils.json import dumps as kombu_dumps

from taskjobs import config
from taskjobs.api.job import transition
from taskjobs.celery.recorder import Write, recorder_for
from taskjobs.model import (
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
    order_key,
    utcnow,
)
from taskjobs.settings import REDACTED, Settings

logger = logging.getLogger("taskjobs")

# The message header that names a job's user.
USER_HEADER = "taskjobs_user"
# Celery's default bound for argsrepr/kwargsrepr, to tell its own reprs from a publisher's.
REPR_MAXSIZE = 1024
REPR_MAXLEVELS = 3

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


def settings_for(task: Task | None) -> Settings | None:
    """The settings under which ``task`` is tracked, or None when it is not."""
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
    return settings if settings.tracks(task.name) else None


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


def _json(value: Any) -> str:
    """JSON text as Celery's JSON serializer writes it; a repr for what it cannot encode."""
    try:
        return str(kombu_dumps(value))
    except Exception:  # noqa: BLE001 - any object a pickle-serialized task may carry
        return str(kombu_dumps(saferepr(value)))


def _request_text(
    settings: Settings, task: Any, args: Any, kwargs: Any, argsrepr: Any, kwargsrepr: Any
) -> str:
    """The job's request: args and kwargs as JSON, or the publisher's own reprs when it set them
    (``argsrepr``/``kwargsrepr`` are how Celery users hide secrets from monitoring). Keyword
    arguments with secret-looking names are redacted; long requests are cut; a task (or the
    settings) may keep no arguments at all."""
    if not _keeps(settings.store_args, task, "taskjobs_store_args"):
        return ""
    args = () if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if _own_repr(argsrepr, args) or _own_repr(kwargsrepr, kwargs):
        text = _json({"argsrepr": argsrepr, "kwargsrepr": kwargsrepr})
    else:
        text = _json({"args": list(args), "kwargs": _redacted(settings, dict(kwargs))})
    return _capped(text, settings.max_request)


def _result_text(settings: Settings, task: Any, result: Any) -> str:
    """The job's result as JSON, cut when long, or nothing if results are not kept."""
    if not _keeps(settings.store_results, task, "taskjobs_store_results"):
        return ""
    return _capped(_json(result), settings.max_result)


def _keeps(default: bool, task: Any, option: str) -> bool:
    """A task's own option (``@app.task(taskjobs_store_args=False)``), else the setting."""
    own = getattr(task, option, None)
    return default if own is None else bool(own)


def _redacted(settings: Settings, value: Any) -> Any:
    """``value`` with the values of secret-looking keys, at any depth, replaced by ``***``."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and settings.redacts(key)
            else _redacted(settings, item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redacted(settings, item) for item in value]
    return value


def _capped(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a marker saying it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated by taskjobs: {len(text)} characters in all]"


def _own_repr(given: Any, value: Any) -> bool:
    """Whether ``given`` is not the repr Celery makes of ``value`` by default (args published as
    a tuple arrive at the worker as a list)."""
    if given is None:
        return False
    forms = (
        [value, list(value) if isinstance(value, tuple) else tuple(value)]
        if isinstance(value, (list, tuple))
        else [value]
    )
    return all(given != saferepr(form, REPR_MAXSIZE, maxlevels=REPR_MAXLEVELS) for form in forms)


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
    """The job exists, pending, before any worker can see the message."""
    headers = headers or {}
    task_id = headers.get("id")
    with recording("publish", task_id):
        settings = settings_for_name(sender)
        if task_id is None or settings is None:
            return
        args, kwargs = (body[0], body[1]) if isinstance(body, (tuple, list)) else ((), {})
        retries = int(headers.get("retries") or 0)
        queue = getattr(declare[0], "name", None) if declare else None
        fill = {
            "name": sender,
            "user": headers.get(USER_HEADER),
            "request": _request_text(
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
        )


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


# -- worker main process --------------------------------------------------------------------------


def on_received(sender: Any = None, request: Any = None, **_: Any) -> None:
    """A worker holds the message: still pending, now with its receiver and time."""
    task_id = getattr(request, "id", None)
    with recording("receipt", task_id):
        if task_id is None or settings_for(request.task) is None:
            return
        message = request.request_dict
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
        if task_id is None or settings_for(sender) is None:
            return
        if expired:
            reason = "expired before it ran (revoked)"
        elif terminated:
            reason = f"revoked and terminated by signal {signum}"
        else:
            reason = "revoked before it ran"
        _end(task_id, ERROR, "REVOKED", int(request.retries or 0), reason, exc_type=None)


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
        settings = settings_for(sender)
        if task_id is None or settings is None:
            return
        assert sender is not None
        request = sender.request
        retries = int(request.retries or 0)
        now = utcnow()
        fill = {
            "name": sender.name,
            "user": getattr(request, USER_HEADER, None),
            "request": _request_text(
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
        started = _started.pop(task_id, None) if task_id else None
        settings = settings_for(sender)
        if request is None or task_id is None or settings is None:
            return
        if started is not None:
            runtime = time.monotonic() - started
        retries = int(request.retries or 0)
        _record(
            task_id,
            FINISHED,
            {
                "celery_state": "SUCCESS",
                "result": _result_text(settings, sender, result),
                "runtime": runtime,
                "retries": retries,
            },
            fill=_clean({"name": getattr(request, "task", None) or getattr(sender, "name", None)}),
            seq=order_key(retries, STAGE_ENDED),
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
        started = _started.pop(task_id, None) if task_id else None
        settings = settings_for(sender)
        if task_id is None or settings is None:
            return
        assert sender is not None
        text = _capped(_failure_text(exception, traceback, einfo), settings.max_message)
        runtime = time.monotonic() - started if started is not None else None
        request = sender.request
        # In the worker's main process (lost worker, hard time limit) the task's request is
        # not always on the stack: then end whatever attempt the job is at.
        retries = int(request.retries or 0) if request.id == task_id else None
        _end(
            task_id,
            ERROR,
            "FAILURE",
            retries,
            text,
            exc_type=type(exception).__name__,
            runtime=runtime,
        )


def on_retry(
    sender: Task | None = None, request: Any = None, reason: Any = None, einfo: Any = None, **_: Any
) -> None:
    """The attempt failed and will run again: pending, the next attempt, the reason noted."""
    task_id = getattr(request, "id", None)
    with recording("retry", task_id):
        if task_id is not None:
            _started.pop(task_id, None)
        if task_id is None or settings_for(sender) is None:
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
        settings = settings_for(sender)
        if task_id is None or settings is None:
            return
        retries = int(getattr(request, "retries", 0) or 0)
        text = _capped(_failure_text(exception, traceback, einfo), settings.max_message)
        _end(task_id, ERROR, "FAILURE", retries, text, exc_type=type(exception).__name__)


def on_postrun(sender: Task | None = None, task_id: str | None = None, **_: Any) -> None:
    """Forget the start time of a task that ended without success or failure signals."""
    if task_id is not None:
        _started.pop(task_id, None)


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
        fill=_clean({"name": name}),
        seq=None if retries is None else order_key(retries, STAGE_ENDED),
        stage=STAGE_ENDED if retries is None else None,
        message=_note(reason, now),
        at=now,
    )


def _failure_text(exception: Any, traceback: Any, einfo: Any) -> str:
    """What a user needs to see about a failure: a reason, the exception, its traceback."""
    if isinstance(exception, WorkerLostError):
        headline = f"worker lost: the process running the task died ({exception})"
    elif isinstance(exception, TimeLimitExceeded):
        headline = f"hard time limit exceeded: the task was killed after {exception}s"
    elif isinstance(exception, SoftTimeLimitExceeded):
        headline = f"soft time limit exceeded: {type(exception).__name__}: {exception}"
    else:
        headline = f"{type(exception).__name__}: {exception}"
    trace = getattr(einfo, "traceback", None)
    if not trace and traceback is not None:
        trace = "".join(traceback_module.format_tb(traceback))
    return f"{headline}\n{trace.rstrip()}" if trace else headline


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
