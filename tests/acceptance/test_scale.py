"""Workloads on two workers of different pools: 2,000 tasks end final, correct and attributed; a
canvas-heavy mix ends every job as Celery's own backend says."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import chain, chord

from taskjobs.api.job import findJob, getJobs, getPendingJobs, getRunningJobs
from tests.acceptance.conftest import Stack, build_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

TASKS = 2000
# (broker, store, pool of the second worker (the first is prefork -c 2), write mode)
SETUPS = [
    ("redis", "postgresql", "threads", "grouped"),
    ("rabbitmq", "postgresql", "solo", "direct"),
    ("redis", "mariadb", "threads", "batched"),
]


@pytest.fixture(params=SETUPS, ids=["-".join(s) for s in SETUPS])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    broker, database, pool, mode = request.param
    env = {"TASKJOBS_WRITE_MODE": mode}
    for stack in build_stack(broker, database, tmp_path):
        stack.start_worker(env=env)
        stack.start_worker(pool=pool, concurrency=4 if pool == "threads" else 1, env=env)
        yield stack


def test_two_thousand_tasks_end_final_on_two_workers(two_workers: Stack) -> None:
    stack = two_workers
    sent = {stack.publisher.send_task("tests.celeryapp.add", (i, 1)).id: i for i in range(TASKS)}

    wait_for(
        lambda: not getPendingJobs(limit=1) and not getRunningJobs(limit=1),
        timeout=300,
        what=f"{TASKS} jobs to end",
    )
    jobs = {job["id"]: job for job in getJobs()}
    assert set(jobs) == set(sent)
    assert Counter(job["status"] for job in jobs.values()) == {"finished": TASKS}
    assert all(jobs[task_id]["result"] == str(i + 1) for task_id, i in sent.items())
    by_worker = Counter(job["worker"] for job in jobs.values())
    assert set(by_worker) == {worker.name for worker in stack.workers}, by_worker


REPLACEMENTS = ("task", "chain", "group", "chord", "chain_with_group", "failing_group", "nested")
CANVAS_SETUPS = [
    ("redis", "postgresql", "direct"),
    ("redis", "postgresql", "grouped"),
    ("rabbitmq", "mariadb", "batched"),
]


@pytest.fixture(params=CANVAS_SETUPS, ids=["-".join(s) for s in CANVAS_SETUPS])
def canvas_workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    broker, database, mode = request.param
    env = {"TASKJOBS_WRITE_MODE": mode}
    for stack in build_stack(broker, database, tmp_path):
        stack.start_worker(env=env)
        stack.start_worker(pool="threads", concurrency=4, env=env)
        yield stack


def test_a_canvas_workload_ends_every_job_as_celery_does(canvas_workers: Stack) -> None:
    """Replaces of every kind, chains failing part way, chords with and without a failing
    member, ids published again: every job ends, with Celery's own final state."""
    stack = canvas_workers
    app = stack.publisher

    def task(name: str, *args: Any) -> Any:
        return app.signature(f"tests.celeryapp.{name}", args, immutable=True)

    sent: list[str] = []
    for round_ in range(15):
        sent += [task("replaced_by", kind).apply_async().id for kind in REPLACEMENTS]
        links = [task("add", round_, 1) for _ in range(4)]
        links[round_ % 4] = task("fail", f"link {round_ % 4}")
        sent.append(chain(*links).apply_async().id)
        header = [task("add", i, round_) for i in range(3)]
        if round_ % 2:
            header.append(task("fail", "member"))
        sent.append(chord(header, app.signature("tests.celeryapp.collect")).apply_async().id)
    reused = {str(uuid.uuid4()): round_ for round_ in range(15)}
    for task_id, round_ in reused.items():
        first = task("fail" if round_ % 2 else "add", *(("again",) if round_ % 2 else (1, 1)))
        first.apply_async(task_id=task_id)
    for task_id in reused:
        wait_for(lambda i=task_id: findJob(i)[1] in ("finished", "error"), timeout=120,
                 what="the first deliveries to end")  # fmt: skip
        sent.append(task("add", 2, 2).apply_async(task_id=task_id).id)

    ready = ("SUCCESS", "FAILURE", "REVOKED")

    def celery_state(task_id: str) -> str:
        return str(app.backend.get_task_meta(task_id, cache=False)["status"])

    wait_for(
        lambda: not getPendingJobs(limit=1) and not getRunningJobs(limit=1),
        timeout=300,
        what=lambda: "every job to end; open: "
        + str([(j["id"], j["name"], j["celery_state"]) for j in getJobs(limit=500)
               if j["status"] in ("pending", "running")][:10]),
    )  # fmt: skip
    for task_id in sent:
        wait_for(lambda i=task_id: celery_state(i) in ready, what=f"Celery's end of {task_id}")
    jobs = getJobs()
    assert len(jobs) >= 15 * 27, "about 27 jobs a round"
    disagreeing = [
        (job["id"], job["name"], job["celery_state"], state)
        for job in jobs
        if job["celery_state"] != (state := celery_state(job["id"]))
    ]
    assert not disagreeing, disagreeing[:10]
