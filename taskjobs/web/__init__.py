"""The web face: status pages, a Flower-compatible JSON API, taskjobs' own read API and
Prometheus metrics, all read-only, from the durable store. ``create_app`` builds the ASGI app,
``create_wsgi_app`` the same for a WSGI server; ``taskjobs serve`` runs it with uvicorn. Needs
the ``web`` extra."""

from __future__ import annotations

from taskjobs.web.app import create_app
from taskjobs.web.wsgi import create_wsgi_app

__all__ = ["create_app", "create_wsgi_app"]
