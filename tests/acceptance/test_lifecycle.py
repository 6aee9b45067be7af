"""Every task's lifecycle recorded by real prefork workers, on each broker and store.

Each scenario also checks the job against Celery's own result backend (AsyncResult).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord, group
from celery.result import AsyncResult

from taskjobs.api.job import findJob, getJob, getJobHistory
from tests.acceptance.conftest import Stack
from tests.waiting import job_in, wait_for

pytestmark = pytest.mark.slow

TASKS = "tests.celeryapp"


def send(stack: Stack, task: str, *args: Any, **options: Any) -> AsyncResult:
    return stack.publisher.send_task(f"{TASKS}.{task}", args, **options)


def sig(stack: Stack, task: str, *args: Any) -> Any:
    return stack.publisher.signature(f"{TASKS}.{task}", args)


def agrees_with_celery(stack: Stack, job: dict[str, Any]) -> None:
    """The job's precise state is the one Celery's result backend holds."""
    state = wait_for(
        lambda: (
            stack.publisher.AsyncResult(job["id"]).state not in ("PENDING", "STARTED")
            and stack.publisher.AsyncResult(job["id"]).state
        ),
        what=f"Celery's result for {job['id']}",
    )
    assert job["celery_state"] == state


@pytest.fixture(scope="module")
def grouped_queue(stack: Stack) -> str:
    """A queue served by a worker of the stack in grouped write mode whose batches wait a
    minute: only a task's end makes its process write before then."""
    queue = f"{stack.queue}-grouped"
    conf = '{"taskjobs_write_mode": "grouped", "taskjobs_batch_interval": 60}'
    stack.start_worker(queue=queue, env={"TJ_EXTRA_CONF": conf})
    return queue


def test_in_grouped_mode_a_tasks_end_is_committed_before_the_task_returns(
    stack: Stack, grouped_queue: str, tmp_path: Path
) -> None:
    """What the pool process has committed when the task has returned, before the worker
    acknowledges its ``acks_late`` message: its end, and its start with it (queued, not yet
    due). The worker's receipt, written by the main process in its own batch, comes later
    (here, a minute later)."""
    path = tmp_path / "stored.json"
    result = send(stack, "stored_when_done", str(path), queue=grouped_queue)
    assert result.get(timeout=30) == "done"
    stored = json.loads(wait_for(lambda: path.exists() and path.read_text(), what=str(path)))
    # The publisher's pending row lands in its own time, even after the end; the history puts
    # it first all the same, by the time of the publish.
    assert stored["status"] == "finished" and stored["history"][-2:] == ["STARTED", "SUCCESS"]


def test_success(stack: Stack) -> None:
    result = send(stack, "add", 2, 3)
    assert result.get(timeout=30) == 5
    job = job_in(result.id, "finished")
    assert (job["name"], job["result"], job["celery_state"]) == (f"{TASKS}.add", "5", "SUCCESS")
    assert json.loads(job["request"]) == {"args": [2, 3], "kwargs": {}}
    assert job["worker"] == stack.workers[0].name and job["queue"] == stack.queue
    assert job["pid"] not in (None, os.getpid())
    # The worker's main process queues its receipts (the default "grouped" mode): it may land
    # after the end, within the batch interval.
    job = wait_for(
        lambda: (j := getJob(result.id, "finished")) and j["received_at"] and j, what="receipt"
    )
    assert job["created_at"] <= job["received_at"] <= job["started_at"] <= job["finished_at"]
    assert job["runtime"] is not None and job["runtime"] >= 0
    # Whichever order its writes landed in, the history holds each step once, in time order.
    states = [h["celery_state"] for h in getJobHistory(result.id)]
    assert states == ["PENDING", "RECEIVED", "STARTED", "SUCCESS"]
    agrees_with_celery(stack, job)


def test_failure(stack: Stack) -> None:
    result = send(stack, "fail", "broken pipe")
    job = job_in(result.id, "error")
    assert job["exc_type"] == "ValueError" and job["celery_state"] == "FAILURE"
    assert "ValueError: broken pipe" in job["messages"] and "Traceback" in job["messages"]
    agrees_with_celery(stack, job)


def test_retries_twice_then_succeeds(stack: Stack) -> None:
    result = send(stack, "retry_twice", "finally")
    assert result.get(timeout=30) == "finally"
    job = job_in(result.id, "finished")
    assert job["retries"] == 2 and job["result"] == '"finally"'
    # With two pool processes the next attempt can end before the previous attempt's retry is
    # recorded (Celery publishes the retry first): its note may land just after the end.
    job = wait_for(
        lambda: (j := getJob(result.id, "finished")) and j["messages"].count("retrying") == 2 and j,
        what="both retry notes",
    )
    assert "attempt 1 failed, retrying" in job["messages"]
    running = [h for h in getJobHistory(result.id) if h["status"] == "running"]
    assert [h["retries"] for h in running] == [0, 1, 2]
    # Not compared with Celery's stored state: with two pool processes an earlier attempt's
    # RETRY and the last attempt's SUCCESS race in Celery's backend, and once (in about one run
    # in five of this test) it read RETRY after get() had returned the result. The job's order
    # guard keeps SUCCESS.
    assert job["celery_state"] == "SUCCESS"


def test_a_countdown_task_is_pending_before_any_worker_runs_it(stack: Stack) -> None:
    result = send(stack, "add", 1, 1, countdown=600)
    job = job_in(result.id, "pending")
    assert job["eta"] is not None and job["started_at"] is None
    received = wait_for(lambda: (getJob(result.id) or {}).get("received_at"), what="receipt")
    assert received is not None
    job = getJob(result.id, "pending")
    assert job is not None and job["celery_state"] == "RECEIVED" and job["started_at"] is None


def test_a_long_task_is_running_with_its_worker_while_it_runs(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    result = send(stack, "wait_for_file", str(gate))
    job = job_in(result.id, "running")
    pid = int(wait_for(lambda: Path(f"{gate}.pid").exists() and Path(f"{gate}.pid").read_text()))
    job = job_in(result.id, "running")
    assert job["worker"] == stack.workers[0].name and job["pid"] == pid
    assert job["celery_state"] == "STARTED" and job["finished_at"] is None
    gate.touch()
    assert job_in(result.id, "finished")["result"] == '"released"'


def test_the_user_header_names_the_job_user(stack: Stack) -> None:
    result = send(stack, "add", 1, 2, headers={"taskjobs_user": "alice"})
    job = job_in(result.id, "finished")
    assert job["user"] == "alice"


def test_chain_group_and_chord_lineage(stack: Stack) -> None:
    chained = chain(sig(stack, "add", 1, 2), sig(stack, "add", 3), sig(stack, "add", 4))()
    assert chained.get(timeout=30) == 10
    last = job_in(chained.id, "finished")
    middle = job_in(last["parent_id"], "finished")
    first = job_in(middle["parent_id"], "finished")
    assert first["parent_id"] is None
    assert {first["root_id"], middle["root_id"], last["root_id"]} == {first["id"]}
    assert [first["result"], middle["result"], last["result"]] == ["3", "6", "10"]

    grouped = group(sig(stack, "add", i, i) for i in range(3))()
    assert grouped.get(timeout=30) == [0, 2, 4]
    members = [job_in(r.id, "finished") for r in grouped.results]
    assert {m["group_id"] for m in members} == {grouped.id}

    chorded = chord([sig(stack, "add", 1, 1), sig(stack, "add", 2, 2)], sig(stack, "collect"))()
    assert chorded.get(timeout=30) == 6
    body = job_in(chorded.id, "finished")
    assert body["result"] == "6" and json.loads(body["request"])["args"] == [[2, 4]]


def test_revoking_a_running_task_with_terminate(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "never"
    result = send(stack, "wait_for_file", str(gate), 120)
    job_in(result.id, "running")
    result.revoke(terminate=True, signal="SIGTERM")
    job = job_in(result.id, "error")
    assert job["celery_state"] == "REVOKED" and "terminated" in job["messages"]
    assert "revoke and terminate sent" in job["messages"], "noted when it was sent"
    agrees_with_celery(stack, job)


def test_sigkill_of_the_pool_child_is_worker_lost(stack: Stack, tmp_path: Path) -> None:
    gate = tmp_path / "never"
    result = send(stack, "wait_for_file", str(gate), 120)
    job_in(result.id, "running")
    pid = int(wait_for(lambda: Path(f"{gate}.pid").exists() and Path(f"{gate}.pid").read_text()))
    os.kill(pid, signal.SIGKILL)
    job = job_in(result.id, "error")
    assert job["exc_type"] == "WorkerLostError" and "worker lost" in job["messages"]
    agrees_with_celery(stack, job)


def test_hard_time_limit(stack: Stack) -> None:
    result = send(stack, "overrun", 10)
    job = job_in(result.id, "error")
    assert job["exc_type"] == "TimeLimitExceeded"
    # Celery reports a hard time limit twice; the job records it once.
    assert job["messages"].count("hard time limit exceeded: the task was killed after 1s") == 1
    agrees_with_celery(stack, job)


def test_soft_time_limit(stack: Stack) -> None:
    result = send(stack, "soft_overrun", 5)
    job = job_in(result.id, "error")
    assert job["exc_type"] == "SoftTimeLimitExceeded"
    assert "soft time limit exceeded: SoftTimeLimitExceeded\n" in job["messages"]
    agrees_with_celery(stack, job)


def test_an_unknown_task_name(stack: Stack) -> None:
    result = send(stack, "no_such_task", 1)
    job = job_in(result.id, "error")
    assert job["exc_type"] == "NotRegistered" and "unknown task" in job["messages"]
    agrees_with_celery(stack, job)
    assert findJob(result.id)[1] == "error"
