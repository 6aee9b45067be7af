"""``taskjobs serve`` as a real process: it answers over HTTP, on the store it was given, and
warns when it is open to the network without a login."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskjobs.store import store_for
from tests.services import free_port
from tests.waiting import wait_for
from tests.web.seed import seed

pytestmark = pytest.mark.slow


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def serving(*options: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "taskjobs.cli", "serve", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/served.sqlite3"
    store = store_for(url)
    store.upgrade()
    seed(store)
    return url


def test_serve_answers_with_the_pages_of_its_store(database: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/tj"
    with serving("--db", database, "--port", str(port), "--url-prefix", "/tj") as process:
        wait_for(lambda: _answers(process, f"{base}/healthz"), what=lambda: f"an answer on {base}")
        status, page = fetch(f"{base}/jobs?name=shop.ship")
        assert status == 200 and "wf-member-0004" in page
        assert fetch(f"{base}/jobs/nope")[0] == 404
        process.terminate()
        out, err = process.communicate(timeout=15)
        assert f"on http://127.0.0.1:{port}/tj/" in out
        assert "Traceback" not in err


def test_serve_warns_when_open_to_the_network_without_a_login(database: str) -> None:
    port = free_port()
    with serving("--db", database, "--port", str(port), "--address", "0.0.0.0") as process:
        health = f"http://127.0.0.1:{port}/healthz"
        wait_for(lambda: _answers(process, health), what=lambda: f"an answer on {health}")
        process.terminate()
        _, err = process.communicate(timeout=15)
        assert "warning: serving on 0.0.0.0 without --basic-auth" in err


def test_serve_refuses_a_malformed_login_in_one_line(database: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "taskjobs.cli", "serve", "--db", database, "--basic-auth", "ada"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "Error: invalid basic auth 'ada': give user:password, several comma-separated"
    )


def _answers(process: subprocess.Popen[str], url: str) -> bool:
    """Whether the server answers ``url`` with 200; a server that exited fails the test."""
    assert process.poll() is None, process.communicate()
    try:
        return fetch(url)[0] == 200
    except OSError:
        return False
