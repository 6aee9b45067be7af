"""The Celery integration under Celery's embedded test worker: a thread, solo pool, memory broker.

Real worker processes on real brokers are in tests/acceptance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

import taskjobs
from taskjobs.api.job import getJobHistory, getJobs
from tests.celeryapp import add, app, fail, report_progress, retry_twice
from tests.waiting import job_in


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One embedded worker for the module, writing to a SQLite file. Started by hand, not by
    pytest-celery's ``celery_session_worker``: that fixture runs ``celery_session_app``, a
    fresh test app, while these tests are about the project's own app (``tests.celeryapp``)
    as it is installed, with its tasks and settings; ``taskjobs_store``'s own tests use it."""
    path: Path = tmp_path_factory.mktemp("embedded") / "jobs.sqlite3"
    taskjobs.configure(f"sqlite:///{path}")
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as w:
        yield w
    taskjobs.configure(None)


def test_embedded_worker_runs_the_whole_lifecycle(worker: Any) -> None:
    ok = add.delay(4, 5)
    bad = fail.delay("kaput")
    retried = retry_twice.delay("third time")
    steps = report_progress.delay(3)
    done = job_in(ok.id, "finished")
    assert done["result"] == "9"
    assert done["worker"] == worker.hostname and done["received_at"] is not None
    assert done["created_at"] <= done["received_at"] <= done["started_at"] <= done["finished_at"]
    assert [h["status"] for h in getJobHistory(ok.id)] == [
        "pending",
        "pending",
        "running",
        "finished",
    ]
    assert [h["celery_state"] for h in getJobHistory(ok.id)] == [
        "PENDING",
        "RECEIVED",
        "STARTED",
        "SUCCESS",
    ]

    failed = job_in(bad.id, "error")
    assert failed["exc_type"] == "ValueError" and "ValueError: kaput" in failed["messages"]

    finished = job_in(retried.id, "finished")
    assert finished["retries"] == 2 and finished["result"] == '"third time"'
    assert finished["messages"].count("retrying") == 2

    progressed = job_in(steps.id, "finished")
    assert [line.split("] ")[1] for line in progressed["messages"].splitlines()] == [
        "step 1 of 3",
        "step 2 of 3",
        "step 3 of 3",
    ]


def test_embedded_worker_revokes_a_waiting_task(worker: Any) -> None:
    result = add.apply_async((1, 1), countdown=1)
    job_in(result.id, "pending")
    result.revoke()
    job = job_in(result.id, "error")
    assert job["celery_state"] == "REVOKED" and "revoked" in job["messages"]


def test_jobs_listing_after_a_batch(worker: Any) -> None:
    results = [add.delay(i, i) for i in range(20)]
    for i, result in enumerate(results):
        job = job_in(result.id, "finished")
        assert json.loads(job["request"]) == {"args": [i, i], "kwargs": {}}
        assert job["result"] == str(2 * i)
    listed = {job["id"] for job in getJobs(name="tests.celeryapp.add")}
    assert {result.id for result in results} <= listed


def test_unknown_task_names_in_a_worker_become_errors(worker: Any) -> None:
    result = app.send_task("tests.celeryapp.nope", (1,))
    job = job_in(result.id, "error")
    assert job["celery_state"] == "FAILURE" and "unknown task" in job["messages"]
