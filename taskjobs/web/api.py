"""taskjobs' own read API, under ``/api/v1``: the jobs (every filter the store has, keyset
pages), one job with its history, its workflow, the status report, the workers, and the
OpenAPI document describing them (``/api/v1/openapi.json``). Answers are the same JSON the
CLI's ``--json`` prints: a job's fields as the documented functions return them, times as
ISO 8601 in UTC."""

from __future__ import annotations

from datetime import timedelta

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from taskjobs import queries
from taskjobs.model import utcnow
from taskjobs.store import SORTABLE
from taskjobs.web import openapi
from taskjobs.web.context import config_of
from taskjobs.web.params import BadParameterError, Params

PREFIX = "/api/v1"
# Jobs one page of ``/api/v1/jobs`` holds: by default, and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
JOB_PARAMS = ("state", "celery_state", "name", "user", "worker", "id", "parent_id", "root_id",
              "group_id", "since", "until", "received_since", "received_until", "search",
              "sort", "order", "limit", "offset", "after")  # fmt: skip


def routes() -> list[BaseRoute]:
    return [
        Route(f"{PREFIX}/openapi.json", document, methods=["GET"], name="openapi"),
        Route(f"{PREFIX}/jobs", list_jobs, methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id:path}}/workflow", job_workflow, methods=["GET"]),
        Route(f"{PREFIX}/jobs/{{job_id:path}}", one_job, methods=["GET"]),
        Route(f"{PREFIX}/report", report, methods=["GET"]),
        Route(f"{PREFIX}/workers", workers, methods=["GET"]),
    ]


def document(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    return JSONResponse(openapi.document(request.scope.get("root_path", "")))


def list_jobs(request: Request) -> JSONResponse:
    params = Params(request.query_params, known=JOB_PARAMS)
    query = params.job_query(
        parent_id=params.text("parent_id"),
        root_id=params.text("root_id"),
        group_id=params.text("group_id"),
        since=params.time("since"),
        until=params.time("until"),
        received_since=params.time("received_since"),
        received_until=params.time("received_until"),
        search=params.text("search"),
        sort=params.choice("sort", SORTABLE, default="created_at") or "created_at",
        ascending=params.choice("order", ("asc", "desc"), default="desc") == "asc",
        limit=params.integer("limit", default=DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
        offset=params.integer("offset", default=0, low=0, high=10**9),
        after=params.text("after"),
    )
    if query.after is not None and (query.sort, query.ascending) != ("created_at", False):
        raise BadParameterError(
            "after", query.after, "page by 'after' in the default order only (newest first)"
        )
    page = queries.search_jobs(query, store=config_of(request).store)
    return JSONResponse(page.as_dict())


def one_job(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    found = queries.job_with_history(request.path_params["job_id"], config_of(request).store)
    return JSONResponse(found.as_dict())


def job_workflow(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    flow = queries.workflow(request.path_params["job_id"], config_of(request).store)
    return JSONResponse(flow.as_dict())


def report(request: Request) -> JSONResponse:
    params = Params(request.query_params, known=("window", "since", "until"))
    now = utcnow()
    until = params.time("until") or now
    since = params.time("since") or until - params.window(default=timedelta(hours=24))
    if since >= until:
        raise BadParameterError("since", since.isoformat(), "give a time before 'until'")
    config = config_of(request)
    built = queries.report(
        since=since, until=until, slow_after=config.slow_after, store=config.store
    )
    return JSONResponse(built.as_dict())


def workers(request: Request) -> JSONResponse:
    Params(request.query_params, known=())
    config = config_of(request)
    found = queries.list_workers(timeout=config.worker_timeout, store=config.store)
    return JSONResponse({"workers": [status.as_dict() for status in found]})
