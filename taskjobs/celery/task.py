"""``JobTask``: a Celery task base class whose tasks are tracked even without ``install()``."""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery import Task

from taskjobs.api.job import addJobMessage, findJob
from taskjobs.celery.handlers import watching_publish
from taskjobs.celery.recorder import Write, recorder_for
from taskjobs.config import current_store
from taskjobs.errors import TaskJobsError
from taskjobs.model import Job, encode_value, utcnow

logger = logging.getLogger("taskjobs")


class JobTask(Task):  # type: ignore[misc]
    """Base class for tracked tasks: ``@app.task(base=JobTask)``.

    Inside the running task, ``self.job`` is its current job record and ``self.progress(text)``
    appends a line to the job's messages.
    """

    def apply_async(self, *args: Any, **kwargs: Any) -> Any:
        with watching_publish():
            return super().apply_async(*args, **kwargs)

    @property
    def job(self) -> Job | None:
        """The job of the request this task is running now, as stored."""
        return findJob(running_job_id(self))[0]

    def progress(self, text: Any) -> None:
        """Append ``text`` to the running job's messages, visible to readers at once."""
        record_progress(running_job_id(self), text)


def record_progress(job_id: str, text: Any) -> None:
    """Append a progress note like any tracking write: buffered in an outage, never raising."""
    encode_value("messages", text)  # bad text is the caller's error, raised now
    store = current_store()
    perform = functools.partial(addJobMessage, job_id, text, at=utcnow(), store=store)
    try:
        recorder_for(store).submit(Write(job_id, "progress note", perform))
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
