"""The ``taskjobs`` commands through click's runner, on every database."""

from __future__ import annotations

import json
from datetime import timedelta
from types import SimpleNamespace

import pytest
from celery import Celery
from click.testing import CliRunner

from taskjobs.api.job import findJob
from tests.writes import transition
from taskjobs.celery.command import jobs
from taskjobs.cli import main
from taskjobs.model import STAGE_RUNNING, order_key, utcnow
from taskjobs.store import Store


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
    assert len(run("list", "--name", "proj.add", "--limit", "1").splitlines()) == 2
    assert "(no jobs)" in run("list", "--user", "nobody")


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
    assert "ambiguous" in run("show", "aaaa", code=1)


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
