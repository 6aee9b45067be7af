"""Tracking settings, read in one place: Celery's ``app.conf``, the environment, defaults."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Mapping, Sequence
from typing import Any

from taskjobs.errors import ConfigurationError

# Task names tracked unless excluded: all of them.
DEFAULT_INCLUDE = ("*",)
# Celery's own tasks (celery.ping, celery.chord_unlock, celery.backend_cleanup...) are noise.
DEFAULT_EXCLUDE = ("celery.*",)

# Each setting: its app.conf key and its environment variable.
_SOURCES = {
    "database_url": ("taskjobs_database_url", "TASKJOBS_DATABASE_URL"),
    "include": ("taskjobs_include", "TASKJOBS_INCLUDE"),
    "exclude": ("taskjobs_exclude", "TASKJOBS_EXCLUDE"),
    "worker_timeout": ("taskjobs_worker_timeout", "TASKJOBS_WORKER_TIMEOUT"),
}
# Seconds without a heartbeat after which a worker's running jobs are marked lost.
DEFAULT_WORKER_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the Celery integration tracks and where it writes."""

    # Database URL; None leaves the choice to ``taskjobs.configure`` and its defaults.
    database_url: str | None = None
    # Glob patterns of task names to track, and of names never to track (wins over include).
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT

    @classmethod
    def load(cls, conf: Mapping[str, Any] | None = None) -> Settings:
        """Read every setting from ``conf`` (a Celery ``app.conf``), else the environment."""
        found: dict[str, Any] = {}
        for field, (key, variable) in _SOURCES.items():
            value = conf.get(key) if conf is not None else None
            if value is None:
                value = os.environ.get(variable)
            if value is not None:
                found[field] = value
        for field in ("include", "exclude"):
            if field in found:
                found[field] = _patterns(_SOURCES[field][0], found[field])
        if "worker_timeout" in found:
            found["worker_timeout"] = _seconds("taskjobs_worker_timeout", found["worker_timeout"])
        return cls(**found)

    def tracks(self, task_name: str | None) -> bool:
        """Whether jobs of the task called ``task_name`` are recorded."""
        if not task_name:
            return False
        if any(fnmatch.fnmatchcase(task_name, pattern) for pattern in self.exclude):
            return False
        return any(fnmatch.fnmatchcase(task_name, pattern) for pattern in self.include)


def _patterns(key: str, value: Any) -> tuple[str, ...]:
    """Glob patterns from a list, or from a comma-separated string (the environment's form)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigurationError(
        f"invalid {key} {value!r}: give a list of task-name glob patterns "
        "such as ['myapp.*'], or a comma-separated string"
    )


def _seconds(key: str, value: Any) -> float:
    """A positive number of seconds, from a number or a numeric string."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigurationError(f"invalid {key} {value!r}: give a positive number of seconds")
    return seconds
