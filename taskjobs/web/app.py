"""The ASGI app: its routes, read-only, behind optional HTTP basic auth, with security headers
on every answer and no stack trace ever sent. The routes live in ``pages``, ``flower``,
``api`` and ``metrics``; this module only puts them together."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from taskjobs.config import current_store
from taskjobs.errors import (
    AmbiguousJobIdError,
    InvalidInputError,
    JobNotFoundError,
    StoreError,
)
from taskjobs.report import DEFAULT_SLOW_AFTER
from taskjobs.settings import DEFAULT_WORKER_TIMEOUT
from taskjobs.store import JobReader, store_for
from taskjobs.web import api, flower, metrics, pages
from taskjobs.web.context import WebConfig, config_of
from taskjobs.web.guard import BasicAuth, SecurityHeaders, parse_credentials
from taskjobs.web.params import BadParameterError

STATIC = Path(__file__).parent / "static"

__all__ = ["WebConfig", "config_of", "create_app"]


def create_app(
    store: JobReader | str | None = None,
    *,
    basic_auth: str | Sequence[str] | None = None,
    url_prefix: str = "",
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
    slow_after: timedelta = DEFAULT_SLOW_AFTER,
    refresh: int = 10,
) -> Starlette:
    """The web app on ``store`` (a store, a database URL, or the configured store).

    ``basic_auth`` is ``"user:password"``, several of them comma-separated or as a list: every
    route but ``/healthz`` then asks for one. ``url_prefix`` (``/jobs``) serves every route
    under that path, for a reverse proxy that forwards it unchanged.
    """
    reader = store_for(store) if isinstance(store, str) else store or current_store()
    config = WebConfig(reader, worker_timeout, slow_after, refresh)
    routes: list[BaseRoute] = [
        *pages.routes(),
        *flower.routes(),
        *api.routes(),
        *metrics.routes(),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    prefix = _prefix(url_prefix)
    if prefix:
        routes = [Mount(prefix, routes=routes)]
    credentials = parse_credentials(basic_auth)
    middleware = [Middleware(SecurityHeaders)]
    if credentials:
        middleware.append(
            Middleware(BasicAuth, credentials=credentials, open_paths=(f"{prefix}/healthz",))
        )
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={
            BadParameterError: _bad_request,
            InvalidInputError: _bad_request,
            AmbiguousJobIdError: _bad_request,
            JobNotFoundError: _not_found,
            StoreError: _store_down,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    app.state.web = config
    return app


def _prefix(url_prefix: str) -> str:
    prefix = url_prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise InvalidInputError(f"invalid url prefix {url_prefix!r}: give a path such as /taskjobs")
    return f"/{prefix}" if prefix else ""


def _wants_json(request: Request) -> bool:
    return "/api/" in request.url.path or request.url.path.endswith("/metrics")


def _answer(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=status)
    return pages.error_page(request, status, message)


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _answer(request, 400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _answer(request, 404, str(exc))


async def _store_down(request: Request, exc: Exception) -> Response:
    return _answer(request, 503, f"the job store does not answer: {exc}")


async def _http_error(request: Request, exc: Exception) -> Response:
    # No route for the path (404) or the method (405): said as the rest of the errors are.
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await _server_error(request, exc)
    answer = _answer(request, exc.status_code, exc.detail)
    answer.headers.update(exc.headers or {})
    return answer


async def _server_error(request: Request, exc: Exception) -> Response:
    # The exception goes to the server's log (uvicorn logs it); the client learns nothing of it.
    return PlainTextResponse("Internal Server Error", status_code=500)
