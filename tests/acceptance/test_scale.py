"""2,000 tasks on two workers of different pools: every job ends final, correct and attributed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskjobs.api.job import getJobs, getPendingJobs, getRunningJobs
from tests.acceptance.conftest import Stack, build_stack
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

TASKS = 2000
# (broker, store, pool of the second worker (the first is prefork -c 2), write mode)
SETUPS = [
    ("redis", "postgresql", "threads", "direct"),
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
