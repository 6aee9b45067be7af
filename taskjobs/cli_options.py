"""The pieces the ``taskjobs`` commands share: option types (durations, moments), the common
options, the worker-timeout rule, and the one-line error rule."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import click

from taskjobs.config import URL_VARIABLE, configure, current_store
from taskjobs.errors import TaskJobsError
from taskjobs.model import utcnow
from taskjobs.settings import Settings
from taskjobs.store import Store

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


class Duration(click.ParamType):  # type: ignore[type-arg]
    """A duration such as ``90s``, ``10m``, ``2h`` or ``7d``."""

    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> timedelta:
        if isinstance(value, timedelta):
            return value
        match = _DURATION.match(str(value))
        if not match:
            self.fail(
                f"invalid duration {value!r}: use a number and a unit, as in 90s, 10m, 2h or 7d",
                param,
                ctx,
            )
        return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


class Moment(click.ParamType):  # type: ignore[type-arg]
    """A point in time: a duration ago (``2h``) or an ISO 8601 time (UTC when naive)."""

    name = "time"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        if _DURATION.match(str(value)):
            return utcnow() - Duration().convert(value, param, ctx)
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(
                f"invalid time {value!r}: give a duration ago (90s, 10m, 2h, 7d) "
                "or an ISO 8601 time such as 2026-11-28T09:00",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def db_option(function: F) -> F:
    """The ``--db URL`` option every command takes."""
    return click.option(
        "--db",
        "url",
        envvar=URL_VARIABLE,
        default=None,
        metavar="URL",
        help=f"Database URL (default: ${URL_VARIABLE}, else sqlite:///taskjobs.sqlite3).",
    )(function)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(
        function
    )


# Where ``celery -A proj jobs`` leaves the app's settings for the commands (``click.Context.meta``).
SETTINGS_KEY = "taskjobs.settings"


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn taskjobs errors into one line on stderr and exit status 1, never a traceback."""
    try:
        yield
    except TaskJobsError as exc:
        raise click.ClickException(str(exc)) from None


def use_store(url: str | None) -> Store:
    """The store for ``--db`` (or the environment), else the one configured already."""
    with clear_errors():
        return configure(url) if url else current_store()


def timeout_option(function: F) -> F:
    """The ``--timeout`` of a worker's silence, which defaults to the workers' own setting."""
    return click.option(
        "--timeout",
        type=Duration(),
        help="Silence after which a worker counts as dead [default: the workers' own setting, "
        "TASKJOBS_WORKER_TIMEOUT or taskjobs_worker_timeout, else 60s].",
    )(function)


def worker_timeout(ctx: click.Context, timeout: timedelta | None) -> float:
    """Seconds of silence after which a worker counts as dead: ``--timeout``, else the
    setting of the app (under ``celery -A proj jobs``) or of the environment."""
    if timeout is not None:
        return timeout.total_seconds()
    with clear_errors():
        settings = ctx.meta.get(SETTINGS_KEY) or Settings.load()
    return float(settings.worker_timeout)
