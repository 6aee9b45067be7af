"""The documented job functions: create, read, move and delete jobs in the configured store.

Every function validates its input before touching the database: a bad state, id, field or
value raises a ``ValueError`` (a ``taskjobs.errors.InvalidInputError``) and writes nothing.
Database failures raise ``taskjobs.errors.StoreError``.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from taskjobs import lifecycle
from taskjobs.config import current_store
from taskjobs.errors import InvalidInputError
from taskjobs.model import (
    FINISHED,
    JOB_SCHEMA,
    PENDING,
    RUNNING,
    Job,
    check_datetime,
    check_job_id,
    check_state,
    encode_data,
    encode_value,
    message_line,
    utcnow,
)

__all__ = [
    "addJobMessage",
    "createJob",
    "deleteJob",
    "findJob",
    "getFinishedJobs",
    "getJob",
    "getJobResults",
    "getJobHistory",
    "getJobSchema",
    "getJobs",
    "getPendingJobs",
    "getRunningJobs",
    "setJob",
    "setJobFinished",
    "setJobPending",
    "setJobRunning",
    "updateJobResult",
]

# Largest page a listing accepts in one call.
MAX_LIMIT = 1_000_000


def createJob(name: Any, user: Any, request: Any, result: Any) -> dict[str, Any]:
    """Create a new pending job with a fresh id; return it as stored."""
    data = {"name": name, "user": user, "request": request, "result": result}
    job = _write(str(uuid.uuid4()), PENDING, encode_data(data))
    assert job is not None
    return job.as_dict()


def deleteJob(jobId: str | int) -> None:
    """Delete the job with this id; deleting an unknown job does nothing."""
    current_store().delete(check_job_id(jobId))


def findJob(jobId: str | int) -> tuple[Job, str] | tuple[None, None]:
    """Return ``(job, state)`` with the frozen ``Job`` record, or ``(None, None)`` if unknown."""
    job = current_store().get(check_job_id(jobId))
    return (None, None) if job is None else (job, job.status)


def getJob(jobId: str | int, state: str = PENDING) -> dict[str, Any] | None:
    """Return the job if it exists and is in ``state``, else None."""
    state = check_state(state)
    job = current_store().get(check_job_id(jobId))
    return job.as_dict() if job is not None and job.status == state else None


def getJobResults(jobId: str | int) -> dict[str, Any] | None:
    """Return the job, with its ``result``, once it is finished; None before or if unknown."""
    return getJob(jobId, FINISHED)


def addJobMessage(jobId: str | int, text: Any) -> bool:
    """Append a line to the job's ``messages``, stamped with the UTC time; visible at once.

    Returns False (and writes nothing) when the job does not exist. Not one of the fifteen
    documented functions; it sits beside them.
    """
    now = utcnow()
    line = message_line(encode_value("messages", text), now)
    return current_store().append_message(check_job_id(jobId), line, now)


def getJobHistory(jobId: str | int) -> list[dict[str, Any]]:
    """Return every transition of the job, oldest first; ``[]`` for an unknown job.

    Each entry holds ``status``, ``celery_state``, ``worker``, ``retries`` and ``at`` (UTC).
    Not one of the fifteen documented functions; it sits beside them.
    """
    return [dataclasses.asdict(step) for step in current_store().history(check_job_id(jobId))]


def getJobSchema() -> dict[str, dict[str, Any]]:
    """Return the schema of the seven documented job fields (a copy, safe to change)."""
    return copy.deepcopy(JOB_SCHEMA)


def getJobs(**filters: Any) -> list[dict[str, Any]]:
    """Return every job, in any state, newest first.

    Keyword-only filters, all optional: ``name``, ``user``, ``since`` and ``until`` (creation
    time, a datetime or ISO 8601 string; naive means UTC), ``limit``, and ``after``: the id of
    the last job of the previous page, to read the next page.
    """
    return _list(None, filters)


def getPendingJobs(**filters: Any) -> list[dict[str, Any]]:
    """Return the pending jobs, newest first; takes the filters of ``getJobs``."""
    return _list(PENDING, filters)


def getRunningJobs(**filters: Any) -> list[dict[str, Any]]:
    """Return the running jobs, newest first; takes the filters of ``getJobs``."""
    return _list(RUNNING, filters)


def getFinishedJobs(**filters: Any) -> list[dict[str, Any]]:
    """Return the finished jobs, newest first; takes the filters of ``getJobs``."""
    return _list(FINISHED, filters)


def setJob(jobId: str | int, data: Mapping[str, Any], state: str = PENDING) -> dict[str, Any]:
    """Create the job if missing, merge ``data`` into it, set its status to ``state``.

    Returns the stored job. Keys of ``data`` must be job fields; a ``status`` or ``id`` in
    ``data`` must agree with ``state`` and ``jobId``.
    """
    state = check_state(state)
    job_id = check_job_id(jobId)
    values = encode_data(data)
    if "status" in data and data["status"] != state:
        raise InvalidInputError(
            f"job data has status {data['status']!r} but the state given is {state!r}: "
            "leave 'status' out of the data or make them agree"
        )
    if "id" in data and str(data["id"]) != job_id:
        raise InvalidInputError(
            f"job data has id {data['id']!r} but the job id given is {job_id!r}: "
            "leave 'id' out of the data or make them agree"
        )
    job = _write(job_id, state, values)
    assert job is not None
    return job.as_dict()


def setJobPending(jobId: str | int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Set the job to pending, merging ``data``; returns the stored job."""
    return setJob(jobId, data, PENDING)


def setJobRunning(jobId: str | int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Set the job to running, merging ``data``; returns the stored job."""
    return setJob(jobId, data, RUNNING)


def setJobFinished(jobId: str | int, data: Mapping[str, Any]) -> dict[str, Any]:
    """Set the job to finished, merging ``data``; returns the stored job."""
    return setJob(jobId, data, FINISHED)


def updateJobResult(jobId: str | int, data: Any, inputJob: Mapping[str, Any] | None = None) -> None:
    """Store ``data`` as the job's result and set it finished (creating it if missing).

    ``inputJob``, a job dict already in hand, must be that same job. The write needs no read,
    so it is only checked.
    """
    job_id = check_job_id(jobId)
    if inputJob is not None and not isinstance(inputJob, Mapping):
        raise InvalidInputError(
            f"invalid inputJob of type {type(inputJob).__name__}: pass the job's dict, or None"
        )
    if inputJob is not None and str(inputJob.get("id")) != job_id:
        raise InvalidInputError(
            f"inputJob is job {inputJob.get('id')!r}, not job {job_id!r}: "
            "pass the dict of the job being updated, or None"
        )
    current_store().apply(
        lifecycle.explicit(job_id, FINISHED, {"result": encode_value("result", data)}, utcnow())
    )


def _write(job_id: str, state: str, values: Mapping[str, Any]) -> Job | None:
    """Apply one explicit write (no order key: it always applies); the job as stored after."""
    return current_store().apply(
        lifecycle.explicit(job_id, state, values, utcnow()), read_back=True
    )


def _list(status: str | None, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
    allowed = {"name", "user", "since", "until", "limit", "after"}
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise InvalidInputError(
            f"unknown filter(s) {', '.join(map(repr, unknown))}: "
            f"valid filters are {', '.join(sorted(allowed))}"
        )
    query: dict[str, Any] = {"status": status}
    for key in ("name", "user"):
        if filters.get(key) is not None:
            query[key] = encode_value(key, filters[key])
    for key in ("since", "until"):
        if filters.get(key) is not None:
            query[key] = check_datetime(key, filters[key])
    if filters.get("after") is not None:
        query["after"] = check_job_id(filters["after"])
    limit = filters.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
            raise InvalidInputError(
                f"invalid limit {limit!r}: give a whole number from 1 to {MAX_LIMIT}"
            )
        query["limit"] = limit
    return [job.as_dict() for job in current_store().select(**query)]
