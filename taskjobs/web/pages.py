"""The HTML pages: dashboard, jobs, one job with its workflow, workers. Server-rendered from
the read side (``taskjobs.queries``), usable without JavaScript; an open page reloads itself
every ``refresh`` seconds (a meta refresh, so it needs no script either)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from taskjobs import queries
from taskjobs.model import CELERY_LOST, STATES, utcnow
from taskjobs.store import JobQuery
from taskjobs.web import charts, present
from taskjobs.web.context import config_of
from taskjobs.web.params import Params

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
TEMPLATES.env.filters.update(present.FILTERS)

# The windows the dashboard offers; any other the ``window`` parameter takes works too.
WINDOWS = ("1h", "6h", "24h", "7d")
# Jobs a page of the job list shows.
PAGE_SIZE = 50
# Jobs marked lost the workers page lists.
LOST_LISTED = 20
# What every page takes: refresh=0 stops its reloading.
PAGE_PARAMS = ("refresh",)
# The job list's filters.
LIST_PARAMS = ("state", "celery_state", "name", "user", "worker", "id", "window", "after",
               *PAGE_PARAMS)  # fmt: skip


def routes() -> list[BaseRoute]:
    """The pages, GET (and HEAD) only."""
    return [
        Route("/", dashboard, methods=["GET"], name="dashboard"),
        Route("/jobs", job_list, methods=["GET"], name="jobs"),
        Route("/jobs/{job_id:path}", job_page, methods=["GET"], name="job"),
        Route("/workers", workers_page, methods=["GET"], name="workers"),
    ]


def dashboard(request: Request) -> Response:
    config = config_of(request)
    params = Params(request.query_params, known=("window", *PAGE_PARAMS))
    window = params.window(default=timedelta(hours=24))
    now = utcnow()
    report = queries.report(
        since=now - window, until=now, slow_after=config.slow_after, store=config.store
    )
    return _page(
        request,
        "dashboard.html",
        page="dashboard",
        report=report,
        window=request.query_params.get("window") or "24h",
        windows=WINDOWS,
        chart=charts.timeline(report.timeline),
        ended=sum(report.totals.get(s, 0) for s in ("finished", "error")),
    )


def job_list(request: Request) -> Response:
    params = Params(request.query_params, known=LIST_PARAMS)
    window = params.text("window")
    since = utcnow() - params.window(default=timedelta()) if window else None
    query = params.job_query(
        since=since,
        after=params.text("after"),
        limit=PAGE_SIZE,
    )
    page = queries.search_jobs(query, store=config_of(request).store)
    filters = {k: v for k, v in request.query_params.items() if k != "after" and v}
    return _page(
        request,
        "jobs.html",
        page="jobs",
        jobs=page.jobs,
        next_after=page.next_after,
        filters=filters,
        states=STATES,
        windows=WINDOWS,
    )


def job_page(request: Request) -> Response:
    Params(request.query_params, known=PAGE_PARAMS)
    store = config_of(request).store
    found = queries.job_with_history(request.path_params["job_id"], store=store)
    flow = queries.workflow(found.job.id, store=store)
    return _page(
        request,
        "job.html",
        page="jobs",
        job=found.job,
        history=found.history,
        flow=flow,
        request_text=present.pretty(found.job.request),
        result_text=present.pretty(found.job.result),
        traceback=present.traceback_of(found.job),
        messages=present.message_lines(found.job.messages),
    )


def workers_page(request: Request) -> Response:
    Params(request.query_params, known=PAGE_PARAMS)
    config = config_of(request)
    statuses = queries.list_workers(timeout=config.worker_timeout, store=config.store)
    lost = queries.search_jobs(
        JobQuery(celery_state=CELERY_LOST, limit=LOST_LISTED), store=config.store
    )
    return _page(
        request,
        "workers.html",
        page="workers",
        workers=statuses,
        lost=lost.jobs,
        timeout=config.worker_timeout,
    )


def error_page(request: Request, status: int, message: str) -> Response:
    """An error as a page: its status and one line, nothing of the server's insides."""
    return _page(request, "error.html", status_code=status, status=status, message=message)


def _page(request: Request, template: str, *, status_code: int = 200, **context: Any) -> Response:
    refresh = config_of(request).refresh if status_code == 200 else 0
    if request.query_params.get("refresh") == "0":
        refresh = 0
    response: Response = TEMPLATES.TemplateResponse(
        request,
        template,
        {"now": utcnow(), "refresh": refresh, **context},
        status_code=status_code,
    )
    return response
