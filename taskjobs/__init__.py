"""taskjobs: every Celery task as a durable, queryable job row in a SQL database."""

from __future__ import annotations

from taskjobs.config import DEFAULT_URL, URL_VARIABLE, configure
from taskjobs.errors import (
    ConfigurationError,
    InvalidInputError,
    InvalidStateError,
    StoreError,
    TaskJobsError,
    UnknownFieldError,
)
from taskjobs.model import STATES, Job
from taskjobs.store import make_fork_safe

__version__ = "0.1.0"

__all__ = [
    # configuration
    "DEFAULT_URL",
    "URL_VARIABLE",
    "configure",
    "make_fork_safe",
    # the job record
    "STATES",
    "Job",
    # errors
    "ConfigurationError",
    "InvalidInputError",
    "InvalidStateError",
    "StoreError",
    "TaskJobsError",
    "UnknownFieldError",
]
