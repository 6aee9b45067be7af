"""What ``app.control`` calls do to the jobs: a purge ends the jobs whose messages it deleted;
a revoke is noted at once on the jobs no worker has finished."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from celery import Celery

from taskjobs.celery import registry
from taskjobs.celery.reconcile import record_purge
from taskjobs.celery.tracker import Tracker, never_raising
from taskjobs.model import CELERY_REVOKING, utcnow

logger = logging.getLogger("taskjobs")


def watch_purges(app: Celery) -> None:
    """After ``app.control.purge()``, end the jobs whose messages it deleted, once."""

    def after(tracker: Tracker, started: datetime, count: Any, args: Any, kwargs: Any) -> None:
        # What Control.purge() empties: the queues this app consumes from.
        record_purge(tracker, sorted(app.amqp.queues.consume_from), count, started)

    _watch(app, "purge", after)


def watch_revokes(app: Celery) -> None:
    """After ``app.control.revoke(ids)``, note the revoke on the jobs, once."""

    def after(tracker: Tracker, started: datetime, answer: Any, args: Any, kwargs: Any) -> None:
        # Control.revoke(task_id, destination=None, terminate=False, ...)
        task_id = kwargs.get("task_id", args[0] if args else None)
        terminate = kwargs.get("terminate", args[2] if len(args) > 2 else False)
        if task_id is not None:
            record_revoke(tracker, task_id, terminate=bool(terminate))

    _watch(app, "revoke", after)


def _watch(app: Celery, name: str, after: Callable[..., None]) -> None:
    """Wrap ``app.control.<name>`` once so that, for an installed app, ``after(tracker,
    started, answer, args, kwargs)`` runs once the call has returned."""
    control = app.control
    call = getattr(control, name)
    if getattr(call, "taskjobs_watched", False):
        return

    @functools.wraps(call)
    def watched(*args: Any, **kwargs: Any) -> Any:
        started = utcnow()
        answer = call(*args, **kwargs)
        tracker = registry.installed(app)
        if tracker is not None:
            after(tracker, started, answer, args, kwargs)
        return answer

    watched.taskjobs_watched = True  # type: ignore[attr-defined]
    setattr(control, name, watched)


def record_revoke(tracker: Tracker, task_id: str | Iterable[str], *, terminate: bool) -> None:
    """A revoke was broadcast for ``task_id`` (one id or several): the jobs still waiting say
    so at once, and read ``REVOKING`` until a worker discards their message (then they end in
    error, REVOKED); a running one says so too, and ends when its worker terminates it. Celery
    keeps revokes in the memory of the workers online: a worker started later runs the task,
    and the job follows it as usual (its events' order keys are newer)."""
    ids = [task_id] if isinstance(task_id, str) else [str(one) for one in task_id]
    with never_raising("revoke", ", ".join(ids[:3])):
        how = "revoke and terminate" if terminate else "revoke"
        noted = tracker.store.note_revoked(
            ids,
            celery_state=CELERY_REVOKING,
            note=f"{how} sent to the workers online: the one that gets this task's message "
            "discards it" + ("; one running it kills it" if terminate else ""),
            at=utcnow(),
        )
        logger.debug("taskjobs: revoke of %d id(s) noted on %d job(s)", len(ids), noted)
