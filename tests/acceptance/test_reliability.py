"""Crashes and shutdowns of real workers: no job is left running when its worker is gone."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskjobs.api.job import (
    findJob,
    getFinishedJobs,
    getJob,
    getJobHistory,
    getJobs,
    getPendingJobs,
    getRunningJobs,
)
from taskjobs.config import current_store
from taskjobs.store import JobQuery
from tests.acceptance.conftest import Stack, Worker, build_stack
from tests.services import IN_CI
from tests.waiting import job_in, wait_for

pytestmark = pytest.mark.slow

TASKS = "tests.celeryapp"
# Short enough for a test, long enough that a busy machine does not miss a heartbeat.
FAST_TIMEOUT = {"TASKJOBS_WORKER_TIMEOUT": "3"}


@pytest.fixture
def fresh_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A stack with no worker yet: each test starts (and kills) its own."""
    broker, database = request.param
    yield from build_stack(broker, database, tmp_path)


def running_child(gate: Path) -> int:
    """The pid of the pool process running ``wait_for_file(gate)``."""
    text = wait_for(
        lambda: Path(f"{gate}.pid").exists() and Path(f"{gate}.pid").read_text(),
        what="the task's pid file",
    )
    return int(text)


def kill_worker(worker: Worker, child: int) -> None:
    """SIGKILL a worker's main process and its pool process: nothing is told to Celery."""
    os.kill(worker.process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):  # already gone with its parent
        os.kill(child, signal.SIGKILL)
    worker.process.wait(30)


def send(stack: Stack, task: str, *args: Any, **options: Any) -> Any:
    return stack.publisher.send_task(f"{TASKS}.{task}", args, **options)


@pytest.mark.parametrize("fresh_stack", [("redis", "postgresql")], indirect=True)
def test_sigkill_of_a_worker_is_reaped_by_a_live_worker(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    doomed = stack.start_worker(queue=f"{stack.queue}-doomed", env=FAST_TIMEOUT)
    stack.start_worker(env=FAST_TIMEOUT)
    gate = tmp_path / "never"
    result = send(stack, "wait_for_file", str(gate), 120, queue=f"{stack.queue}-doomed")
    assert job_in(result.id, "running")["worker"] == doomed.name
    kill_worker(doomed, running_child(gate))
    job = job_in(result.id, "error", timeout=60)
    assert job["celery_state"] == "LOST" and job["exc_type"] == "WorkerLost"
    assert f"worker lost: {doomed.name} sent no heartbeat for over 3s" in job["messages"]
    workers = {w.name: w for w in current_store().list_workers()}
    assert workers[doomed.name].stopped_at is not None
    assert workers[stack.workers[1].name].stopped_at is None


@pytest.mark.parametrize("fresh_stack", [("rabbitmq", "sqlite")], indirect=True)
def test_taskjobs_reap_marks_the_jobs_of_a_dead_worker(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    only = stack.start_worker(env=FAST_TIMEOUT)
    gate = tmp_path / "never"
    result = send(stack, "wait_for_file", str(gate), 120)
    job_in(result.id, "running")
    kill_worker(only, running_child(gate))

    said: list[str] = []

    def reap() -> str:
        done = subprocess.run(
            [sys.executable, "-m", "taskjobs.cli", "reap", "--timeout", "2s", "--db", stack.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        said.append(done.stdout + done.stderr)
        return "marked lost" in done.stdout and done.stdout

    def state() -> str:
        return f"a reap to mark the job lost; the last reap said {said[-1:]!r}, the job is " + (
            f"{findJob(result.id)[0]}, the workers {current_store().list_workers()}"
        )

    assert f"{only.name}: silent, 1 running job marked lost" in wait_for(
        reap, timeout=60, what=state
    )
    assert getJob(result.id, "error")["celery_state"] == "LOST"  # type: ignore[index]


@pytest.mark.parametrize("fresh_stack", [("rabbitmq", "postgresql")], indirect=True)
def test_an_acks_late_task_redelivered_after_a_kill_ends_finished(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    stack = fresh_stack
    first = stack.start_worker(env=FAST_TIMEOUT)
    second = stack.start_worker(env=FAST_TIMEOUT)
    gate = tmp_path / "gate"
    result = send(stack, "wait_for_file_acks_late", str(gate), 120)
    ran_on = job_in(result.id, "running")["worker"]
    doomed, survivor = (first, second) if ran_on == first.name else (second, first)
    child = running_child(gate)
    Path(f"{gate}.pid").unlink()
    kill_worker(doomed, child)
    # RabbitMQ gives the unacknowledged message back at once; the other worker runs it again.
    rerun = wait_for(
        lambda: (job := getJob(result.id, "running")) and job["worker"] == survivor.name and job,
        timeout=60,
        what="the redelivered run",
    )
    assert rerun["celery_state"] == "STARTED"
    running_child(gate)
    gate.touch()
    job = job_in(result.id, "finished", timeout=60)
    assert job["worker"] == survivor.name and job["result"] == '"released"'
    workers = [h["worker"] for h in getJobHistory(result.id) if h["status"] == "running"]
    assert workers[0] == doomed.name and workers[-1] == survivor.name


@pytest.mark.parametrize("fresh_stack", [("redis", "sqlite")], indirect=True)
def test_warm_shutdown_lets_the_running_task_finish(fresh_stack: Stack) -> None:
    stack = fresh_stack
    worker = stack.start_worker()
    result = send(stack, "sleep", 2)
    job_in(result.id, "running")
    assert worker.stop(signal.SIGTERM) == 0
    job = getJob(result.id, "finished")
    assert job is not None and job["result"] == "2"
    stopped = {w.name: w for w in current_store().list_workers()}[worker.name]
    assert stopped.stopped_at is not None


@pytest.mark.parametrize("fresh_stack", [("redis", "postgresql")], indirect=True)
def test_cold_shutdown_leaves_no_job_running(fresh_stack: Stack, tmp_path: Path) -> None:
    stack = fresh_stack
    worker = stack.start_worker()
    gate = tmp_path / "never"
    result = send(stack, "wait_for_file", str(gate), 120)
    job_in(result.id, "running")
    worker.stop(signal.SIGQUIT)
    # Celery cancels the running task on a cold shutdown and gives it back for a retry: the job
    # is pending its next attempt (or, where Celery cannot, ends lost), never left running.
    job = getJob(result.id, "pending") or getJob(result.id, "error")
    assert job is not None, findJob(result.id)
    if job["status"] == "pending":
        assert job["celery_state"] == "RETRY" and job["retries"] == 1
    else:
        assert job["celery_state"] == "LOST" and "cold shutdown" in job["messages"]


class LockedOut:
    """Makes a scratch PostgreSQL database refuse every connection, as in an outage."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self.name = sa.make_url(url).database
        admin = sa.make_url(url).set(drivername="postgresql+psycopg", database="postgres")
        self.admin = sa.create_engine(admin, isolation_level="AUTOCOMMIT")

    def __enter__(self) -> LockedOut:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
            connection.exec_driver_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
            )
        return self

    def __exit__(self, *_: object) -> None:
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        self.admin.dispose()


@pytest.mark.parametrize("fresh_stack", [("redis", "postgresql")], indirect=True)
def test_a_postgresql_outage_in_the_middle_of_500_tasks(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker()
    results = [send(stack, "add", i, 1) for i in range(250)]
    wait_for(lambda: len(getFinishedJobs(limit=50)) >= 50, what="the first jobs to finish")
    with LockedOut(stack.url):
        # Publishing and running go on: tasks finish, their tracking waits in memory.
        results += [send(stack, "add", i, 1) for i in range(250, 500)]
        assert [r.get(timeout=120) for r in results] == [i + 1 for i in range(500)]

    # Once the database is back every job converges to its true state, receipts included
    # (the worker's main process writes those, from its own buffer).
    def converged() -> dict[str, dict[str, Any]]:
        jobs = {job["id"]: job for job in getFinishedJobs()}
        complete = len(jobs) == 500 and all(job["received_at"] for job in jobs.values())
        return jobs if complete else {}

    jobs = wait_for(converged, timeout=120, what="all 500 jobs to converge")
    assert all(jobs[r.id]["result"] == str(i + 1) for i, r in enumerate(results))
    assert all(jobs[r.id]["started_at"] and jobs[r.id]["worker"] for r in results)
    assert getPendingJobs() == [] and getRunningJobs() == []


@pytest.mark.parametrize("fresh_stack", [("rabbitmq", "postgresql")], indirect=True)
def test_a_retry_storm_at_concurrency_four(fresh_stack: Stack) -> None:
    stack = fresh_stack
    stack.start_worker(concurrency=4)
    results = [send(stack, "flaky", i % 4) for i in range(200)]
    assert [r.get(timeout=120) for r in results] == [i % 4 for i in range(200)]
    wait_for(
        lambda: len(getFinishedJobs(name=f"{TASKS}.flaky")) == 200,
        timeout=120,
        what="200 retried jobs to finish",
    )

    # Retry notes may land just after their job's end (the next attempt can finish first).
    def notes_in() -> dict[str, dict[str, Any]]:
        jobs = {job["id"]: job for job in getFinishedJobs(name=f"{TASKS}.flaky")}
        complete = all(
            jobs[r.id]["messages"].count("retrying") == i % 4 for i, r in enumerate(results)
        )
        return jobs if complete else {}

    jobs = wait_for(notes_in, timeout=60, what="every retry note")
    for i, result in enumerate(results):
        job = jobs[result.id]
        assert job["retries"] == i % 4 and job["result"] == str(i % 4)
        assert job["messages"].count("retrying") == i % 4
        assert job["celery_state"] == "SUCCESS"


def _states() -> dict[tuple[str, str | None], int]:
    """How many jobs are in each (status, Celery state): what a failed wait reports."""
    from collections import Counter

    return dict(Counter((job["status"], job["celery_state"]) for job in getJobs()))


class PrivateRedis:
    """A Redis server of the test's own on a spare port, persisting to a temporary folder, so
    that it can be killed and restarted without touching the machine's shared one."""

    def __init__(self, folder: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 what="the private Redis to start")  # fmt: skip

    def drop_connections(self) -> int:
        """Cut every client connection, as a restart would; returns how many were cut."""
        killed = subprocess.run(
            ["redis-cli", "-p", str(self.port), "CLIENT", "KILL", "TYPE", "normal"],
            check=True, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return int(killed.stdout.strip() or 0)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)


def test_a_broker_restart_while_workers_run(tmp_path: Path) -> None:
    import shutil

    from tests.acceptance import conftest

    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (the test runs a Redis of its own)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    redis = PrivateRedis(tmp_path)
    redis.start()
    original = conftest.BROKERS["redis"]
    conftest.BROKERS["redis"] = redis.url
    try:
        for stack in build_stack("redis", "sqlite", tmp_path):
            # Messages the worker had prefetched come back after Redis' visibility timeout:
            # make that seconds, not the minute the other tests use.
            quick_restore = {"visibility_timeout": 3, "unacked_restore_interval": 1}
            conf = json.dumps({"broker_transport_options": quick_restore})
            stack.start_worker(env={"TJ_EXTRA_CONF": conf})
            first = [send(stack, "add", i, 1) for i in range(50)]
            wait_for(lambda: len(getFinishedJobs(limit=10)) >= 10, what="some jobs to finish")
            # Every client connection is cut, as when the broker restarts. (A real kill and
            # restart of Redis can leave kombu 5.7's consumer stuck: it fails restoring unacked
            # messages while the server is away, celery/celery#10205; that is not taskjobs'.)
            # The worker either reports "Connection to broker lost" and reconnects, or its
            # Redis client reconnects unseen: either way no job may be lost or left pending.
            assert redis.drop_connections() >= 1
            second = [send(stack, "add", i, 1) for i in range(50, 100)]
            wait_for(
                lambda: len(getFinishedJobs()) == 100,
                timeout=120,
                what="all 100 jobs to finish after the broker restart",
            )
            jobs = {job["id"]: job for job in getFinishedJobs()}
            assert all(jobs[r.id]["result"] == str(i + 1) for i, r in enumerate(first + second))
    finally:
        conftest.BROKERS["redis"] = original
        redis.kill()


@pytest.mark.parametrize(
    "fresh_stack", [("redis", "postgresql"), ("rabbitmq", "mariadb")], indirect=True
)
def test_a_revoke_shows_at_once_and_ends_the_job_when_the_worker_discards_it(
    fresh_stack: Stack,
) -> None:
    """Revoked before it starts: the job says so at once (REVOKING, and a message a listing
    can filter), and ends error / REVOKED when the worker holding its message discards it. A
    revoke no worker was online for is a note only: a worker started later runs the task
    (Celery's revokes live in the memory of the workers online), and the job follows it."""
    stack = fresh_stack
    unheard = send(stack, "add", 1, 1)
    job_in(unheard.id, "pending")
    unheard.revoke()
    assert getJob(unheard.id)["celery_state"] == "REVOKING"
    stack.start_worker()
    ran = job_in(unheard.id, "finished", timeout=30)
    assert ran["celery_state"] == "SUCCESS" and "revoke sent" in ran["messages"]

    held = send(stack, "add", 2, 3, countdown=8)
    wait_for(lambda: (getJob(held.id) or {}).get("received_at"), what="the worker to hold it")
    held.revoke()
    job = getJob(held.id)
    assert (job["status"], job["celery_state"]) == ("pending", "REVOKING")
    assert "revoke sent to the workers online" in job["messages"]
    listed = current_store().find(JobQuery(celery_state="REVOKING"))
    assert [found.id for found in listed] == [held.id], "a listing can filter it"
    ended = job_in(held.id, "error", timeout=30)
    assert ended["celery_state"] == "REVOKED"
    assert stack.publisher.AsyncResult(held.id).state == "REVOKED"


def done_in_main_process(
    stack: Stack, worker: Worker, task_id: str, answers: list[Any] | None = None
) -> bool:
    """Whether the worker's main process has had the task's outcome from its pool (the task is
    no longer among the worker's active ones); each answer (None: no reply within 2 s) is
    appended to ``answers``, to say what was seen if the wait times out."""
    inspect = stack.publisher.control.inspect(destination=[worker.name], timeout=2)
    active = inspect.active()
    if answers is not None:
        answers.append(active)
    return active is not None and all(
        task["id"] != task_id for tasks in active.values() for task in tasks
    )


def inspected(awaited: str, answers: list[Any]) -> str:
    """What a wait on ``done_in_main_process`` awaited, and what it saw."""
    return f"{awaited}; {len(answers)} inspections, the last answers: {answers[-3:]}"


@pytest.mark.parametrize(
    "fresh_stack", [("redis", "postgresql"), ("rabbitmq", "sqlite")], indirect=True
)
def test_ends_a_killed_pool_process_had_not_written_are_written_by_the_worker(
    fresh_stack: Stack,
) -> None:
    """In the "batched" mode a pool process queues a task's end and returns. Killed before its
    writer runs (its batches here wait 90 s, longer than any wait below), it takes the end
    along; the worker's main process, which had the outcome, writes it: a result, or the task's
    own exception."""
    stack = fresh_stack
    batched = {"TASKJOBS_WRITE_MODE": "batched", "TASKJOBS_BATCH_INTERVAL": "90"}
    worker = stack.start_worker(concurrency=1, env=batched)
    for fail, state in ((False, "finished"), (True, "error")):
        result = send(stack, "own_pid", fail)
        outcome = result.get(timeout=30, propagate=False)
        pid = int(outcome.args[0]) if fail else int(outcome)
        answers: list[Any] = []
        done = functools.partial(done_in_main_process, stack, worker, result.id, answers)
        wait_for(
            done,
            timeout=45,
            what=functools.partial(
                inspected, "the worker's main process to have the outcome", answers
            ),
        )
        assert getJob(result.id)["status"] == "pending", "nothing of the worker written yet"
        os.kill(pid, signal.SIGKILL)
        job = job_in(result.id, state, timeout=15)
        assert f"pool process {pid}, which ran the task, was gone" in job["messages"]
        if fail:
            assert job["exc_type"] == "ValueError" and f"ValueError: {pid}" in job["messages"]
        else:
            assert (job["result"], job["celery_state"]) == (str(pid), "SUCCESS")
        stored = current_store().get(result.id)
        assert stored is not None and stored.worker == worker.name and stored.runtime is not None
