"""``JobTask``: a Celery task base class whose tasks are tracked even without ``install()``."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from taskjobs import config
from taskjobs.celery import registry
from taskjobs.celery.publish import watching_publish
from taskjobs.errors import TaskJobsError
from taskjobs.lifecycle import Note
from taskjobs.model import Job, encode_value, utcnow

logger = logging.getLogger("taskjobs")


class JobTask(Task):  # type: ignore[misc]
    """Base class for tracked tasks: ``@app.task(base=JobTask)``.

    Inside the running task, ``self.job`` is its current job record and ``self.progress(text)``
    appends a line to the job's messages.
    """

    # Tells the registry that this task is tracked without install().
    taskjobs_tracked = True

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        if self.app.conf.task_always_eager:  # no message: the body runs here and now
            return super().apply_async(*args, **kwargs)
        with watching_publish(self.app):
            return super().apply_async(*args, **kwargs)

    @property
    def job(self) -> Job | None:
        """The job of the request this task is running now, as stored."""
        return job_of(self)

    def progress(self, text: Any) -> None:
        """Append ``text`` to the running job's messages, visible to readers at once."""
        record_progress(self, text)


def job_of(task: Any) -> Job | None:
    """The job ``task`` is running now, read from its app's store."""
    job_id = running_job_id(task)
    tracker = registry.of_task(task)
    return (tracker.store if tracker is not None else config.current_store()).get(job_id)


def record_progress(task: Any, text: Any) -> None:
    """Append a progress note to the job ``task`` runs, like any tracking write: buffered in an
    outage, never raising."""
    job_id = running_job_id(task)
    note = Note(job_id, encode_value("messages", text), utcnow())  # bad text: raised now
    try:
        tracker = registry.of_task(task)
        if tracker is None:
            config.current_store().apply(note)
        else:
            tracker.record(note)
    except Exception:
        logger.exception("taskjobs: could not record a progress note of task %s", job_id)


def running_job_id(task: Any) -> str:
    """The id of the job ``task`` is running now; an error outside a running task."""
    task_id = getattr(getattr(task, "request", None), "id", None)
    if task_id is None:
        raise TaskJobsError(
            "no task is running here: a job's progress and record are known only inside the task"
        )
    return str(task_id)
