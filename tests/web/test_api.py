"""taskjobs' own read API (``/api/v1``) on the seeded store, on every database: the jobs and
their filters and pages, one job with its history, a workflow, the report, the workers, and
the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskjobs import queries
from taskjobs.model import JOB_FIELDS
from taskjobs.store import Store
from taskjobs.web import flower as flower_api
from taskjobs.web.api import JOB_PARAMS
from tests.web.seed import Seeded


def ids(client: TestClient, query: str = "") -> list[str]:
    answer = client.get(f"/api/v1/jobs?{query}")
    assert answer.status_code == 200, answer.text
    return [job["id"] for job in answer.json()["jobs"]]


def test_a_job_has_every_field_the_documented_functions_return(
    fresh_client: TestClient, store: Store, fresh_seeded: Seeded
) -> None:
    answer = fresh_client.get(f"/api/v1/jobs?id={fresh_seeded.root}").json()
    (job,) = answer["jobs"]
    assert list(job) == list(JOB_FIELDS)
    assert job == queries.job_with_history(fresh_seeded.root, store).as_dict()["job"]
    assert job["created_at"].endswith("+00:00"), "ISO 8601 in UTC"
    assert answer["next_after"] is None


@pytest.mark.parametrize(
    ("query", "roles"),
    [
        ("state=error", ["hostile", "failed_member"]),
        ("celery_state=RETRY", ["retrying"]),
        ("name=shop.ship&order=asc&sort=created_at", ["member0", "member1", "member2"]),
        ("user=grace", ["pending", "running"]),
        ("worker=celery%40beta&state=finished", ["member1", "member0"]),
        ("id=job-r", ["retrying", "running"]),
        ("parent_id=wf-child-0002", ["member2", "member1", "member0"]),
        ("root_id=wf-root-0001&limit=2", ["member2", "member1"]),
        ("group_id=wf-group-0003&sort=runtime", ["member2", "member1", "member0"]),
        ("search=linus", ["retrying"]),
    ],
)
def test_each_filter_selects_its_jobs(
    client: TestClient, seeded: Seeded, query: str, roles: list[str]
) -> None:
    named = seeded.by_role()
    assert ids(client, query) == [named[role] for role in roles]


def test_the_time_filters_take_iso_times_and_unix_seconds(
    client: TestClient, seeded: Seeded
) -> None:
    since = seeded.now - timedelta(minutes=6)
    assert ids(client, f"since={since.timestamp()}") == [seeded.pending, seeded.hostile]
    iso = (seeded.now - timedelta(minutes=25)).isoformat().replace("+00:00", "Z")
    assert set(ids(client, f"until={iso}")) == {seeded.root, seeded.child, *seeded.members}
    received = (seeded.now - timedelta(minutes=6)).isoformat()
    assert ids(client, f"received_since={received.replace('+', '%2B')}") == [seeded.hostile]


def test_pages_follow_next_after_to_the_last_job(client: TestClient, seeded: Seeded) -> None:
    seen: list[str] = []
    after = ""
    while True:
        page = client.get(f"/api/v1/jobs?limit=4{after}").json()
        seen += [job["id"] for job in page["jobs"]]
        if page["next_after"] is None:
            break
        after = f"&after={page['next_after']}"
    assert seen == ids(client, "limit=100") and len(seen) == len(seeded.all_ids())


def test_one_job_comes_with_its_history(client: TestClient, seeded: Seeded) -> None:
    shown = client.get(f"/api/v1/jobs/{seeded.retrying}").json()
    assert shown["job"]["id"] == seeded.retrying
    steps = [(step["status"], step["celery_state"]) for step in shown["history"]]
    assert steps == [("pending", "PENDING"), ("pending", "RECEIVED"), ("running", "STARTED"),
                     ("pending", "RETRY")]  # fmt: skip
    assert client.get("/api/v1/jobs/job-retr").json()["job"]["id"] == seeded.retrying


def test_a_workflow_names_its_parent_root_group_and_state(
    client: TestClient, seeded: Seeded
) -> None:
    flow = client.get(f"/api/v1/jobs/{seeded.members[0]}/workflow").json()
    assert flow["parent"]["id"] == seeded.child and flow["root"]["id"] == seeded.root
    assert [job["id"] for job in flow["group"]] == list(seeded.members)
    assert flow["children"] == []
    assert flow["counts"] == {"finished": 4, "error": 1} and flow["state"] == "error"


def test_the_report_covers_the_window_asked(client: TestClient) -> None:
    whole = client.get("/api/v1/report").json()
    assert whole["totals"] == {"idle": 0, "pending": 2, "running": 1, "finished": 4, "error": 2}
    recent = client.get("/api/v1/report?window=4m").json()
    assert recent["totals"] == {"idle": 0, "pending": 1, "running": 0, "finished": 0, "error": 0}
    names = {task["name"] for task in whole["tasks"]}
    assert {"shop.ship", "mail.send"} <= names


def test_the_workers_carry_their_state(client: TestClient) -> None:
    found = client.get("/api/v1/workers").json()["workers"]
    states = {worker["name"]: (worker["state"], worker["running"]) for worker in found}
    assert states == {"celery@alpha": ("alive", 1), "celery@beta": ("silent", 0),
                      "celery@gamma": ("stopped", 0)}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "status", "named"),
    [
        ("/api/v1/jobs?state=done", 400, "invalid state 'done'"),
        ("/api/v1/jobs?sort=colour", 400, "invalid sort 'colour'"),
        ("/api/v1/jobs?order=up", 400, "invalid order 'up'"),
        ("/api/v1/jobs?limit=0", 400, "invalid limit '0'"),
        ("/api/v1/jobs?since=soon", 400, "invalid since 'soon'"),
        ("/api/v1/jobs?after=nobody", 400, "unknown job id 'nobody'"),
        ("/api/v1/jobs?sort=name&after=wf-root-0001", 400, "invalid after 'wf-root-0001'"),
        ("/api/v1/jobs?colour=red", 400, "invalid parameter 'colour'"),
        ("/api/v1/report?window=forever", 400, "invalid window 'forever'"),
        ("/api/v1/report?since=2030-01-01", 400, "invalid since"),
        ("/api/v1/jobs/wf-", 400, "ambiguous"),
        ("/api/v1/jobs/no-such-job", 404, "no job with id 'no-such-job'"),
        ("/api/v1/jobs/no-such-job/workflow", 404, "no job with id 'no-such-job'"),
    ],
)
def test_a_bad_request_is_json_naming_what_is_wrong(
    client: TestClient, path: str, status: int, named: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == status
    assert named in answer.json()["error"]


def test_the_openapi_document_describes_every_json_route(client: TestClient) -> None:
    document: dict[str, Any] = client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/workflow",
        "/api/v1/report", "/api/v1/workers", "/api/tasks", "/api/task/types",
        "/api/task/info/{task_id}", "/api/task/result/{task_id}", "/api/workers",
    }  # fmt: skip
    job = document["components"]["schemas"]["Job"]
    assert list(job["properties"]) == list(JOB_FIELDS)
    jobs = document["paths"]["/api/v1/jobs"]["get"]["parameters"]
    assert {parameter["name"] for parameter in jobs} == set(JOB_PARAMS)
    flower = document["paths"]["/api/tasks"]["get"]["parameters"]
    assert {parameter["name"] for parameter in flower} == set(flower_api.LIST_PARAMS)
