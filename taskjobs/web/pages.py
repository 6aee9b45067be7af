"""The HTML pages: dashboard, jobs, one job with its workflow, workers. Server-rendered from
the read side (``taskjobs.queries``), usable without JavaScript."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.templating import Jinja2Templates

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


def routes() -> list[BaseRoute]:
    return []


def error_page(request: Request, status: int, message: str) -> Response:
    """An error as a page: its status and one line, nothing of the server's insides."""
    response: Response = TEMPLATES.TemplateResponse(
        request, "error.html", {"status": status, "message": message}, status_code=status
    )
    return response
