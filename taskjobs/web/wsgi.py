"""The web app for a WSGI server or project (gunicorn's sync workers, mod_wsgi, a Flask or
Django app that mounts it under a path): the ASGI app of ``create_app`` behind a2wsgi's
adapter, which runs it on an event loop of its own."""

from __future__ import annotations

from typing import Any

from a2wsgi import ASGIMiddleware

from taskjobs.web.app import create_app


def create_wsgi_app(*args: Any, **kwargs: Any) -> ASGIMiddleware:
    """The web app as a WSGI callable; takes ``create_app``'s arguments."""
    return ASGIMiddleware(create_app(*args, **kwargs))  # type: ignore[arg-type]
