"""Flower's JSON API, read from the store: the routes and answer shapes of Flower 2.1's
``flower/urls.py`` and ``flower/api/tasks.py``, so that a script written against Flower reads
taskjobs' history unchanged.

- ``GET /api/tasks``: an object keyed by task id, newest first, each value a task as Flower
  gives it (Celery's ``events.state.Task.as_dict()``: states as Celery names them, times as
  Unix seconds, ``args``/``kwargs``/``result`` as reprs, ``worker`` as the node name).
- ``GET /api/task/info/<id>``: one task, plus ``task-id``; 404 for an unknown id.
- ``GET /api/task/result/<id>``: ``task-id`` and ``state``, and ``result`` once it is ready
  (a failure's ``result`` is the exception, with its ``traceback``), waiting up to
  ``timeout`` seconds as Flower's does.
- ``GET /api/task/types``: ``{"task-types": [...]}``.
- ``GET /api/workers``: the workers from their heartbeats (``?status=true``: alive or not;
  ``?workername=``: one of them, 404 for an unknown one).

Where the store knows more than Flower's events did, the answer says it in Flower's terms:
a job taskjobs ended itself (``LOST``, ``PURGED``, ``VANISHED``, ``PUBLISH_FAILED``) is a
``FAILURE`` whose ``exception`` says why; a task that replaced itself is ``STARTED`` until its
replacement ends. What Flower's events carry and the store does not (the Lamport ``clock``,
``exchange``, ``client``, ``expires``, the time of the last retry) is ``null``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from taskjobs import queries
from taskjobs.errors import JobNotFoundError
from taskjobs.model import (
    CELERY_FAILURE,
    CELERY_LOST,
    CELERY_PENDING,
    CELERY_PUBLISH_FAILED,
    CELERY_PURGED,
    CELERY_RECEIVED,
    CELERY_REJECTED,
    CELERY_REPLACED,
    CELERY_RETRY,
    CELERY_REVOKED,
    CELERY_STARTED,
    CELERY_SUCCESS,
    CELERY_VANISHED,
    ERROR,
    FINISHED,
    RUNNING,
    Job,
)
from taskjobs.store import JobQuery
from taskjobs.web import present
from taskjobs.web.context import config_of
from taskjobs.web.params import BadParameterError, Params

# Celery's own states: what Flower's ``state`` field and filter hold.
CELERY_STATES = (CELERY_PENDING, CELERY_RECEIVED, CELERY_STARTED, CELERY_SUCCESS,
                 CELERY_FAILURE, CELERY_RETRY, CELERY_REVOKED, CELERY_REJECTED)  # fmt: skip
# The states taskjobs records besides Celery's, as Flower's states.
AS_CELERY_STATE = {
    CELERY_LOST: CELERY_FAILURE,
    CELERY_PURGED: CELERY_FAILURE,
    CELERY_VANISHED: CELERY_FAILURE,
    CELERY_PUBLISH_FAILED: CELERY_FAILURE,
    CELERY_REPLACED: CELERY_STARTED,
}
READY_STATES = (CELERY_SUCCESS, CELERY_FAILURE, CELERY_REVOKED, CELERY_REJECTED)
# The fields of a task, in Celery's ``events.state.Task._fields`` order.
TASK_FIELDS = ("uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded",
               "failed", "retried", "revoked", "args", "kwargs", "eta", "expires", "retries",
               "worker", "result", "exception", "timestamp", "runtime", "traceback",
               "exchange", "routing_key", "clock", "client", "root", "root_id", "parent",
               "parent_id", "children")  # fmt: skip
# Flower's ``sort_by`` keys (``-`` first for descending), as job columns.
SORT_KEYS = {"name": "name", "state": "celery_state", "received": "received_at",
             "started": "started_at"}  # fmt: skip
# Tasks a listing without ``limit`` returns, and the most one may ask for: Flower keeps at
# most ``max_tasks`` (10,000 by default) in memory, so no Flower client ever got more.
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
# Distinct task names ``/api/task/types`` lists.
MAX_TASK_TYPES = 10_000
# Running tasks ``/api/workers`` lists per worker (Flower's ``active``: a worker runs as many
# as its concurrency).
MAX_ACTIVE = 200
# Longest wait ``/api/task/result/<id>?timeout=`` holds a request, in seconds.
MAX_RESULT_WAIT = 60.0
RESULT_POLL = 0.25
LIST_PARAMS = ("limit", "offset", "sort_by", "workername", "taskname", "state",
               "received_start", "received_end", "search")  # fmt: skip


def routes() -> list[BaseRoute]:
    return [
        Route("/api/tasks", list_tasks, methods=["GET"]),
        Route("/api/task/types", task_types, methods=["GET"]),
        Route("/api/task/info/{task_id:path}", task_info, methods=["GET"]),
        Route("/api/task/result/{task_id:path}", task_result, methods=["GET"]),
        Route("/api/workers", list_workers, methods=["GET"]),
    ]


def celery_state(job: Job) -> str:
    """The job's state in Celery's names."""
    if job.celery_state in CELERY_STATES:
        return job.celery_state
    if job.celery_state in AS_CELERY_STATE:
        return AS_CELERY_STATE[job.celery_state]
    by_status = {FINISHED: CELERY_SUCCESS, ERROR: CELERY_FAILURE, RUNNING: CELERY_STARTED}
    return by_status.get(job.status, CELERY_PENDING)


def stored_states(state: str) -> tuple[str, ...]:
    """The ``celery_state`` values of the jobs Flower's ``state`` filter selects."""
    return (state, *(stored for stored, shown in AS_CELERY_STATE.items() if shown == state))


def task_fields(job: Job, children: list[str] | None = None) -> dict[str, Any]:
    """The job as Flower shows a task."""
    state = celery_state(job)
    ended = unix(job.finished_at)
    args, kwargs = _arguments(job.request)
    failed = state == CELERY_FAILURE
    fields = {
        "uuid": job.id,
        "name": job.name or None,
        "state": state,
        "received": unix(job.received_at),
        "sent": unix(job.created_at),
        "started": unix(job.started_at),
        "rejected": ended if state == CELERY_REJECTED else None,
        "succeeded": ended if state == CELERY_SUCCESS else None,
        "failed": ended if failed else None,
        "retried": None,
        "revoked": ended if state == CELERY_REVOKED else None,
        "args": args,
        "kwargs": kwargs,
        "eta": job.eta.isoformat() if job.eta else None,
        "expires": None,
        "retries": job.retries,
        "worker": job.worker,
        "result": _repr(job.result) if state == CELERY_SUCCESS else None,
        "exception": exception_of(job) if failed or state == CELERY_RETRY else None,
        "timestamp": unix(job.updated_at),
        "runtime": job.runtime,
        "traceback": (present.traceback_of(job) or None) if failed else None,
        "exchange": None,
        "routing_key": job.queue,
        "clock": None,
        "client": None,
        "root": job.root_id,
        "root_id": job.root_id,
        "parent": job.parent_id,
        "parent_id": job.parent_id,
        "children": children or [],
    }
    return {name: fields[name] for name in TASK_FIELDS}


def exception_of(job: Job) -> str | None:
    """The exception a failed job ended with, as Celery's events give it (its repr): from
    the failure's message, ``ValueError: boom`` reads ``ValueError('boom')``."""
    entries = present.message_lines(job.messages)
    if not entries:
        return job.exc_type
    lines = entries[-1][1].splitlines() or [""]
    # A failure's message is its headline, then the traceback, whose last line names it too.
    for line in (lines[0], lines[-1]):
        kind, colon, detail = line.partition(": ")
        if colon and job.exc_type and kind.rpartition(".")[2] == job.exc_type:
            return f"{job.exc_type}({detail!r})"
    return lines[0]


def unix(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _arguments(request: str, *, as_repr: bool = True) -> tuple[Any, Any]:
    """The request's args and kwargs: as reprs, as Celery's events carry them, or as values,
    as ``inspect().active()`` lists them. A request cut at its size limit, or one published
    with its own reprs, is given as stored."""
    try:
        stored = json.loads(request) if request else {}
    except ValueError:
        return request, None
    if not isinstance(stored, dict):
        return request, None
    if "argsrepr" in stored or "kwargsrepr" in stored:  # the publisher's own reprs
        return stored.get("argsrepr"), stored.get("kwargsrepr")
    args, kwargs = stored.get("args", []), stored.get("kwargs", {})
    if not as_repr:
        return args, kwargs
    # A publisher's args are a tuple (``delay(*args)``), which Celery's events show as one.
    return repr(tuple(args)), repr(kwargs)


def _repr(text: str) -> str | None:
    """A stored JSON result as the repr Celery's events carry."""
    if not text:
        return None
    try:
        return repr(json.loads(text))
    except ValueError:
        return text


def _value(text: str) -> Any:
    """A stored JSON result as its value (Flower's result endpoint answers the value)."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def list_tasks(request: Request) -> JSONResponse:
    params = Params(request.query_params, known=LIST_PARAMS)
    query = _task_query(params)
    store = config_of(request).store
    found = store.find(query)
    children = store.child_ids([job.id for job in found])
    return JSONResponse({job.id: task_fields(job, children.get(job.id)) for job in found})


def _task_query(params: Params) -> JobQuery:
    limit = params.integer("limit", default=DEFAULT_LIMIT, low=0, high=MAX_LIMIT)
    offset = params.integer("offset", default=0, low=0, high=10**9)
    sort = params.text("sort_by")
    column, ascending = "created_at", False
    if sort is not None:
        key = sort.removeprefix("-")
        if key not in SORT_KEYS:
            keys = ", ".join(sorted(SORT_KEYS))
            raise BadParameterError("sort_by", sort, f"give one of {keys}, '-' first to reverse")
        column, ascending = SORT_KEYS[key], not sort.startswith("-")
    state = _all(params.text("state"))
    if state is not None and state not in CELERY_STATES:
        raise BadParameterError("state", state, f"give one of {', '.join(CELERY_STATES)}")
    terms = _search_terms(params.text("search"))
    name = terms.get("name", _all(params.text("taskname")))
    worker = terms.get("worker", _all(params.text("workername")))
    if "state" in terms:
        state = terms["state"].upper()
        if state not in CELERY_STATES:
            valid = f"give one of {', '.join(CELERY_STATES)} after state:"
            raise BadParameterError("search", terms["state"], valid)
    return JobQuery(
        celery_states=None if state is None else stored_states(state),
        name=name,
        worker=worker,
        received_since=_flower_time(params, "received_start"),
        received_until=_flower_time(params, "received_end", end=True),
        search=terms.get("text"),
        sort=column,
        ascending=ascending,
        limit=limit,
        offset=offset,
    )


def _all(value: str | None) -> str | None:
    """Flower's pickers send ``All`` for no filter."""
    return None if value == "All" else value


def _search_terms(search: str | None) -> dict[str, str]:
    """Flower's ``search``: words separated by spaces, all of which must hold. ``name:``,
    ``state:`` and ``worker:`` words are exact filters; the other words, ``args:``, ``kwargs:``
    and ``result:`` ones with their prefix taken off, are free text, matched together as one
    substring of the id, name, request or result."""
    terms: dict[str, str] = {}
    text: list[str] = []
    for word in (search or "").split():
        field, colon, value = word.partition(":")
        field = field.lower()
        if colon and value and field in ("name", "state", "worker"):
            if field in terms:
                raise BadParameterError("search", search or "", f"give one {field}: at most")
            terms[field] = value
        else:
            text.append(value if colon and value and field in ("args", "kwargs", "result")
                        else word)  # fmt: skip
    if text:
        terms["text"] = " ".join(text)
    return terms


def _flower_time(params: Params, name: str, *, end: bool = False) -> datetime | None:
    """Flower's ``%Y-%m-%d %H:%M`` (read as UTC), an ISO 8601 time, or Unix seconds; an end
    time given to the minute takes in that whole minute, as Flower's ``received <= end``."""
    value = params.text(name)
    if value is None:
        return None
    try:
        moment = datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
    except ValueError:
        return params.time(name)
    return moment + timedelta(minutes=1) if end else moment


def task_types(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    names = config_of(request).store.task_names(MAX_TASK_TYPES)
    return JSONResponse({"task-types": [name for name in names if name]})


def task_info(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    job = _exact_job(request)
    children = config_of(request).store.child_ids([job.id])
    info = task_fields(job, children.get(job.id))
    info["task-id"] = info.pop("uuid")
    return JSONResponse(info)


def task_result(request: Request) -> JSONResponse:
    params = Params(request.query_params, known=("timeout",))
    wait = _timeout(params)
    job = _exact_job(request)
    store = config_of(request).store
    deadline = time.monotonic() + wait
    while celery_state(job) not in READY_STATES and time.monotonic() < deadline:
        time.sleep(min(RESULT_POLL, max(0.0, deadline - time.monotonic())))
        job = store.get(job.id) or job
    state = celery_state(job)
    answer: dict[str, Any] = {"task-id": job.id, "state": state}
    if state == CELERY_SUCCESS:
        answer["result"] = _value(job.result)
    elif state in READY_STATES:
        answer["result"] = exception_of(job)
        if state == CELERY_FAILURE:
            answer["traceback"] = present.traceback_of(job) or None
    return JSONResponse(answer)


def _timeout(params: Params) -> float:
    value = params.text("timeout")
    if value is None:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_RESULT_WAIT:  # also false for nan
        raise BadParameterError("timeout", value, f"give seconds from 0 to {MAX_RESULT_WAIT:g}")
    return seconds


def _exact_job(request: Request) -> Job:
    """The job of the route's id, whole: Flower's API takes full ids only."""
    task_id = request.path_params["task_id"]
    job = config_of(request).store.get(task_id) if task_id else None
    if job is None:
        raise JobNotFoundError(f"Unknown task '{task_id}'")
    return job


def list_workers(request: Request) -> JSONResponse:
    params = Params(request.query_params, known=("refresh", "status", "workername"))
    config = config_of(request)
    statuses = queries.list_workers(timeout=config.worker_timeout, store=config.store)
    name = params.text("workername")
    if name is not None:
        statuses = [status for status in statuses if status.worker.name == name]
        if not statuses:
            raise JobNotFoundError(f"Unknown worker '{name}'")
    if _flag(params, "status"):
        return JSONResponse({s.worker.name: s.state == queries.ALIVE for s in statuses})
    running = {
        s.worker.name: config.store.find(
            JobQuery(worker=s.worker.name, status=RUNNING, limit=MAX_ACTIVE)
        )
        for s in statuses
    }
    return JSONResponse({s.worker.name: _worker_fields(s, running[s.worker.name])
                         for s in statuses})  # fmt: skip


def _flag(params: Params, name: str) -> bool:
    value = params.text(name)
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise BadParameterError(name, value, "give true or false")


def _worker_fields(status: queries.WorkerStatus, running: list[Job]) -> dict[str, Any]:
    worker = status.worker
    active = []
    for job in running:
        args, kwargs = _arguments(job.request, as_repr=False)
        active.append({
            "id": job.id,
            "name": job.name,
            "args": args,
            "kwargs": kwargs,
            "type": job.name,
            "hostname": worker.name,
            "time_start": unix(job.started_at),
            "acknowledged": None,
            "delivery_info": {"routing_key": job.queue},
            "worker_pid": job.pid,
        })  # fmt: skip
    return {
        "stats": {"pid": worker.pid, "hostname": worker.hostname},
        "active": active,
        "timestamp": unix(worker.last_seen),
        "status": status.state,
        "alive": status.state == queries.ALIVE,
        "started": unix(worker.started_at),
        "stopped": unix(worker.stopped_at),
    }
