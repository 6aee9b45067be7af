"""The ``taskjobs`` commands through click's runner, on every database."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery import Celery
from click.testing import CliRunner

from taskjobs.api.job import findJob
from taskjobs.celery.command import jobs
from taskjobs.cli import main
from taskjobs.model import STAGE_RUNNING, order_key, utcnow
from taskjobs.store import Store
from tests.writes import transition


@pytest.fixture
def run(store: Store):  # type: ignore[no-untyped-def]
    url = store.url.render_as_string(hide_password=False)
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, [*args, "--db", url])
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def seed() -> None:
    now = utcnow()
    transition(
        "aaaa1111-done",
        "finished",
        {
            "name": "proj.add",
            "user": "alice",
            "worker": "celery@w1",
            "runtime": 0.25,
            "result": "3",
        },
        at=now - timedelta(minutes=5),
    )
    transition(
        "aaaa2222-fail",
        "error",
        {"name": "proj.fail", "user": "bob", "worker": "celery@w2", "exc_type": "ValueError"},
        message="[2026-11-28T10:00:00Z] ValueError: boom\nTraceback (most recent call last):\n",
        at=now - timedelta(minutes=3),
    )
    transition(
        "bbbb3333-wait",
        "pending",
        {"name": "proj.add", "user": "alice"},
        at=now - timedelta(minutes=1),
    )
    transition("old-finished", "finished", {"name": "proj.add"}, at=now - timedelta(days=10))
    transition("old-pending", "pending", {"name": "proj.add"}, at=now - timedelta(days=10))


def test_list_filters_and_fits_eighty_columns(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    output = run("list")
    lines = output.splitlines()
    assert lines[0].split() == ["ID", "TASK", "STATE", "USER", "WORKER", "CREATED", "RUNTIME"]
    assert [line.split()[0] for line in lines[1:]] == [
        "bbbb3333",
        "aaaa2222",
        "aaaa1111",
        "old-pend",
        "old-fini",
    ]
    assert all(len(line) <= 80 for line in lines)
    assert "250ms" in output
    assert [line.split()[0] for line in run("list", "--state", "error").splitlines()[1:]] == [
        "aaaa2222"
    ]
    assert len(run("list", "--user", "alice", "--since", "1h").splitlines()) == 3
    assert len(run("list", "--worker", "celery@w1").splitlines()) == 2
    assert "(no jobs)" in run("list", "--user", "nobody")


def test_list_pages_say_how_to_read_the_next_one(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    first = run("list", "--name", "proj.add", "--limit", "2").splitlines()
    assert [line.split()[0] for line in first[1:3]] == ["bbbb3333", "aaaa1111"]
    assert first[3:] == ["(more: --after aaaa1111-done)"]
    rest = run("list", "--name", "proj.add", "--limit", "2", "--after", "aaaa1111-done")
    assert [line.split()[0] for line in rest.splitlines()[1:]] == ["old-pend", "old-fini"]
    assert "more" not in rest  # the last page
    assert "unknown job id 'nope' given as the page cursor" in run("list", "--after", "nope",
                                                                   code=1)  # fmt: skip


def test_list_json_is_the_job_dicts(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    jobs = json.loads(run("list", "--state", "finished", "--since", "1h", "--json"))
    assert [job["id"] for job in jobs] == ["aaaa1111-done"]
    assert jobs[0]["result"] == "3" and jobs[0]["created_at"].endswith("+00:00")


def test_show_everything_by_id_or_unique_prefix(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    output = run("show", "aaaa2222")
    assert output.splitlines()[0].split() == ["id", "aaaa2222-fail"]
    assert "exc_type" in output and "ValueError: boom" in output and "Traceback" in output
    assert "history:" in output and "error" in output
    data = json.loads(run("show", "aaaa2222-fail", "--json"))
    assert data["job"]["id"] == "aaaa2222-fail" and data["history"][0]["status"] == "error"


def test_show_unknown_or_ambiguous_ids_are_clear_errors(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    assert "no job with id 'zzz'" in run("show", "zzz", code=1)
    ambiguous = run("show", "aaaa", code=1)
    assert "job id prefix 'aaaa' is ambiguous: 'aaaa1111-done', 'aaaa2222-fail' start" in ambiguous


def test_show_lists_the_history_oldest_first_with_attempts(run) -> None:  # type: ignore[no-untyped-def]
    start = utcnow() - timedelta(minutes=1)
    transition("retried", "running", {"worker": "celery@w1"}, at=start)
    transition("retried", "pending", {"retries": 1}, at=start + timedelta(seconds=1))
    transition("retried", "finished", {"worker": "celery@w2"}, at=start + timedelta(seconds=2))
    lines = run("show", "retried").splitlines()
    history = lines[lines.index("history:") + 1 : lines.index("messages:") - 1]
    assert [line.split()[2:] for line in history] == [
        ["running", "attempt", "1", "celery@w1"],
        ["pending", "attempt", "2", "celery@w1"],
        ["finished", "attempt", "2", "celery@w2"],
    ]
    data = json.loads(run("show", "retried", "--json"))
    assert [(step["status"], step["retries"]) for step in data["history"]] == [
        ("running", None), ("pending", 1), ("finished", 1)
    ]  # fmt: skip
    assert data["history"][0]["at"] == start.isoformat()


def test_report_text_and_json(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    text = run("report", "--since", "1h")
    assert "pending 1  running 0  finished 1  error 1" in text
    assert "proj.add" in text and "celery@w2" in text and "ValueError" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    data = json.loads(run("report", "--since", "1h", "--json"))
    assert data["totals"]["finished"] == 1 and data["exceptions"] == [["ValueError", 1]]


def test_purge_deletes_old_ended_jobs_only(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    assert "deleted 1 job (finished, error)" in run("purge", "--older-than", "7d")
    assert findJob("old-finished") == (None, None)
    assert findJob("old-pending")[1] == "pending"
    assert findJob("aaaa1111-done")[1] == "finished"
    assert "deleted 1 job (pending)" in run("purge", "--older-than", "7d", "--state", "pending")
    assert findJob("old-pending") == (None, None)


def test_bad_durations_and_times_are_one_line_errors(run) -> None:  # type: ignore[no-untyped-def]
    assert "invalid duration '7x'" in run("purge", "--older-than", "7x", code=2)
    assert "invalid time 'soon'" in run("list", "--since", "soon", code=2)


def test_watch_refreshes_the_given_number_of_times(run) -> None:  # type: ignore[no-untyped-def]
    seed()
    output = run("watch", "--times", "2", "--interval", "0.1s")
    assert output.count("Running now") == 2


UNREACHABLE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize(
    "command",
    [
        ["list"],
        ["show", "abc"],
        ["report"],
        ["watch", "--times", "1"],
        ["purge", "--older-than", "1d"],
        ["workers"],
        ["reap"],
        ["reconcile", "--broker", "redis://127.0.0.1:6379/15", "--older-than", "0s"],
        ["db", "upgrade"],
        ["db", "current"],
        ["demo"],
    ],
    ids=" ".join,
)
def test_every_command_says_in_one_line_that_the_store_is_unreachable(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--db", UNREACHABLE])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.stderr.startswith("Error: ") and "127.0.0.1:1" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def seed_silent_worker(store: Store, silent_for: float) -> None:
    at = utcnow() - timedelta(seconds=silent_for)
    store.heartbeat("celery@quiet", hostname="h", pid=1, at=at)
    transition("on-quiet", "running", {"worker": "celery@quiet"}, seq=order_key(0, STAGE_RUNNING))


def test_reap_takes_its_timeout_from_the_workers_setting(store: Store) -> None:
    seed_silent_worker(store, silent_for=7)
    url = store.url.render_as_string(hide_password=False)
    runner = CliRunner()
    kept = runner.invoke(main, ["reap", "--db", url], env={"TASKJOBS_WORKER_TIMEOUT": None})
    assert "no worker has been silent for over 1m" in kept.output  # the 60 s default
    bad = runner.invoke(main, ["reap", "--db", url], env={"TASKJOBS_WORKER_TIMEOUT": "soon"})
    assert bad.exit_code == 1 and "TASKJOBS_WORKER_TIMEOUT" in bad.stderr, bad.output
    given = ["reap", "--timeout", "1m", "--db", url]  # an explicit timeout needs no setting
    assert runner.invoke(main, given, env={"TASKJOBS_WORKER_TIMEOUT": "soon"}).exit_code == 0
    assert findJob("on-quiet")[1] == "running"
    reaped = runner.invoke(main, ["reap", "--db", url], env={"TASKJOBS_WORKER_TIMEOUT": "5"})
    assert reaped.exit_code == 0 and "celery@quiet: silent, 1 running job marked lost" in (
        reaped.output
    )
    assert findJob("on-quiet")[1] == "error"


def test_reap_under_celery_takes_the_apps_worker_timeout(store: Store) -> None:
    seed_silent_worker(store, silent_for=7)
    url = store.url.render_as_string(hide_password=False)
    app = Celery("reaping", set_as_current=False)
    app.conf.taskjobs_worker_timeout = 5
    result = CliRunner().invoke(jobs, ["reap", "--db", url], obj=SimpleNamespace(app=app))
    assert "celery@quiet: silent, 1 running job marked lost" in result.output, result.output
    app.close()


def test_workers_are_alive_silent_or_stopped_with_their_running_jobs(store: Store, run) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    store.heartbeat("celery@alive-with-a-long-node-name", hostname="h", pid=11, at=now)
    store.heartbeat("celery@quiet", hostname="h", pid=12, at=now - timedelta(minutes=5))
    store.heartbeat("celery@gone", hostname="h", pid=13, at=now - timedelta(minutes=1))
    store.reap(silent_since=None, worker="celery@gone", at=now, reason="stopped")
    for i in range(2):
        transition(f"run{i}", "running", {"worker": "celery@alive-with-a-long-node-name"})
    transition("stuck", "running", {"worker": "celery@quiet"})
    lines = run("workers", "--timeout", "2m").splitlines()
    assert lines[0].split() == ["WORKER", "STATE", "RUNNING", "PID", "STARTED", "LAST", "SEEN",
                                "STOPPED"]  # fmt: skip
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows == {
        "…ith-a-long-node-name": ["alive", "2", "11"],
        "celery@gone": ["stopped", "0", "13"],
        "celery@quiet": ["silent", "1", "12"],
    }
    assert all(len(line) <= 80 for line in lines)
    assert "5m00s ago" in lines[-1] or "5m01s ago" in lines[-1]  # the least recently seen last
    data = json.loads(run("workers", "--timeout", "10m", "--json"))
    assert [(w["name"], w["state"], w["running"]) for w in data] == [
        ("celery@alive-with-a-long-node-name", "alive", 2),
        ("celery@gone", "stopped", 0),
        ("celery@quiet", "alive", 1),  # five minutes is not silent for a 10-minute timeout
    ]
    assert data[0]["last_seen"] == now.isoformat() and data[0]["pid"] == 11


def test_workers_without_heartbeats_say_so(run) -> None:  # type: ignore[no-untyped-def]
    assert "(no worker has sent a heartbeat)" in run("workers")
