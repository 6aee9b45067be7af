"""Expectations about jobs, for tests: wait until a job reaches a state, and check what it
ended with. A failed expectation is an ``AssertionError`` whose message shows the whole job
(every field, its history and its messages, as ``taskjobs show`` prints it). No test
framework is needed: pytest, unittest or a plain script can use them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from taskjobs import queries, render
from taskjobs.config import current_store
from taskjobs.errors import JobNotFoundError
from taskjobs.model import FINAL_STATES, STATES, Job, check_state, message_entries
from taskjobs.store import JobReader

# Seconds ``wait_for_job`` waits by default, and between two looks at the job.
DEFAULT_TIMEOUT = 10.0
POLL = 0.02

_UNSET: Any = object()


class JobExpectationError(AssertionError):
    """A job is not as a test expected; the message shows the job as stored."""


def wait_for_job(
    job_id: str,
    status: str | Sequence[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    store: JobReader | None = None,
) -> Job:
    """The job once it is in ``status`` (one state or several; default: ended, ``finished``
    or ``error``). Raises ``JobExpectationError`` after ``timeout`` seconds, showing the job
    as it is then (or saying it was never stored)."""
    wanted = _states(status)
    reader = store or current_store()
    deadline = time.monotonic() + timeout
    while True:
        job = reader.get(job_id)
        if job is not None and job.status in wanted:
            return job
        if time.monotonic() >= deadline:
            want = " or ".join(sorted(wanted))
            raise JobExpectationError(
                f"job {job_id} did not become {want} within {timeout:g}s; " + _shown(job_id, reader)
            )
        time.sleep(POLL)


def assert_job(
    job_id: str,
    *,
    status: str | None = None,
    result: Any = _UNSET,
    celery_state: str | None = None,
    celery_states: Sequence[str] | None = None,
    messages: Sequence[str] | None = None,
    store: JobReader | None = None,
) -> Job:
    """Check the stored job: its ``status``, its ``result`` (the value the task returned,
    compared after decoding the stored JSON), its final ``celery_state``, the sequence of
    Celery states its history went through (``celery_states``, in order, all of them), and
    that each of ``messages`` is in one of its progress messages, in that order. Returns the
    job; raises ``JobExpectationError`` naming every expectation that failed."""
    reader = store or current_store()
    if status is not None:
        check_state(status)
    job = reader.get(job_id)
    if job is None:
        raise JobExpectationError(f"no job {job_id} is stored")
    failed = []
    if status is not None and job.status != status:
        failed.append(f"status is {job.status!r}, not {status!r}")
    if result is not _UNSET and _decoded(job.result) != result:
        failed.append(f"result is {job.result or '(none)'}, not {json.dumps(result, default=repr)}")
    if celery_state is not None and job.celery_state != celery_state:
        failed.append(f"celery_state is {job.celery_state!r}, not {celery_state!r}")
    if celery_states is not None:
        went = [step.celery_state for step in reader.history(job_id)]
        if went != list(celery_states):
            failed.append(f"its Celery states were {went}, not {list(celery_states)}")
    if messages is not None:
        missing = _missing_messages(job, messages)
        if missing:
            failed.append(f"no message, in order, holds {missing!r}")
    if failed:
        raise JobExpectationError(
            f"job {job_id}: " + "; ".join(failed) + "; " + _shown(job_id, reader)
        )
    return job


def message_texts(job: Job) -> list[str]:
    """The job's progress messages, without their time stamps, oldest first."""
    return [text for _, text in message_entries(job.messages)]


def _missing_messages(job: Job, wanted: Sequence[str]) -> str | None:
    texts = iter(message_texts(job))
    for piece in wanted:
        if not any(piece in text for text in texts):
            return piece
    return None


def _states(status: str | Sequence[str] | None) -> frozenset[str]:
    if status is None:
        return FINAL_STATES
    states = [status] if isinstance(status, str) else list(status)
    for state in states:
        check_state(state)
    if not states:
        raise ValueError(f"give a state to wait for: one of {', '.join(STATES)}")
    return frozenset(states)


def _decoded(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _shown(job_id: str, reader: JobReader) -> str:
    try:
        shown = queries.job_with_history(job_id, reader)
    except JobNotFoundError:
        return "no such job is stored"
    return "the job is:\n" + render.job_text(shown)
