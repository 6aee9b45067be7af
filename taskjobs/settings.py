"""Tracking settings, read in one place: Celery's ``app.conf``, the environment, defaults."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskjobs.errors import ConfigurationError

# Task names tracked unless excluded: all of them.
DEFAULT_INCLUDE = ("*",)
# Celery's own tasks (celery.ping, celery.chord_unlock, celery.backend_cleanup...) are noise.
DEFAULT_EXCLUDE = ("celery.*",)
# Seconds without a heartbeat after which a worker's running jobs are marked lost.
DEFAULT_WORKER_TIMEOUT = 60.0
# Keyword arguments whose names contain one of these (any case) are stored as "***".
DEFAULT_REDACT = (
    "password", "passwd", "secret", "token", "api_key", "apikey", "authorization",
    "credential", "private_key", "access_key",
)  # fmt: skip
# Characters kept of a job's request (args and kwargs) and of its result.
DEFAULT_MAX_REQUEST = 65_536
DEFAULT_MAX_RESULT = 65_536
# Characters kept of one entry of a job's messages (an exception with its traceback).
DEFAULT_MAX_MESSAGE = 32_768
# What replaces a value taskjobs was told not to keep.
REDACTED = "***"
# How worker-side transitions are written (see ``write_mode``).
WRITE_MODES = ("direct", "grouped", "batched")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the Celery integration tracks, what it keeps of each task, and where it writes."""

    # Database URL; None leaves the choice to ``taskjobs.configure`` and its defaults.
    database_url: str | None = None
    # Glob patterns of task names to track, and of names never to track (wins over include).
    include: tuple[str, ...] = DEFAULT_INCLUDE
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT
    # Whether jobs keep their tasks' arguments and return values (tasks may say otherwise).
    store_args: bool = True
    store_results: bool = True
    redact: tuple[str, ...] = DEFAULT_REDACT
    max_request: int = DEFAULT_MAX_REQUEST
    max_result: int = DEFAULT_MAX_RESULT
    max_message: int = DEFAULT_MAX_MESSAGE
    # Seconds finished and error jobs are kept before workers delete them; None keeps them.
    keep_finished: float | None = None
    keep_error: float | None = None
    # "grouped" (the default): transitions queue and are written every ``batch_interval``
    # seconds in one transaction, but a task's end is committed before the task returns (and
    # so before an ``acks_late`` message is acknowledged), with what queued before it;
    # "direct": each transition written as it happens; "batched": every transition queued,
    # ends too (fastest; a killed process loses its queue).
    write_mode: str = "grouped"
    batch_interval: float = 0.05
    # "async" (the default): a publish outside a task queues its pending job for this
    # process's writer, which commits what has queued every few milliseconds, and the caller
    # does not wait for the database (a worker that receives the message first writes the
    # publish too); "sync": the pending job is committed before ``apply_async`` returns, so it
    # exists before any worker, or any other process, can see the message.
    publish_mode: str = "async"
    # Seconds a publish may wait in the "async" mode before its batch is committed.
    publish_interval: float = 0.02

    @classmethod
    def load(cls, conf: Mapping[str, Any] | None = None) -> Settings:
        """Read every setting from ``conf`` (a Celery ``app.conf``), else the environment.

        The app.conf key of a field is ``taskjobs_<field>``, its variable ``TASKJOBS_<FIELD>``.
        """
        found: dict[str, Any] = {}
        for field, parse in _PARSERS.items():
            key = f"taskjobs_{field}"
            name, value = key, conf.get(key) if conf is not None else None
            if value is None:  # errors name the variable the value came from
                name, value = key.upper(), os.environ.get(key.upper())
            if value is not None:
                found[field] = parse(name, value)
        return cls(**found)

    def tracks(self, task_name: str | None) -> bool:
        """Whether jobs of the task called ``task_name`` are recorded."""
        return bool(task_name) and _matches(self.include, self.exclude, task_name)

    def redacts(self, key: str) -> bool:
        """Whether a keyword argument called ``key`` is kept out of the store."""
        lowered = key.lower()
        return any(part in lowered for part in self.redact)


@functools.lru_cache(maxsize=4096)
def _matches(include: tuple[str, ...], exclude: tuple[str, ...], name: str) -> bool:
    """Whether ``name`` matches an include pattern and no exclude pattern. Cached: every
    lifecycle event of every task asks, and a worker runs few task names."""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in include)


def _patterns(key: str, value: Any) -> tuple[str, ...]:
    """Patterns from a list, or from a comma-separated string (the environment's form)."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ConfigurationError(
        f"invalid {key} {value!r}: give a list of strings such as ['myapp.*'], "
        "or a comma-separated string"
    )


def _lowered(key: str, value: Any) -> tuple[str, ...]:
    return tuple(part.lower() for part in _patterns(key, value))


def _seconds(key: str, value: Any) -> float:
    """A positive number of seconds, from a number or a numeric string."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigurationError(f"invalid {key} {value!r}: give a positive number of seconds")
    return seconds


def _size(key: str, value: Any) -> int:
    """A positive whole number of characters."""
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size <= 0 or isinstance(value, bool):
        raise ConfigurationError(f"invalid {key} {value!r}: give a positive number of characters")
    return size


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"invalid {key} {value!r}: give true or false")


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigurationError(f"invalid {key} {value!r}: give one of {', '.join(choices)}")
    return text


def _text(key: str, value: Any) -> str:
    return str(value)


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "database_url": _text,
    "include": _patterns,
    "exclude": _patterns,
    "worker_timeout": _seconds,
    "store_args": _flag,
    "store_results": _flag,
    "redact": _lowered,
    "max_request": _size,
    "max_result": _size,
    "max_message": _size,
    "keep_finished": _seconds,
    "keep_error": _seconds,
    "write_mode": lambda key, value: _choice(key, value, WRITE_MODES),
    "batch_interval": _seconds,
    "publish_mode": lambda key, value: _choice(key, value, ("async", "sync")),
    "publish_interval": _seconds,
}
