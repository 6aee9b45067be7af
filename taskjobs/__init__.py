"""taskjobs: every Celery task as a durable, queryable job row in a SQL database."""

from __future__ import annotations

from typing import Any

from taskjobs.config import DEFAULT_URL, URL_VARIABLE, configure
from taskjobs.errors import (
    AmbiguousJobIdError,
    ConfigurationError,
    InvalidInputError,
    InvalidStateError,
    JobNotFoundError,
    StoreError,
    TaskJobsError,
    UnknownFieldError,
)
from taskjobs.model import STATES, Job
from taskjobs.store import make_fork_safe

__version__ = "0.1.0"

# The Celery integration, imported on first use so that the job API alone does not load Celery.
_CELERY_NAMES = ("install", "JobTask", "progress", "current_job")


def __getattr__(name: str) -> Any:
    if name in _CELERY_NAMES:
        from taskjobs import celery as integration

        return getattr(integration, name)
    raise AttributeError(f"module 'taskjobs' has no attribute {name!r}")


__all__ = [
    # Celery
    "install",
    "JobTask",
    "progress",
    "current_job",
    # configuration
    "DEFAULT_URL",
    "URL_VARIABLE",
    "configure",
    "make_fork_safe",
    # the job record
    "STATES",
    "Job",
    # errors
    "AmbiguousJobIdError",
    "ConfigurationError",
    "InvalidInputError",
    "InvalidStateError",
    "JobNotFoundError",
    "StoreError",
    "TaskJobsError",
    "UnknownFieldError",
]
