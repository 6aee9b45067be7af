"""What a prefork worker's main process saw its pool processes return, kept a few seconds.

In the "batched" write mode a pool process queues a task's end and hands the task's outcome to
the worker's main process before the end is written. A pool process killed in that interval
(SIGKILL, the OOM killer) takes the queued end with it, and Celery, which has the outcome,
reports nothing more: the job would stay running. So the main process keeps each outcome its
pool returns, by the pid of the process that returned it, for ``KEEP`` seconds; the heartbeat
thread looks every second for pool processes that are gone and writes, from what they
returned, the ends the store still lacks.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import Terminated
from celery.exceptions import Ignore, Reject, Retry, TimeLimitExceeded, WorkerLostError

from taskjobs import lifecycle
from taskjobs.celery.message import delivery, whole
from taskjobs.celery.payload import capped, failure_text, result_text
from taskjobs.lifecycle import Event, Note
from taskjobs.model import CELERY_FAILURE, ERROR, FINISHED, Job
from taskjobs.settings import Settings

logger = logging.getLogger("taskjobs")

# Seconds an outcome is kept while the process that returned it lives: far longer than a
# batch waits to be written (``taskjobs_batch_interval``, 50 ms by default) and committed.
KEEP = 5.0
# Exceptions that are not the task's own failure: Celery's control flow (a retry, an ignored or
# rejected message) and the ends the main process itself reports (a lost or killed process).
NOT_AN_END = (Retry, Ignore, Reject, Terminated, WorkerLostError, TimeLimitExceeded)


@dataclasses.dataclass(slots=True)
class Returned:
    """One outcome a pool process returned: when, of which job, and what; no more of the
    request than its end needs."""

    pid: int  # the pool process that returned it
    seen: float  # monotonic time the main process got it
    at: float  # the same moment, seconds since the epoch
    job_id: str
    name: str | None
    task: Any
    retries: int
    delivery: int | None
    accepted: float | None  # when the pool process took the task, seconds since the epoch
    failed: bool
    value: Any  # Celery's repr of the task's result, or the ``ExceptionInfo`` of its failure
    runtime: float | None
    existing_only: bool  # the job is followed only if it exists (a replacement's task)


class Outcomes:
    """The outcomes the pool processes of this worker returned lately, by process id."""

    def __init__(self) -> None:
        self._by_pid: dict[int, collections.deque[Returned]] = {}
        self._lock = threading.Lock()
        self._unwatchable = False

    def watch(self, request: Any, existing_only: bool) -> None:
        """Keep the outcome of ``request`` (a task just received) when the pool returns it:
        its callback is wrapped, which Celery calls with ``(failed, value, runtime)``."""
        returned = request.on_success
        note = self.note

        def on_success(outcome: Any, **kwargs: Any) -> Any:
            note(request, outcome, existing_only)
            # Called once: no reference cycle through this function is left (never raises).
            vars(request).pop("on_success", None)
            return returned(outcome, **kwargs)

        try:
            request.on_success = on_success
        except AttributeError:  # a request class without instance attributes: not watched
            if not self._unwatchable:
                self._unwatchable = True
                logger.warning(
                    "taskjobs: cannot watch the outcomes of %s requests: the end of a task "
                    "whose pool process is killed before writing it stays unwritten",
                    type(request).__name__,
                )

    def note(self, request: Any, outcome: Any, existing_only: bool) -> None:
        """Keep ``outcome`` of ``request`` if another process returned it and it ends the job.
        Never raises: Celery's own handling of the outcome comes next."""
        try:
            failed, value, runtime = outcome
            pid = request.worker_pid
            if pid is None or pid == os.getpid() or (failed and not _task_raised(value)):
                return
            message = request.request_dict
            kept = Returned(
                pid,
                time.monotonic(),
                time.time(),
                request.id,
                request.name,
                request.task,
                whole(message.get("retries")),
                delivery(message),
                request.time_start,
                bool(failed),
                value,
                runtime,
                existing_only,
            )
        except Exception:
            logger.exception("taskjobs: could not keep the outcome of task %r", request)
            return
        with self._lock:
            self._by_pid.setdefault(pid, collections.deque()).append(kept)

    def take_lost(
        self, keep: float = KEEP, alive: Callable[[int], bool] | None = None
    ) -> list[Returned]:
        """The outcomes kept of processes that are gone, taken; those of live processes older
        than ``keep`` seconds are forgotten. ``alive(pid)`` says whether a process lives."""
        alive = alive or _alive
        forget_before = time.monotonic() - keep
        lost: list[Returned] = []
        with self._lock:
            pids = list(self._by_pid)
        for pid in pids:
            if alive(pid):
                with self._lock:
                    kept = self._by_pid[pid]
                    while kept and kept[0].seen < forget_before:
                        kept.popleft()
                    if not kept:
                        del self._by_pid[pid]
            else:
                with self._lock:
                    lost.extend(self._by_pid.pop(pid))
        return lost

    def __len__(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._by_pid.values())


def unwritten(returned: Returned, job: Job | None) -> bool:
    """Whether the store lacks the end of ``returned``: ``job`` (as stored) has not ended at
    that attempt or later."""
    if job is None:
        return True
    return job.status not in (FINISHED, ERROR) or job.retries < returned.retries


def end_of(returned: Returned, settings: Settings, missing: bool = True) -> list[Event | Note]:
    """The end its pool process did not write (``missing``), or may not have written (the
    store could not say), as it would have, and a note saying the worker's main process wrote
    it. An end already written stays as it is: the order guard refuses the same step again."""
    at = datetime.fromtimestamp(returned.at, timezone.utc)
    detail = ""
    end: Event
    if returned.failed:
        info = returned.value
        exception = _unwrapped(info.exception)
        end = lifecycle.ended(
            returned.job_id,
            what="failure",
            celery_state=CELERY_FAILURE,
            retries=returned.retries,
            reason=capped(failure_text(exception, None, info), settings.max_message),
            exc_type=type(exception).__name__,
            runtime=_runtime(returned),
            name=returned.name,
            delivery=returned.delivery,
            existing_only=returned.existing_only,
            at=at,
        )
    else:
        value, exact = _result_of(returned.value)
        end = lifecycle.succeeded(
            returned.job_id,
            name=returned.name,
            result=result_text(settings, returned.task, value),
            runtime=_runtime(returned),
            retries=returned.retries,
            delivery=returned.delivery,
            existing_only=returned.existing_only,
            at=at,
        )
        if not exact:
            detail = " (the result as Celery's repr of it: all a pool process hands back)"
    gone = f"pool process {returned.pid}, which ran the task, was gone"
    said = (
        f"end written by the worker's main process: {gone} before it had written it"
        if missing
        else f"{gone}, and the job store could not say whether it had written the task's end: "
        "the worker's main process wrote it too"
    )
    note = Note(returned.job_id, said + detail, at)
    return [end, note]


def _result_of(returned: Any) -> tuple[Any, bool]:
    """A task's result from what its pool process handed back, and whether it is exact. A
    prefork pool hands the main process Celery's repr of the result, not the result: the
    repr of a literal (numbers, text, lists and dicts of them, the values JSON carries) is
    read back exactly; any other (an object, a repr cut at Celery's 1,024 characters) is
    kept as its text."""
    if not isinstance(returned, str):
        return returned, True
    try:
        return ast.literal_eval(returned), True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return returned, False


def _runtime(returned: Returned) -> float | None:
    """Celery's runtime of the task (of a success only), else the time since the pool process
    accepted it."""
    if returned.runtime is not None:
        return float(returned.runtime)
    accepted = returned.accepted
    return max(returned.at - accepted, 0.0) if accepted is not None else None


def _unwrapped(exception: Any) -> Any:
    return exception.exc if isinstance(exception, ExceptionWithTraceback) else exception


def _task_raised(info: Any) -> bool:
    """Whether the failure in ``info`` (an ``ExceptionInfo``) is the task's own exception."""
    exception = _unwrapped(getattr(info, "exception", None))
    return isinstance(exception, Exception) and not isinstance(exception, NOT_AN_END)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or its pid is another user's now
        return False
    return True
