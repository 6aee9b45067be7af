"""Flower's JSON API on the seeded store, on every database: the shapes Flower 2.1 answers
(``flower/api/tasks.py``, ``flower/api/workers.py``), its query parameters, and its errors."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from taskjobs import lifecycle
from taskjobs.model import CELERY_LOST, Job, utcnow
from taskjobs.store import Store
from taskjobs.web import create_app
from taskjobs.web.flower import TASK_FIELDS
from tests.waiting import wait_for
from tests.web.seed import HOSTILE, Seeded

# The fields of a Celery ``events.state.Task.as_dict()``, which Flower answers for a task.
CELERY_TASK_FIELDS = {
    "uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded", "failed",
    "retried", "revoked", "args", "kwargs", "eta", "expires", "retries", "worker", "result",
    "exception", "timestamp", "runtime", "traceback", "exchange", "routing_key", "clock",
    "client", "root", "root_id", "parent", "parent_id", "children",
}  # fmt: skip


def tasks(client: TestClient, query: str = "") -> dict[str, dict[str, object]]:
    answer = client.get(f"/api/tasks{'?' if query else ''}{query}")
    assert answer.status_code == 200, answer.text
    found: dict[str, dict[str, object]] = answer.json()
    return found


def test_a_listed_task_carries_every_field_flower_gives(client: TestClient, seeded: Seeded) -> None:
    assert set(TASK_FIELDS) == CELERY_TASK_FIELDS
    listed = tasks(client)
    assert set(listed) == set(seeded.all_ids())
    for task_id, task in listed.items():
        assert set(task) == CELERY_TASK_FIELDS
        assert task["uuid"] == task_id


def test_a_succeeded_task_reads_as_flower_shows_it(client: TestClient, seeded: Seeded) -> None:
    task = tasks(client)[seeded.child]
    assert task["state"] == "SUCCESS" and task["name"] == "shop.charge"
    assert task["args"] == "(17,)" and task["kwargs"] == "{}"
    assert task["result"] == "{'charged': '12.50 EUR'}", "the result's repr, as Celery's event"
    assert task["worker"] == "celery@alpha" and task["retries"] == 0
    assert task["root_id"] == task["root"] == seeded.root
    assert task["parent_id"] == task["parent"] == seeded.root
    sent, received, started, succeeded = (
        task[k] for k in ("sent", "received", "started", "succeeded")
    )
    assert isinstance(sent, float) and isinstance(succeeded, float)
    assert sent + 1 == received and sent + 2 == started, "Unix seconds, as the seed spaced them"
    assert task["timestamp"] == succeeded and task["runtime"] == 0.25
    assert task["failed"] is None and task["exception"] is None and task["traceback"] is None
    assert tasks(client)[seeded.root]["children"] == [seeded.child]


def test_a_failed_task_carries_its_exception_and_traceback(
    client: TestClient, seeded: Seeded
) -> None:
    task = tasks(client)[seeded.failed_member]
    assert task["state"] == "FAILURE"
    assert task["exception"] == "LookupError('parcel 3 is lost')"
    assert str(task["traceback"]).startswith("Traceback (most recent call last):")
    assert str(task["traceback"]).endswith("LookupError: parcel 3 is lost")
    assert task["failed"] == task["timestamp"] and task["succeeded"] is None
    assert task["result"] is None


def test_waiting_running_and_retrying_tasks_have_celerys_states(
    client: TestClient, seeded: Seeded
) -> None:
    listed = tasks(client)
    assert listed[seeded.pending]["state"] == "PENDING"
    assert listed[seeded.pending]["received"] is None and listed[seeded.pending]["worker"] is None
    assert listed[seeded.running]["state"] == "STARTED"
    assert listed[seeded.retrying]["state"] == "RETRY"


def test_a_job_taskjobs_marked_lost_is_a_failure_saying_why(
    fresh_client: TestClient, store: Store, fresh_seeded: Seeded
) -> None:
    store.reap(silent_since=None, worker="celery@alpha", at=utcnow(), reason="worker silent")
    task = tasks(fresh_client)[fresh_seeded.running]
    assert task["state"] == "FAILURE", f"not {CELERY_LOST!r}: Flower clients know Celery's states"
    assert "worker silent" in str(task["exception"])
    assert fresh_seeded.running in tasks(fresh_client, "state=FAILURE")


def test_tasks_are_newest_first_and_limit_and_offset_page_them(
    client: TestClient, seeded: Seeded
) -> None:
    everything = list(tasks(client))
    assert everything[0] == seeded.pending and everything[-1] == seeded.root
    assert list(tasks(client, "limit=3")) == everything[:3]
    assert list(tasks(client, "limit=3&offset=3")) == everything[3:6]
    assert tasks(client, "limit=0") == {}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=FAILURE", ["hostile", "failed_member"]),
        ("state=RETRY", ["retrying"]),
        ("state=All&taskname=shop.ship", ["member2", "member1", "member0"]),
        ("taskname=report.build", ["running"]),
        ("workername=celery%40beta&state=SUCCESS", ["member1", "member0"]),
        ("search=parcel", ["member2", "member1", "member0"]),
        ("search=kwargs:grace", ["pending"]),
        ("search=name:mail.send+state:retry", ["retrying"]),
        ("search=worker:celery%40beta+state:failure", ["failed_member"]),
    ],
)
def test_flowers_filters_select_the_tasks(
    client: TestClient, seeded: Seeded, query: str, expected: list[str]
) -> None:
    roles = seeded.by_role()
    assert list(tasks(client, query)) == [roles[role] for role in expected]


def test_the_received_window_takes_flowers_minute_format(
    client: TestClient, seeded: Seeded
) -> None:
    # The hostile job was received 5 minutes ago; the retrying one 10, the others earlier.
    start = (seeded.now - timedelta(minutes=6)).strftime("%Y-%m-%d %H:%M")
    assert list(tasks(client, f"received_start={start}")) == [seeded.hostile]
    end = (seeded.now - timedelta(minutes=25)).strftime("%Y-%m-%d %H:%M")
    assert set(tasks(client, f"received_end={end}")) == {seeded.root, seeded.child,
                                                          *seeded.members}  # fmt: skip


def test_sort_by_orders_ascending_or_with_a_minus_descending(
    client: TestClient, seeded: Seeded
) -> None:
    by_name = [task["name"] for task in tasks(client, "sort_by=name").values()]
    assert by_name == sorted(by_name)
    started = [task["started"] for task in tasks(client, "sort_by=-started&state=SUCCESS").values()]
    assert started == sorted(started, reverse=True)  # type: ignore[type-var]


def test_task_info_is_one_task_with_its_id_as_task_id(client: TestClient, seeded: Seeded) -> None:
    info = client.get(f"/api/task/info/{seeded.root}").json()
    assert info["task-id"] == seeded.root and "uuid" not in info
    assert set(info) == CELERY_TASK_FIELDS - {"uuid"} | {"task-id"}
    assert info["children"] == [seeded.child] and info["result"] == "{'order': 17}"


def test_an_unknown_task_is_a_404_naming_it(client: TestClient) -> None:
    for path in ("/api/task/info/no-such-task", "/api/task/result/no-such-task"):
        answer = client.get(path)
        assert answer.status_code == 404
        assert answer.json() == {"error": "Unknown task 'no-such-task'"}
    assert client.get("/api/task/info/wf-root").status_code == 404, "whole ids only, as Flower"


def test_task_result_gives_the_value_once_ready(client: TestClient, seeded: Seeded) -> None:
    assert client.get(f"/api/task/result/{seeded.root}").json() == {
        "task-id": seeded.root, "state": "SUCCESS", "result": {"order": 17}}  # fmt: skip
    assert client.get(f"/api/task/result/{seeded.pending}").json() == {
        "task-id": seeded.pending, "state": "PENDING"}  # fmt: skip
    failed = client.get(f"/api/task/result/{seeded.failed_member}").json()
    assert failed["state"] == "FAILURE" and failed["result"] == "LookupError('parcel 3 is lost')"
    assert failed["traceback"].endswith("LookupError: parcel 3 is lost")


class CountingReads:
    """A store whose ``get`` calls are counted: how often the route has looked at the job."""

    def __init__(self, store: Store) -> None:
        self.store, self.gets = store, 0

    def get(self, job_id: str) -> Job | None:
        self.gets += 1
        return self.store.get(job_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_task_result_waits_for_the_end_when_given_a_timeout(
    store: Store, fresh_seeded: Seeded
) -> None:
    reads = CountingReads(store)
    client = TestClient(create_app(reads))  # type: ignore[arg-type]
    answers: list[dict[str, object]] = []
    path = f"/api/task/result/{fresh_seeded.running}?timeout=30"
    asking = threading.Thread(target=lambda: answers.append(client.get(path).json()))
    asking.start()
    wait_for(lambda: reads.gets >= 2, what="the route to look at the running job again")
    store.apply(lifecycle.succeeded(fresh_seeded.running, name="report.build", result="42",
                                    runtime=1.0, retries=0, delivery=1, at=utcnow()))  # fmt: skip
    asking.join(timeout=30)
    assert answers == [{"task-id": fresh_seeded.running, "state": "SUCCESS", "result": 42}]


def test_task_types_lists_every_name_once(client: TestClient) -> None:
    assert client.get("/api/task/types").json() == {
        "task-types": [f"evil.{HOSTILE}", "mail.send", "report.build", "shop.charge",
                       "shop.checkout", "shop.ship"]}  # fmt: skip


def test_workers_are_keyed_by_name_with_their_running_tasks(client: TestClient) -> None:
    workers = client.get("/api/workers").json()
    assert list(workers) == ["celery@alpha", "celery@beta", "celery@gamma"]
    alpha = workers["celery@alpha"]
    assert alpha["stats"]["pid"] == 101 and alpha["alive"] is True
    assert [task["id"] for task in alpha["active"]] == ["job-running-0008"], "not the retrying one"
    assert alpha["active"][0]["worker_pid"] == 4242 and alpha["active"][0]["args"] == [2026]
    assert client.get("/api/workers?status=true").json() == {
        "celery@alpha": True, "celery@beta": False, "celery@gamma": False}  # fmt: skip
    assert list(client.get("/api/workers?workername=celery%40beta").json()) == ["celery@beta"]
    assert client.get("/api/workers?refresh=true").status_code == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("/api/tasks?limit=ten", "invalid limit 'ten'"),
        ("/api/tasks?limit=10001", "invalid limit '10001'"),
        ("/api/tasks?offset=-1", "invalid offset '-1'"),
        ("/api/tasks?sort_by=runtime", "invalid sort_by 'runtime'"),
        ("/api/tasks?state=DONE", "invalid state 'DONE'"),
        ("/api/tasks?received_start=yesterday", "invalid received_start 'yesterday'"),
        ("/api/tasks?search=state:done", "invalid search 'done'"),
        ("/api/tasks?colour=red", "invalid parameter 'colour'"),
        ("/api/task/result/x?timeout=99", "invalid timeout '99'"),
        ("/api/workers?status=maybe", "invalid status 'maybe'"),
    ],
)
def test_a_bad_parameter_is_a_json_400_naming_it(
    client: TestClient, query: str, named: str
) -> None:
    answer = client.get(query)
    assert answer.status_code == 400
    assert named in answer.json()["error"]


def test_an_unknown_worker_is_a_404(client: TestClient) -> None:
    answer = client.get("/api/workers?workername=celery%40nowhere")
    assert answer.status_code == 404 and "celery@nowhere" in answer.json()["error"]


def test_a_task_listing_follows_new_jobs_as_they_come(
    fresh_client: TestClient, store: Store, fresh_seeded: Seeded
) -> None:
    store.apply(lifecycle.published("fresh-0011", name="mail.send", user=None, request="",
                                    queue="celery", lineage=lifecycle.Lineage(), retries=0,
                                    eta=None, delivery=None, at=utcnow()))  # fmt: skip
    assert list(tasks(fresh_client, "limit=1")) == ["fresh-0011"]
