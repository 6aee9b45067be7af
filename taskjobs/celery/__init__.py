"""The Celery integration: ``install(app)``, the ``JobTask`` base class, ``progress()``.

The only part of taskjobs that imports Celery.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery, current_task

from taskjobs import config
from taskjobs.api.job import findJob
from taskjobs.celery import handlers, heartbeat, recorder
from taskjobs.celery.task import JobTask, record_progress, running_job_id
from taskjobs.model import Job, utcnow
from taskjobs.settings import Settings

__all__ = ["JobTask", "current_job", "install", "progress"]


def install(app: Celery) -> Settings:
    """Track every task of ``app`` (but Celery's own ``celery.*``); safe to call again.

    Settings come from ``app.conf`` (``taskjobs_<name>``), then the environment
    (``TASKJOBS_<NAME>``), then defaults; see ``taskjobs.settings.Settings``. Returns them.
    """
    settings = Settings.load(app.conf)
    handlers.installed[app] = settings
    config.configure_default(settings.database_url)
    recorder.set_mode(
        recorder.Mode(batched=settings.write_mode == "batched", interval=settings.batch_interval)
    )
    _watch_publishes(app)
    _watch_purges(app)
    return settings


def _watch_publishes(app: Celery) -> None:
    """Route every publish of the app through ``watching_publish``, once."""
    send_task = app.send_task
    if getattr(send_task, "taskjobs_watched", False):
        return

    @functools.wraps(send_task)
    def watched_send_task(*args: Any, **kwargs: Any) -> Any:
        with handlers.watching_publish():
            return send_task(*args, **kwargs)

    watched_send_task.taskjobs_watched = True  # type: ignore[attr-defined]
    app.send_task = watched_send_task


def _watch_purges(app: Celery) -> None:
    """After ``app.control.purge()``, end the jobs whose messages it deleted, once."""
    control = app.control
    purge = control.purge
    if getattr(purge, "taskjobs_watched", False):
        return

    @functools.wraps(purge)
    def watched_purge(*args: Any, **kwargs: Any) -> Any:
        started = utcnow()
        count = purge(*args, **kwargs)
        # What Control.purge() empties: the queues this app consumes from.
        handlers.record_purge(app, sorted(app.amqp.queues.consume_from), count, started)
        return count

    watched_purge.taskjobs_watched = True  # type: ignore[attr-defined]
    control.purge = watched_purge


def current_job() -> Job | None:
    """The job of the task running in this thread, as stored (None outside a tracked task)."""
    if current_task is None or current_task.request.id is None:
        return None
    return findJob(current_task.request.id)[0]


def progress(text: Any) -> None:
    """Append ``text`` to the running task's job messages, visible to readers at once."""
    record_progress(running_job_id(current_task), text)


handlers.connect()
heartbeat.connect()
