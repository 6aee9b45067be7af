"""The OpenAPI 3.1 document of the JSON routes: taskjobs' own ``/api/v1`` and Flower's. The
answer schemas are derived from the records the routes return (``Job``, ``Report``, …), so the
document cannot drift from the code; the parameters are listed here, beside what they take."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from functools import cache
from importlib import metadata
from typing import Any

from taskjobs.model import STATES, Job
from taskjobs.queries import WORKER_STATES
from taskjobs.report import Report
from taskjobs.store import SORTABLE, Transition, Worker
from taskjobs.web.flower import CELERY_STATES, MAX_LIMIT, SORT_KEYS, TASK_FIELDS

Schema = dict[str, Any]

TIME = "an ISO 8601 time (UTC unless it says otherwise) or Unix seconds"
TEXT_FILTER = "jobs whose {} is exactly this"


def _schema(hint: Any) -> Schema:
    """The JSON Schema of values of a type hint, as ``jsonable`` writes them."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        options = [_schema(arg) for arg in args if arg is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(args[1])}
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return {"type": "array", "items": _schema(args[0])}
    if origin is tuple:
        return {
            "type": "array",
            "prefixItems": [_schema(arg) for arg in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    simple = {
        str: {"type": "string"},
        int: {"type": "integer"},
        float: {"type": "number"},
        bool: {"type": "boolean"},
        datetime: {"type": "string", "format": "date-time"},
    }
    return dict(simple[hint])


def _record(cls: type) -> Schema:
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    return {
        "type": "object",
        "required": names,
        "properties": {name: _schema(hints[name]) for name in names},
    }


def _records() -> dict[str, Schema]:
    """Every record an answer holds, by name, with the records they hold."""
    found: dict[str, Schema] = {}
    waiting: list[type] = [Job, Transition, Worker, Report]
    while waiting:
        cls = waiting.pop()
        if cls.__name__ in found:
            continue
        found[cls.__name__] = _record(cls)
        for hint in typing.get_type_hints(cls).values():
            for part in (hint, *_nested(hint)):
                if dataclasses.is_dataclass(part) and isinstance(part, type):
                    waiting.append(part)
    return found


def _nested(hint: Any) -> list[Any]:
    parts = []
    for arg in typing.get_args(hint):
        parts += [arg, *_nested(arg)]
    return parts


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _parameter(
    name: str, description: str, schema: Schema | None = None, where: str = "query"
) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _answer(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {
    "400": _answer("A parameter is bad: the error names it and says what is valid", _ref("Error")),
    "503": _answer("The job store does not answer", _ref("Error")),
}
NOT_FOUND = {"404": _answer("No such job (or worker)", _ref("Error"))}


def _get(
    summary: str,
    parameters: list[Schema],
    answer: Schema,
    *,
    found: bool = False,
    description: str = "",
) -> Schema:
    operation = {
        "summary": summary,
        "parameters": parameters,
        "responses": {"200": _answer(summary, answer), **ERRORS, **(NOT_FOUND if found else {})},
    }
    if description:
        operation["description"] = description
    return {"get": operation}


def _job_parameters() -> list[Schema]:
    text = [
        _parameter(name, TEXT_FILTER.format(label))
        for name, label in (
            ("celery_state", "Celery state"),
            ("name", "task name"),
            ("user", "user"),
            ("worker", "worker"),
            ("parent_id", "parent job"),
            ("root_id", "workflow's root job"),
            ("group_id", "group"),
        )
    ]
    return [
        _parameter("state", "jobs in this state", {"type": "string", "enum": list(STATES)}),
        *text,
        _parameter("id", "jobs whose id starts with this"),
        _parameter("since", f"created at or after: {TIME}"),
        _parameter("until", f"created before: {TIME}"),
        _parameter("received_since", f"received by a worker at or after: {TIME}"),
        _parameter("received_until", f"received by a worker before: {TIME}"),
        _parameter("search", "a substring of the id, name, request or result"),
        _parameter("sort", "the order's field", {"type": "string", "enum": list(SORTABLE)}),
        _parameter(
            "order", "newest (largest) first, or not", {"type": "string", "enum": ["desc", "asc"]}
        ),
        _parameter("limit", "jobs per page", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _parameter("offset", "jobs to skip", {"type": "integer", "minimum": 0}),
        _parameter("after", "the next page: `next_after` of the previous one (default order)"),
    ]


def _flower_task() -> Schema:
    number, text = _nullable({"type": "number"}), _nullable({"type": "string"})
    kinds: dict[str, Schema] = {name: text for name in TASK_FIELDS}
    for name in (
        "received",
        "sent",
        "started",
        "rejected",
        "succeeded",
        "failed",
        "retried",
        "revoked",
        "timestamp",
        "runtime",
        "clock",
    ):
        kinds[name] = number
    kinds["retries"] = {"type": "integer"}
    kinds["state"] = {"type": "string"}
    kinds["uuid"] = {"type": "string"}
    kinds["children"] = {"type": "array", "items": {"type": "string"}}
    return {"type": "object", "required": list(TASK_FIELDS), "properties": kinds}


def _flower_paths() -> dict[str, Schema]:
    task_id = _parameter("task_id", "the task's id", {"type": "string", "minLength": 1}, "path")
    sorts = [*SORT_KEYS, *(f"-{key}" for key in SORT_KEYS)]
    minute = "received at or after: `%Y-%m-%d %H:%M` (UTC), " + TIME
    tasks = [
        _parameter(
            "limit",
            "tasks at most (default 1000)",
            {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT},
        ),
        _parameter("offset", "tasks to skip", {"type": "integer", "minimum": 0}),
        _parameter(
            "sort_by",
            "order by this, '-' first to reverse (default: newest first)",
            {"type": "string", "enum": sorts},
        ),
        _parameter("workername", "tasks that ran on this worker (`All`: any)"),
        _parameter("taskname", "tasks of this name (`All`: any)"),
        _parameter(
            "state",
            "tasks in this Celery state",
            {"type": "string", "enum": [*CELERY_STATES, "All"]},
        ),
        _parameter("received_start", minute),
        _parameter("received_end", minute.replace("at or after", "at or before")),
        _parameter("search", "words: `name:`, `state:`, `worker:` filters, and free text"),
    ]
    flag = {"type": "string", "enum": ["true", "false", "1", "0"]}
    return {
        "/api/tasks": _get(
            "Flower: tasks by id, newest first",
            tasks,
            {"type": "object", "additionalProperties": _ref("FlowerTask")},
        ),
        "/api/task/types": _get(
            "Flower: the task names",
            [],
            {
                "type": "object",
                "required": ["task-types"],
                "properties": {"task-types": {"type": "array", "items": {"type": "string"}}},
            },
        ),
        "/api/task/info/{task_id}": _get(
            "Flower: one task", [task_id], {"type": "object"}, found=True
        ),
        "/api/task/result/{task_id}": _get(
            "Flower: a task's state, and its result once ready",
            [
                task_id,
                _parameter(
                    "timeout",
                    "seconds to wait for the result (at most 60)",
                    {"type": "number", "minimum": 0, "maximum": 60},
                ),
            ],
            {"type": "object", "required": ["task-id", "state"]},
            found=True,
        ),
        "/api/workers": _get(
            "Flower: workers from their heartbeats",
            [
                _parameter("workername", "this worker only"),
                _parameter("status", "only whether each is alive", flag),
                _parameter("refresh", "accepted, and needless: heartbeats are stored", flag),
            ],
            {"type": "object"},
            found=True,
        ),
    }


def _own_paths() -> dict[str, Schema]:
    job_id = _parameter(
        "job_id",
        "the job's id, or a unique prefix of it",
        {"type": "string", "minLength": 1},
        "path",
    )
    page = {
        "type": "object",
        "required": ["jobs", "next_after"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "next_after": _nullable({"type": "string"}),
        },
    }
    shown = {
        "type": "object",
        "required": ["job", "history"],
        "properties": {
            "job": _ref("Job"),
            "history": {"type": "array", "items": _ref("Transition")},
        },
    }
    jobs = {"type": "array", "items": _ref("Job")}
    flow = {
        "type": "object",
        "required": ["job", "parent", "root", "children", "group", "counts", "state"],
        "properties": {
            "job": _ref("Job"),
            "parent": _nullable(_ref("Job")),
            "root": _nullable(_ref("Job")),
            "children": jobs,
            "group": jobs,
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "state": {"type": "string", "enum": list(STATES)},
        },
    }
    status = {**_record(Worker)}
    status["properties"] = {
        **status["properties"],
        "state": {"type": "string", "enum": list(WORKER_STATES)},
        "silent_for": {"type": "number"},
        "running": {"type": "integer"},
    }
    status["required"] = [*status["required"], "state", "silent_for", "running"]
    window = "the report's stretch back from `until` (default 24h): 90s, 15m, 24h, 7d"
    return {
        "/api/v1/jobs": _get("Jobs, newest first, one page", _job_parameters(), page),
        "/api/v1/jobs/{job_id}": _get("One job and its history", [job_id], shown, found=True),
        "/api/v1/jobs/{job_id}/workflow": _get(
            "A job's workflow: parent, root, children, group, rolled-up state",
            [job_id],
            flow,
            found=True,
        ),
        "/api/v1/report": _get(
            "The status report over a window",
            [
                _parameter("window", window),
                _parameter("since", f"from: {TIME}"),
                _parameter("until", f"to (default now): {TIME}"),
            ],
            _ref("Report"),
        ),
        "/api/v1/workers": _get(
            "The workers from their heartbeats",
            [],
            {
                "type": "object",
                "required": ["workers"],
                "properties": {"workers": {"type": "array", "items": status}},
            },
        ),
    }


@cache
def _components() -> dict[str, Schema]:
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    return {**_records(), "Error": error, "FlowerTask": _flower_task()}


def document(root_path: str = "") -> Schema:
    """The OpenAPI document, for an app served under ``root_path``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "taskjobs",
            "version": metadata.version("taskjobs"),
            "description": "Celery tasks as durable jobs: taskjobs' read API and Flower's.",
        },
        "servers": [{"url": root_path or "/"}],
        "paths": {**_own_paths(), **_flower_paths()},
        "components": {"schemas": _components()},
    }
