"""The Celery integration in one process, eager: ``apply()`` and ``task_always_eager``.

A memory broker and a SQLite file store; real worker processes are in tests/acceptance.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskjobs
from taskjobs.api.job import findJob, getJob, getJobHistory
from tests.celeryapp import (
    add,
    app,
    echo,
    fail,
    private,
    replaced_by,
    retry_twice,
    returns_async_result,
    secret_login,
)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[None]:
    taskjobs.configure(f"sqlite:///{tmp_path}/jobs.sqlite3")
    yield
    taskjobs.configure(None)


pytestmark = pytest.mark.usefixtures("sqlite_store")


def test_eager_apply_is_tracked_from_start_to_result() -> None:
    result = add.apply((2, 3))
    job = getJob(result.id, "finished")
    assert job is not None
    assert (job["name"], job["result"], job["celery_state"]) == (
        "tests.celeryapp.add",
        "5",
        "SUCCESS",
    )
    assert json.loads(job["request"]) == {"args": [2, 3], "kwargs": {}}
    assert job["started_at"] <= job["finished_at"] and job["runtime"] >= 0
    assert [h["status"] for h in getJobHistory(result.id)] == ["running", "finished"]


def test_eager_failure_is_an_error_with_type_message_and_traceback() -> None:
    result = fail.apply(("boom",))
    assert result.failed()
    job = getJob(result.id, "error")
    assert job is not None and job["exc_type"] == "ValueError"
    assert "ValueError: boom" in job["messages"] and "Traceback" in job["messages"]


def test_eager_failure_with_propagation_is_still_recorded() -> None:
    app.conf.task_eager_propagates = True
    try:
        with pytest.raises(ValueError, match="boom"):
            fail.apply(("boom",), task_id="propagated")
    finally:
        app.conf.task_eager_propagates = False
    job = getJob("propagated", "error")
    assert job is not None and "ValueError: boom" in job["messages"]


def test_eager_retries_end_finished_with_the_attempts_counted() -> None:
    result = retry_twice.apply(("ok",))
    assert result.get() == "ok"
    job = getJob(result.id, "finished")
    assert job is not None and job["retries"] == 2 and job["result"] == '"ok"'


def test_always_eager_delay_is_tracked() -> None:
    app.conf.task_always_eager = True
    try:
        result = add.delay(1, 1)
    finally:
        app.conf.task_always_eager = False
    assert getJob(result.id, "finished")["result"] == "2"  # type: ignore[index]


def test_celery_builtin_tasks_are_not_tracked_by_default() -> None:
    from celery.contrib.testing.tasks import ping  # noqa: F401 - registers celery.ping

    result = app.tasks["celery.ping"].apply()
    assert findJob(result.id) == (None, None)


def test_the_publisher_writes_a_pending_job_before_any_worker_runs() -> None:
    result = add.apply_async((1, 2), countdown=3600, headers={"taskjobs_user": "alice"})
    job = getJob(result.id, "pending")
    assert job is not None
    assert (job["user"], job["celery_state"], job["queue"]) == (
        "alice",
        "PENDING",
        "taskjobs-tests",
    )
    assert job["eta"] is not None and job["root_id"] == result.id


def test_explicit_argsrepr_hides_the_real_arguments() -> None:
    result = secret_login.apply_async(("bob", "hunter2"), argsrepr="('bob', '***')", countdown=3600)
    job = getJob(result.id, "pending")
    assert job is not None and "hunter2" not in job["request"]
    assert json.loads(job["request"]) == {"argsrepr": "('bob', '***')", "kwargsrepr": "{}"}


def test_a_failed_publish_leaves_no_pending_job(tmp_path: Path) -> None:
    from celery import Celery
    from kombu.exceptions import OperationalError

    broken = Celery("broken", broker="redis://127.0.0.1:1/0", set_as_current=False)
    taskjobs.install(broken)

    @broken.task(name="broken.noop", shared=False)  # not added to every later app
    def noop() -> None:
        return None

    with pytest.raises(OperationalError):
        noop.apply_async(task_id="never-queued")
    assert getJob("never-queued", "pending") is None
    job = getJob("never-queued", "error")
    assert job is not None and job["celery_state"] == "PUBLISH_FAILED"
    assert job["exc_type"] == "OperationalError" and "publish failed" in job["messages"]


def test_a_broken_store_never_changes_a_task_outcome(caplog: pytest.LogCaptureFixture) -> None:
    broken = taskjobs.configure("postgresql://nobody@127.0.0.1:1/nowhere")
    with caplog.at_level(logging.WARNING, logger="taskjobs"):
        result = add.apply((20, 22), task_id="unrecorded")
    assert result.get() == 42
    assert "job store unreachable" in caplog.text
    buffered = taskjobs.install(app).recorder()
    assert buffered.store is broken
    assert [(change.job_id, change.state) for change in buffered.buffer] == [
        ("unrecorded", "running"),
        ("unrecorded", "finished"),
    ]
    buffered.after_fork()  # forget what this test buffered for a database that never comes


def test_a_write_the_store_refuses_is_logged_and_the_task_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskjobs"):
        result = add.apply((1, 1), task_id="x" * 300)
    assert result.get() == 2
    assert "could not record start of task " + "x" * 300 in caplog.text


def test_include_and_exclude_patterns() -> None:
    app.conf.taskjobs_exclude = ["celery.*", "*.add"]
    try:
        taskjobs.install(app)
        assert findJob(add.apply((1, 1)).id) == (None, None)
        assert getJob(fail.apply(("x",)).id, "error") is not None
    finally:
        app.conf.taskjobs_exclude = None
        taskjobs.install(app)
    assert getJob(add.apply((1, 1)).id, "finished") is not None


def test_job_task_base_class_is_tracked_without_install() -> None:
    from celery import Celery

    plain = Celery("plain", broker="memory://", set_as_current=False)

    @plain.task(base=taskjobs.JobTask, bind=True, shared=False)
    def tracked(self: Any) -> str:
        self.progress("halfway")
        job = self.job
        return f"{job.status} {job.celery_state}"

    @plain.task(shared=False)
    def untracked() -> None:
        return None

    result = tracked.apply()
    job = getJob(result.id, "finished")
    assert job is not None and job["result"] == '"running STARTED"'
    assert "halfway" in job["messages"]
    assert findJob(untracked.apply().id) == (None, None)


def test_progress_outside_a_task_is_a_clear_error() -> None:
    with pytest.raises(taskjobs.TaskJobsError, match="no task is running"):
        taskjobs.progress("nowhere")


def test_secret_looking_keyword_arguments_are_redacted_at_any_depth() -> None:
    result = echo.apply(
        ("visible",),
        {
            "user": "bob",
            "password": "hunter2",
            "options": {"API_Token": "t0k3n", "depth": 2},
            "accounts": [{"name": "a", "secret": "s3cr3t"}, ({"passwd": "pw"}, "kept")],
        },
    )
    stored = getJob(result.id, "finished")
    assert stored is not None
    for secret in ("hunter2", "t0k3n", "s3cr3t", '"pw"'):
        assert secret not in stored["request"]
    assert json.loads(stored["request"]) == {
        "args": ["visible"],
        "kwargs": {
            "user": "bob",
            "password": "***",
            "options": {"API_Token": "***", "depth": 2},
            "accounts": [{"name": "a", "secret": "***"}, [{"passwd": "***"}, "kept"]],
        },
    }


def test_long_requests_results_and_tracebacks_are_cut_with_a_marker() -> None:
    app.conf.update(taskjobs_max_request=50, taskjobs_max_result=40, taskjobs_max_message=300)
    try:
        taskjobs.install(app)
        done = echo.apply(("x" * 1000,))
        failed = fail.apply(("y" * 5000,))
    finally:
        app.conf.update(
            taskjobs_max_request=None, taskjobs_max_result=None, taskjobs_max_message=None
        )
        taskjobs.install(app)
    job = getJob(done.id, "finished")
    assert job is not None
    request = result = json.dumps({"args": ["x" * 1000], "kwargs": {}})  # echo returns its call
    # Each text is cut at its own limit, and the marker counts what it was before.
    marker = "…[truncated by taskjobs: {} characters in all]"
    assert job["request"] == request[:50] + marker.format(len(request))
    assert job["result"] == result[:40] + marker.format(len(result))
    error = getJob(failed.id, "error")
    assert error is not None
    head, cut, _ = error["messages"].rpartition("…[truncated by taskjobs: ")
    assert cut and len(head.split("] ", 1)[1]) == 300, error["messages"]
    assert head.split("] ", 1)[1].startswith("ValueError: " + "y" * 100)


def test_a_task_can_keep_its_arguments_and_result_out_of_the_store() -> None:
    result = private.apply(("confidential",))
    job = getJob(result.id, "finished")
    assert job is not None and job["request"] == "" and job["result"] == ""
    assert result.get() == "CONFIDENTIAL"


def test_storing_arguments_and_results_can_be_switched_off_for_every_task() -> None:
    app.conf.update(taskjobs_store_args=False, taskjobs_store_results="false")
    try:
        taskjobs.install(app)
        result = add.apply((1, 2))
    finally:
        app.conf.update(taskjobs_store_args=None, taskjobs_store_results=None)
        taskjobs.install(app)
    job = getJob(result.id, "finished")
    assert job is not None and (job["request"], job["result"]) == ("", "")


def test_bad_settings_are_one_clear_error() -> None:
    from taskjobs.settings import Settings

    with pytest.raises(taskjobs.ConfigurationError, match="taskjobs_max_result"):
        Settings.load({"taskjobs_max_result": "lots"})
    with pytest.raises(taskjobs.ConfigurationError, match="taskjobs_store_args"):
        Settings.load({"taskjobs_store_args": "maybe"})
    with pytest.raises(taskjobs.ConfigurationError, match="taskjobs_worker_timeout"):
        Settings.load({"taskjobs_worker_timeout": -5})


def test_eager_replace_finishes_the_job_with_the_replacements_result() -> None:
    result = replaced_by.apply(("chain",))
    assert result.get() == 6
    job = getJob(result.id, "finished")
    assert job is not None and json.loads(job["result"]) == 6
    assert job["name"] == "tests.celeryapp.replaced_by"


def test_a_returned_async_result_is_stored_as_its_id_tuple() -> None:
    result = returns_async_result.apply(("some-task-id",))
    job = getJob(result.id, "finished")
    assert job is not None and json.loads(job["result"]) == [["some-task-id", None], None]
