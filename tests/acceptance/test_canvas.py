"""Canvas workflows on real prefork workers: every job ends as Celery's own backend says.

Chains, groups, chords (nested too), chunks, starmap, link and link_error, ``Task.replace``
with every kind of signature, ids that come back in new messages, revokes by id and by stamped
headers, and purges. Each job is checked against ``AsyncResult(id).state`` and none is left
running or pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chain, chord, chunks, xstarmap
from celery.result import AsyncResult

from taskjobs.api.job import findJob, getJob, getJobHistory, getJobs
from tests.acceptance.conftest import (
    BACKEND_DB,
    BROKERS,
    ROOT,
    Stack,
    close_backend,
    running_stack,
)
from tests.celeryapp import make_app
from tests.services import REDIS_URL
from tests.waiting import job_in, wait_for

pytestmark = pytest.mark.slow

TASKS = "tests.celeryapp"
CANVAS_STACKS = [("redis", "postgresql"), ("rabbitmq", "sqlite"), ("redis", "mariadb")]


@pytest.fixture(scope="module", params=CANVAS_STACKS, ids=["-".join(s) for s in CANVAS_STACKS])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    broker, database = request.param
    yield from running_stack(broker, database, tmp_path_factory.mktemp(f"canvas-{broker}"))


def sig(stack: Stack, task: str, *args: Any, immutable: bool = True) -> Any:
    signature = stack.publisher.signature(f"{TASKS}.{task}", args)
    return signature.set(immutable=True) if immutable else signature


def send(stack: Stack, task: str, *args: Any, **options: Any) -> AsyncResult:
    return stack.publisher.send_task(f"{TASKS}.{task}", args, **options)


def celery_state(stack: Stack, task_id: str, *, other_than: str | None = None) -> str:
    """Celery's own final state of a task, once it has one (read afresh: an id that comes back
    changes it)."""
    ready = {"SUCCESS", "FAILURE", "REVOKED"} - {other_than}

    def stored() -> str:
        return str(stack.publisher.backend.get_task_meta(task_id, cache=False)["status"])

    state: str = wait_for(
        lambda: (s := stored()) in ready and s,
        what=lambda: f"a final state in Celery's backend for {task_id}",
    )
    return state


def ended_as_celery_says(
    stack: Stack, task_id: str, *, other_than: str | None = None
) -> dict[str, Any]:
    """The job of ``task_id`` reaches its end, and it is the one Celery's backend holds."""
    state = celery_state(stack, task_id, other_than=other_than)
    status = "finished" if state == "SUCCESS" else "error"
    job = wait_for(
        lambda: (j := getJob(task_id, status)) and j["celery_state"] == state and j,
        what=lambda: f"job {task_id} to end {status}/{state}; it is {findJob(task_id)[0]}",
    )
    assert isinstance(job, dict)
    return job


def _ids(result: Any) -> list[str]:
    """Every task id of a result tree (parents, children of groups)."""
    found: list[str] = []
    stack = [result]
    while stack:
        current = stack.pop()
        if current is None or current.id in found:
            continue
        found.append(current.id)
        stack.extend(getattr(current, "results", None) or [])
        stack.append(current.parent)
    return found


def nothing_left_open(ids: list[str]) -> None:
    """None of these jobs stays pending or running."""
    wait_for(
        lambda: all(findJob(i)[1] not in ("pending", "running") for i in ids),
        what=lambda: (
            "no open job among "
            + str({i: findJob(i)[1] for i in ids if findJob(i)[1] in ("pending", "running")})
        ),
    )


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("task", 42),
        ("chain", 6),
        ("group", [0, 2, 4]),
        ("chord", 6),
        ("chain_with_group", [4, 6]),
        ("nested", 42),
        ("excluded", 7),
    ],
)
def test_a_replaced_task_ends_with_its_replacement(stack: Stack, kind: str, value: Any) -> None:
    result = send(stack, "replaced_by", kind)
    assert result.get(timeout=30) == value
    job = ended_as_celery_says(stack, result.id)
    assert job["status"] == "finished" and json.loads(job["result"]) == value
    assert job["name"] == f"{TASKS}.replaced_by", "the job keeps the name it was published under"
    # The task notes its replacement once it returns, when all of it is published; the
    # replacement, run by another worker process, may have ended the job by then. The note
    # still comes, and keeps the time the replacement was published, before the job's end.
    noted = wait_for(
        lambda: "replaced by" in (m := str(getJob(result.id, "finished")["messages"])) and m,
        what=lambda: f"the replacement note of job {result.id}",
    )
    stamp = next(line for line in noted.splitlines() if "replaced by" in line)[1:20]
    replaced_at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S")
    assert replaced_at <= job["finished_at"].replace(tzinfo=None), noted
    states = [h["celery_state"] for h in getJobHistory(result.id)]
    assert states[-1] == "SUCCESS", states
    # A replacement that reuses the id (a chain's last link, a group's accumulating body) may
    # have started before the note came: its later delivery wins and the note is kept without
    # the REPLACED state.
    assert "REPLACED" in states or states.count("STARTED") >= 2, states


def test_a_task_replaced_by_a_failing_group_ends_with_the_chord_error(stack: Stack) -> None:
    result = send(stack, "replaced_by", "failing_group")
    job = ended_as_celery_says(stack, result.id)
    assert job["exc_type"] == "ChordError" and "member failed" in job["messages"]


def test_a_failed_chain_link_fails_the_links_after_it(stack: Stack) -> None:
    links = [sig(stack, "add", 1, 1), sig(stack, "fail", "link 2"), sig(stack, "add", 3, 3)]
    result = chain(*links, sig(stack, "add", 4, 4)).apply_async()
    with pytest.raises(ValueError, match="link 2"):
        result.get(timeout=30)
    ids = list(reversed(_ids(result)))
    jobs = [ended_as_celery_says(stack, task_id) for task_id in ids]
    assert [j["status"] for j in jobs] == ["finished", "error", "error", "error"]
    for never_ran in jobs[2:]:
        assert never_ran["exc_type"] == "ValueError" and never_ran["started_at"] is None
        assert f"not run: {TASKS}.fail {ids[1]}" in never_ran["messages"]
        assert never_ran["root_id"] == ids[0]
    assert [jobs[2]["parent_id"], jobs[3]["parent_id"]] == [ids[1], ids[2]]


def test_a_failed_chord_member_fails_the_body(stack: Stack) -> None:
    header = [sig(stack, "add", 1, 1), sig(stack, "fail", "member")]
    result = chord(header, sig(stack, "collect", immutable=False)).apply_async()
    body = ended_as_celery_says(stack, result.id)
    assert body["exc_type"] == "ChordError" and body["name"] == f"{TASKS}.collect"
    assert "not run: chord header member" in body["messages"]
    for member in result.parent.results:
        ended_as_celery_says(stack, member.id)


def test_nested_chords_chunks_starmap_and_links(stack: Stack) -> None:
    inner = chord(
        [sig(stack, "add", 1, 1), sig(stack, "add", 2, 2)], sig(stack, "collect", immutable=False)
    )
    nested = chord([inner, sig(stack, "add", 3, 3)], sig(stack, "collect", immutable=False))
    nested_result = nested.apply_async()
    assert nested_result.get(timeout=30) == 12

    add = stack.publisher.signature(f"{TASKS}.add")
    chunked = chunks(add, [(i, i) for i in range(6)], 2).apply_async()
    assert chunked.get(timeout=30) == [[0, 2], [4, 6], [8, 10]]
    starmap = xstarmap(add, [(i, i) for i in range(3)]).apply_async()
    assert starmap.get(timeout=30) == [0, 2, 4]

    callback = sig(stack, "add", 10, immutable=False)
    callback.freeze()
    linked = sig(stack, "add", 1, 1).apply_async(link=callback)
    errback = sig(stack, "on_error", immutable=False)
    errback.freeze()
    failing = sig(stack, "fail", "with an errback").apply_async(link_error=errback)
    assert linked.get(timeout=30) == 2
    assert json.loads(ended_as_celery_says(stack, callback.id)["result"]) == 12
    assert job_in(callback.id, "finished")["parent_id"] == linked.id
    ended_as_celery_says(stack, failing.id)
    errback_job = ended_as_celery_says(stack, errback.id)
    assert json.loads(errback_job["result"]) == f"{failing.id} failed"

    tracked = [*_ids(nested_result), linked.id, callback.id, failing.id, errback.id]
    for task_id in tracked:
        if findJob(task_id)[0] is not None:
            ended_as_celery_says(stack, task_id)
    nothing_left_open(tracked)


def test_an_id_published_again_after_it_ended_starts_over(stack: Stack) -> None:
    task_id = str(uuid.uuid4())
    send(stack, "fail", "first delivery", task_id=task_id)
    job = ended_as_celery_says(stack, task_id)
    assert job["exc_type"] == "ValueError" and "first delivery" in job["messages"]

    send(stack, "add", 5, 5, task_id=task_id)
    job = ended_as_celery_says(stack, task_id, other_than="FAILURE")
    assert job["result"] == "10", "a later delivery's true end wins over an earlier one"

    # Celery's result backends keep a SUCCESS once stored, even when the same id runs again
    # and fails; the job shows what the latest delivery did, and nothing of the run before it
    # (see README, "Ids that come back").
    send(stack, "fail", "third delivery", task_id=task_id)
    job = wait_for(
        lambda: (j := getJob(task_id, "error")) and "third delivery" in j["messages"] and j,
        what=lambda: f"the third delivery's failure; the job is {findJob(task_id)[0]}",
    )
    assert celery_state(stack, task_id) == "SUCCESS"
    assert job["result"] == "", "the second delivery's result is not the third's"
    pending = [h for h in getJobHistory(task_id) if h["celery_state"] == "PENDING"]
    assert len(pending) == 3, "each delivery starts over from pending"


def test_a_revoke_by_stamped_headers_then_a_new_delivery_of_the_same_signature(
    stack: Stack,
) -> None:
    task_id = str(uuid.uuid4())
    first = sig(stack, "add", 2, 2).set(task_id=task_id)
    first.stamp(canvas_test=f"first-{task_id}")
    first.apply_async(countdown=2)
    job_in(task_id, "pending")
    stack.publisher.control.revoke_by_stamped_headers({"canvas_test": f"first-{task_id}"})
    job = ended_as_celery_says(stack, task_id)
    assert job["celery_state"] == "REVOKED"

    again = sig(stack, "add", 2, 2).set(task_id=task_id)
    again.stamp(canvas_test=f"second-{task_id}")
    again.apply_async()
    job = ended_as_celery_says(stack, task_id, other_than="REVOKED")
    assert job["result"] == "4", "the later delivery's true end wins over the earlier revoke"


def test_a_revoke_by_id(stack: Stack) -> None:
    result = send(stack, "add", 1, 1, countdown=2)
    job_in(result.id, "pending")
    result.revoke()
    assert ended_as_celery_says(stack, result.id)["celery_state"] == "REVOKED"


def test_a_result_that_is_an_async_result_is_stored_as_celery_stores_it(stack: Stack) -> None:
    other = send(stack, "add", 1, 1)
    result = send(stack, "returns_async_result", other.id)
    result.get(timeout=30)
    job = ended_as_celery_says(stack, result.id)
    assert json.loads(job["result"]) == [[other.id, None], None]


def test_purge_marks_the_jobs_whose_messages_it_deleted(stack: Stack) -> None:
    # An app of its own, whose queue (the one its purge() empties) no worker consumes.
    queue = f"unconsumed-{uuid.uuid4().hex[:8]}"
    app = make_app(BROKERS[stack.broker], f"{REDIS_URL}/{BACKEND_DB}", queue)
    try:
        waiting = [app.send_task(f"{TASKS}.add", (i, i)) for i in range(3)]
        for result in waiting:
            job_in(result.id, "pending")
        assert app.control.purge() == 3
    finally:
        app.close()
    for result in waiting:
        job = job_in(result.id, "error")
        assert (
            job["celery_state"] == "PURGED"
            and f"deleted the waiting messages of {queue}" in (job["messages"])
        )
        assert stack.publisher.AsyncResult(result.id).state == "PENDING"  # Celery never knows


def test_reconcile_after_celery_purge(stack: Stack) -> None:
    purged, kept = f"purged-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    lost = [send(stack, "add", i, i, queue=purged) for i in range(2)]
    waiting = send(stack, "add", 9, 9, queue=kept)
    for result in [*lost, waiting]:
        job_in(result.id, "pending")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TJ_BROKER": BROKERS[stack.broker],
        "TJ_BACKEND": f"{REDIS_URL}/{BACKEND_DB}",
        "TASKJOBS_DATABASE_URL": stack.url,
    }
    celery = [sys.executable, "-m", "celery", "-A", TASKS, "purge", "-f", "-Q", purged]
    subprocess.run(celery, env=env, check=True, capture_output=True, timeout=60)
    reconcile = [str(Path(sys.executable).with_name("taskjobs")), "reconcile", "--older-than", "0s",
                 "--broker", BROKERS[stack.broker], "--queue", purged, "--queue", kept]  # fmt: skip
    done = subprocess.run(reconcile, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{purged}: 2 waiting, 2 without a message ended (VANISHED)" in done.stdout
    for result in lost:
        assert job_in(result.id, "error")["celery_state"] == "VANISHED"
    assert getJob(waiting.id, "pending") is not None, "a job whose message waits is left alone"
    # Clean up: the kept message is purged too and reconciled away.
    subprocess.run([*celery[:-1], kept], env=env, check=True, capture_output=True, timeout=60)
    subprocess.run(reconcile, env=env, check=True, capture_output=True, timeout=60)
    assert job_in(waiting.id, "error")["celery_state"] == "VANISHED"


@pytest.fixture(scope="module")
def batched_queue(stack: Stack) -> str:
    """A queue served by a worker of the stack in batched write mode, whose writes wait a
    whole second: long enough for the writes of its processes to reach the store in any order."""
    queue = f"{stack.queue}-batched"
    conf = '{"taskjobs_write_mode": "batched", "taskjobs_batch_interval": 1}'
    stack.start_worker(queue=queue, env={"TJ_EXTRA_CONF": conf})
    return queue


def test_a_replacement_published_without_taskjobs_ends_its_job_in_batched_mode(
    stack: Stack, batched_queue: str
) -> None:
    """A publisher without taskjobs writes no pending row, and a batched worker's processes
    write in their own time: the replacement's last task (run by one process) ends the job
    only if the job exists, and the replaced task's start (queued in another) creates it. The
    replaced task's queued writes are written before its replacement is published, so every
    job ends, with its replacement's result, whatever order the processes write in."""
    plain = Celery("plain", broker=BROKERS[stack.broker], backend=f"{REDIS_URL}/{BACKEND_DB}",
                   set_as_current=False)  # fmt: skip
    try:
        kinds = ["group"] * 40 + ["excluded"] * 20
        results = [plain.send_task(f"{TASKS}.replaced_by", (kind,), queue=batched_queue)
                   for kind in kinds]  # fmt: skip
        values = [result.get(timeout=60) for result in results]
        for result, value in zip(results, values, strict=True):
            job = job_in(result.id, "finished")
            assert json.loads(job["result"]) == value, job
    finally:
        close_backend(plain)
        plain.close()


def test_the_workload_leaves_no_job_open(stack: Stack) -> None:
    """After everything above on this stack, no job is pending or running."""
    nothing_left_open([j["id"] for j in getJobs()])
