"""The fifteen documented functions on SQLite, PostgreSQL and MariaDB, against the contract."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from taskjobs import Job
from taskjobs.api.job import (
    createJob,
    deleteJob,
    findJob,
    getFinishedJobs,
    getJob,
    getJobHistory,
    getJobResults,
    getJobs,
    getJobSchema,
    getPendingJobs,
    getRunningJobs,
    setJob,
    setJobFinished,
    setJobPending,
    setJobRunning,
    updateJobResult,
)
from taskjobs.errors import InvalidInputError, InvalidStateError, UnknownFieldError
from taskjobs.store import Store

pytestmark = pytest.mark.usefixtures("store")

DOCUMENTED = ["id", "name", "user", "request", "result", "status", "messages"]


def test_create_job_stores_a_pending_job_and_returns_what_get_job_returns() -> None:
    job = createJob("resize", "alice", {"path": "a.png"}, None)
    assert job["status"] == "pending"
    assert list(job)[:7] == DOCUMENTED
    assert (job["name"], job["user"]) == ("resize", "alice")
    assert job["request"] == '{"path": "a.png"}'
    assert job["result"] == "" and job["messages"] == ""
    assert job["created_at"] is not None and job["created_at"].tzinfo is not None
    assert getJob(job["id"]) == job
    assert getJob(job["id"], "pending") == job


def test_create_job_gives_every_job_its_own_id() -> None:
    ids = {createJob("n", "u", "r", "x")["id"] for _ in range(20)}
    assert len(ids) == 20


def test_get_job_returns_none_in_another_state_or_when_unknown() -> None:
    job = createJob("n", "u", "r", "")
    assert getJob(job["id"], "running") is None
    assert getJob("no-such-job") is None
    assert getJob("no-such-job", "finished") is None


def test_get_job_refuses_an_invalid_state_even_for_an_unknown_job() -> None:
    with pytest.raises(ValueError, match="'completed'.*idle, pending, running, finished, error"):
        getJob("whatever", "completed")


def test_find_job_returns_the_frozen_record_and_its_state() -> None:
    job = createJob("n", "u", "r", "")
    record, state = findJob(job["id"])
    assert isinstance(record, Job)
    assert state == "pending" and record.status == "pending" and record.id == job["id"]
    assert record.as_dict() == job
    assert findJob("unknown") == (None, None)


def test_int_ids_mean_their_string() -> None:
    setJob(123, {"name": "by int"}, "running")
    assert getJob("123", "running")["name"] == "by int"  # type: ignore[index]
    assert getJob(123, "running")["id"] == "123"  # type: ignore[index]
    record, state = findJob(123)
    assert record is not None and record.id == "123" and state == "running"
    deleteJob(123)
    assert findJob("123") == (None, None)


def test_set_job_creates_merges_and_sets_the_status() -> None:
    created = setJob("job-1", {"name": "first", "user": "bob"})
    assert created["status"] == "pending" and created["name"] == "first"
    merged = setJob("job-1", {"result": {"ok": True}}, "finished")
    assert merged["status"] == "finished"
    assert merged["name"] == "first" and merged["user"] == "bob"
    assert merged["result"] == '{"ok": true}'
    assert merged["finished_at"] is not None
    assert getJob("job-1", "finished") == merged


def test_explicit_calls_always_apply_in_any_direction() -> None:
    setJobFinished("job-1", {"result": "done"})
    assert setJobRunning("job-1", {})["status"] == "running"
    assert setJobPending("job-1", {})["status"] == "pending"
    assert setJob("job-1", {}, "idle")["status"] == "idle"
    assert setJob("job-1", {}, "error")["status"] == "error"


@pytest.mark.parametrize(
    ("setter", "state", "timestamp"),
    [
        (setJobPending, "pending", None),
        (setJobRunning, "running", "started_at"),
        (setJobFinished, "finished", "finished_at"),
    ],
)
def test_state_setters(setter, state: str, timestamp: str | None) -> None:  # type: ignore[no-untyped-def]
    job = setter("job-2", {"messages": "hello"})
    assert job["status"] == state and job["messages"] == "hello"
    if timestamp:
        assert job[timestamp] is not None
    assert getJob("job-2", state) == job


def test_set_job_refuses_unknown_fields_and_writes_nothing() -> None:
    with pytest.raises(UnknownFieldError, match="'colour'"):
        setJob("job-3", {"name": "x", "colour": "red"})
    assert findJob("job-3") == (None, None)
    setJob("job-3", {"name": "kept"})
    with pytest.raises(ValueError, match="'colour'"):
        setJob("job-3", {"name": "changed", "colour": "red"}, "running")
    assert getJob("job-3")["name"] == "kept"  # type: ignore[index]


def test_set_job_refuses_an_invalid_state_and_writes_nothing() -> None:
    with pytest.raises(InvalidStateError, match="'completed'"):
        setJob(123, {"name": "Job 1", "status": "completed"}, "completed")
    assert findJob(123) == (None, None)


def test_set_job_refuses_status_or_id_in_data_that_disagree() -> None:
    with pytest.raises(ValueError, match="status 'finished'.*'running'"):
        setJob("job-4", {"status": "finished"}, "running")
    with pytest.raises(ValueError, match="id 'other'"):
        setJob("job-4", {"id": "other"})
    assert findJob("job-4") == (None, None)
    assert setJob("job-4", {"id": "job-4", "status": "running"}, "running")["status"] == "running"


def test_set_job_refuses_values_that_are_not_json_and_writes_nothing() -> None:
    with pytest.raises(ValueError, match="'result'"):
        setJob("job-5", {"result": object()})
    assert findJob("job-5") == (None, None)


def test_update_job_result_sets_the_result_and_finishes_the_job() -> None:
    job = createJob("n", "u", "r", "")
    assert updateJobResult(job["id"], {"rows": 3}) is None
    finished = getJobResults(job["id"])
    assert finished is not None
    assert finished["status"] == "finished" and finished["result"] == '{"rows": 3}'
    assert finished["name"] == "n"


def test_update_job_result_with_the_input_job_in_hand() -> None:
    job = createJob("n", "u", "r", "")
    updateJobResult(job["id"], "plain", inputJob=job)
    assert getJobResults(job["id"])["result"] == "plain"  # type: ignore[index]
    other = createJob("n", "u", "r", "")
    with pytest.raises(ValueError, match="inputJob"):
        updateJobResult(job["id"], "x", inputJob=other)
    assert getJobResults(job["id"])["result"] == "plain"  # type: ignore[index]


def test_get_job_results_is_none_until_finished() -> None:
    job = createJob("n", "u", "r", "")
    assert getJobResults(job["id"]) is None
    setJobRunning(job["id"], {})
    assert getJobResults(job["id"]) is None
    setJob(job["id"], {"messages": "boom"}, "error")
    assert getJobResults(job["id"]) is None
    assert getJobResults("unknown") is None


def test_delete_job_is_idempotent() -> None:
    job = createJob("n", "u", "r", "")
    assert deleteJob(job["id"]) is None
    assert findJob(job["id"]) == (None, None)
    assert deleteJob(job["id"]) is None
    assert deleteJob("never-existed") is None


def test_listings_by_state_and_all_jobs_including_error_and_idle() -> None:
    for state in ("idle", "pending", "running", "finished", "error"):
        setJob(f"{state}-job", {"name": state}, state)
    assert [j["id"] for j in getPendingJobs()] == ["pending-job"]
    assert [j["id"] for j in getRunningJobs()] == ["running-job"]
    assert [j["id"] for j in getFinishedJobs()] == ["finished-job"]
    everything = getJobs()
    assert sorted(j["status"] for j in everything) == sorted(
        ["idle", "pending", "running", "finished", "error"]
    )
    assert all(list(j)[:7] == DOCUMENTED for j in everything)


def test_listings_are_newest_first_and_filter_by_name_user_and_time() -> None:
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    from taskjobs.model import encode_data
    from tests.writes import transition

    for i in range(6):
        data = encode_data({"name": f"task-{i % 2}", "user": "alice" if i < 3 else "bob"})
        transition(f"j{i}", "pending", data, at=base + timedelta(minutes=i))
    assert [j["id"] for j in getJobs()] == ["j5", "j4", "j3", "j2", "j1", "j0"]
    assert [j["id"] for j in getPendingJobs(name="task-0")] == ["j4", "j2", "j0"]
    assert [j["id"] for j in getPendingJobs(user="alice")] == ["j2", "j1", "j0"]
    assert [j["id"] for j in getJobs(name="task-1", user="bob")] == ["j5", "j3"]
    since, until = base + timedelta(minutes=2), base + timedelta(minutes=4)
    assert [j["id"] for j in getJobs(since=since, until=until)] == ["j3", "j2"]
    assert [j["id"] for j in getJobs(since="2026-01-01T00:04:00")] == ["j5", "j4"]
    assert [j["id"] for j in getJobs(limit=2)] == ["j5", "j4"]
    assert getRunningJobs(user="alice") == []


def test_keyset_pages_cover_every_job_once_even_with_equal_times() -> None:
    from tests.writes import transition

    moment = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(25):  # ids in no relation to times: a later job may have a smaller id
        transition(f"p{i * 7 % 25:02d}", "pending", {}, at=moment + timedelta(seconds=i // 5))
    seen: list[str] = []
    after = None
    while True:
        page = getJobs(limit=7, after=after) if after else getJobs(limit=7)
        if not page:
            break
        seen += [j["id"] for j in page]
        after = page[-1]["id"]
    assert sorted(seen) == [f"p{i:02d}" for i in range(25)]
    assert len(seen) == len(set(seen)) == 25


def test_bad_listing_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="'colour'.*valid filters"):
        getJobs(colour="red")
    for bad in (0, -1, "10", True):
        with pytest.raises(ValueError, match="limit"):
            getJobs(limit=bad)
    with pytest.raises(ValueError, match="since"):
        getJobs(since="yesterday")
    with pytest.raises(
        ValueError, match="'nope' given as the page cursor 'after': pass the id of the last job"
    ):
        getJobs(after="nope")


def test_get_job_schema_is_the_documented_one() -> None:
    schema = getJobSchema()
    assert list(schema) == DOCUMENTED
    assert schema["id"] == {
        "type": "string",
        "required": True,
        "unique": True,
        "default": "",
        "options": [],
    }
    assert schema["status"]["default"] == "idle"
    assert schema["status"]["options"] == ["idle", "pending", "running", "finished", "error"]
    for field in ("name", "user", "request", "result", "messages"):
        assert schema[field] == {
            "type": "string",
            "required": False,
            "unique": False,
            "default": "",
            "options": [],
        }
    schema["status"]["options"].append("mutated")
    assert "mutated" not in getJobSchema()["status"]["options"]


def test_unicode_round_trips_everywhere() -> None:
    text = "naïve café ✓ 日本語 🚀 Ω"
    job = setJob(
        "ユニコード-🚀",
        {
            "name": "タスク",
            "user": "zoë",
            "request": text,
            "result": {"emoji": "🚀"},
            "messages": text,
        },
    )
    again = getJob("ユニコード-🚀")
    assert again == job
    assert (again["name"], again["user"], again["request"]) == ("タスク", "zoë", text)  # type: ignore[index]
    assert json.loads(again["result"]) == {"emoji": "🚀"}  # type: ignore[index]


def test_ids_are_exact_case_and_trailing_spaces_matter() -> None:
    setJob("Job", {"name": "upper"})
    setJob("job", {"name": "lower"})
    setJob("job ", {"name": "space"})
    assert getJob("Job")["name"] == "upper"  # type: ignore[index]
    assert getJob("job")["name"] == "lower"  # type: ignore[index]
    assert getJob("job ")["name"] == "space"  # type: ignore[index]
    assert len(getJobs()) == 3


def test_values_of_several_megabytes_round_trip() -> None:
    big = "x" * (3 * 1024 * 1024) + "✓"
    setJob("big", {"request": big, "result": {"blob": big}})
    job = getJob("big")
    assert job is not None and job["request"] == big
    assert json.loads(job["result"])["blob"] == big


def test_bad_ids_are_refused_everywhere_and_write_nothing() -> None:
    for bad in ("", None, 1.5, "x" * 256, "nul\x00id"):
        with pytest.raises(InvalidInputError):
            setJob(bad, {"name": "x"})  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            getJob(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            deleteJob(bad)  # type: ignore[arg-type]
    assert getJobs() == []


def test_documented_functions_bypass_the_lifecycle_guard(store: Store) -> None:
    from taskjobs.model import STAGE_ENDED, order_key
    from tests.writes import transition

    transition("guarded", "finished", {}, seq=order_key(5, STAGE_ENDED))
    assert setJobPending("guarded", {})["status"] == "pending"


def test_job_history_is_a_list_of_dicts_oldest_first() -> None:
    setJob(7, {"worker": "celery@w"}, "running")
    setJob(7, {"retries": 1}, "finished")
    history = getJobHistory(7)
    assert [list(step) for step in history] == [["status", "celery_state", "worker", "retries",
                                                 "at"]] * 2  # fmt: skip
    assert [(s["status"], s["worker"], s["retries"]) for s in history] == [
        ("running", "celery@w", None), ("finished", "celery@w", 1)
    ]  # fmt: skip
    assert history[0]["at"] <= history[1]["at"] and history[0]["at"].tzinfo is not None
    assert getJobHistory("unknown") == []
