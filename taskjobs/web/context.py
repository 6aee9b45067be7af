"""What every route reads of the app serving it: the store, and how to judge workers and
slow jobs. Kept apart from ``app`` so that the route modules import it, not the app."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from starlette.requests import Request

from taskjobs.report import DEFAULT_SLOW_AFTER
from taskjobs.settings import DEFAULT_WORKER_TIMEOUT
from taskjobs.store import JobReader


@dataclasses.dataclass(frozen=True)
class WebConfig:
    """One app's configuration."""

    store: JobReader
    # Seconds of silence after which a worker counts as dead.
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT
    # A running job older than this is listed as running long.
    slow_after: timedelta = DEFAULT_SLOW_AFTER
    # Seconds between a page's reloads while it is open; 0 turns reloading off.
    refresh: int = 10


def config_of(request: Request) -> WebConfig:
    """The configuration of the app serving ``request``."""
    config: WebConfig = request.app.state.web
    return config
