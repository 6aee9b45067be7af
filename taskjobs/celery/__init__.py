"""The Celery integration: ``install(app)``, the ``JobTask`` base class, ``progress()``.

The only part of taskjobs that imports Celery. Each installed app has a tracker of its own
(``taskjobs.celery.tracker``): its settings, store, recorder and heartbeat.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery, current_task

from taskjobs.celery import control, receivers, registry
from taskjobs.celery.publish import watching_publish
from taskjobs.celery.task import JobTask, job_of, record_progress
from taskjobs.celery.tracker import Tracker
from taskjobs.model import Job

__all__ = ["JobTask", "Tracker", "current_job", "install", "progress"]


def install(app: Celery) -> Tracker:
    """Track every task of ``app`` (but Celery's own ``celery.*``); safe to call again.

    Settings come from ``app.conf`` (``taskjobs_<name>``), then the environment
    (``TASKJOBS_<NAME>``), then defaults; see ``taskjobs.settings.Settings``. Returns the app's
    tracker (its ``settings``, ``store``, and ``drain()``).
    """
    tracker = registry.install(app)
    _watch_publishes(app)
    control.watch_purges(app)
    control.watch_revokes(app)
    return tracker


def _watch_publishes(app: Celery) -> None:
    """Route every publish of the app through ``watching_publish``, once."""
    send_task = app.send_task
    if getattr(send_task, "taskjobs_watched", False):
        return

    @functools.wraps(send_task)
    def watched_send_task(*args: Any, **kwargs: Any) -> Any:
        with watching_publish(app):
            return send_task(*args, **kwargs)

    watched_send_task.taskjobs_watched = True  # type: ignore[attr-defined]
    app.send_task = watched_send_task


def current_job() -> Job | None:
    """The job of the task running in this thread, as stored (None outside a tracked task)."""
    if current_task is None or current_task.request.id is None:
        return None
    return job_of(current_task)


def progress(text: Any) -> None:
    """Append ``text`` to the running task's job messages, visible to readers at once."""
    record_progress(current_task, text)


receivers.connect()
