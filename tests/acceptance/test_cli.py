"""The `taskjobs` command as a real subprocess, on SQLite and PostgreSQL; and `taskjobs demo`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskjobs
from tests.acceptance.conftest import ROOT
from tests.services import scratch_database
from tests.writes import transition

pytestmark = pytest.mark.slow

TASKJOBS = [sys.executable, "-m", "taskjobs.cli"]


def taskjobs_command(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TASKJOBS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def seeded_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with scratch_database(request.param, str(tmp_path)) as url:
        taskjobs.configure(url)
        transition(
            "cafe0001-ok", "finished", {"name": "proj.add", "runtime": 1.5, "worker": "celery@w1"}
        )
        transition(
            "cafe0002-bad",
            "error",
            {"name": "proj.fail", "exc_type": "KeyError"},
            message="KeyError: 'x'\n",
        )
        taskjobs.configure(None)
        yield url


def test_each_command_in_a_subprocess(seeded_url: str) -> None:
    listed = taskjobs_command("list", "--db", seeded_url)
    assert listed.returncode == 0 and "cafe0001" in listed.stdout and "cafe0002" in listed.stdout
    shown = taskjobs_command("show", "cafe0002", "--db", seeded_url)
    assert shown.returncode == 0 and "KeyError: 'x'" in shown.stdout
    report = json.loads(taskjobs_command("report", "--json", "--db", seeded_url).stdout)
    assert report["totals"]["finished"] == 1 and report["totals"]["error"] == 1
    watched = taskjobs_command("watch", "--times", "1", "--db", seeded_url)
    assert watched.returncode == 0 and "Running now" in watched.stdout
    purged = taskjobs_command("purge", "--older-than", "0s", "--db", seeded_url)
    assert purged.returncode == 0 and "deleted 2 jobs" in purged.stdout
    empty = taskjobs_command("list", "--db", seeded_url, "--json")
    assert json.loads(empty.stdout) == []


def test_the_database_url_can_come_from_the_environment(seeded_url: str) -> None:
    listed = taskjobs_command("list", "--json", env={"TASKJOBS_DATABASE_URL": seeded_url})
    assert {job["id"] for job in json.loads(listed.stdout)} == {"cafe0001-ok", "cafe0002-bad"}


def test_the_same_commands_under_celery_read_the_apps_store(seeded_url: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TJ_EXTRA_CONF": json.dumps({"taskjobs_database_url": seeded_url}),
    }
    env.pop("TASKJOBS_DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tests.celeryapp", "jobs", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert {job["id"] for job in json.loads(result.stdout)} == {"cafe0001-ok", "cafe0002-bad"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuchdb://x", "unsupported database 'nosuchdb'"),
        ("postgresql://nobody@127.0.0.1:1/none", "could not read jobs in"),
    ],
)
def test_bad_or_unreachable_databases_are_one_line(url: str, message: str) -> None:
    result = taskjobs_command("list", "--db", url)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_watch_stops_cleanly_on_ctrl_c(seeded_url: str) -> None:
    process = subprocess.Popen(
        [*TASKJOBS, "watch", "--interval", "0.2s", "--db", seeded_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while "Running now" not in process.stdout.readline():
        assert time.monotonic() < deadline and process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr


def test_demo_runs_a_real_worker_and_reports(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "TASKJOBS_DATABASE_URL"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "taskjobs.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 60
    assert "pending 0  running 0  finished 14  error 3" in result.stdout
    assert "demo.resize_image" in result.stdout and "ValueError" in result.stdout
    assert "The dashboard: taskjobs serve  (then open http://127.0.0.1:5555/)" in result.stdout
    assert (tmp_path / "taskjobs.sqlite3").exists()
    listed = taskjobs_command("list", "--json", cwd=tmp_path, env={"TASKJOBS_DATABASE_URL": ""})
    jobs = json.loads(listed.stdout)
    assert len(jobs) == 17 and {job["status"] for job in jobs} == {"finished", "error"}
    retried = next(job for job in jobs if job["name"] == "demo.charge_card")
    assert retried["retries"] == 2 and retried["parent_id"] is None
    leftover = subprocess.run(["pgrep", "-f", "taskjobs.celery.demo"], capture_output=True)
    assert leftover.returncode == 1, "the demo left its worker running"
