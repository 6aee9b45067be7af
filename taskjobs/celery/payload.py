"""What a job stores of a task: its request, its result and its failure, as text.

Arguments and results are encoded as Celery's JSON serializer encodes them; the values of
secret-looking keyword arguments are redacted at any depth; long texts are cut at their own limit,
with a marker saying so.
"""

from __future__ import annotations

import traceback as traceback_module
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.result import ResultBase
from celery.utils.saferepr import saferepr
from kombu.utils.json import JSONEncoder

from taskjobs.settings import REDACTED, Settings

# Celery's default bound for argsrepr/kwargsrepr, to tell its own reprs from a publisher's.
REPR_MAXSIZE = 1024
REPR_MAXLEVELS = 3


# Celery's JSON serializer is kombu's ``dumps``, which makes a new encoder at every call; one
# made once encodes the same (it keeps no state between calls) in half the time.
_ENCODER = JSONEncoder()


def json_text(value: Any) -> str:
    """JSON text as Celery's JSON serializer writes it; a repr for what it cannot encode."""
    try:
        return _ENCODER.encode(value)
    except Exception:  # noqa: BLE001 - any object a pickle-serialized task may carry
        return _ENCODER.encode(saferepr(value))


def request_text(
    settings: Settings, task: Any, args: Any, kwargs: Any, argsrepr: Any, kwargsrepr: Any
) -> str:
    """The job's request: args and kwargs as JSON, or the publisher's own reprs when it set them
    (``argsrepr``/``kwargsrepr`` are how Celery users hide secrets from monitoring). Keyword
    arguments with secret-looking names are redacted; long requests are cut; a task (or the
    settings) may keep no arguments at all."""
    if not _keeps(settings.store_args, task, "taskjobs_store_args"):
        return ""
    args = () if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if _own_repr(argsrepr, args) or _own_repr(kwargsrepr, kwargs):
        text = json_text({"argsrepr": argsrepr, "kwargsrepr": kwargsrepr})
    else:
        text = json_text({"args": list(args), "kwargs": _redacted(settings, dict(kwargs))})
    return capped(text, settings.max_request)


def result_text(settings: Settings, task: Any, result: Any) -> str:
    """The job's result as JSON, cut when long, or nothing if results are not kept."""
    if not _keeps(settings.store_results, task, "taskjobs_store_results"):
        return ""
    if isinstance(result, ResultBase):  # stored by Celery as its id tuple, so by us too
        result = result.as_tuple()
    return capped(json_text(result), settings.max_result)


def _keeps(default: bool, task: Any, option: str) -> bool:
    """A task's own option (``@app.task(taskjobs_store_args=False)``), else the setting."""
    own = getattr(task, option, None)
    return default if own is None else bool(own)


def _redacted(settings: Settings, value: Any) -> Any:
    """``value`` with the values of secret-looking keys, at any depth, replaced by ``***``."""
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and settings.redacts(key)
            else _redacted(settings, item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redacted(settings, item) for item in value]
    return value


def capped(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a marker saying it was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated by taskjobs: {len(text)} characters in all]"


def _own_repr(given: Any, value: Any) -> bool:
    """Whether ``given`` is not the repr Celery makes of ``value`` by default (args published as
    a tuple arrive at the worker as a list)."""
    if given is None:
        return False
    forms = (
        [value, list(value) if isinstance(value, tuple) else tuple(value)]
        if isinstance(value, (list, tuple))
        else [value]
    )
    # A repr that shows the arguments whole hides nothing, whoever made it. For the short,
    # shallow arguments most tasks take, Celery's own is exactly that, and comparing it spares
    # a saferepr (a third of the publish receiver's time under a profiler). An argument whose
    # repr raises (a pickled object's) is left to saferepr, which survives it.
    try:
        if given == repr(value):
            return False
    except Exception:  # noqa: BLE001 - any object's __repr__
        pass
    return all(given != saferepr(form, REPR_MAXSIZE, maxlevels=REPR_MAXLEVELS) for form in forms)


def failure_text(exception: Any, traceback: Any, einfo: Any) -> str:
    """What a user needs to see about a failure: a reason, the exception, its traceback."""
    if isinstance(exception, WorkerLostError):
        headline = f"worker lost: the process running the task died ({exception})"
    elif isinstance(exception, TimeLimitExceeded):
        # billiard's str() of it is "TimeLimitExceeded(300.0,)"; its argument is the limit.
        after = f" after {exception.args[0]}s" if exception.args else ""
        headline = f"hard time limit exceeded: the task was killed{after}"
    elif isinstance(exception, SoftTimeLimitExceeded):
        detail = f": {exception.args[0]}" if exception.args else ""  # str() is a repr too
        headline = f"soft time limit exceeded: {type(exception).__name__}{detail}"
    else:
        headline = f"{type(exception).__name__}: {exception}"
    trace = getattr(einfo, "traceback", None)
    if not trace and traceback is not None:
        trace = "".join(traceback_module.format_tb(traceback))
    return f"{headline}\n{trace.rstrip()}" if trace else headline
